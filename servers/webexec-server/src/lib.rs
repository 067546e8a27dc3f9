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

use server_kit::{Listener, Listeners, Metrics, Origin, OriginPolicy, Probe, Tls};
use tokio::net::{TcpListener, UnixListener};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub mod daemon;
mod host;
mod http;
mod peer;
mod rtc;
mod turn;

pub use host::Authorized;
pub use rtc::{IceServer, PortRange, RtcConfig};
pub use turn::TurnSecret;

/// Errors of the webexec server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag or configuration value is wrong.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
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
    /// Who may connect.
    pub authorized: Authorized,
    /// Origins whose web pages may signal besides the server's own (the
    /// demo page); see [`OriginPolicy`].
    pub allowed_origins: Vec<Origin>,
    /// ICE servers, UDP address and ports.
    pub rtc: RtcConfig,
    /// Where the server's certificate (its identity) is kept; `None` makes
    /// a new one per run.
    pub certificate: Option<PathBuf>,
    /// The login shell (`*` in `add_pane`).
    pub shell: String,
    /// Where panes start.
    pub home: Option<PathBuf>,
    /// Recent output kept per pane for reconnects and slow clients.
    pub replay_bytes: usize,
    /// How long shutdown waits for peers to close.
    pub shutdown_grace: Duration,
    /// The daemon socket this server serves, if any: panes get it in
    /// `WEBEXEC`, so `webexec-server copy`/`paste` in a pane reach the
    /// client's clipboard through this server.
    pub socket: Option<PathBuf>,
    /// Serve the HTTP signaling and the page over `https://` with this
    /// identity (WebRTC itself is DTLS regardless); `None`: `http://`.
    pub tls: Option<Tls>,
    /// Where the server counts what happens (`GET /metrics`).
    pub metrics: Metrics,
    /// Serve the page and the signaling under this path (`/` or e.g.
    /// `/host-a/webexec/`), for a reverse proxy that passes paths on as
    /// they are. `/metrics` stays at the root.
    pub base_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            authorized: Authorized::default(),
            allowed_origins: Vec::new(),
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
            shutdown_grace: Duration::from_secs(3),
            socket: None,
            tls: None,
            metrics: Metrics::new(),
            base_path: "/".into(),
        }
    }
}

/// A running server's shared parts: serve its routes on any number of
/// listeners.
#[derive(Clone)]
pub struct Server {
    host: Arc<host::Host>,
    rtc: rtc::Rtc,
    sessions: Arc<Mutex<std::collections::HashMap<uuid::Uuid, (rtc::Peer, std::time::Instant)>>>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    grace: Duration,
    allowed_origins: Arc<[Origin]>,
    /// Clients must be authorized (not `--no-auth`).
    auth: bool,
    tls: Option<Tls>,
    metrics: Metrics,
    probe: Probe,
    /// The base path as [`server_kit::base_prefix`] makes it.
    base: String,
}

/// The protocol's name in metrics and logs.
const PROTOCOL: &str = "webexec";

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// Loads (or creates) the certificate and sets up the shared state.
    pub fn new(config: Config) -> Result<Server, Error> {
        let rtc = rtc::Rtc::new(config.rtc.clone(), config.certificate.as_deref())?;
        let probe = config.metrics.probe(PROTOCOL);
        let host = Arc::new(host::Host::new(
            probe.clone(),
            config.authorized.clone(),
            host::PaneDefaults {
                shell: config.shell.clone(),
                home: config.home.clone(),
                replay_bytes: config.replay_bytes,
                // The reference's variable: how `webexec-server copy` and
                // `paste` run in a pane find the server that runs it.
                env: config
                    .socket
                    .iter()
                    .map(|path| (daemon::SOCKET_VAR.to_owned(), path.display().to_string()))
                    .collect(),
            },
        ));
        Ok(Server {
            host,
            rtc,
            sessions: Arc::default(),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
            grace: config.shutdown_grace,
            allowed_origins: config.allowed_origins.into(),
            auth: !config.authorized.open,
            tls: config.tls,
            metrics: config.metrics,
            probe,
            base: server_kit::base_prefix(&config.base_path),
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

    /// The routes of a TCP listener, under its origin rule; or, with
    /// `None`, of the daemon's socket, which is trusted (only its user can
    /// reach it, and no web page can): no token, no origin rule.
    fn router(&self, origins: Option<OriginPolicy>) -> axum::Router {
        let tcp = origins.is_some();
        http::router(
            http::AppState {
                host: self.host.clone(),
                rtc: self.rtc.clone(),
                trusted: !tcp,
                tls: tcp && self.tls.is_some(),
                sessions: self.sessions.clone(),
                shutdown: self.shutdown.clone(),
                tracker: self.tracker.clone(),
                base: if tcp {
                    self.base.clone()
                } else {
                    String::new()
                },
            },
            origins,
            tcp.then_some(&self.metrics),
        )
    }

    /// Serves HTTP signaling, the demo page and `/metrics` on `listener`
    /// (over TLS when configured) until the server shuts down.
    pub async fn serve_tcp(&self, listener: TcpListener) -> Result<(), Error> {
        let origins = OriginPolicy::new(&self.allowed_origins, self.auth, listener.local_addr()?)
            .counted(&self.probe);
        let stop = self.shutdown.clone();
        let listener = Listener::new(listener, self.tls.as_ref(), &self.probe);
        server_kit::serve_router(listener, PROTOCOL, self.router(Some(origins)), async move {
            stop.cancelled().await;
        })
        .await?;
        Ok(())
    }

    /// [`Server::serve_tcp`] on each of `listeners` at once; if one fails,
    /// the server shuts down and its error is returned.
    pub async fn serve_tcp_all(&self, listeners: impl Into<Listeners>) -> Result<(), Error> {
        let mut served = tokio::task::JoinSet::new();
        for listener in listeners.into().0 {
            let server = self.clone();
            served.spawn(async move { server.serve_tcp(listener).await });
        }
        let mut result = Ok(());
        while let Some(joined) = served.join_next().await {
            let failed = match joined {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => Error::Io(std::io::Error::other(e.to_string())),
            };
            self.shutdown();
            if result.is_ok() {
                result = Err(failed);
            }
        }
        result
    }

    /// Serves the daemon's unix socket (signaling without a token, plus
    /// `GET /status` and `POST /stop`) until the server shuts down.
    pub async fn serve_unix(&self, listener: UnixListener) -> Result<(), Error> {
        let stop = self.shutdown.clone();
        let app = self
            .router(None)
            .merge(daemon::control_routes(self.clone()));
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
        self.shutdown.cancel();
    }

    /// Completes once shutdown began.
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }

    /// After shutdown: ends every pane and waits (at most the grace period)
    /// for the peers to close.
    pub async fn finish(&self) {
        self.shutdown.cancel();
        self.host.terminate_all();
        self.tracker.close();
        if tokio::time::timeout(self.grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("peers still open after the shutdown grace period");
        }
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
    server.finish().await;
    result
}

/// Writes `bytes` to a new file only its owner can read (certificates,
/// tokens).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}
