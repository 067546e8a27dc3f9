//! Shared harness of the end-to-end scenarios: start a real server on
//! `127.0.0.1:0`, talk to it with a real client, observe real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use server_kit::{AccessToken, CommonConfig as _};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod deploy;
pub mod matrix;
pub mod pow;
pub mod tls;
pub mod webexec;
pub mod webterm;
pub mod wsep;

/// A plain WebSocket client connection.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to `url`, with `token` as a bearer header and
/// offering `subprotocol` when given.
pub async fn ws_connect(
    url: &str,
    token: Option<&str>,
    subprotocol: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let mut request = url.into_client_request()?;
    let headers = request.headers_mut();
    if let Some(token) = token {
        headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    if let Some(p) = subprotocol {
        headers.insert("sec-websocket-protocol", p.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| ws)
}

/// The servers, for scenarios that run over each of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// wsep-server.
    Wsep,
    /// pow-server.
    Pow,
    /// webterm-server.
    Webterm,
    /// webexec-server.
    Webexec,
}

/// What the browser tests need: Debian's `chromium` (or `$CHROMIUM`) and
/// `npm ci --prefix tests/browser` (both done by `.ci/run`). Returns the
/// browser's path and `tests/browser`; without them `None`, after saying
/// so, so that the test passes, except under CI, where it fails.
pub fn browser() -> Option<(String, PathBuf)> {
    match browser_tools() {
        Ok(found) => Some(found),
        Err(missing) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser tests: install chromium and run npm ci --prefix tests/browser"
            );
            eprintln!("skipped: {missing}");
            None
        }
    }
}

/// The browser's path and `tests/browser`, or what is missing; for the
/// benchmark, which reports either.
pub fn browser_tools() -> Result<(String, PathBuf), String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!("no {chromium}"));
    }
    if !dir.join("node_modules/playwright-core").exists() {
        return Err("no tests/browser/node_modules (npm ci --prefix tests/browser)".into());
    }
    Ok((chromium, dir))
}

/// Runs the browser script `script` (in `tests/browser`) with `args`
/// under node, driving `chromium`; returns its stdout once it succeeded,
/// else fails the test with everything it printed.
pub async fn run_browser_script(
    chromium: &str,
    script: &Path,
    args: &[&std::ffi::OsStr],
) -> String {
    let out = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .env("CHROMIUM", chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test {} failed\nstdout:\n{stdout}\nstderr:\n{stderr}",
        script.display()
    );
    stdout
}

/// A server running in this process on `127.0.0.1:0`, shut down when
/// dropped.
#[derive(Debug)]
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The token it expects.
    pub token: String,
    /// Where its protocol is served: `""` for a server of one protocol,
    /// the protocol's path on the `execwire` daemon (`/wsep`).
    pub path: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

