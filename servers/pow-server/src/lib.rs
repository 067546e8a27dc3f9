//! A pow-1 ("Process Over Websocket") server: clients call server-defined
//! processes by name over a WebSocket with the `pow-1` subprotocol.
//!
//! What runs is decided by a [`Handler`] — usually a [`Registry`] of named
//! [`PowProcess`] constructors — never by the client. [`serve`] accepts
//! connections on a bound listener until its shutdown future completes.
//!
//! Operators define processes in TOML ([`registry_from_toml`],
//! [`DEFAULT_CONFIG`]); embedders implement [`PowProcess`] in Rust.
//!
//! The same processes are served over REST on the same base path (`/new`,
//! `/status/{id}`, `/input/{id}`, `/closeInput/{id}`, `/cancel/{id}`),
//! described by `GET /openapi.json` (generated from the route annotations)
//! and a `/docs/` page to try them from a browser.
//!
//! Web pages of other origins are refused with `403`, before the token
//! check, as [`server_kit::OriginPolicy`] says; the docs page is the
//! server's own. `GET /metrics` (outside the base path, behind the token)
//! serves the server's counters; with [`Config::tls`] everything is
//! `https://` and `wss://`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use server_kit::{
    AccessToken, Listeners, Metrics, Origin, Sessions, Tls, TokenGate, WsTransport, require_token,
};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

mod config;
mod docs;
mod process;
mod rest;
mod ws;

pub use config::{ConfigError, DEFAULT_CONFIG, registry_from_toml};
pub use process::{
    Cancel, CancelCause, Echo, GetError, GoneError, Handler, Io, OutputSink, PowProcess, Registry,
};

/// Errors of the pow server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Accepting connections failed.
    #[error("serve: {0}")]
    Io(#[from] std::io::Error),
}

/// How a server behaves.
#[derive(Debug, Clone)]
pub struct Config {
    /// The token clients must present; `None` turns authentication off.
    pub token: Option<AccessToken>,
    /// Origins whose web pages may call besides the server's own
    /// (`--allow-origin`); see [`OriginPolicy`].
    pub allowed_origins: Vec<Origin>,
    /// How long a new connection may take to send its call (the reference
    /// allows 1 s).
    pub call_timeout: Duration,
    /// Largest WebSocket message accepted (the reference reads at most 2048
    /// bytes).
    pub max_message: usize,
    /// Input held for a process that has not taken it yet; beyond it the
    /// server stops reading (before the call: rejects).
    pub max_pending_input: usize,
    /// How long shutdown waits for sessions to end.
    pub shutdown_grace: Duration,
    /// A REST session untouched this long is cancelled and forgotten.
    pub rest_timeout: Duration,
    /// Where the API lives: `/` or a prefix such as `/api/v1/pow/`.
    pub base_path: String,
    /// Serve `https://` and `wss://` with this identity; `None`: plain.
    pub tls: Option<Tls>,
    /// Where the server counts what happens (`GET /metrics`).
    pub metrics: Metrics,
    /// Ping each WebSocket client this often (`None`: never), so a process
    /// that prints nothing for a while keeps its connection through
    /// proxies that cut silent ones.
    pub ws_ping: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: None,
            allowed_origins: Vec::new(),
            call_timeout: Duration::from_secs(1),
            max_message: 1 << 20,
            max_pending_input: 16 << 20,
            shutdown_grace: Duration::from_secs(5),
            rest_timeout: Duration::from_secs(60),
            base_path: "/".into(),
            tls: None,
            metrics: Metrics::new(),
            ws_ping: Some(server_kit::DEFAULT_WS_PING),
        }
    }
}

impl Config {
    /// The base path as routes see it: without its trailing slash, and
    /// empty for `/` (`/api/v1/pow/` -> `/api/v1/pow`).
    pub fn base(&self) -> String {
        server_kit::base_prefix(&self.base_path)
    }
}

/// Bytes read from a socket at a time. tungstenite zero-fills its read
/// buffer up front, so this is most of what an idle session costs (its
/// 128 KiB default made a session 133 KiB); input is mostly small text, and
/// a larger message simply takes more reads.
const READ_BUFFER: usize = 32 * 1024;

/// Output the WebSocket layer may hold for a slow client before the process
/// is made to wait: a few of the largest chunks a read returns.
const MAX_WRITE_BUFFER: usize = 4 * 64 * 1024;

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "pow";

#[derive(Clone)]
struct AppState {
    shared: ws::Shared,
    tracker: TaskTracker,
    max_message: usize,
    ws_ping: Option<Duration>,
    /// The base path without its trailing slash ("" for `/`).
    base: String,
}

/// Serves pow-1 on `listeners` (one, or a `Vec` of them) with `handler`
/// until `shutdown` completes; then cancels every process (cause
/// [`CancelCause::Shutdown`]) and waits for the sessions to send their
/// results.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let probe = config.metrics.probe(PROTOCOL);
    let sessions = Sessions::new(config.shutdown_grace);
    let state = AppState {
        shared: ws::Shared {
            handler,
            call_timeout: config.call_timeout,
            max_pending_input: config.max_pending_input,
            shutdown: sessions.cancel.clone(),
            probe: probe.clone(),
        },
        tracker: sessions.tracker.clone(),
        max_message: config.max_message,
        ws_ping: config.ws_ping,
        base: config.base(),
    };
    let rest = rest::Rest::new(state.shared.handler.clone(), config.rest_timeout, &probe);
    tokio::spawn(rest.clone().end_on(sessions.cancel.clone()));
    // REST routes by name, the docs beside them, and a WebSocket upgrade on
    // any other path under the base. Everything but the docs needs the token;
    // everything, the docs too, is subject to the origin rule.
    let auth = axum::middleware::from_fn_with_state(
        TokenGate::new(config.token.clone(), &probe),
        require_token,
    );
    let websocket = Router::new()
        .fallback(upgrade)
        .with_state(state.clone())
        .layer(auth.clone());
    let docs = docs::router(&rest::openapi(&state.base, config.token.is_some()));
    let routes = rest.router().layer(auth.clone()).merge(docs);
    let app = if state.base.is_empty() {
        routes
    } else {
        Router::new().nest(&state.base, routes)
    }
    .merge(config.metrics.route().layer(auth))
    .fallback_service(websocket);
    let served = server_kit::per_listener(
        listeners.into(),
        &app,
        &config.allowed_origins,
        config.token.is_some(),
        config.tls.as_ref(),
        &probe,
    )?;
    server_kit::serve_app(served, PROTOCOL, shutdown, sessions).await?;
    Ok(())
}

async fn upgrade(
    State(state): State<AppState>,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let under_base = server_kit::under_base(uri.path(), &state.base);
    let (true, Ok(ws)) = (under_base, ws) else {
        return (StatusCode::NOT_FOUND, "no such route\n").into_response();
    };
    let ws = ws.protocols([pow_proto::SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        return (
            StatusCode::FORBIDDEN,
            "client does not support required pow-1 subprotocol\n",
        )
            .into_response();
    }
    let AppState {
        shared,
        tracker,
        max_message,
        ws_ping,
        ..
    } = state;
    let span = tracing::Span::current();
    ws.read_buffer_size(READ_BUFFER)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let session = async move {
                // Authenticated by the token check before the upgrade.
                let probe = shared.probe.clone();
                let _counted = (probe.connection(), probe.session());
                let transport = WsTransport::new(socket, &probe).ping_every(ws_ping);
                ws::run(transport, shared).await;
            };
            tracker.track_future(session.instrument(span))
        })
}
