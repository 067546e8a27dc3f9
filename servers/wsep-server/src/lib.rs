//! A wsep server: run commands and reconnecting terminals over one WebSocket.
//!
//! [`serve`] accepts connections on a bound listener until its shutdown
//! future completes; `main.rs` only parses flags. The protocol logic lives in
//! `session` and talks to an [`exec_core::Transport`], so it runs over a real
//! WebSocket here and over an in-memory pipe in unit tests.
//!
//! Every WebSocket path under [`Config::base_path`] is served (the reference
//! client connects to whatever URL it is given) but `/metrics`, the
//! server's counters, which stays at the root. Web pages of
//! other origins are refused with `403` as [`server_kit::OriginPolicy`]
//! says, then requests without the configured token with `401`, both
//! before the upgrade. With [`Config::tls`] the server speaks `wss://`.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{WebSocketUpgrade, rejection::WebSocketUpgradeRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use exec_core::{Session, SessionConfig};
use server_kit::{
    AccessToken, Listeners, Metrics, Origin, Probe, Sessions, Tls, TokenGate, WsTransport,
    require_token,
};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

mod session;

/// Errors of the wsep server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `start` env entry without `=` or with an empty name.
    #[error("bad env entry {0:?}: expected KEY=VALUE")]
    BadEnv(String),
    /// The engine could not run the command.
    #[error(transparent)]
    Exec(#[from] exec_core::Error),
    /// Accepting connections failed.
    #[error("serve: {0}")]
    Io(#[from] io::Error),
}

/// How a server behaves. `Config::default()` is what the binary runs with
/// when given no flags, except that the binary generates a token.
#[derive(Debug, Clone)]
pub struct Config {
    /// The token clients must present; `None` turns authentication off.
    pub token: Option<AccessToken>,
    /// Origins whose web pages may connect besides the server's own
    /// (`--allow-origin`); see [`OriginPolicy`].
    pub allowed_origins: Vec<Origin>,
    /// How long a named terminal session lives after its last client left.
    pub session_timeout: Duration,
    /// How long a new connection may take to send `start`.
    pub start_timeout: Duration,
    /// Recent output kept per terminal session for clients that fall behind.
    pub replay_bytes: usize,
    /// How long shutdown waits for connections to close before returning.
    pub shutdown_grace: Duration,
    /// Serve `wss://` with this identity; `None` serves `ws://`.
    pub tls: Option<Tls>,
    /// Where the server counts what happens (`GET /metrics`).
    pub metrics: Metrics,
    /// Ping each client this often (`None`: never), so an idle session
    /// survives proxies that cut silent connections.
    pub ws_ping: Option<Duration>,
    /// Serve WebSockets only under this path (`/` or e.g. `/host-a/wsep/`);
    /// elsewhere `404`.
    pub base_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: None,
            allowed_origins: Vec::new(),
            session_timeout: Duration::from_secs(5 * 60),
            start_timeout: Duration::from_secs(30),
            replay_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(5),
            tls: None,
            metrics: Metrics::new(),
            ws_ping: Some(server_kit::DEFAULT_WS_PING),
            base_path: "/".into(),
        }
    }
}

/// Bytes the WebSocket layer may hold per connection before a send waits:
/// a few full messages, so a slow client slows the process instead of
/// growing memory (tungstenite's default is unbounded).
const MAX_WRITE_BUFFER: usize = 4 * wsep_proto::MAX_MESSAGE_SIZE;

/// Bytes read from a socket at a time. tungstenite zero-fills this much of
/// its read buffer before every read, so it is most of the resident memory
/// an idle connection costs; a larger message grows the buffer for itself
/// and is read in pieces of this size. 16 KiB made an idle `cat` session
/// 39 KiB of server memory instead of 87 (64 KiB reads), and stdin and
/// stdout throughput did not drop (`wsep-bench`, interleaved runs).
const READ_BUFFER: usize = 16 * 1024;

/// The WebSocket layer reads messages up to this size, so that one a little
/// over the protocol's limit is still read whole and refused with a clean
/// 1009 close by the codec. Larger ones cut the connection at once.
const MAX_READ_MESSAGE: usize = 4 * wsep_proto::MAX_MESSAGE_SIZE;

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "wsep";

#[derive(Clone)]
struct AppState {
    shared: session::Shared,
    tracker: TaskTracker,
    ws_ping: Option<Duration>,
    /// The base path as [`server_kit::base_prefix`] makes it.
    base: String,
}

/// Serves wsep on `listeners` (one, or a `Vec` of them) until `shutdown`
/// completes; then ends every child, sends every client a close frame
/// (1001) and returns.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let probe = config.metrics.probe(PROTOCOL);
    let sessions = Sessions::new(config.shutdown_grace);
    let state = AppState {
        shared: session::Shared {
            registry: Session::new(SessionConfig {
                idle_timeout: Some(config.session_timeout),
            }),
            start_timeout: config.start_timeout,
            replay_bytes: config.replay_bytes,
            shutdown: sessions.cancel.clone(),
            probe: probe.clone(),
        },
        tracker: sessions.tracker.clone(),
        ws_ping: config.ws_ping,
        base: server_kit::base_prefix(&config.base_path),
    };
    let app = config
        .metrics
        .route()
        .merge(Router::new().fallback(upgrade).with_state(state.clone()))
        .layer(axum::middleware::from_fn_with_state(
            TokenGate::new(config.token.clone(), &probe),
            require_token,
        ));
    let served = server_kit::per_listener(
        listeners.into(),
        &app,
        &config.allowed_origins,
        config.token.is_some(),
        config.tls.as_ref(),
        &probe,
    )?;
    // Named terminal sessions outlive connections: end them with the server.
    let registry = state.shared.registry.clone();
    let stopping = sessions.cancel.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        registry.end_all();
    });
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
                format!("wsep speaks WebSocket only: {rejection}\n"),
            )
                .into_response();
        }
    };
    let AppState {
        shared,
        tracker,
        ws_ping,
        ..
    } = state;
    let span = tracing::Span::current();
    ws.read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_READ_MESSAGE)
        .max_frame_size(MAX_READ_MESSAGE)
        .write_buffer_size(wsep_proto::MAX_MESSAGE_SIZE)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let probe: Probe = shared.probe.clone();
            let session = async move {
                // Authenticated by the token check before the upgrade.
                let _counted = (probe.connection(), probe.session());
                let transport = WsTransport::new(socket, &probe).ping_every(ws_ping);
                session::run(transport, shared).await;
            };
            tracker.track_future(session.instrument(span))
        })
}