impl TestServer {
    /// Binds port 0 and runs `serve(listener, token, shutdown)` in a task;
    /// `token` is a fresh one when `auth`, else `None` (and the server's
    /// `token` field is empty).
    async fn spawn<F, Fut>(auth: bool, serve: F) -> TestServer
    where
        F: FnOnce(tokio::net::TcpListener, Option<AccessToken>, Shutdown) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        tls::install_provider();
        let token = auth.then(|| AccessToken::generate().unwrap());
        let exposed = token
            .as_ref()
            .map(|t| t.expose().to_owned())
            .unwrap_or_default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown: Shutdown = Box::pin(async {
            let _ = stopped.await;
        });
        let task = tokio::spawn(serve(listener, token, shutdown));
        TestServer {
            addr,
            token: exposed,
            path: String::new(),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A wsep server with the default configuration.
    pub async fn wsep() -> TestServer {
        Self::wsep_with(wsep_server::Config::default()).await
    }

    /// A wsep server with `config` (its token is replaced by a fresh one).
    pub async fn wsep_with(config: wsep_server::Config) -> TestServer {
        Self::wsep_auth(config, true).await
    }

    /// A wsep server with `config` and, when `auth`, a fresh token; else
    /// without authentication (`--no-auth`).
    pub async fn wsep_auth(config: wsep_server::Config, auth: bool) -> TestServer {
        Self::spawn(auth, |listener, token, shutdown| async move {
            let config = config.with_token(token);
            wsep_server::serve(listener, config, shutdown)
                .await
                .unwrap();
        })
        .await
    }

    /// A pow server with `config` and `handler` (its token is replaced by a
    /// fresh one).
    pub async fn pow_with(
        config: pow_server::Config,
        handler: Arc<dyn pow_server::Handler>,
    ) -> TestServer {
        Self::pow_auth(config, handler, true).await
    }

    /// A pow server with `config`, `handler` and, when `auth`, a fresh
    /// token; else without authentication.
    pub async fn pow_auth(
        config: pow_server::Config,
        handler: Arc<dyn pow_server::Handler>,
        auth: bool,
    ) -> TestServer {
        Self::spawn(auth, |listener, token, shutdown| async move {
            let config = config.with_token(token);
            pow_server::serve(listener, config, handler, shutdown)
                .await
                .unwrap();
        })
        .await
    }

    /// A webterm server with `config` (its token is replaced by a fresh
    /// one).
    pub async fn webterm_with(config: webterm_server::Config) -> TestServer {
        Self::webterm_auth(config, true).await
    }

    /// A webterm server with `config` and, when `auth`, a fresh token;
    /// else accepting any.
    pub async fn webterm_auth(config: webterm_server::Config, auth: bool) -> TestServer {
        Self::spawn(auth, |listener, token, shutdown| async move {
            let config = config.with_token(token);
            webterm_server::serve(vec![listener], config, shutdown)
                .await
                .unwrap();
        })
        .await
    }

    /// A webexec server with `config`; its token is added to the
    /// authorized set.
    pub async fn webexec_with(config: webexec_server::Config) -> TestServer {
        Self::webexec_auth(config, true).await
    }

    /// A webexec server with `config`: when `auth`, its fresh token is
    /// added to the authorized set; else everyone is authorized.
    pub async fn webexec_auth(config: webexec_server::Config, auth: bool) -> TestServer {
        Self::spawn(auth, |listener, token, shutdown| async move {
            let mut config = config;
            match token {
                Some(token) => config.authorized.tokens.push(token),
                None => config.authorized.open = true,
            }
            webexec_server::serve(listener, config, shutdown)
                .await
                .unwrap();
        })
        .await
    }

    /// A server of `kind` that lets pages of `allowed` origins in
    /// (`--allow-origin`), with a fresh token when `auth`, else without
    /// authentication. pow's only process is `touch` (`touch -- PATH`),
    /// so that every kind can run the same command.
    pub async fn of_kind(kind: Kind, auth: bool, allowed: &[&str]) -> TestServer {
        let allowed_origins: Vec<server_kit::Origin> =
            allowed.iter().map(|o| o.parse().unwrap()).collect();
        match kind {
            Kind::Wsep => {
                let config = wsep_server::Config::default().with_allowed_origins(allowed_origins);
                Self::wsep_auth(config, auth).await
            }
            Kind::Pow => {
                let registry = pow_server::registry_from_toml(
                    "[process.touch]\nargv = [\"touch\", \"--\", \"{0}\"]\nparams = 1\n",
                )
                .unwrap();
                let config = pow_server::Config::default().with_allowed_origins(allowed_origins);
                Self::pow_auth(config, Arc::new(registry), auth).await
            }
            Kind::Webterm => {
                let config = webterm_server::Config {
                    shell: "/bin/sh".into(),
                    ..webterm_server::Config::default()
                }
                .with_allowed_origins(allowed_origins);
                Self::webterm_auth(config, auth).await
            }
            Kind::Webexec => {
                let config =
                    webexec_server::Config::default().with_allowed_origins(allowed_origins);
                Self::webexec_auth(config, auth).await
            }
        }
    }

    /// A server of `kind` over TLS with `tls`, a fresh token, and its
    /// defaults (pow with its built-in processes, webterm with `/bin/sh`).
    pub async fn with_tls(kind: Kind, tls: server_kit::Tls) -> TestServer {
        match kind {
            Kind::Wsep => Self::wsep_with(wsep_server::Config::default().with_tls(tls)).await,
            Kind::Pow => {
                let registry = pow_server::registry_from_toml(pow_server::DEFAULT_CONFIG).unwrap();
                let config = pow_server::Config::default().with_tls(tls);
                Self::pow_with(config, Arc::new(registry)).await
            }
            Kind::Webterm => {
                let config = webterm_server::Config {
                    shell: "/bin/sh".into(),
                    ..webterm_server::Config::default()
                };
                Self::webterm_with(config.with_tls(tls)).await
            }
            Kind::Webexec => {
                Self::webexec_with(webexec_server::Config::default().with_tls(tls)).await
            }
        }
    }

    /// `ws://addr/`, or under the protocol's path (`ws://addr/wsep/`).
    pub fn url(&self) -> String {
        format!("ws://{}{}/", self.addr, self.path)
    }

    /// The `execwire` daemon with `config` and, when `auth`, a fresh token
    /// for every protocol (webexec's included); else without
    /// authentication. Its clients reach the protocol at `path`
    /// ([`TestServer::at`] gives the others).
    pub async fn execwire_auth(config: execwire::Config, auth: bool, path: &str) -> TestServer {
        let mut server = Self::spawn(auth, |listener, token, shutdown| async move {
            let mut config = config.with_token(token);
            if let Some(webexec) = &mut config.webexec {
                webexec.authorized.open = config.common.token.is_none();
            }
            execwire::serve(listener, config, shutdown).await.unwrap();
        })
        .await;
        server.path = path.to_owned();
        server
    }

    /// The daemon with every protocol, configured as the matrix's
    /// single-protocol servers are (pow's one process `sh -c {0}`,
    /// webterm's shell `/bin/sh`), a fresh token, clients at `path`.
    pub async fn execwire(path: &str) -> TestServer {
        Self::execwire_auth(execwire_matrix_config(), true, path).await
    }

    /// The same server, its clients reaching the protocol at `path`: a
    /// view that does not own the server (dropping it stops nothing).
    pub fn at(&self, path: &str) -> TestServer {
        TestServer {
            addr: self.addr,
            token: self.token.clone(),
            path: path.to_owned(),
            stop: None,
            task: None,
        }
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The daemon's configuration for the matrix: every protocol, pow's one
/// process `sh -c {0}`, webterm's shell `/bin/sh`.
pub fn execwire_matrix_config() -> execwire::Config {
    let mut config = execwire::Config::all(server_kit::Common::default()).unwrap();
    if let Some(pow) = &mut config.pow {
        pow.handler = Arc::new(pow_server::registry_from_toml(matrix::POW_PROCESSES).unwrap());
    }
    if let Some(webterm) = &mut config.webterm {
        webterm.shell = "/bin/sh".into();
    }
    config
}

/// Waits until process `pid` has exited, by its pidfd becoming readable
/// (an event, not a poll). Returns at once if it is already gone.
pub async fn wait_gone(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let fd: OwnedFd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return, // no such process
    };
    let ready = tokio::task::spawn_blocking(move || {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&timeout)).unwrap_or(0)
    })
    .await
    .unwrap();
    assert_eq!(ready, 1, "process {pid:?} is still running");
}

