//! A webexec server: commands and terminals over WebRTC data channels,
//! for today's Terminal7 client and for the seed API.
//!
//! Clients signal over HTTP (`POST /offer` with trickled candidates, or the
//! seed's `POST /connect`), or over the daemon's unix socket (the ssh flow:
//! `webexec-server accept` on the host hands the offer to the daemon). Each
//! data channel a client opens runs the command its label names, or
//! reattaches to a pane; the `%` channel carries control messages.
//!
//! Panes belong to the server, not to a peer: they outlive disconnects,
//! keep their recent output in a replay ring and a headless screen, and any
//! number of peers may share one. The WebRTC stack sits behind the `rtc`
//! module alone.

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use server_kit::{Listeners, Metrics, Origin, Probe, Sessions, Tls};
use tokio::net::UnixListener;

pub mod daemon;
mod flags;
mod host;
mod http;
mod peer;
mod rtc;
mod turn;

pub use flags::RtcFlags;
pub use host::Authorized;
pub use rtc::{Certificate, IceServer, PortRange, RtcConfig};
pub use turn::TurnSecret;

/// The settings every server shares, and their builder methods.
pub use server_kit::{Common, CommonConfig};

/// Errors of the webexec server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag or configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {error}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said: part of the message, so not also its
        /// `source` (printed with its causes, `{:#}`, it would come twice).
        error: std::io::Error,
    },
    /// The client's offer is not one we can answer.
    #[error("bad offer: {0}")]
    Offer(String),
    /// A trickled candidate was refused.
    #[error("bad candidate: {0}")]
    Candidate(String),
    /// The WebRTC stack failed.
    #[error("webrtc: {0}")]
    Rtc(String),
    /// A data channel closed while in use.
    #[error("data channel closed")]
    ChannelClosed,
    /// The client's clipboard could not be read or written.
    #[error("clipboard: {0}")]
    Clipboard(String),
    /// The engine could not run or drive a command.
    #[error(transparent)]
    Exec(#[from] exec_core::Error),
    /// Serving, or talking to the daemon, failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    fn rtc(e: impl std::fmt::Display) -> Error {
        Error::Rtc(e.to_string())
    }
}

/// How a server behaves. `Config::default()` is what tests start from: no
/// one authorized, UDP on loopback, a fresh certificate.
#[derive(Debug, Clone)]
pub struct Config {
    /// What every server is configured with. Its token is one more
    /// authorized token beside [`Config::authorized`]'s; its origins are
    /// those whose web pages may signal besides the server's own (the demo
    /// page); its TLS serves the HTTP signaling and the page over
    /// `https://` (WebRTC itself is DTLS regardless); its base path holds
    /// the page and the signaling. WebSocket pings do not apply.
    pub common: Common,
    /// Who may connect.
    pub authorized: Authorized,
    /// ICE servers, UDP address and ports.
    pub rtc: RtcConfig,
    /// The server's identity ([`Certificate::keep`] for one kept in a
    /// file); `None` makes a new one per run.
    pub certificate: Option<Certificate>,
    /// The login shell (`*` in `add_pane`).
    pub shell: String,
    /// Where panes start.
    pub home: Option<PathBuf>,
    /// Recent output kept per pane for reconnects and slow clients.
    pub replay_bytes: usize,
    /// Record every pane as an asciicast file ([`exec_core::Recorder`]).
    pub record: Option<exec_core::RecordConfig>,
    /// The daemon socket this server serves, if any: panes get it in
    /// `WEBEXEC`, so `webexec-server copy`/`paste` in a pane reach the
    /// client's clipboard through this server.
    pub socket: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            common: Common {
                // Peers close quickly: a data channel's close needs no
                // handshake with a slow client.
                shutdown_grace: Duration::from_secs(3),
                ..Common::default()
            },
            authorized: Authorized::default(),
            rtc: RtcConfig {
                ice_servers: Vec::new(),
                udp_ip: std::net::Ipv4Addr::LOCALHOST.into(),
                udp_ports: PortRange::ANY,
                turn: None,
            },
            certificate: None,
            shell: std::env::var("SHELL")
                .ok()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "/bin/sh".into()),
            home: std::env::var_os("HOME").map(PathBuf::from),
            replay_bytes: 1 << 20,
            record: None,
            socket: None,
        }
    }
}

