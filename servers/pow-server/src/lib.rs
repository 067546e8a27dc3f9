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
//! serves the server's counters; with a TLS identity ([`Common::tls`])
//! everything is `https://` and `wss://`. [`router`] gives the routes
//! alone, for a listener that serves other protocols too.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use server_kit::{Access, Listeners, Sessions, TokenGate, WsAccept, WsLimits, require_token};

mod config;
mod docs;
mod process;
mod rest;
mod ws;

pub use config::{ConfigError, DEFAULT_CONFIG, Processes, registry_from_toml};
pub use process::{
    Cancel, CancelCause, Echo, GetError, GoneError, Handler, Io, OutputSink, PowProcess, Registry,
};

/// The settings every server shares, and their builder methods.
pub use server_kit::{Common, CommonConfig};

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
    /// What every server is configured with: token, origins, TLS,
    /// metrics, pings (so a process that prints nothing for a while keeps
    /// its connection), the base path where the API lives (`/` or a prefix
    /// such as `/api/v1/pow/`), shutdown grace.
    pub common: Common,
    /// How long a new connection may take to send its call (the reference
    /// allows 1 s).
    pub call_timeout: Duration,
    /// Largest WebSocket message accepted (the reference reads at most 2048
    /// bytes).
    pub max_message: usize,
    /// Input held for a process that has not taken it yet; beyond it the
    /// server stops reading (before the call: rejects).
    pub max_pending_input: usize,
    /// A REST session untouched this long is cancelled and forgotten.
    pub rest_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            common: Common::default(),
            call_timeout: Duration::from_secs(1),
            max_message: 1 << 20,
            max_pending_input: 16 << 20,
            rest_timeout: Duration::from_secs(60),
        }
    }
}

impl CommonConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
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
    accept: WsAccept,
    /// The base path without its trailing slash ("" for `/`).
    base: String,
}

/// pow-1's routes with `handler`: REST by name under the base path, the
/// docs beside them, a WebSocket upgrade on any other path under it, and
/// `/metrics`; all but the docs behind the token. The origin rule and TLS
/// are the listener's ([`server_kit::serve`]). Its sessions run in
/// `sessions`; when `sessions.cancel` fires every process is cancelled
/// (cause [`CancelCause::Shutdown`]), REST ones too. Call it inside a
/// tokio runtime: it spawns the task that expires and ends REST processes.
pub fn router(config: &Config, handler: Arc<dyn Handler>, sessions: &Sessions) -> Router {
    let common = &config.common;
    let probe = common.metrics.probe(PROTOCOL);
    let limits = WsLimits {
        read_buffer: READ_BUFFER,
        max_message: config.max_message,
        write_buffer: None,
        max_write_buffer: MAX_WRITE_BUFFER,
    };
    let state = AppState {
        shared: ws::Shared {
            handler,
            call_timeout: config.call_timeout,
            max_pending_input: config.max_pending_input,
            shutdown: sessions.cancel.clone(),
            probe: probe.clone(),
        },
        accept: WsAccept::new(limits, common.ws_ping, &probe, sessions),
        base: common.base(),
    };
    let rest = rest::Rest::new(state.shared.handler.clone(), config.rest_timeout, &probe);
    tokio::spawn(rest.clone().end_on(sessions.cancel.clone()));
    // REST routes by name, the docs beside them, and a WebSocket upgrade on
    // any other path under the base. Everything but the docs needs the token;
    // everything, the docs too, is subject to the origin rule.
    let auth = axum::middleware::from_fn_with_state(
        TokenGate::new(common.tokens(), &probe),
        require_token,
    );
    let docs = docs::router(&rest::openapi(&state.base, common.token.is_some()));
    let routes = rest.router().layer(auth.clone()).merge(docs);
    let app = if state.base.is_empty() {
        routes
    } else {
        Router::new().nest(&state.base, routes)
    };
    let websocket = Router::new()
        .fallback(upgrade)
        .with_state(state)
        .layer(auth.clone());
    let app = if common.serve_metrics {
        app.merge(common.metrics.route().layer(auth))
    } else {
        app
    };
    app.fallback_service(websocket)
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
    let sessions = Sessions::new(config.common.shutdown_grace);
    let app = router(&config, handler, &sessions);
    server_kit::serve(listeners, app, &config.common, PROTOCOL, shutdown, sessions).await?;
    Ok(())
}

async fn upgrade(
    State(state): State<AppState>,
    access: Access,
    uri: axum::http::Uri,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let under_base = server_kit::under_base(uri.path(), &state.base);
    let (true, Ok(ws)) = (under_base, ws) else {
        return server_kit::Refused::no_such_route().into_response();
    };
    let ws = ws.protocols([pow_proto::SUBPROTOCOL]);
    if ws.selected_protocol().is_none() {
        return (
            StatusCode::FORBIDDEN,
            "client does not support required pow-1 subprotocol\n",
        )
            .into_response();
    }
    let AppState { shared, accept, .. } = state;
    accept.accept(ws, move |transport| async move {
        // Authenticated by the token check before the upgrade.
        let _session = shared.probe.session();
        ws::run(transport, shared, access).await;
    })
}