/// True when process `pid` exists and has not exited.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z") && !s.contains(") X"))
        .unwrap_or(false)
}

/// The filter scenarios feed a filter (`cat`) this many frames of
/// [`FILTER_FRAME`] bytes (100 MiB) while reading its output: many times
/// what every pipe and queue between the client and the process holds, so
/// a server that waits for the process to read before it reads the
/// process's output stalls.
pub const FILTER_FRAMES: usize = 100;

/// Bytes of one frame of the filter scenarios.
pub const FILTER_FRAME: usize = 1 << 20;

/// A safety net so a stalled filter scenario fails instead of hanging;
/// never reached when things work.
pub const FILTER_NET: std::time::Duration = std::time::Duration::from_secs(600);

/// Input of the filter scenarios: frame `k` of `len` bytes (a multiple of
/// [`FILTER_LINE`]), lines that name their frame and line, so that a lost,
/// repeated or reordered byte shows as a mismatch at a known place. ASCII,
/// so it fits text frames and JSON strings as it is.
pub fn filter_frame(k: usize, len: usize) -> String {
    let mut out = String::with_capacity(len);
    for line in 0..len / FILTER_LINE {
        push_filter_line(&mut out, k, line);
    }
    out
}

/// Length of one line of [`filter_frame`], newline included.
pub const FILTER_LINE: usize = 64;

