//! [`Transport`] over axum's WebSocket, counting the payload both ways.
//!
//! The engine defines the transport; this adapter lives with the servers
//! because only they speak HTTP. Pings are answered by tungstenite itself
//! and never reach a session.
//!
//! With [`WsTransport::ping_every`] the server also pings the client itself
//! while the connection lives. Reverse proxies end a connection on which
//! nothing came from the server for a while (nginx's `proxy_read_timeout`,
//! 60 s by default), and a terminal left idle is exactly such a connection:
//! the ping is traffic the proxy sees, and the client's pong is its answer
//! in the other direction.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::{self, WebSocket};
use bytes::Bytes;
use exec_core::{
    CloseFrame, MAX_CLOSE_REASON, Message, Transport, TransportError, TransportRx, TransportTx,
    truncate_reason,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;

use crate::metrics::Probe;

/// How often servers ping by default: half of nginx's default
/// `proxy_read_timeout` (60 s), so one late ping does not lose the
/// connection.
pub const DEFAULT_WS_PING: Duration = Duration::from_secs(30);

/// The sending half, shared by the session's sends and the pinger. The
/// lock is uncontended but for a ping every interval.
type Sink = Arc<Mutex<SplitSink<WebSocket, ws::Message>>>;

/// An upgraded WebSocket as a [`Transport`]; message payloads are counted
/// in the probe's `received`/`sent` bytes.
#[derive(Debug)]
pub struct WsTransport {
    socket: WebSocket,
    probe: Probe,
    ping: Option<Duration>,
}

impl WsTransport {
    /// Wraps an upgraded socket.
    pub fn new(socket: WebSocket, probe: &Probe) -> WsTransport {
        WsTransport {
            socket,
            probe: probe.clone(),
            ping: None,
        }
    }

    /// Pings the client every `interval` (`None`: never) from when the
    /// transport is split until its sending half is dropped or the
    /// connection fails.
    pub fn ping_every(mut self, interval: Option<Duration>) -> WsTransport {
        self.ping = interval.filter(|i| !i.is_zero());
        self
    }
}

/// Sending half of a [`WsTransport`].
#[derive(Debug)]
pub struct WsTx {
    sink: Sink,
    probe: Probe,
}

/// Sends a ping every `interval` while the sending half lives. It holds
/// the sink only weakly, so the session's end (dropping [`WsTx`]) ends it
/// too; a ping the client does not take within an interval (its side is
/// full, so the connection is not idle) is given up, not queued behind.
async fn pinger(sink: Weak<Mutex<SplitSink<WebSocket, ws::Message>>>, interval: Duration) {
    let start = tokio::time::Instant::now() + interval;
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(sink) = sink.upgrade() else { return };
        let ping = async {
            let mut sink = sink.lock().await;
            sink.send(ws::Message::Ping(Bytes::new())).await
        };
        match tokio::time::timeout(interval, ping).await {
            Ok(Ok(())) | Err(_) => {}
            Ok(Err(_)) => return,
        }
    }
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
        let sink = Arc::new(Mutex::new(sink));
        if let Some(interval) = self.ping {
            tokio::spawn(pinger(Arc::downgrade(&sink), interval));
        }
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
        self.sink.lock().await.send(msg).await.map_err(ws_error)?;
        self.probe.sent(len);
        Ok(())
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        let reason = truncate_reason(reason, MAX_CLOSE_REASON);
        self.sink
            .lock()
            .await
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
