//! [`Transport`] over axum's WebSocket, counting the payload both ways.
//!
//! The engine defines the transport; this adapter lives with the servers
//! because only they speak HTTP. Pings are answered by tungstenite itself
//! and never reach a session. Close reasons are the engine's words; this
//! is where they become WebSocket close codes ([`close_code`]) and codes
//! become words ([`close_reason`]).
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
    CloseFrame, CloseReason, Message, Transport, TransportError, TransportRx, TransportTx,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::Mutex;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::metrics::Probe;

/// How often servers ping by default: half of nginx's default
/// `proxy_read_timeout` (60 s), so one late ping does not lose the
/// connection.
pub const DEFAULT_WS_PING: Duration = Duration::from_secs(30);

/// The sending half, shared by the session's sends and the pinger. The
/// lock is uncontended but for a ping every interval.
type Sink = Arc<Mutex<SplitSink<WebSocket, ws::Message>>>;

/// The longest close reason a WebSocket close frame carries (125 bytes of
/// payload less the 2-byte code).
const MAX_CLOSE_TEXT: usize = 123;

/// The close code no frame carries, standing for a close frame without a
/// code (RFC 6455, section 7.1.5).
const NO_STATUS: u16 = 1005;

/// The WebSocket close code (RFC 6455, section 7.4.1) that says `reason`.
pub fn close_code(reason: CloseReason) -> u16 {
    match reason {
        CloseReason::Normal => 1000,
        CloseReason::GoingAway => 1001,
        CloseReason::Policy => 1008,
        CloseReason::TooBig => 1009,
        CloseReason::Internal => 1011,
    }
}

/// The word nearest to a close code a peer sent; the code itself stays in
/// [`CloseFrame::code`].
pub fn close_reason(code: u16) -> CloseReason {
    match code {
        // 1005: a close without a code, which is how clients usually say
        // goodbye.
        1000 | NO_STATUS => CloseReason::Normal,
        // Service restart, try again later: the other end leaves for now.
        1001 | 1012 | 1013 => CloseReason::GoingAway,
        // Protocol error, unacceptable data, invalid payload, a missing
        // extension: the rules were broken.
        1002 | 1003 | 1007 | 1008 | 1010 => CloseReason::Policy,
        1009 => CloseReason::TooBig,
        // An application's own codes: a deliberate close whose meaning
        // only that application knows.
        3000..=4999 => CloseReason::Normal,
        // 1011, 1014 (bad gateway), 1015 (TLS), and codes no frame may
        // carry: something failed.
        _ => CloseReason::Internal,
    }
}

/// Cuts `text` to at most `max` bytes without splitting a character.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

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
    /// Ends the pinger when this half is dropped (the session's end), at
    /// once rather than at its next tick.
    _pinger: Option<DropGuard>,
}

/// Sends a ping every `interval` while the sending half lives. It holds
/// the sink only weakly and ends as soon as `stop` fires (dropping
/// [`WsTx`], the session's end): a pinger that waited for its next tick to
/// find the session gone kept its task, timer and the sink's allocation
/// for up to an interval after every session, some 20,000 of them at
/// 700 sessions a second (the reliability soak saw pow's memory grow by
/// 1 KiB per session). A ping the client does not take within an interval
/// (its side is full, so the connection is not idle) is given up, not
/// queued behind.
async fn pinger(
    sink: Weak<Mutex<SplitSink<WebSocket, ws::Message>>>,
    interval: Duration,
    stop: CancellationToken,
) {
    let start = tokio::time::Instant::now() + interval;
    let mut ticks = tokio::time::interval_at(start, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
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
        let pinger = self.ping.map(|interval| {
            let stop = CancellationToken::new();
            tokio::spawn(pinger(Arc::downgrade(&sink), interval, stop.clone()));
            stop.drop_guard()
        });
        (
            WsTx {
                sink,
                probe: self.probe.clone(),
                _pinger: pinger,
            },
            WsRx {
                stream,
                close: None,
                probe: self.probe,
            },
        )
    }
}

