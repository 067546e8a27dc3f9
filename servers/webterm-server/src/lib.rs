//! A Web-Terminal WebSocket Protocol v3 server: a client authenticates on
//! the connection, runs shell command lines (several at once), feeds them
//! input and signals, and receives incremental output — including, for
//! requested pipes, the data crossing between pipeline stages.
//!
//! [`serve`] accepts connections on one or more bound listeners (the
//! default binds `localhost` on IPv4 and IPv6) until its shutdown future
//! completes.
//!
//! Web pages of other origins are refused with `403` before the upgrade as
//! [`server_kit::OriginPolicy`] says: with a token configured any
//! origin may connect and authenticate in-band (the original client runs
//! from its own page), unless `--allow-origin` lists some. `GET /metrics`
//! takes the same token as `Authorization: Bearer`; with [`Config::tls`]
//! the server speaks `wss://`.

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

mod command;
mod session;

/// Errors of the webterm server.
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
    /// The token `authentication` must carry; `None` accepts any.
    pub token: Option<AccessToken>,
    /// Origins whose web pages may connect (`--allow-origin`); see
    /// [`OriginPolicy`].
    pub allowed_origins: Vec<Origin>,
    /// Send output HTML-escaped with `<br>` for newlines unless a
    /// connection asks otherwise (`?output=text`).
    pub html_output: bool,
    /// The shell that runs command lines (`SHELL -c LINE`).
    pub shell: String,
    /// Commands one connection may run at once.
    pub max_commands: usize,
    /// Largest message accepted from a client.
    pub max_message: usize,
    /// Input one command may have waiting for it to read. The protocol
    /// has no flow control for input, so a `stdin` update beyond this is
    /// refused with an error reply rather than holding up the connection
    /// (and the other commands' messages, signals included) behind it.
    pub max_pending_input: usize,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// Serve `wss://` with this identity; `None` serves `ws://`.
    pub tls: Option<Tls>,
    /// Where the server counts what happens (`GET /metrics`).
    pub metrics: Metrics,
    /// Ping each client this often (`None`: never), so an idle session
    /// survives proxies that cut silent connections.
    pub ws_ping: Option<Duration>,
    /// Serve WebSockets only under this path (`/` or e.g.
    /// `/host-a/webterm/`); elsewhere `404`. `/metrics` stays at the root.
    pub base_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: None,
            allowed_origins: Vec::new(),
            html_output: false,
            shell: default_shell(),
            max_commands: 64,
            max_message: 1 << 20,
            max_pending_input: 4 << 20,
            shutdown_grace: Duration::from_secs(5),
            tls: None,
            metrics: Metrics::new(),
            ws_ping: Some(server_kit::DEFAULT_WS_PING),
            base_path: "/".into(),
        }
    }
}

/// The user's shell (`$SHELL`), else `/bin/sh`.
pub fn default_shell() -> String {
    std::env::var("SHELL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "/bin/sh".into())
}

/// What the WebSocket layer may hold for a slow client. It must exceed the
/// largest update: a batch of output appears twice (stdout and combined),
/// more with breakpoints, and JSON escaping can grow each byte up to six
/// times. Memory stays bounded by the queue of updates before it.
const MAX_WRITE_BUFFER: usize = 8 << 20;

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "webterm";

#[derive(Clone)]
struct AppState {
    shared: session::Shared,
    tracker: TaskTracker,
    html_output: bool,
    max_message: usize,
    ws_ping: Option<Duration>,
    /// The base path as [`server_kit::base_prefix`] makes it.
    base: String,
}

/// Serves webterm on every listener until `shutdown` completes; then stops
/// every command and closes every connection (1001).
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let probe = config.metrics.probe(PROTOCOL);
    let sessions = Sessions::new(config.shutdown_grace);
    let state = AppState {
        shared: session::Shared {
            token: config.token.clone(),
            shell: Arc::from(config.shell.as_str()),
            max_commands: config.max_commands,
            max_pending_input: config.max_pending_input,
            shutdown: sessions.cancel.clone(),
            probe: probe.clone(),
        },
        tracker: sessions.tracker.clone(),
        html_output: config.html_output,
        max_message: config.max_message,
        ws_ping: config.ws_ping,
        base: server_kit::base_prefix(&config.base_path),
    };
    // Clients authenticate in-band, so only the metrics take the token
    // over HTTP.
    let metrics = config
        .metrics
        .route()
        .layer(axum::middleware::from_fn_with_state(
            TokenGate::new(config.token.clone(), &probe),
            require_token,
        ));
    let app = Router::new()
        .fallback(upgrade)
        .with_state(state)
        .merge(metrics);
    // One app per listener: the origin rule's Host check depends on the
    // address.
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
    if !server_kit::under_base(uri.path(), &state.base) {
        return (StatusCode::NOT_FOUND, "no such route\n").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                format!("webterm speaks WebSocket only: {rejection}\n"),
            )
                .into_response();
        }
    };
    let mut html = state.html_output;
    for (key, value) in form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()) {
        if key == "output" {
            match value.as_ref() {
                "html" => html = true,
                "text" => html = false,
                other => {
                    return (
                        StatusCode::BAD_REQUEST,
                        format!("unknown output mode {other:?}: use html or text\n"),
                    )
                        .into_response();
                }
            }
        }
    }
    let AppState {
        shared,
        tracker,
        max_message,
        ws_ping,
        ..
    } = state;
    let span = tracing::Span::current();
    ws.read_buffer_size(32 * 1024)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let session = async move {
                let probe = shared.probe.clone();
                let _connection = probe.connection();
                let transport = WsTransport::new(socket, &probe).ping_every(ws_ping);
                session::run(transport, shared, html).await;
            };
            tracker.track_future(session.instrument(span))
        })
}
