//! `webexec-server`: commands and terminals over WebRTC data channels.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use server_kit::{AccessToken, Flags, LogFormat, Spec};
use webexec_server::daemon::{self, Paths};
use webexec_server::{Authorized, Config, RtcFlags, Server};

const SPEC: Spec = Spec {
    name: "webexec-server",
    token_env: "WEBEXEC_TOKEN",
    view_token_env: "WEBEXEC_VIEW_TOKEN",
    // The reference's port.
    listen: &[server_kit::loopback(7777)],
    secrets: &[server_kit::Secret {
        flag: "--turn-secret",
        env: "WEBEXEC_TURN_SECRET",
    }],
};

/// Run commands and terminals for WebRTC clients (Terminal7, the demo page
/// at http://LISTEN/, any webexec client).
///
/// Clients are authorized by a token (--token, WEBEXEC_TOKEN, or a line of
/// the authorized file) sent as `Authorization: Bearer`, or by their
/// certificate fingerprint listed in the authorized file. With neither
/// given, a token is generated and printed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Option<Cmd>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Debug, clap::Args)]
struct Opts {
    #[command(flatten)]
    common: Flags,
    /// The authorized file: tokens and client certificate fingerprints, one
    /// per line [default: DIR/authorized_fingerprints].
    #[arg(long, global = true, value_name = "FILE")]
    authorized: Option<PathBuf>,
    #[command(flatten)]
    rtc: RtcFlags,
    /// State directory: socket, certificate, authorized file, log
    /// [default: ~/.config/webexec].
    #[arg(long, global = true, value_name = "DIR")]
    dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server in the foreground (the default).
    Run {
        /// Detach from the terminal's session (used by `start`).
        #[arg(long, hide = true)]
        detached: bool,
    },
    /// Start the server in the background unless one is running.
    Start,
    /// Stop the background server.
    Stop,
    /// Say whether a server is running, with its panes and peers.
    Status,
    /// Put stdin on the clipboard of the client at the keyboard (in a pane:
    /// the client of that pane's server, from $WEBEXEC).
    Copy {
        /// The data's type.
        #[arg(long, default_value = "text/plain")]
        mimetype: String,
    },
    /// Print the clipboard of the client at the keyboard (in a pane: the
    /// client of that pane's server, from $WEBEXEC).
    Paste,
    /// The ssh flow: hand OFFER (or stdin) to the running server, starting
    /// one if needed, and print its answer.
    Accept {
        /// The client's offer: base64 of `{"type":"offer","sdp":..}`, that
        /// JSON, or SDP.
        offer: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    // Parsed first: `run_main` then takes the secrets out of the
    // environment the flags were read from.
    let args: Args = SPEC.parse();
    server_kit::run_main(&SPEC, run(args))
}

async fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let paths = Paths::new(args.opts.dir.clone())?;
    let ok = std::process::ExitCode::SUCCESS;
    match args.command.unwrap_or(Cmd::Run { detached: false }) {
        Cmd::Run { detached } => {
            if detached {
                // Leave the ssh session's terminal: its hang-up must not
                // end the panes.
                let _ = rustix::process::setsid();
            }
            server_kit::init_process(args.opts.common.log_format)?;
            foreground(&args.opts, &paths).await?;
            Ok(ok)
        }
        Cmd::Start => {
            if daemon::running(&paths).await {
                println!("already running ({})", paths.socket().display());
            } else {
                start_daemon(&args.opts, &paths).await?;
                println!("started ({})", paths.socket().display());
            }
            Ok(ok)
        }
        Cmd::Stop => {
            if !daemon::running(&paths).await {
                println!("not running");
                return Ok(ok);
            }
            daemon::request(&paths.socket(), "POST", "/stop", Vec::new()).await?;
            println!("stopped");
            Ok(ok)
        }
        Cmd::Status => match daemon::request(&paths.socket(), "GET", "/status", Vec::new()).await {
            Ok((200, body)) => {
                print!("{body}");
                Ok(ok)
            }
            _ => {
                println!("not running");
                Ok(std::process::ExitCode::from(3))
            }
        },
        Cmd::Copy { mimetype } => {
            let mut data = Vec::new();
            std::io::stdin()
                .read_to_end(&mut data)
                .context("reading stdin")?;
            daemon::copy(&clipboard_socket(&paths), data, &mimetype).await?;
            Ok(ok)
        }
        Cmd::Paste => {
            let text = daemon::paste(&clipboard_socket(&paths)).await?;
            use std::io::Write as _;
            let mut stdout = std::io::stdout();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
            Ok(ok)
        }
        Cmd::Accept { offer } => {
            let offer = match offer {
                Some(offer) => offer,
                None => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .context("reading the offer from stdin")?;
                    text
                }
            };
            if !daemon::running(&paths).await {
                start_daemon(&args.opts, &paths).await?;
            }
            println!("{}", daemon::accept(&paths, offer.trim()).await?);
            Ok(ok)
        }
    }
}

/// The socket `copy` and `paste` talk to: the one of the server whose
/// pane they run in ($WEBEXEC), else this user's.
fn clipboard_socket(paths: &Paths) -> PathBuf {
    std::env::var_os(daemon::SOCKET_VAR)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| paths.socket())
}

