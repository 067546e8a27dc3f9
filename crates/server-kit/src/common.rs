//! What every server is configured with, apart from its protocol, and the
//! one call a server binary makes before it serves.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::Error;
use crate::auth::{AccessToken, Tokens};
use crate::flags::{Flags, LogFormat, Secret, Spec, Started, url};
use crate::metrics::Metrics;
use crate::origin::Origin;
use crate::tls::Tls;

/// The settings every server shares, each server's `Config` embeds one as
/// `common` beside its protocol's own. `Common::default()` is what a
/// server runs with when given no flags, but for the token, which the
/// binary generates.
#[derive(Debug, Clone)]
pub struct Common {
    /// The token clients must present; `None` turns authentication off.
    /// (webexec also admits its authorized file's entries: there this
    /// token is one more of them.)
    pub token: Option<AccessToken>,
    /// The token of read-only clients (`--view-token`): they may attach
    /// to a live terminal and watch it, never start, type, resize or
    /// signal. Meaningful only with [`Common::token`]: without one
    /// everyone may do everything.
    pub view_token: Option<AccessToken>,
    /// Origins whose web pages may connect besides the server's own
    /// (`--allow-origin`); see [`OriginPolicy`](crate::OriginPolicy).
    pub allowed_origins: Vec<Origin>,
    /// Serve `https://` and `wss://` with this identity; `None`: plain.
    pub tls: Option<Tls>,
    /// Where the server counts what happens (`GET /metrics`).
    pub metrics: Metrics,
    /// Whether the protocol's router serves `GET /metrics` itself. A
    /// listener that serves several protocols (the `execwire` daemon)
    /// turns it off in each and serves one `/metrics` for all, since the
    /// [`Metrics`] they share already labels every series by protocol.
    pub serve_metrics: bool,
    /// Ping each WebSocket client this often (`None`: never), so an idle
    /// session survives proxies that cut silent connections.
    pub ws_ping: Option<Duration>,
    /// Serve only under this path (`/` or e.g. `/host-a/wsep/`), for a
    /// reverse proxy that passes paths on as they are; elsewhere `404`.
    /// `/metrics` stays at the root.
    pub base_path: String,
    /// How long shutdown waits for sessions to end before returning.
    pub shutdown_grace: Duration,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            token: None,
            view_token: None,
            allowed_origins: Vec::new(),
            tls: None,
            metrics: Metrics::new(),
            serve_metrics: true,
            ws_ping: Some(crate::ws::DEFAULT_WS_PING),
            base_path: "/".into(),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl Common {
    /// The base path as routes see it: without its trailing slash, and
    /// empty for `/` (see [`base_prefix`](crate::base_prefix)).
    pub fn base(&self) -> String {
        crate::base::base_prefix(&self.base_path)
    }

    /// The full and the view token, for [`TokenGate`](crate::TokenGate)
    /// or an in-band check.
    pub fn tokens(&self) -> Tokens {
        Tokens {
            full: self.token.clone(),
            view: self.view_token.clone(),
        }
    }
}

/// Builder methods for any configuration that holds a [`Common`], so that
/// a test reads `wsep_server::Config::default().with_token(t)` rather than
/// a nested struct update.
pub trait CommonConfig: Sized {
    /// The [`Common`] part.
    fn common_mut(&mut self) -> &mut Common;

    /// With this token (`None`: authentication off).
    fn with_token(mut self, token: Option<AccessToken>) -> Self {
        self.common_mut().token = token;
        self
    }

    /// With this read-only token (`None`: no viewers).
    fn with_view_token(mut self, token: Option<AccessToken>) -> Self {
        self.common_mut().view_token = token;
        self
    }

    /// With these origins allowed besides the server's own.
    fn with_allowed_origins(mut self, origins: Vec<Origin>) -> Self {
        self.common_mut().allowed_origins = origins;
        self
    }

