//! A pow-1 WebSocket client for the scenarios: the call, signals, and the
//! outcome with the clean close the reference client insists on.

use futures_util::StreamExt;
use pow_proto::{Call, Outcome, Signal};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{TestServer, Ws};

/// A WebSocket to `server` with its token, offering `subprotocol`
/// (`pow-1` for a real client; none or another to test the refusal).
pub async fn connect(
    server: &TestServer,
    subprotocol: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    crate::ws_connect(&server.url(), Some(&server.token), subprotocol).await
}

/// The call message for process `name` with `params`.
pub fn call(name: &str, params: &[&str]) -> Message {
    let call = Call {
        call: name.into(),
        params: params.iter().map(|s| s.to_string()).collect(),
    };
    Message::Binary(call.encode().into())
}

/// The message of signal `s`.
pub fn signal(s: Signal) -> Message {
    Message::Binary(s.encode().into())
}

/// Everything until the close: text output, the result, and the close
/// frame, which must be 1000 with an empty reason and answered before
/// the stream ends.
pub async fn outcome(ws: &mut Ws) -> (String, Outcome) {
    let mut text = String::new();
    let mut result = None;
    while let Some(msg) = ws.next().await {
        match msg.unwrap() {
            Message::Text(t) => {
                assert!(result.is_none(), "output after the result");
                text.push_str(&t);
            }
            Message::Binary(b) => {
                assert!(result.is_none(), "two results");
                result = Some(Outcome::decode(&b).unwrap());
            }
            Message::Close(frame) => {
                assert_clean_close(frame);
                break;
            }
            _ => {}
        }
    }
    // The handshake completes: the stream ends cleanly after our reply.
    assert!(ws.next().await.is_none());
    (text, result.expect("a result before the close"))
}

/// Fails unless `frame` is what the reference client wants after a
/// result: 1000 with an empty reason.
pub fn assert_clean_close(frame: Option<tungstenite::protocol::CloseFrame>) {
    let frame = frame.expect("a close frame with a code");
    assert_eq!(u16::from(frame.code), 1000);
    assert_eq!(
        frame.reason.as_str(),
        "",
        "the reference client wants an empty reason"
    );
}