/// Starts `webexec-server run --detached` with the same flags, its output
/// in the log, and waits until it answers on the socket.
async fn start_daemon(opts: &Opts, paths: &Paths) -> anyhow::Result<()> {
    paths.ensure()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(paths.log())
        .with_context(|| format!("opening {}", paths.log().display()))?;
    let exe = std::env::current_exe().context("finding this program")?;
    let mut cmd = std::process::Command::new(exe);
    let common = &opts.common;
    cmd.arg("run").arg("--detached");
    opts.rtc.pass_to(&mut cmd);
    for addr in &common.listen {
        cmd.arg("--listen").arg(addr.to_string());
    }
    if let Some(dir) = &opts.dir {
        cmd.arg("--dir").arg(dir);
    }
    if let Some(file) = &opts.authorized {
        cmd.arg("--authorized").arg(file);
    }
    cmd.arg("--base-path").arg(&common.base_path);
    for origin in &common.allow_origins {
        cmd.arg("--allow-origin").arg(origin.to_string());
    }
    if common.no_auth {
        cmd.arg("--no-auth");
    }
    if common.insecure {
        cmd.arg("--insecure");
    }
    if let (Some(cert), Some(key)) = (&common.tls_cert, &common.tls_key) {
        cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key);
    }
    if common.tls_self_signed {
        cmd.arg("--tls-self-signed");
    }
    if common.log_format == LogFormat::Json {
        cmd.arg("--log-format").arg("json");
    }
    // The token goes by environment, not where `ps` shows it.
    match &common.token {
        Some(token) => cmd.env(SPEC.token_env, token),
        None => cmd.env_remove(SPEC.token_env),
    };
    match &common.view_token {
        Some(token) => cmd.env(SPEC.view_token_env, token),
        None => cmd.env_remove(SPEC.view_token_env),
    };
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the daemon")?;
    if daemon::wait_running(paths, Duration::from_secs(15)).await {
        return Ok(());
    }
    let _ = child.kill();
    anyhow::bail!("the daemon did not start; see {}", paths.log().display())
}

async fn foreground(opts: &Opts, paths: &Paths) -> anyhow::Result<()> {
    let common = &opts.common;
    let (addrs, tls) = common.prepare(&SPEC)?;
    // WebRTC binds the interface HTTP listens on (the first --listen); a
    // wildcard listen binds every interface.
    let rtc = opts.rtc.config(
        addrs
            .first()
            .map_or(std::net::Ipv4Addr::LOCALHOST.into(), |a| a.ip()),
    )?;
    paths.ensure()?;
    let authorized_file = opts
        .authorized
        .clone()
        .unwrap_or_else(|| paths.authorized());
    // The authorized file gives full access: a view token listed there
    // would be no view token.
    if let Some(view) = common.view_token.as_deref().filter(|v| !v.is_empty())
        && std::fs::read_to_string(&authorized_file).is_ok_and(|text| {
            webexec_proto::authorized_entries(&text)
                .iter()
                .any(|e| e == view)
        })
    {
        anyhow::bail!(
            "the view token is listed in {}, which gives it full access: remove it there or choose another",
            authorized_file.display()
        );
    }
    // A token is generated only when no one is authorized otherwise (the
    // authorized file), and printed below with the page's URLs.
    let mut token = None;
    let mut generated = None;
    if !common.no_auth {
        match common.token.clone().filter(|t| !t.is_empty()) {
            Some(t) => token = Some(AccessToken::new(t)),
            None if !has_entries(&authorized_file) => {
                let t = AccessToken::generate().context("generating a token")?;
                generated = Some(t.expose().to_owned());
                token = Some(t);
            }
            None => {}
        }
    }
    let https = tls.is_some();
    let mut config = Config {
        rtc,
        authorized: Authorized {
            file: Some(authorized_file.clone()),
            tokens: Vec::new(),
            view_tokens: Vec::new(),
            open: common.no_auth,
        },
        certificate: Some(webexec_server::Certificate::keep(&paths.certificate())?),
        socket: Some(paths.socket()),
        ..Config::default()
    };
    // The flags' common settings, with webexec's own grace.
    config.common = server_kit::Common {
        shutdown_grace: config.common.shutdown_grace,
        ..common.common(token, tls)
    };
    let server = Server::new(config)?;
    let unix = daemon::bind(paths).await?;
    let tcp = common.bind(addrs).await?;
    let mut pages = Vec::new();
    let base = format!("{}/", server_kit::base_prefix(&common.base_path));
    for listener in &tcp {
        let url = server_kit::url(listener.local_addr()?, https, false, &base);
        println!(
            "{} listening on {url} and {}",
            SPEC.name,
            paths.socket().display()
        );
        pages.push(url);
    }
    println!("fingerprint: {}", server.fingerprint());
    match (&generated, common.no_auth) {
        (_, true) => println!("authorization is off"),
        (Some(token), _) => {
            println!("token: {token}");
            for url in &pages {
                println!("open {url}#token={token}");
            }
        }
        (None, _) => println!(
            "clients need a token or fingerprint from {} (or --token)",
            authorized_file.display()
        ),
    }
    let stopper = server.clone();
    tokio::spawn(async move {
        server_kit::shutdown_signal().await;
        stopper.shutdown();
    });
    let socket = paths.socket();
    let (a, b) = tokio::join!(server.serve_tcp_all(tcp), server.serve_unix(unix));
    server.finish();
    let _ = std::fs::remove_file(&socket);
    a?;
    b?;
    tracing::info!("shut down");
    Ok(())
}

/// True when the authorized file lists anyone.
fn has_entries(file: &std::path::Path) -> bool {
    std::fs::read_to_string(file)
        .map(|text| !webexec_proto::authorized_entries(&text).is_empty())
        .unwrap_or(false)
}
