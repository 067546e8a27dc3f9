//! The daemon of seed 001's ssh flow: `ssh host webexec-server accept
//! OFFER` finds (or starts) the user's server through its unix socket,
//! hands it the offer and prints the answer; the daemon keeps the panes
//! across connections.
//!
//! The socket speaks the same HTTP signaling as the TCP listener (no token:
//! only its owner can open it), plus `GET /status`, `POST /stop`, and the
//! client's clipboard: `POST /clipboard` (body = the data, `Content-Type`
//! its type) puts it there with `set_clipboard`, `GET /clipboard` reads it
//! with `get_clipboard`, both through the active peer (the one that sent
//! something last), as the reference's `webexec copy` and `paste` do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

use crate::host::AskError;
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
                error: e,
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
            error: e,
        })?;
    }
    let listener = UnixListener::bind(&socket).map_err(|e| Error::File {
        path: socket.clone(),
        error: e,
    })?;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
        Error::File {
            path: socket.clone(),
            error: e,
        }
    })?;
    Ok(listener)
}

pub(crate) fn control_routes(server: Server) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/stop", post(stop))
        .route("/clipboard", get(paste_route).post(copy_route))
        .with_state(server)
}

/// The environment variable that names the daemon socket in a pane (the
/// reference's name), so `copy` and `paste` reach the server of the pane
/// they run in.
pub const SOCKET_VAR: &str = "WEBEXEC";

/// Largest clipboard a client is sent: the reference has no limit, but a
/// control message must stay well within what a browser takes.
const MAX_CLIPBOARD: usize = 1 << 20;

async fn copy_route(
    State(server): State<Server>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    if body.len() > MAX_CLIPBOARD {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("at most {MAX_CLIPBOARD} bytes\n"),
        );
    }
    let mimetype = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_owned();
    let notice = webexec_proto::Notice::SetClipboard {
        data: String::from_utf8_lossy(&body).into_owned(),
        mimetype,
    };
    match server.host().ask(notice, false).await {
        Ok(_) => (StatusCode::NO_CONTENT, String::new()),
        Err(e) => ask_failed(&e),
    }
}

async fn paste_route(State(server): State<Server>) -> (StatusCode, String) {
    match server
        .host()
        .ask(webexec_proto::Notice::GetClipboard, true)
        .await
    {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => ask_failed(&e),
    }
}

fn ask_failed(e: &AskError) -> (StatusCode, String) {
    let status = match e {
        AskError::NoClient => StatusCode::SERVICE_UNAVAILABLE,
        AskError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        AskError::Refused(_) => StatusCode::BAD_GATEWAY,
    };
    (status, format!("{e}\n"))
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
    request_typed(socket, method, path, None, body).await
}

/// Puts `data` of type `mimetype` on the clipboard of the client of the
/// daemon at `socket` (`webexec-server copy`).
pub async fn copy(socket: &Path, data: Vec<u8>, mimetype: &str) -> Result<(), Error> {
    match request_typed(socket, "POST", "/clipboard", Some(mimetype), data).await? {
        (204 | 200, _) => Ok(()),
        (_, why) => Err(Error::Clipboard(why.trim().to_owned())),
    }
}

/// The clipboard of the client of the daemon at `socket`
/// (`webexec-server paste`).
pub async fn paste(socket: &Path) -> Result<String, Error> {
    match request_typed(socket, "GET", "/clipboard", None, Vec::new()).await? {
        (200, text) => Ok(text),
        (_, why) => Err(Error::Clipboard(why.trim().to_owned())),
    }
}

async fn request_typed(
    socket: &Path,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Result<(u16, String), Error> {
    let stream = UnixStream::connect(socket).await.map_err(|e| Error::File {
        path: socket.to_owned(),
        error: e,
    })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let request = request
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
