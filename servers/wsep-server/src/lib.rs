//! A wsep server: run commands and reconnecting terminals over one WebSocket.
//!
//! [`serve`] accepts connections on a bound listener until its shutdown
//! future completes; `main.rs` only parses flags. The protocol logic lives in
//! `session` and talks to an [`exec_core::Transport`], so it runs over a real
//! WebSocket here and over an in-memory pipe in unit tests.
//!
//! Every WebSocket path under the base path ([`Common::base_path`]) is
//! served (the reference client connects to whatever URL it is given) but
//! `/metrics`, the server's counters, which stays at the root. Web pages
//! of other origins are refused with `403` as [`server_kit::OriginPolicy`]
//! says, then requests without the configured token with `401`, both
//! before the upgrade. A client with the view token
//! ([`Common::view_token`]) only watches: its `start` must name a live
//! terminal session (`tty` and its `id`), which it attaches without
//! resizing; any other `start` is refused with a policy close (1008),
//! and its `stdin`, `resize` and `close_stdin` are dropped (wsep has no
//! error message that leaves the connection open), logged and counted
//! (`viewer_refusals`). With a TLS identity ([`Common::tls`]) the server
//! speaks `wss://`. [`router`] gives the routes alone, for a listener
//! that serves other protocols too.

use std::future::Future;
use std::io;
use std::time::Duration;

use axum::Router;
use exec_core::Session;
use server_kit::{Access, Listeners, Sessions, TokenGate, WsAccept, WsLimits, require_token};

mod session;

/// The settings every server shares, and their builder methods.
pub use server_kit::{Common, CommonConfig};

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
    /// What every server is configured with: token, origins, TLS,
    /// metrics, pings, base path, shutdown grace.
    pub common: Common,
    /// How long a named terminal session lives after its last client left.
    pub session_timeout: Duration,
    /// How long a new connection may take to send `start`.
    pub start_timeout: Duration,
    /// Recent output kept per terminal session for clients that fall behind.
    pub replay_bytes: usize,
    /// Record every terminal session as an asciicast file
    /// ([`exec_core::Recorder`]).
    pub record: Option<exec_core::RecordConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            common: Common::default(),
            session_timeout: Duration::from_secs(5 * 60),
            start_timeout: Duration::from_secs(30),
            replay_bytes: 1 << 20,
            record: None,
        }
    }
}

impl CommonConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// What the WebSocket layer may hold per connection.
const LIMITS: WsLimits = WsLimits {
    // Bytes read from a socket at a time. tungstenite zero-fills this much
    // of its read buffer before every read, so it is most of the resident
    // memory an idle connection costs; a larger message grows the buffer
    // for itself and is read in pieces of this size. 16 KiB made an idle
    // `cat` session 39 KiB of server memory instead of 87 (64 KiB reads),
    // and stdin and stdout throughput did not drop (`wsep-bench`,
    // interleaved runs).
    read_buffer: 16 * 1024,
    // Messages up to this size are read, so that one a little over the
    // protocol's limit is still read whole and refused with a clean 1009
    // close by the codec. Larger ones cut the connection at once.
    max_message: 4 * wsep_proto::MAX_MESSAGE_SIZE,
    // Output gathered into one write: a full protocol message.
    write_buffer: Some(wsep_proto::MAX_MESSAGE_SIZE),
    // A few full messages, so a slow client slows the process instead of
    // growing memory (tungstenite's default is unbounded).
    max_write_buffer: 4 * wsep_proto::MAX_MESSAGE_SIZE,
};

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "wsep";

/// wsep's routes: a WebSocket upgrade on every path under the base path,
/// and `/metrics`, all behind the token; the origin rule and TLS are the
/// listener's ([`server_kit::serve`]). Its sessions run in `sessions`, and
/// when `sessions.cancel` fires the named terminal sessions end too. Call
/// it inside a tokio runtime: it spawns the task that ends them.
pub fn router(config: &Config, sessions: &Sessions) -> Router {
    build(config, sessions, Session::default(), false)
}

/// [`router`] keeping its named terminal sessions in `panes`, a table
/// other servers share (the `execwire` daemon gives webexec the same
/// one). A `start` with `tty: true` and an `id` that is a number (`"3"`)
/// then attaches pane 3 of the table when it has one, whoever started it
/// (refused when it has no terminal); any other `id` names a pane as
/// [`router`]'s do. A pane started here is ended after
/// [`Config::session_timeout`] with nobody attached, from any protocol;
/// one started elsewhere keeps its own rule ([`exec_core::Claim`]). Every
/// pane in `panes` ends when `sessions.cancel` fires.
pub fn router_with(config: &Config, sessions: &Sessions, panes: Session) -> Router {
    build(config, sessions, panes, true)
}

/// The routes of [`router`] and [`router_with`]; `by_number`: an `id`
/// that is a number attaches that pane.
fn build(config: &Config, sessions: &Sessions, panes: Session, by_number: bool) -> Router {
    let common = &config.common;
    let probe = common.metrics.probe(PROTOCOL);
    let shared = session::Shared {
        registry: panes,
        by_number,
        session_timeout: config.session_timeout,
        start_timeout: config.start_timeout,
        replay_bytes: config.replay_bytes,
        record: config.record.clone(),
        shutdown: sessions.cancel.clone(),
        probe: probe.clone(),
    };
    // Named terminal sessions outlive connections: end them with the server.
    let registry = shared.registry.clone();
    let stopping = sessions.cancel.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        registry.end_all();
    });
    let websocket = WsAccept::new(LIMITS, common.ws_ping, &probe, sessions).router(
        PROTOCOL,
        common.base(),
        move |_, access| {
            let shared = shared.clone();
            // Authenticated by the token check before the upgrade, which
            // gives every request an access level: none is a viewer.
            let access = access.unwrap_or(Access::View);
            Ok(move |transport| async move {
                let _session = shared.probe.session();
                session::run(transport, shared, access).await;
            })
        },
    );
    metrics_route(common)
        .merge(websocket)
        .layer(axum::middleware::from_fn_with_state(
            TokenGate::new(common.tokens(), &probe),
            require_token,
        ))
}

/// `GET /metrics`, unless the listener serves it for several protocols
/// ([`Common::serve_metrics`]).
fn metrics_route(common: &Common) -> Router {
    if common.serve_metrics {
        common.metrics.route()
    } else {
        Router::new()
    }
}

/// Serves wsep on `listeners` (one, or a `Vec` of them) until `shutdown`
/// completes; then ends every child, sends every client a close frame
/// (1001) and returns.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let sessions = Sessions::new(config.common.shutdown_grace);
    let app = router(&config, &sessions);
    server_kit::serve(listeners, app, &config.common, PROTOCOL, shutdown, sessions).await?;
    Ok(())
}