impl CommonConfig for Config {
    fn common_mut(&mut self) -> &mut Common {
        &mut self.common
    }
}

/// A running server's shared parts: serve its routes on any number of
/// listeners.
#[derive(Clone)]
pub struct Server {
    host: Arc<host::Host>,
    rtc: rtc::Rtc,
    /// `/offer` sessions taking trickled candidates.
    offers: Arc<Mutex<std::collections::HashMap<uuid::Uuid, (rtc::WeakPeer, std::time::Instant)>>>,
    /// Where peers run; its cancel is the server's shutdown.
    sessions: Sessions,
    allowed_origins: Arc<[Origin]>,
    /// Clients must be authorized (not `--no-auth`).
    auth: bool,
    tls: Option<Tls>,
    metrics: Metrics,
    /// Serve `GET /metrics` ([`Common::serve_metrics`]).
    serve_metrics: bool,
    probe: Probe,
    /// The base path as [`server_kit::base_prefix`] makes it.
    base: String,
}

/// The protocol's name in metrics and logs.
pub(crate) const PROTOCOL: &str = "webexec";

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Sets up the shared state, with sessions of its own.
    pub fn new(config: Config) -> Result<Server, Error> {
        let sessions = Sessions::new(config.common.shutdown_grace);
        Server::with_sessions(config, &sessions)
    }

    /// [`Server::new`] with its peers in `sessions`: they close when
    /// `sessions.cancel` fires, and every pane ends then too. Call it
    /// inside a tokio runtime: it spawns the task that ends the panes.
    pub fn with_sessions(config: Config, sessions: &Sessions) -> Result<Server, Error> {
        Server::with_panes(config, sessions, exec_core::Session::default())
    }

    /// [`Server::with_sessions`] keeping its panes in `panes`, a table
    /// other servers may share (the `execwire` daemon gives wsep the
    /// same one): peers attach (`reconnect_pane`, `>ID`) any terminal
    /// pane in it by number, whoever started it. Panes started here are
    /// kept until they exit; a pane started elsewhere keeps its own idle
    /// timeout, held back while a peer is attached ([`exec_core::Claim`]).
    /// Every pane in `panes` ends when `sessions.cancel` fires.
    pub fn with_panes(
        config: Config,
        sessions: &Sessions,
        panes: exec_core::Session,
    ) -> Result<Server, Error> {
        let common = config.common;
        let base = common.base();
        let rtc = rtc::Rtc::new(config.rtc.clone(), config.certificate)?;
        let probe = common.metrics.probe(PROTOCOL);
        let mut authorized = config.authorized;
        authorized.tokens.extend(common.token);
        authorized.view_tokens.extend(common.view_token);
        let auth = !authorized.open;
        let host = Arc::new(host::Host::new(
            probe.clone(),
            authorized,
            host::PaneDefaults {
                shell: config.shell.clone(),
                home: config.home.clone(),
                replay_bytes: config.replay_bytes,
                record: config.record.clone(),
                // The reference's variable: how `webexec-server copy` and
                // `paste` run in a pane find the server that runs it.
                env: config
                    .socket
                    .iter()
                    .map(|path| (daemon::SOCKET_VAR.to_owned(), path.display().to_string()))
                    .collect(),
            },
            panes,
        ));
        // Panes belong to the server, not to a peer: end them with it.
        let panes = host.clone();
        let stopping = sessions.cancel.clone();
        tokio::spawn(async move {
            stopping.cancelled().await;
            panes.terminate_all();
        });
        Ok(Server {
            host,
            rtc,
            offers: Arc::default(),
            sessions: sessions.clone(),
            base,
            allowed_origins: common.allowed_origins.into(),
            auth,
            tls: common.tls,
            metrics: common.metrics,
            serve_metrics: common.serve_metrics,
            probe,
        })
    }

    /// The server's certificate fingerprint, `sha-256 AA:BB:...`.
    pub fn fingerprint(&self) -> String {
        self.rtc.fingerprint()
    }

    /// A one-line summary: live panes and connected peers.
    pub fn status(&self) -> String {
        format!(
            "panes: {}, peers: {}",
            self.host.pane_count(),
            self.host.peer_count()
        )
    }

    /// The routes of a TCP listener: the page and the signaling under the
    /// base path, `/metrics` behind the authorized tokens. The origin rule
    /// and TLS are the listener's ([`Server::serve_tcp_all`] adds them).
    pub fn router(&self) -> axum::Router {
        let any_origin = server_kit::admits_any_origin(&self.allowed_origins, self.auth);
        let metrics = self.serve_metrics.then_some(&self.metrics);
        http::router(self.state(true), any_origin, metrics)
    }

    /// The state of the routes of a TCP listener (`tcp`), or of the
    /// daemon's socket, which is trusted (only its user can reach it, and
    /// no web page can): no token, no base path.
    fn state(&self, tcp: bool) -> http::AppState {
        http::AppState {
            host: self.host.clone(),
            rtc: self.rtc.clone(),
            trusted: !tcp,
            tls: tcp && self.tls.is_some(),
            sessions: self.offers.clone(),
            shutdown: self.sessions.cancel.clone(),
            tracker: self.sessions.tracker.clone(),
            base: if tcp {
                self.base.clone()
            } else {
                String::new()
            },
        }
    }

    /// Serves HTTP signaling, the demo page and `/metrics` on each of
    /// `listeners` (under its origin rule, over TLS when configured) until
    /// the server shuts down; then waits, at most the grace period, for
    /// the peers to close. If one listener fails, the server shuts down
    /// and its error is returned.
    pub async fn serve_tcp_all(&self, listeners: impl Into<Listeners>) -> Result<(), Error> {
        let served = server_kit::per_listener(
            listeners.into(),
            &self.router(),
            &self.allowed_origins,
            self.auth,
            self.tls.as_ref(),
            &self.probe,
        )?;
        let stop = self.sessions.cancel.clone().cancelled_owned();
        server_kit::serve_app(served, PROTOCOL, stop, self.sessions.clone()).await?;
        Ok(())
    }

    /// Serves the daemon's unix socket (signaling without a token, plus
    /// `GET /status` and `POST /stop`) until the server shuts down.
    pub async fn serve_unix(&self, listener: UnixListener) -> Result<(), Error> {
        let stop = self.sessions.cancel.clone();
        // No web page reaches the socket: no origin rule, CORS for any.
        let app =
            http::router(self.state(false), true, None).merge(daemon::control_routes(self.clone()));
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        Ok(())
    }

    pub(crate) fn host(&self) -> &host::Host {
        &self.host
    }

    /// Starts shutting down: listeners stop, peers close, panes end.
    pub fn shutdown(&self) {
        self.sessions.cancel.cancel();
    }

    /// Completes once shutdown began.
    pub async fn stopped(&self) {
        self.sessions.cancel.cancelled().await;
    }

    /// After serving: ends every pane now (the task that ends them on
    /// shutdown may not have run yet). Peers were given their grace
    /// period by [`Server::serve_tcp_all`]: it is not waited for twice.
    pub fn finish(&self) {
        self.shutdown();
        self.host.terminate_all();
    }
}

/// Serves webexec on `listeners` (one, or a `Vec` of them) until
/// `shutdown` completes; then closes every peer and ends every pane.
pub async fn serve(
    listeners: impl Into<Listeners>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let server = Server::new(config)?;
    let stopper = server.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.shutdown();
    });
    let result = server.serve_tcp_all(listeners).await;
    server.finish();
    result
}

/// Writes `bytes` as the file at `path`, only its owner may read
/// (certificates): into a new file beside it, made with that mode, then
/// renamed over `path`, so that a file being replaced keeps neither its
/// old mode nor, after a crash halfway, half of the new contents (a
/// certificate the server could never load again).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".{}.new", std::process::id()));
    let fresh = path.with_file_name(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&fresh)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&fresh, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&fresh);
    }
    written
}
