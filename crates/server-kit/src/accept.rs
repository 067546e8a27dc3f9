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

/// `404 no such route`: the answer to a path outside the base path.
pub fn no_such_route() -> Response {
    (StatusCode::NOT_FOUND, "no such route\n").into_response()
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
) -> Result<WebSocketUpgrade, Response> {
    if !crate::base::under_base(uri.path(), base) {
        return Err(no_such_route());
    }
    ws.map_err(|rejection| {
        (
            StatusCode::UPGRADE_REQUIRED,
            format!("{protocol} speaks WebSocket only: {rejection}\n"),
        )
            .into_response()
    })
}
