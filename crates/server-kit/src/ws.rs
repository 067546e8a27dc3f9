//! [`Transport`] over axum's WebSocket, counting the payload both ways.
//!
//! The engine defines the transport; this adapter lives with the servers
//! because only they speak HTTP. Pings are answered by tungstenite itself
//! and never reach a session.

use async_trait::async_trait;
use axum::extract::ws::{self, WebSocket};
use bytes::Bytes;
use exec_core::{
    CloseFrame, MAX_CLOSE_REASON, Message, Transport, TransportError, TransportRx, TransportTx,
    truncate_reason,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};

use crate::metrics::Probe;

/// An upgraded WebSocket as a [`Transport`]; message payloads are counted
/// in the probe's `received`/`sent` bytes.
#[derive(Debug)]
pub struct WsTransport {
    socket: WebSocket,
    probe: Probe,
}

impl WsTransport {
    /// Wraps an upgraded socket.
    pub fn new(socket: WebSocket, probe: &Probe) -> WsTransport {
        WsTransport {
            socket,
            probe: probe.clone(),
        }
    }
}

/// Sending half of a [`WsTransport`].
#[derive(Debug)]
pub struct WsTx {
    sink: SplitSink<WebSocket, ws::Message>,
    probe: Probe,
}

/// Receiving half of a [`WsTransport`].
#[derive(Debug)]
pub struct WsRx {
    stream: SplitStream<WebSocket>,
    close: Option<CloseFrame>,
    probe: Probe,
}

impl Transport for WsTransport {
    type Tx = WsTx;
    type Rx = WsRx;
    fn split(self) -> (WsTx, WsRx) {
        let (sink, stream) = StreamExt::split(self.socket);
        (
            WsTx {
                sink,
                probe: self.probe.clone(),
            },
            WsRx {
                stream,
                close: None,
                probe: self.probe,
            },
        )
    }
}

fn ws_error(e: axum::Error) -> TransportError {
    let text = e.to_string();
    if text.contains("Message too long") || text.contains("too large") {
        TransportError::MessageTooLarge
    } else {
        TransportError::Other(text)
    }
}

#[async_trait]
impl TransportTx for WsTx {
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        let len = msg.payload().len();
        let msg = match msg {
            Message::Binary(b) => ws::Message::Binary(b),
            Message::Text(b) => ws::Message::Text(
                ws::Utf8Bytes::try_from(b)
                    .map_err(|_| TransportError::Other("text message is not UTF-8".into()))?,
            ),
        };
        self.sink.send(msg).await.map_err(ws_error)?;
        self.probe.sent(len);
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        let reason = truncate_reason(reason, MAX_CLOSE_REASON);
        self.sink
            .send(ws::Message::Close(Some(ws::CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await
            .map_err(ws_error)
    }
}

#[async_trait]
impl TransportRx for WsRx {
    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        loop {
            let msg = match self.stream.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(ws_error(e)),
                Some(Ok(ws::Message::Binary(b))) => Message::Binary(b),
                Some(Ok(ws::Message::Text(t))) => Message::Text(Bytes::from(t)),
                Some(Ok(ws::Message::Close(frame))) => {
                    self.close = Some(match frame {
                        Some(f) => CloseFrame {
                            code: f.code,
                            reason: f.reason.to_string(),
                        },
                        None => CloseFrame {
                            code: 1005,
                            reason: String::new(),
                        },
                    });
                    return Ok(None);
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(ws::Message::Ping(_) | ws::Message::Pong(_))) => continue,
            };
            self.probe.received(msg.payload().len());
            return Ok(Some(msg));
        }
    }

    fn close_frame(&self) -> Option<&CloseFrame> {
        self.close.as_ref()
    }
}
