//! A Web-Terminal v3 client for the scenarios: JSON text frames on one
//! WebSocket, commands keyed by their `serverId`, updates put together.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{TestServer, Ws};

/// A safety net so a broken server fails the test instead of hanging it;
/// never reached when things work.
pub const NET: Duration = Duration::from_secs(60);

/// One connection.
#[derive(Debug)]
pub struct Client {
    /// The socket, for messages the helpers do not make.
    pub ws: Ws,
    /// The token the server expects.
    pub token: String,
    /// Messages read while waiting for something else.
    queued: Vec<Value>,
}

/// What one command produced, its updates put together.
#[derive(Debug, Default)]
pub struct Run {
    /// `output.stdout` of every update, in order.
    pub stdout: String,
    /// `output.stderr` of every update, in order.
    pub stderr: String,
    /// `output.combined` of every update, in order.
    pub combined: String,
    /// Per pipe: its stdout, stderr and combined.
    pub breakpoints: BTreeMap<u64, (String, String, String)>,
    /// `exitCode` of the last update.
    pub exit_code: Option<i64>,
    /// `signal` of the last update.
    pub signal: Option<i64>,
    /// Every update, as it came.
    pub updates: Vec<Value>,
}

impl Client {
    /// Connects to `server` with `query` after the path (`?output=html`),
    /// without authenticating.
    pub async fn connect(server: &TestServer, query: &str) -> Client {
        let url = format!("{}{query}", server.url());
        let ws = crate::ws_connect(&url, None, None).await.unwrap();
        Client {
            ws,
            token: server.token.clone(),
            queued: Vec::new(),
        }
    }

    /// Connects to a server at `url` that expects `token` (one not
    /// started by the test: the systemd check's units, a server behind a
    /// gateway), without authenticating; a `wss://` one is trusted as
    /// `connector` says (`None`: the system's roots).
    pub async fn connect_url(
        url: &str,
        token: String,
        connector: Option<tokio_tungstenite::Connector>,
    ) -> Result<Client, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, None, false, connector).await?;
        Ok(Client {
            ws,
            token,
            queued: Vec::new(),
        })
    }

    /// Connects and authenticates with the server's token.
    pub async fn authed(server: &TestServer) -> Client {
        let mut c = Client::connect(server, "").await;
        let token = c.token.clone();
        let reply = c
            .request(json!({"type":"authentication","payload":{"token":token}}))
            .await;
        assert_eq!(reply["payload"]["result"], "ok", "{reply}");
        c
    }

    /// Sends `v` as a text frame.
    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// The next text message, or None when the connection closed.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(NET, self.ws.next())
                .await
                .expect("server went silent");
            match msg? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends `v` and returns the next message that is not an update.
    pub async fn request(&mut self, v: Value) -> Value {
        self.send(v).await;
        self.reply().await
    }

    /// The next message that is not an update of a command's output (those
    /// are kept for later).
    pub async fn reply(&mut self) -> Value {
        loop {
            let msg = self.next().await.expect("connection closed");
            if msg["type"] == "update" && msg["payload"].get("status").is_some() {
                self.queued.push(msg);
            } else {
                return msg;
            }
        }
    }

    /// Starts a command; returns its serverId.
    pub async fn run(&mut self, line: &str, client_id: Value, breakpoints: &[u64]) -> u64 {
        let mut payload = json!({"command": line, "clientId": client_id});
        if !breakpoints.is_empty() {
            payload["breakpoints"] = json!(breakpoints);
        }
        let ack = self
            .request(json!({"type":"command","payload":payload}))
            .await;
        assert_eq!(ack["type"], "command");
        assert_eq!(ack["payload"]["result"], "ok", "{ack}");
        assert_eq!(ack["payload"]["clientId"], client_id);
        assert_eq!(ack["payload"]["command"], line);
        ack["payload"]["serverId"].as_u64().unwrap()
    }

    /// Sends `input` to command `id`; `eof` closes its stdin after it.
    pub async fn stdin(&mut self, id: u64, input: &str, eof: bool) {
        self.send(json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":input,"eof":eof}}))
            .await;
    }

    /// The next update of command `id` (others are kept for later).
    pub async fn update(&mut self, id: u64) -> Value {
        if let Some(i) = self.queued.iter().position(|m| is_update_of(m, id)) {
            return self.queued.remove(i);
        }
        loop {
            let Some(msg) = self.next().await else {
                panic!("connection closed before command {id} completed")
            };
            if is_update_of(&msg, id) {
                return msg;
            }
            self.queued.push(msg);
        }
    }

    /// Updates of command `id`, until it completes.
    pub async fn finish(&mut self, id: u64) -> Run {
        let mut run = Run::default();
        while !absorb(&mut run, self.update(id).await) {}
        run
    }

    /// Updates of command `id` until its stdout so far contains `needle`.
    pub async fn until_stdout(&mut self, id: u64, needle: &str) -> Run {
        let mut run = Run::default();
        while !run.stdout.contains(needle) {
            let msg = self.update(id).await;
            assert!(!absorb(&mut run, msg), "completed before {needle:?}");
        }
        run
    }
}

/// True when `msg` is an update of command `id`'s output (not the error
/// reply to a bad `update`, which carries no status).
fn is_update_of(msg: &Value, id: u64) -> bool {
    msg["type"] == "update"
        && msg["payload"].get("status").is_some()
        && msg["payload"]["serverId"] == id
}

/// Adds an update to `run`; true when it was the last.
pub fn absorb(run: &mut Run, msg: Value) -> bool {
    let p = &msg["payload"];
    let out = &p["output"];
    run.stdout += out["stdout"].as_str().unwrap();
    run.stderr += out["stderr"].as_str().unwrap();
    run.combined += out["combined"].as_str().unwrap();
    if let Some(bps) = out.get("breakpoints") {
        for bp in bps.as_array().unwrap() {
            let e = run
                .breakpoints
                .entry(bp["location"].as_u64().unwrap())
                .or_default();
            e.0 += bp["stdout"].as_str().unwrap();
            e.1 += bp["stderr"].as_str().unwrap();
            e.2 += bp["combined"].as_str().unwrap();
        }
    }
    assert!(p["begin"].as_str().unwrap().ends_with('Z'));
    let done = p["status"] == "completed";
    if done {
        assert!(p["end"].as_str().unwrap().contains('T'));
        run.exit_code = p["exitCode"].as_i64();
        run.signal = p["signal"].as_i64();
    } else {
        assert_eq!(p["status"], "running");
        assert!(p["end"].is_null());
    }
    run.updates.push(msg);
    done
}