    /// Serving TLS with this identity.
    fn with_tls(mut self, tls: Tls) -> Self {
        self.common_mut().tls = Some(tls);
        self
    }

    /// Pinging WebSocket clients this often (`None`: never).
    fn with_ws_ping(mut self, every: Option<Duration>) -> Self {
        self.common_mut().ws_ping = every;
        self
    }

    /// Serving under this path.
    fn with_base_path(mut self, path: impl Into<String>) -> Self {
        self.common_mut().base_path = path.into();
        self
    }
}

impl CommonConfig for Common {
    fn common_mut(&mut self) -> &mut Common {
        self
    }
}

impl Flags {
    /// The [`Common`] settings these flags and what [`Flags::start`] made
    /// (the token, the TLS identity) say; the rest are the defaults.
    pub fn common(&self, token: Option<AccessToken>, tls: Option<Tls>) -> Common {
        Common {
            token,
            view_token: self.view_token(),
            allowed_origins: self.allow_origins.clone(),
            tls,
            ws_ping: self.ws_ping(),
            base_path: self.base_path.clone(),
            ..Common::default()
        }
    }
}

/// One URL a server binary prints for each listener at start, so that an
/// operator can copy it into a client.
#[derive(Debug, Clone, Copy)]
pub struct Announce {
    /// What the line says before the URL; `None`: `NAME listening on`.
    pub label: Option<&'static str>,
    /// A `ws://` URL, else `http://` (`wss://`/`https://` with TLS).
    pub websocket: bool,
    /// The path after the base path's `/` (`""`, `docs/`).
    pub path: &'static str,
}

impl Announce {
    /// `NAME listening on ws://ADDR/BASE/`: a WebSocket server's line.
    pub const WEBSOCKET: Announce = Announce {
        label: None,
        websocket: true,
        path: "",
    };
}

/// What a server binary has once it started: its listeners and its
/// [`Common`] settings, to hand to its library's `serve`.
#[derive(Debug)]
pub struct Launched {
    /// One bound listener per address.
    pub listeners: Vec<TcpListener>,
    /// The settings from the flags, with the token and the TLS identity.
    pub common: Common,
}

/// Everything a server binary does before it serves, in one call: logging
/// (`--log-format`), the open-files limit raised (each session holds a few
/// descriptors), [`Flags::start`] (TLS, the exposure check, binding, the
/// token), then for each listener a line per `announce`, and
/// `authentication is off` when it is.
pub async fn launch(spec: &Spec, flags: &Flags, announce: &[Announce]) -> Result<Launched, Error> {
    init_process(flags.log_format)?;
    let Started {
        listeners,
        token,
        tls,
    } = flags.start(spec).await?;
    let common = flags.common(token, tls);
    let addrs = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    for addr in addrs {
        for line in announce {
            println!("{}", line.line(spec, addr, &common));
        }
    }
    if common.token.is_none() {
        println!("authentication is off");
    }
    Ok(Launched { listeners, common })
}

/// What a server process sets up first: logging as `format` says, and
/// the open-files limit raised to its hard limit (each session holds a
/// few descriptors; the usual soft limit of 1024 would refuse sessions
/// long before memory runs out).
pub fn init_process(format: LogFormat) -> Result<(), Error> {
    crate::logging::init_logging(format)?;
    let files = exec_core::raise_open_files_limit();
    tracing::debug!(files, "open-files limit");
    Ok(())
}

/// A server binary's whole `main`, called once its flags are parsed: its
/// secrets taken out of its environment (and blanked where
/// `/proc/PID/environ` shows them) and the
/// allocator set to give memory back
/// ([`tune_allocator`](crate::tune_allocator)) before any thread exists
/// and told to do so every few seconds,
/// then `run` on a multi-threaded tokio runtime, and its result as the
/// process's exit ([`exit_code`]).
pub fn run_main<T, E>(
    spec: &Spec,
    run: impl Future<Output = Result<T, E>>,
) -> std::process::ExitCode
where
    T: std::process::Termination,
    E: std::fmt::Display,
{
    forget_secrets(spec);
    crate::tune_allocator();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return exit_code(spec.name, Err(format!("starting the runtime: {e}"))),
    };
    runtime.spawn(crate::alloc::give_back_periodically());
    match runtime.block_on(run) {
        Ok(done) => done.report(),
        Err(e) => exit_code::<E>(spec.name, Err(e)),
    }
}

