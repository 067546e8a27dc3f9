//! The daemon of seed 001's ssh flow: `ssh host webexec-server accept
//! OFFER` finds (or starts) the user's server through its unix socket,
//! hands it the offer and prints the answer; the daemon keeps the panes
//! across connections.
//!
//! The socket speaks the same HTTP signaling as the TCP listener (no token:
//! only its owner can open it), plus `GET /status` and `POST /stop`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

use crate::{Error, Server};

/// Where one user's server keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    dir: PathBuf,
}

impl Paths {
    /// `dir`, or `$XDG_CONFIG_HOME/webexec` (default `~/.config/webexec`).
    pub fn new(dir: Option<PathBuf>) -> Result<Paths, Error> {
        let dir = match dir {
            Some(dir) => dir,
            None => match std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
                Some(config) => PathBuf::from(config).join("webexec"),
                None => std::env::var_os("HOME")
                    .map(|home| PathBuf::from(home).join(".config/webexec"))
                    .ok_or_else(|| {
                        Error::Config("neither HOME nor XDG_CONFIG_HOME is set".into())
                    })?,
            },
        };
        Ok(Paths { dir })
    }

    /// The state directory, created (mode 0700) if missing.
    pub fn ensure(&self) -> Result<&Path, Error> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| Error::File {
                path: self.dir.clone(),
                source: e,
            })?;
        Ok(&self.dir)
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("webexec.sock")
    }

    /// The daemon's log.
    pub fn log(&self) -> PathBuf {
        self.dir.join("webexec.log")
    }

    /// The server's certificate and key.
    pub fn certificate(&self) -> PathBuf {
        self.dir.join("certnkey.pem")
    }

    /// Authorized tokens and client fingerprints.
    pub fn authorized(&self) -> PathBuf {
        self.dir.join("authorized_fingerprints")
    }
}

/// Binds the daemon socket (mode 0600). A socket file nobody answers on is
/// a leftover of a crashed daemon and is replaced; one that answers means
/// a server is already running.
pub async fn bind(paths: &Paths) -> Result<UnixListener, Error> {
    paths.ensure()?;
    let socket = paths.socket();
    if socket.exists() {
        if UnixStream::connect(&socket).await.is_ok() {
            return Err(Error::Config(format!(
                "a server is already running on {}",
                socket.display()
            )));
        }
        std::fs::remove_file(&socket).map_err(|e| Error::File {
            path: socket.clone(),
            source: e,
        })?;
    }
    let listener = UnixListener::bind(&socket).map_err(|e| Error::File {
        path: socket.clone(),
        source: e,
    })?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        Error::File {
            path: socket.clone(),
            source: e,
        }
    })?;
    Ok(listener)
}

pub(crate) fn control_routes(server: Server) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/stop", post(stop))
        .with_state(server)
}

async fn status(State(server): State<Server>) -> String {
    format!("running, pid {}, {}\n", std::process::id(), server.status())
}

async fn stop(State(server): State<Server>) -> &'static str {
    server.shutdown();
    "stopping\n"
}

/// One request to the daemon: its status and body.
pub async fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Result<(u16, String), Error> {
    let stream = UnixStream::connect(socket).await.map_err(|e| Error::File {
        path: socket.to_owned(),
        source: e,
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body)))
        .map_err(std::io::Error::other)?;
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// True when a daemon answers on the socket.
pub async fn running(paths: &Paths) -> bool {
    request(&paths.socket(), "GET", "/status", Vec::new())
        .await
        .is_ok_and(|(status, _)| status == 200)
}

/// Waits up to `limit` for a daemon to answer.
pub async fn wait_running(paths: &Paths, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(10);
    while tokio::time::Instant::now() < deadline {
        if running(paths).await {
            return true;
        }
        // Polling a socket another process is about to create: there is
        // no event to wait on.
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    false
}

/// Hands `offer` (any `/connect` form) to the daemon and returns its
/// answer (base64 of the JSON answer, as `/connect` replies).
pub async fn accept(paths: &Paths, offer: &str) -> Result<String, Error> {
    let (status, body) = request(
        &paths.socket(),
        "POST",
        "/connect",
        offer.as_bytes().to_vec(),
    )
    .await?;
    if status != 200 {
        return Err(Error::Offer(body.trim().to_owned()));
    }
    Ok(body)
}
