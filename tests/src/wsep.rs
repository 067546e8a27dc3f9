//! What the wsep scenarios send beside the client library: a raw
//! WebSocket for messages the library would never send, and the close
//! that answers them.

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use wsep_proto::StartCommand;

use crate::{TestServer, Ws};

/// A raw WebSocket to `server` with its token, without the client
/// library's limits.
pub async fn raw(server: &TestServer) -> Ws {
    crate::ws_connect(&server.url(), Some(&server.token), None)
        .await
        .unwrap()
}

/// Reads until the server's close frame; returns its code and reason.
pub async fn close_of(ws: &mut Ws) -> (u16, String) {
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                return (frame.code.into(), frame.reason.to_string());
            }
            Ok(Message::Close(None)) => return (1005, String::new()),
            Ok(_) => continue,
            Err(e) => panic!("connection failed before a close frame: {e}"),
        }
    }
    panic!("connection ended without a close frame")
}

/// `start` as the message the server reads.
pub fn start_frame(start: &StartCommand) -> Message {
    Message::Binary(wsep_proto::ClientMsg::Start(start.clone()).encode().into())
}