/// Takes the server's secrets (its tokens, [`Spec::secrets`]) out of its
/// environment, once its flags have read them: every command it runs
/// inherits that environment, where `env` in a session (or a recording of
/// one) would print them. Their values are blanked in the block the
/// process started with as well, which `/proc/PID/environ` shows to every
/// process of the same user, the server's commands included, and which
/// taking a variable out of the environment leaves as it was. The
/// commands run as the server's user, who can read the files a service's
/// secrets come from; this keeps them from being one `env` or one `cat`
/// away in every session. Secrets given as flags are blanked in the
/// command line, which `ps` shows to every user of the machine.
fn forget_secrets(spec: &Spec) {
    // Changing the environment is sound only while no other thread may
    // read it. `run_main` comes first in a server's `main`; should a
    // caller have started a thread before, the secrets stay (and it says
    // so) rather than race.
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count);
    if !matches!(threads, Ok(1)) {
        eprintln!(
            "{}: other threads run already; the tokens stay in the environment of the commands \
             and in the command line",
            spec.name
        );
        return;
    }
    let tokens = [
        Secret {
            flag: "--token",
            env: spec.token_env,
        },
        Secret {
            flag: "--view-token",
            env: spec.view_token_env,
        },
    ];
    let secrets: Vec<Secret> = tokens
        .into_iter()
        .chain(spec.secrets.iter().copied())
        .collect();
    for secret in &secrets {
        if std::env::var_os(secret.env).is_some() {
            // SAFETY: this process has one thread (checked above), this
            // one: nothing can read the environment meanwhile, and no
            // other thread can start but from this one.
            unsafe {
                blank_value(secret.env);
                std::env::remove_var(secret.env);
            }
        }
    }
    let flags: Vec<&str> = secrets.iter().map(|s| s.flag).collect();
    // SAFETY: as above, one thread; nothing else reads the arguments now
    // (the flags were parsed before `run_main`).
    if let Err(e) = unsafe { blank_arguments(&flags) } {
        eprintln!(
            "{}: the command line keeps its secrets ({e}); give them in the environment",
            spec.name
        );
    }
}

/// Blanks, in this process's own command line (the block `/proc/PID/cmdline`
/// and so `ps` read), the values given to `flags`.
///
/// # Safety
/// No other thread may read the arguments meanwhile.
unsafe fn blank_arguments(flags: &[&str]) -> std::io::Result<()> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised name; arg_start and arg_end are the
    // 48th and 49th (proc(5)), the 46th and 47th after it.
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let address = |i: usize| fields.get(i).and_then(|f| f.parse::<usize>().ok());
    let (start, end) = match (address(45), address(46)) {
        (Some(start), Some(end)) if start != 0 && end > start => (start, end),
        _ => {
            return Err(std::io::Error::other(
                "no argument block in /proc/self/stat",
            ));
        }
    };
    // SAFETY: [start, end) is the argument block the kernel laid out on
    // this process's stack at exec: mapped, writable and ours; no
    // reference to it lives (the caller keeps other threads out, and
    // std's copies of the arguments are made afresh on each call).
    let block = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    blank_flag_values(block, flags);
    Ok(())
}

