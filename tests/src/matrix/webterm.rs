//! Web-Terminal v3: one authenticated connection per session, the script
//! as the command line (the server runs it with `/bin/sh`).

use async_trait::async_trait;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{CloseStdin, Event, ExitCode, ReadAhead, Session, Stderr};
use crate::TestServer;
use crate::webterm::Client;

/// A webterm command and its connection.
#[derive(Debug)]
pub struct Webterm {
    client: Client,
    id: u64,
    ahead: ReadAhead,
}

/// The bytes of stream `name` in an update's output: `raw` (base64) where
/// the server had to replace bytes that were not UTF-8, else the text.
fn bytes_of(output: &Value, name: &str) -> Vec<u8> {
    match output["raw"][name].as_str() {
        Some(raw) => base64::engine::general_purpose::STANDARD
            .decode(raw)
            .unwrap(),
        None => output[name].as_str().unwrap().as_bytes().to_vec(),
    }
}

#[async_trait]
impl Session for Webterm {
    async fn server() -> TestServer {
        TestServer::webterm_with(webterm_server::Config {
            shell: "/bin/sh".into(),
            ..webterm_server::Config::default()
        })
        .await
    }

    async fn start(server: &TestServer, script: &str) -> Self {
        let mut client = Client::authed(server).await;
        let id = client.run(script, json!("matrix"), &[]).await;
        Webterm {
            client,
            id,
            ahead: ReadAhead::default(),
        }
    }

    /// One `stdin` update: webterm carries input as a JSON string.
    async fn send(&mut self, data: &[u8]) {
        let text = std::str::from_utf8(data).expect("webterm input is text");
        self.client.stdin(self.id, text, false).await;
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(next) = self.ahead.take() {
                return next;
            }
            let update = self.client.update(self.id).await;
            let p = &update["payload"];
            for (name, event) in [
                ("stdout", Event::Stdout as fn(Vec<u8>) -> Event),
                ("stderr", Event::Stderr),
            ] {
                let bytes = bytes_of(&p["output"], name);
                if !bytes.is_empty() {
                    self.ahead.ready.push_back(event(bytes));
                }
            }
            if p["status"] == "completed" {
                let code = p["exitCode"]
                    .as_i64()
                    .expect("a completed command's exit code");
                self.ahead
                    .ready
                    .push_back(Event::Exit(i32::try_from(code).unwrap()));
                self.ahead.ended = true;
            }
        }
    }

    /// A frame that is not JSON, on this session's connection: answered
    /// with an error reply, and the connection stays.
    async fn refused(&mut self) -> String {
        use futures_util::SinkExt as _;
        use tokio_tungstenite::tungstenite::Message;
        self.client
            .ws
            .send(Message::text("{not json"))
            .await
            .unwrap();
        let reply = self.client.reply().await;
        assert_eq!(reply["payload"]["result"], "error", "{reply}");
        reply["payload"]["message"].as_str().unwrap().to_owned()
    }
}

impl ExitCode for Webterm {}

impl Stderr for Webterm {}

/// An empty `stdin` update with `eof`.
#[async_trait]
impl CloseStdin for Webterm {
    async fn close_stdin(&mut self) {
        self.client.stdin(self.id, "", true).await;
    }
}
