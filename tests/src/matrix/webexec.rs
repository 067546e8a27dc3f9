//! webexec: a WebRTC peer per session (the `webrtc` crate client of
//! [`crate::webexec`]), the command started with `add_pane` (its argv as
//! JSON, so a script may hold the commas a channel label splits at) and
//! served on the channel the server opens for it.

use async_trait::async_trait;
use serde_json::json;

use super::{Event, Pty, Reattach, Session};
use crate::TestServer;
use crate::webexec::{Client, ClientChannel, Signaling};

/// A pane, its channel, and the peer that holds them.
#[derive(Debug)]
pub struct Webexec {
    client: Client,
    channel: ClientChannel,
    pane: u64,
}

impl Webexec {
    async fn connect(server: &TestServer) -> Client {
        Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
            .await
            .unwrap()
    }

    /// Sends `kind` with `args` on the control channel and takes the
    /// channel the server opens for the pane the ack names.
    async fn pane_request(mut client: Client, kind: &str, args: serde_json::Value) -> Webexec {
        let reply = client.control.request(kind, args).await;
        assert_eq!(reply["type"], "ack", "{reply}");
        let pane: u64 = reply["args"]["body"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no pane id in {reply}"));
        let (label, channel) = client.server_channel().await;
        assert!(label.ends_with(&format!(":{pane}")), "{label}");
        Webexec {
            client,
            channel,
            pane,
        }
    }

    async fn add_pane(server: &TestServer, argv: &[&str], rows: u16, cols: u16) -> Webexec {
        let client = Webexec::connect(server).await;
        let args = json!({"command": argv, "rows": rows, "cols": cols, "parent": 0});
        Webexec::pane_request(client, "add_pane", args).await
    }
}

#[async_trait]
impl Session for Webexec {
    async fn server() -> TestServer {
        TestServer::webexec_with(webexec_server::Config::default()).await
    }

    async fn start(server: &TestServer, script: &str) -> Self {
        Webexec::add_pane(server, &["sh", "-c", script], 0, 0).await
    }

    async fn send(&mut self, data: &[u8]) {
        self.channel.send(data).await;
    }

    /// Output, stdout and stderr as one; the channel closes when the
    /// process has exited.
    async fn next(&mut self) -> Option<Event> {
        let msg = self.channel.recv().await?;
        Some(Event::Stdout(msg.bytes().to_vec()))
    }

    /// Text that is not JSON on this peer's control channel: nacked, and
    /// the peer stays.
    async fn refused(&mut self) -> String {
        let reply = self.client.control.raw("this is not json").await;
        assert_eq!(reply["type"], "nack", "{reply}");
        reply["args"]["desc"].as_str().unwrap().to_owned()
    }
}

#[async_trait]
impl Pty for Webexec {
    async fn start_pty(server: &TestServer, rows: u16, cols: u16) -> Self {
        Webexec::add_pane(server, &["sh"], rows, cols).await
    }

    /// `resize` on the control channel (`sx` columns, `sy` rows).
    async fn resize(&mut self, rows: u16, cols: u16) {
        let args = json!({"pane_id": self.pane, "sx": cols, "sy": rows});
        let reply = self.client.control.request("resize", args).await;
        assert_eq!(reply["type"], "ack", "{reply}");
    }
}

/// Panes outlive their peers; a new peer's `reconnect_pane` opens a
/// channel to the pane and replays its screen.
#[async_trait]
impl Reattach for Webexec {
    type Handle = u64;

    async fn detach(self) -> u64 {
        self.client.close().await;
        self.pane
    }

    async fn reattach(server: &TestServer, pane: u64) -> Self {
        let client = Webexec::connect(server).await;
        Webexec::pane_request(client, "reconnect_pane", json!({"id": pane})).await
    }
}