fn push_filter_line(out: &mut String, frame: usize, line: usize) {
    const LETTERS: &str =
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz";
    let start = out.len();
    out.push_str(&format!("{frame:05} {line:06} "));
    let filler = FILTER_LINE - 1 - (out.len() - start);
    let from = (frame * 7 + line) % 26;
    out.push_str(&LETTERS[from..from + filler]);
    out.push('\n');
}

/// Checks a filter's output as it arrives, against the frames it was fed:
/// nothing is kept but the frame being compared.
#[derive(Debug)]
pub struct FilterCheck {
    frame_len: usize,
    frames: usize,
    next_frame: usize,
    expected: Vec<u8>,
    pos: usize,
    received: usize,
}

impl FilterCheck {
    /// Expects `frames` frames of `frame_len` bytes, in order.
    pub fn new(frames: usize, frame_len: usize) -> Self {
        FilterCheck {
            frame_len,
            frames,
            next_frame: 0,
            expected: Vec::new(),
            pos: 0,
            received: 0,
        }
    }

    /// Compares the next chunk of output; panics at the first difference.
    pub fn push(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.pos == self.expected.len() {
                assert!(
                    self.next_frame < self.frames,
                    "{} bytes of output beyond the input's end",
                    chunk.len()
                );
                self.expected = filter_frame(self.next_frame, self.frame_len).into_bytes();
                self.next_frame += 1;
                self.pos = 0;
            }
            let n = chunk.len().min(self.expected.len() - self.pos);
            let (now, rest) = chunk.split_at(n);
            if now != &self.expected[self.pos..self.pos + n] {
                let at = self.received
                    + now
                        .iter()
                        .zip(&self.expected[self.pos..])
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                panic!("output differs from the input at byte {at}");
            }
            self.pos += n;
            self.received += n;
            chunk = rest;
        }
    }

    /// Bytes compared so far.
    pub fn received(&self) -> usize {
        self.received
    }

    /// True once every byte of every frame arrived.
    pub fn complete(&self) -> bool {
        self.received == self.frames * self.frame_len
    }

    /// Fails the test unless every byte of every frame arrived.
    pub fn assert_complete(&self) {
        assert!(self.complete(), "only {} bytes came back", self.received);
    }
}

/// SHA-256 of the filter frames, in `sha256sum`'s hex, computed by the
/// system's `sha256sum` (the same tool a filter process may use).
pub fn filter_sha256(frames: usize, frame_len: usize) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for k in 0..frames {
        stdin
            .write_all(filter_frame(k, frame_len).as_bytes())
            .unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// Where a line of [`filter_frame`] (without its newline) belongs: its
/// frame and line number, or `None` when it is not exactly such a line.
pub fn filter_line_position(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.splitn(3, ' ');
    let frame = fields.next()?.parse().ok()?;
    let number = fields.next()?.parse().ok()?;
    let mut expected = String::with_capacity(FILTER_LINE);
    push_filter_line(&mut expected, frame, number);
    (expected.strip_suffix('\n') == Some(line)).then_some((frame, number))
}