/// The engine's word for what tungstenite reported (axum hands its error
/// on boxed: the same tungstenite as ours, so it downcasts).
fn ws_error(e: axum::Error) -> TransportError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::ProtocolError;
    let e = match e.into_inner().downcast::<WsError>() {
        Ok(e) => *e,
        Err(other) => return TransportError::Other(other.to_string()),
    };
    match e {
        WsError::Capacity(_) => TransportError::MessageTooLarge,
        // A client gone without a goodbye did not break the rules.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            TransportError::Other(e.to_string())
        }
        WsError::Protocol(_) | WsError::Utf8(_) => TransportError::Malformed(e.to_string()),
        e => TransportError::Other(e.to_string()),
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

    async fn close(&mut self, reason: CloseReason, text: &str) -> Result<(), TransportError> {
        self.sink
            .lock()
            .await
            .send(ws::Message::Close(Some(ws::CloseFrame {
                code: close_code(reason),
                reason: truncate(text, MAX_CLOSE_TEXT).into(),
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
                    let (code, text) = match frame {
                        Some(f) => (f.code, f.reason.to_string()),
                        None => (NO_STATUS, String::new()),
                    };
                    self.close = Some(CloseFrame {
                        reason: close_reason(code),
                        text,
                        code: Some(code),
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

#[cfg(test)]
mod tests {
    use super::*;

    const WORDS: [CloseReason; 5] = [
        CloseReason::Normal,
        CloseReason::GoingAway,
        CloseReason::Policy,
        CloseReason::TooBig,
        CloseReason::Internal,
    ];

    #[test]
    fn each_word_is_its_rfc_code_and_back() {
        let codes: Vec<u16> = WORDS.iter().map(|w| close_code(*w)).collect();
        assert_eq!(codes, [1000, 1001, 1008, 1009, 1011]);
        for word in WORDS {
            assert_eq!(close_reason(close_code(word)), word);
        }
    }

    #[test]
    fn other_codes_read_as_the_nearest_word() {
        for (code, word) in [
            (1005, CloseReason::Normal),
            (1012, CloseReason::GoingAway),
            (1013, CloseReason::GoingAway),
            (1002, CloseReason::Policy),
            (1003, CloseReason::Policy),
            (1007, CloseReason::Policy),
            (1010, CloseReason::Policy),
            (1014, CloseReason::Internal),
            (1006, CloseReason::Internal),
            (2999, CloseReason::Internal),
            (3000, CloseReason::Normal),
            (4999, CloseReason::Normal),
            (5000, CloseReason::Internal),
        ] {
            assert_eq!(close_reason(code), word, "code {code}");
        }
    }

    /// A server of [`WsTransport`]s on a real socket: each connection
    /// reports what it received and the client's close. "close please"
    /// makes it close with [`CloseReason::Policy`] and a text too long for
    /// a close frame.
    async fn serve() -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<(Vec<Message>, Option<CloseFrame>)>,
    ) {
        use axum::extract::WebSocketUpgrade;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (seen, reports) = tokio::sync::mpsc::unbounded_channel();
        let probe = crate::Metrics::new().probe("test");
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move |ws: WebSocketUpgrade| async move {
                ws.on_upgrade(move |socket| async move {
                    let (mut tx, mut rx) = WsTransport::new(socket, &probe).split();
                    let mut got = Vec::new();
                    while let Ok(Some(msg)) = rx.recv().await {
                        if msg == Message::text("close please") {
                            tx.close(CloseReason::Policy, &"é".repeat(100))
                                .await
                                .unwrap();
                        }
                        got.push(msg);
                    }
                    seen.send((got, rx.close_frame().cloned())).unwrap();
                })
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, reports)
    }

    #[tokio::test]
    async fn over_a_socket_words_go_out_as_codes_and_codes_come_in_as_words() {
        use tokio_tungstenite::tungstenite::Message as Ws;
        use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsClose;
        let (addr, mut reports) = serve().await;

        // The server closes: the client sees 1008 and the text cut to fit;
        // its echo of the close comes back as the word again.
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        client.send(Ws::text("close please")).await.unwrap();
        match client.next().await.unwrap().unwrap() {
            Ws::Close(Some(frame)) => {
                assert_eq!(u16::from(frame.code), 1008);
                assert_eq!(frame.reason.len(), 122);
            }
            other => panic!("{other:?}"),
        }
        while client.next().await.is_some() {}
        let (got, close) = reports.recv().await.unwrap();
        assert_eq!(got, [Message::text("close please")]);
        let close = close.unwrap();
        assert_eq!(
            (close.reason, close.code),
            (CloseReason::Policy, Some(1008))
        );

        // The client closes with a code of its own: the nearest word, the
        // number kept.
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/"))
            .await
            .unwrap();
        client.send(Ws::binary(&b"hi"[..])).await.unwrap();
        client
            .close(Some(WsClose {
                code: 4000.into(),
                reason: "bye".into(),
            }))
            .await
            .unwrap();
        let (got, close) = reports.recv().await.unwrap();
        assert_eq!(got, [Message::Binary(Bytes::from_static(b"hi"))]);
        assert_eq!(
            close,
            Some(CloseFrame {
                reason: CloseReason::Normal,
                text: "bye".into(),
                code: Some(4000),
            })
        );
    }

    #[test]
    fn close_texts_are_cut_on_char_boundaries() {
        assert_eq!(truncate("abc", MAX_CLOSE_TEXT), "abc");
        let long = "é".repeat(100); // 200 bytes
        assert_eq!(truncate(&long, MAX_CLOSE_TEXT).len(), 122);
        let ascii = "a".repeat(200);
        assert_eq!(truncate(&ascii, MAX_CLOSE_TEXT).len(), MAX_CLOSE_TEXT);
    }
}