/// In `block`, arguments each ended by a NUL as exec lays them out,
/// overwrites with `x` the value of each of `flags`: the argument after
/// `--flag`, or what follows `--flag=`. Nothing after `--`. The NULs stay,
/// so the arguments keep their number and their lengths.
fn blank_flag_values(block: &mut [u8], flags: &[&str]) {
    let mut blank_next = false;
    for arg in block.split_mut(|&b| b == 0) {
        if blank_next {
            arg.fill(b'x');
            blank_next = false;
            continue;
        }
        if arg == b"--" {
            break;
        }
        for flag in flags {
            let flag = flag.as_bytes();
            if arg == flag {
                blank_next = true;
            } else if let Some(value) = value_at(arg, flag).and_then(|at| arg.get_mut(at..)) {
                value.fill(b'x');
            }
        }
    }
}

/// Where the value starts in `text` when it is `name=value` (a flag's
/// `--name=value`, an environment entry); `None` for any other name,
/// longer ones that begin with `name` included.
fn value_at(text: &[u8], name: &[u8]) -> Option<usize> {
    let rest = text.strip_prefix(name)?.strip_prefix(b"=")?;
    Some(text.len() - rest.len())
}

/// Overwrites with NULs the value of every `name=value` string the C
/// environment (`environ`) points at: the block the kernel laid out at
/// exec, which `/proc/PID/environ` reads, or a copy `setenv` made.
///
/// # Safety
/// No other thread may read or change the environment meanwhile.
unsafe fn blank_value(name: &str) {
    unsafe extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: `environ` is a NULL-terminated array of NUL-terminated
    // strings that this process owns and may write (the caller keeps
    // other threads out); each value is overwritten within its own
    // length, so every string stays terminated.
    unsafe {
        let mut entry = environ;
        if entry.is_null() {
            return;
        }
        while !(*entry).is_null() {
            let text = std::ffi::CStr::from_ptr(*entry).to_bytes();
            if let Some(at) = value_at(text, name.as_bytes()) {
                std::ptr::write_bytes((*entry).add(at), 0, text.len() - at);
            }
            entry = entry.add(1);
        }
    }
}

/// A server binary's exit: success, or its name and the error with its
/// causes (`{e:#}`) on stderr and failure.
pub fn exit_code<E: std::fmt::Display>(
    name: &str,
    result: Result<(), E>,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl Announce {
    /// The printed line for a listener on `addr`.
    fn line(&self, spec: &Spec, addr: SocketAddr, common: &Common) -> String {
        let path = format!("{}/{}", common.base(), self.path);
        let url = url(addr, common.tls.is_some(), self.websocket, &path);
        match self.label {
            Some(label) => format!("{label} {url}"),
            None => format!("{} listening on {url}", spec.name),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::flags::loopback;

    const SPEC: Spec = Spec {
        name: "x-server",
        token_env: "X_TOKEN",
        view_token_env: "X_VIEW_TOKEN",
        listen: &[loopback(1)],
        secrets: &[],
    };

    #[test]
    fn secret_flag_values_are_blanked_in_place() {
        let mut block = b"x-server\0--token\0t0k\0--listen\x00127.0.0.1:0\0--view-token=v1\0\
                          --tokenish\0keep\0--turn-secret=\0--\0--token\0after\0"
            .to_vec();
        let len = block.len();
        blank_flag_values(&mut block, &["--token", "--view-token", "--turn-secret"]);
        assert_eq!(
            block,
            b"x-server\0--token\0xxx\0--listen\x00127.0.0.1:0\0--view-token=xx\0\
              --tokenish\0keep\0--turn-secret=\0--\0--token\0after\0"
        );
        assert_eq!(block.len(), len);
    }

    #[test]
    fn lines_name_the_url_under_the_base_path() {
        let common = Common::default().with_base_path("/a/b/");
        let addr = loopback(80);
        assert_eq!(
            Announce::WEBSOCKET.line(&SPEC, addr, &common),
            "x-server listening on ws://127.0.0.1:80/a/b/"
        );
        let docs = Announce {
            label: Some("docs:"),
            websocket: false,
            path: "docs/",
        };
        assert_eq!(
            docs.line(&SPEC, addr, &Common::default()),
            "docs: http://127.0.0.1:80/docs/"
        );
    }
}
