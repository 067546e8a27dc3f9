//! Accepting a WebSocket session: the socket's limits, the refusals before
//! the upgrade, and the session's task, written once for every protocol
//! that speaks WebSocket.

use std::future::Future;
use std::time::Duration;

use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::auth::Access;
use crate::metrics::Probe;
use crate::serve::Sessions;
use crate::ws::WsTransport;

/// What the WebSocket layer may hold for one connection. tungstenite's
/// write buffer is unbounded by default and its read buffer is zero-filled
/// up front, so each protocol sets these from its own message sizes (the
/// values, and why, stay with the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Bytes read from the socket at a time; most of what an idle
    /// connection costs in memory.
    pub read_buffer: usize,
    /// The largest message, and the largest frame, read; a larger one cuts
    /// the connection.
    pub max_message: usize,
    /// Bytes gathered before a write goes to the socket; `None` keeps
    /// tungstenite's default.
    pub write_buffer: Option<usize>,
    /// Bytes the layer holds for a slow client before a send waits, so
    /// that a slow client slows the process instead of growing memory.
    pub max_write_buffer: usize,
}

/// How a server accepts WebSocket sessions: its limits, its ping interval,
/// where it counts connections, and where its sessions run (so that
/// shutdown finds them: the HTTP server no longer tracks an upgraded
/// connection).
#[derive(Debug, Clone)]
pub struct WsAccept {
    /// The socket's limits.
    pub limits: WsLimits,
    /// Ping the client this often (`None`: never).
    pub ping: Option<Duration>,
    /// Where the connection and its bytes are counted.
    pub probe: Probe,
    /// Where the sessions run.
    pub tracker: TaskTracker,
}

impl WsAccept {
    /// Sessions with `limits` and `ping`, counted in `probe`, run in
    /// `sessions`' tracker.
    pub fn new(
        limits: WsLimits,
        ping: Option<Duration>,
        probe: &Probe,
        sessions: &Sessions,
    ) -> WsAccept {
        WsAccept {
            limits,
            ping,
            probe: probe.clone(),
            tracker: sessions.tracker.clone(),
        }
    }

    /// Upgrades with the limits; the session, given the connection as a
    /// [`WsTransport`] that pings as configured, runs in the tracker in the
    /// request's span (connection id, peer), the connection counted open
    /// while it runs.
    pub fn accept<S, F>(&self, ws: WebSocketUpgrade, session: S) -> Response
    where
        S: FnOnce(WsTransport) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let WsLimits {
            read_buffer,
            max_message,
            write_buffer,
            max_write_buffer,
        } = self.limits;
        let ws = ws
            .read_buffer_size(read_buffer)
            .max_message_size(max_message)
            .max_frame_size(max_message)
            .max_write_buffer_size(max_write_buffer);
        let ws = match write_buffer {
            Some(size) => ws.write_buffer_size(size),
            None => ws,
        };
        let span = tracing::Span::current();
        let accept = self.clone();
        ws.on_upgrade(move |socket| {
            let run = async move {
                let _connection = accept.probe.connection();
                let transport = WsTransport::new(socket, &accept.probe).ping_every(accept.ping);
                session(transport).await;
            };
            accept.tracker.track_future(run.instrument(span))
        })
    }
}

impl WsAccept {
    /// The routes of a server that speaks only WebSocket: every path under
    /// `base` (see [`base_prefix`](crate::base_prefix)) upgrades, as
    /// [`websocket_only`] says, to a session that `open` makes from the
    /// request's URI and its [`Access`] (`None` outside
    /// [`require_token`](crate::require_token), for a protocol that
    /// authenticates in-band), or refuses (e.g. for a bad query), accepted
    /// as [`WsAccept::accept`] does.
    pub fn router<O, S, F>(self, protocol: &'static str, base: String, open: O) -> axum::Router
    where
        O: Fn(&Uri, Option<Access>) -> Result<S, Refused> + Clone + Send + Sync + 'static,
        S: FnOnce(WsTransport) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let base: std::sync::Arc<str> = base.into();
        axum::Router::new().fallback(
            move |uri: Uri,
                  access: Option<axum::Extension<Access>>,
                  ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>| {
                let accept = self.clone();
                let open = open.clone();
                let base = base.clone();
                async move {
                    let session = websocket_only(protocol, &uri, &base, ws)
                        .and_then(|ws| Ok((ws, open(&uri, access.map(|a| a.0))?)));
                    match session {
                        Ok((ws, session)) => accept.accept(ws, session),
                        Err(refused) => refused.into_response(),
                    }
                }
            },
        )
    }
}

