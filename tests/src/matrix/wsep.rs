//! wsep through the `wsep-client` library.

use async_trait::async_trait;
use wsep_client::{Input, Output, Outputs};
use wsep_proto::StartCommand;

use super::{CloseStdin, Event, ExitCode, Pty, Reattach, Session, Stderr};
use crate::TestServer;

/// The id of the one named terminal session a scenario keeps (each
/// scenario has a server of its own).
const SESSION_ID: &str = "matrix";

/// A wsep command: the library's two halves, and where its server is.
#[derive(Debug)]
pub struct Wsep {
    input: Input,
    output: Outputs,
    url: String,
    token: String,
}

impl Wsep {
    async fn open(server: &TestServer, start: StartCommand) -> Wsep {
        let (input, output) = wsep_client::start(&server.url(), Some(&server.token), start)
            .await
            .unwrap();
        assert!(output.pid() > 0);
        Wsep {
            input,
            output,
            url: server.url(),
            token: server.token.clone(),
        }
    }
}

/// `sh` on a terminal, in the named session.
fn shell(rows: u16, cols: u16) -> StartCommand {
    StartCommand {
        command: "sh".into(),
        tty: true,
        rows,
        cols,
        id: SESSION_ID.into(),
        ..StartCommand::default()
    }
}

#[async_trait]
impl Session for Wsep {
    async fn server() -> TestServer {
        TestServer::wsep().await
    }

    async fn start(server: &TestServer, script: &str) -> Self {
        let start = StartCommand {
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            ..StartCommand::default()
        };
        Wsep::open(server, start).await
    }

    async fn send(&mut self, data: &[u8]) {
        self.input.write(data).await.unwrap();
    }

    async fn next(&mut self) -> Option<Event> {
        Some(match self.output.next().await.unwrap()? {
            Output::Stdout(b) => Event::Stdout(b.to_vec()),
            Output::Stderr(b) => Event::Stderr(b.to_vec()),
            Output::Exit { code, .. } => Event::Exit(code),
        })
    }

    /// Garbage as the first message, on a second connection: wsep closes
    /// it with 1008 and the reason.
    async fn refused(&mut self) -> String {
        use futures_util::SinkExt as _;
        let mut ws = crate::ws_connect(&self.url, Some(&self.token), None)
            .await
            .unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::binary(
            &b"garbage"[..],
        ))
        .await
        .unwrap();
        let (code, reason) = crate::wsep::close_of(&mut ws).await;
        assert_eq!(code, 1008, "{reason}");
        reason
    }
}

impl ExitCode for Wsep {}

impl Stderr for Wsep {}

#[async_trait]
impl CloseStdin for Wsep {
    async fn close_stdin(&mut self) {
        self.input.close_stdin().await.unwrap();
    }
}

#[async_trait]
impl Pty for Wsep {
    async fn start_pty(server: &TestServer, rows: u16, cols: u16) -> Self {
        Wsep::open(server, shell(rows, cols)).await
    }

    async fn resize(&mut self, rows: u16, cols: u16) {
        self.input.resize(rows, cols).await.unwrap();
    }
}

/// A `start` with the same `id` attaches to the session.
#[async_trait]
impl Reattach for Wsep {
    type Handle = ();

    async fn detach(self) {
        self.input.disconnect().await.unwrap();
    }

    async fn reattach(server: &TestServer, _handle: ()) -> Self {
        Wsep::open(server, shell(24, 80)).await
    }
}
