//! pow-1 over its WebSocket: a server-defined process `sh` whose one
//! parameter is the script (a test configuration: the shipped one runs no
//! shell).

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::{SinkExt as _, StreamExt as _};
use pow_proto::{Outcome, Signal};
use tokio_tungstenite::tungstenite::Message;

use super::{CloseStdin, Event, ExitCode, ReadAhead, Session};
use crate::pow::{assert_clean_close, call, connect, outcome, signal};
use crate::{TestServer, Ws};

/// The processes of the matrix's pow server.
pub(crate) const PROCESSES: &str = "[process.sh]\nargv = [\"sh\", \"-c\", \"{0}\"]\nparams = 1\n";

/// A pow call on its own WebSocket.
#[derive(Debug)]
pub struct Pow {
    ws: Ws,
    ahead: ReadAhead,
    url: String,
    token: String,
}

/// The exit code a result stands for: fulfilled is 0; a command's non-zero
/// exit is rejected with "exit status N" (then `: ` and the end of its
/// stderr). Any other rejection fails the scenario.
fn exit_code(result: &Outcome) -> i32 {
    match result {
        Outcome::Fulfilled { .. } => 0,
        Outcome::Rejected { reason } => reason
            .strip_prefix("exit status ")
            .and_then(|rest| rest.split(':').next())
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("rejected: {reason}")),
    }
}

#[async_trait]
impl Session for Pow {
    async fn server() -> TestServer {
        let registry = pow_server::registry_from_toml(PROCESSES).unwrap();
        TestServer::pow_with(pow_server::Config::default(), Arc::new(registry)).await
    }

    async fn start(server: &TestServer, script: &str) -> Self {
        let mut ws = connect(server, Some("pow-1")).await.unwrap();
        ws.send(call("sh", &[script])).await.unwrap();
        Pow {
            ws,
            ahead: ReadAhead::default(),
            url: server.url(),
            token: server.token.clone(),
        }
    }

    /// One text frame: pow carries input as text.
    async fn send(&mut self, data: &[u8]) {
        let text = std::str::from_utf8(data).expect("pow input is text");
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// Text frames are output; the result frame is the exit; then the
    /// close, 1000 with an empty reason, answered before the stream ends.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(next) = self.ahead.take() {
                return next;
            }
            match self
                .ws
                .next()
                .await
                .expect("connection ended before its close")
            {
                Ok(Message::Text(t)) => return Some(Event::Stdout(t.as_bytes().to_vec())),
                Ok(Message::Binary(b)) => {
                    self.ahead
                        .ready
                        .push_back(Event::Exit(exit_code(&Outcome::decode(&b).unwrap())));
                }
                Ok(Message::Close(frame)) => {
                    assert_clean_close(frame);
                    assert!(self.ws.next().await.is_none(), "data after the close");
                    self.ahead.ended = true;
                }
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    }

    /// A first frame that is not JSON, on a second connection: the call is
    /// rejected with pow's protocol error.
    async fn refused(&mut self) -> String {
        let mut ws = crate::ws_connect(&self.url, Some(&self.token), Some("pow-1"))
            .await
            .unwrap();
        ws.send(Message::binary(&b"{not json"[..])).await.unwrap();
        match outcome(&mut ws).await.1 {
            Outcome::Rejected { reason } => reason,
            other => panic!("bad input was {other:?}"),
        }
    }
}

impl ExitCode for Pow {}

#[async_trait]
impl CloseStdin for Pow {
    async fn close_stdin(&mut self) {
        self.ws.send(signal(Signal::Close)).await.unwrap();
    }
}