/// Why a request gets no WebSocket session, answered as a status and a
/// line of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body, one line.
    pub text: String,
}

impl Refused {
    /// `404 no such route`: the answer to a path outside the base path.
    pub fn no_such_route() -> Refused {
        Refused {
            status: StatusCode::NOT_FOUND,
            text: "no such route\n".into(),
        }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        (self.status, self.text).into_response()
    }
}

/// The upgrade of a request for a server that speaks only WebSocket under
/// `base` (see [`base_prefix`](crate::base_prefix)): `404` outside it, and
/// `426 PROTOCOL speaks WebSocket only: WHY` to a request that is not an
/// upgrade.
pub fn websocket_only(
    protocol: &str,
    uri: &Uri,
    base: &str,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<WebSocketUpgrade, Refused> {
    if !crate::base::under_base(uri.path(), base) {
        return Err(Refused::no_such_route());
    }
    ws.map_err(|rejection| Refused {
        status: StatusCode::UPGRADE_REQUIRED,
        text: format!("{protocol} speaks WebSocket only: {rejection}\n"),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use axum::extract::State;
    use exec_core::{Transport as _, TransportRx as _, TransportTx as _};
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message as Ws;

    const LIMITS: WsLimits = WsLimits {
        read_buffer: 4096,
        max_message: 1000,
        write_buffer: Some(1000),
        max_write_buffer: 8000,
    };

    /// An echo server under `/base` accepted by one [`WsAccept`]; ending
    /// `sessions` must end its sessions.
    async fn serve(sessions: &Sessions) -> (std::net::SocketAddr, crate::Metrics) {
        async fn upgrade(
            State(accept): State<WsAccept>,
            uri: Uri,
            ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
        ) -> Response {
            let ws = match websocket_only("echo", &uri, "/base", ws) {
                Ok(ws) => ws,
                Err(refused) => return refused.into_response(),
            };
            accept.accept(ws, |transport| async move {
                let (mut tx, mut rx) = transport.split();
                while let Ok(Some(msg)) = rx.recv().await {
                    if tx.send(msg).await.is_err() {
                        break;
                    }
                }
            })
        }
        let metrics = crate::Metrics::new();
        let accept = WsAccept::new(LIMITS, None, &metrics.probe("echo"), sessions);
        let app = axum::Router::new().fallback(upgrade).with_state(accept);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (addr, metrics)
    }

    #[tokio::test]
    async fn sessions_run_in_the_tracker_counted_within_the_limits() {
        let sessions = Sessions::new(Duration::from_secs(5));
        let (addr, metrics) = serve(&sessions).await;

        // Outside the base path, and not an upgrade: refused with words.
        let http = |path: &str| {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream.write_all(request.as_bytes()).await.unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).await.unwrap();
                answer
            }
        };
        let outside = http("/elsewhere").await;
        assert!(outside.starts_with("HTTP/1.1 404"), "{outside}");
        assert!(outside.ends_with("no such route\n"), "{outside}");
        let plain = http("/base/x").await;
        assert!(plain.starts_with("HTTP/1.1 426"), "{plain}");
        assert!(plain.contains("echo speaks WebSocket only: "), "{plain}");

        // A session echoes and is counted open while it runs.
        let (mut client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/base/"))
            .await
            .unwrap();
        client.send(Ws::text("hi")).await.unwrap();
        assert_eq!(client.next().await.unwrap().unwrap(), Ws::text("hi"));
        assert!(
            metrics
                .encode()
                .contains("execwire_connections_open{protocol=\"echo\"} 1"),
            "{}",
            metrics.encode()
        );
        assert_eq!(sessions.tracker.len(), 1);

        // A message over the limit cuts the connection; the session ends,
        // and with it its count.
        client.send(Ws::binary(vec![0u8; 1001])).await.unwrap();
        let cut = async {
            while let Some(Ok(msg)) = client.next().await {
                assert!(matches!(msg, Ws::Close(_)), "{msg:?}");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), cut)
            .await
            .expect("the connection was not cut");
        sessions.tracker.close();
        sessions.tracker.wait().await;
        assert!(
            metrics
                .encode()
                .contains("execwire_connections_open{protocol=\"echo\"} 0"),
            "{}",
            metrics.encode()
        );
    }
}
