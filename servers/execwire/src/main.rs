//! `execwire`: every protocol on one listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::Resettable;
use clap::parser::ValueSource;
use clap::{ArgMatches, FromArgMatches as _, Id, Parser, ValueEnum as _};
use execwire::{Config, FileConfig, FileError, POW_PATH, Pow, WEBTERM_PATH, WSEP_PATH};
use server_kit::{Flags, LogFormat, Origin, Spec};
use webexec_server::{Authorized, RtcFlags};

const SPEC: Spec = Spec {
    name: "execwire",
    token_env: "EXECWIRE_TOKEN",
    view_token_env: "EXECWIRE_VIEW_TOKEN",
    // webexec's port: its page and Terminal7 expect it.
    listen: &[server_kit::loopback(7777)],
    secrets: &[server_kit::Secret {
        flag: "--turn-secret",
        env: "WEBEXEC_TURN_SECRET",
    }],
};

/// Run commands and terminals for every client on one listener: the
/// webexec demo page and Terminal7 (WebRTC, signaling at /), wsep at
/// /wsep, pow-1 (WebSocket, REST, OpenAPI, docs) under /pow/, Web-Terminal
/// v3 at /webterm, and the counters of all at /metrics.
///
/// One token for every protocol: give it with --token (or EXECWIRE_TOKEN,
/// or `token` in the config file), or one is generated and printed with
/// the URL of each protocol. Clients send it as each protocol does
/// (`Authorization: Bearer`, `?token=`, webexec's page `#token=`,
/// webterm's first message). A second, read-only token (--view-token,
/// EXECWIRE_VIEW_TOKEN, `view-token` in the file) lets its holders attach
/// to running terminals (wsep `--tty --id NAME`, webexec panes) and watch
/// them; they cannot start, type, resize or signal.
///
/// Every flag can be set in a TOML file (--config) under the flag's name
/// (`no-auth = true`, `listen = ["127.0.0.1:7777"]`); a flag on the
/// command line (or EXECWIRE_TOKEN) wins over the file. pow's processes
/// are `[process.NAME]` tables in the same file (see deploy/execwire.toml).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Flags,
    /// TOML file of settings: a key per flag, and pow's processes as
    /// [process.NAME] tables. Unknown keys are an error.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Do not serve webexec (its page, signaling and WebRTC).
    #[arg(long)]
    no_webexec: bool,
    /// Do not serve wsep.
    #[arg(long)]
    no_wsep: bool,
    /// Do not serve pow-1.
    #[arg(long)]
    no_pow: bool,
    /// Do not serve Web-Terminal v3.
    #[arg(long)]
    no_webterm: bool,
    /// Shell of webexec panes (`*`) and of webterm command lines
    /// [default: $SHELL, else /bin/sh].
    #[arg(long, value_name = "PATH")]
    shell: Option<String>,
    /// Seconds a named wsep terminal session lives after its last client leaves.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    wsep_session_timeout: u64,
    /// Send webterm output HTML-escaped with <br> for newlines (the
    /// original web-terminal client's rendering); a connection can still
    /// ask for `?output=text`.
    #[arg(long)]
    webterm_html_output: bool,
    /// webexec's WebRTC: UDP ports, STUN/TURN servers, TURN secret.
    #[command(flatten)]
    rtc: RtcFlags,
    /// Where webexec's WebRTC certificate is kept, made (mode 600) when
    /// the file is missing or its certificate expired. Its fingerprint is
    /// the host's identity, which Terminal7 and webexec clients pin:
    /// without this file it is new on every start.
    #[arg(long, value_name = "FILE")]
    webrtc_certificate: Option<PathBuf>,
    /// Record every terminal pane (wsep `tty` sessions, webexec panes) as
    /// an asciicast v2 file DIR/<pane-id>-<start>.cast, which
    /// `asciinema play` plays. DIR must exist.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Most bytes one pane's recording holds; past it the recording stops
    /// (logged) and the pane runs on.
    #[arg(long, default_value_t = 64 << 20, value_name = "N")]
    record_max_bytes: u64,
}

fn main() -> std::process::ExitCode {
    // The TURN secret and its relays go together, but either may come
    // from the file (`turn-url`) while the other comes from the command
    // line or the environment (WEBEXEC_TURN_SECRET in a service's
    // environment file): clap cannot see the file, so the pairing is
    // checked once it is merged (`RtcFlags::config`), not while parsing.
    let matches = SPEC
        .command::<Args>()
        .mut_arg("turn_secret", |a| a.requires(Resettable::<Id>::Reset))
        .mut_arg("turn_urls", |a| a.requires(Resettable::<Id>::Reset))
        .get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    server_kit::run_main(&SPEC, run(args, matches))
}

/// True when `id` was given on the command line or by its environment
/// variable: then it wins over the file.
fn given(matches: &ArgMatches, id: &str) -> bool {
    matches!(
        matches.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

/// Takes from `file` what the command line did not give; returns pow's
/// processes if the file defines them.
fn merge(
    args: &mut Args,
    file: FileConfig,
    matches: &ArgMatches,
) -> Result<Option<pow_server::Processes>, FileError> {
    /// `args.FIELD = file.KEY` unless `ID` was given.
    macro_rules! take {
        ($($field:ident).+ = $value:expr, $id:literal) => {
            if let Some(value) = $value {
                if !given(matches, $id) {
                    args.$($field).+ = value;
                }
            }
        };
    }
    let FileConfig {
        listen,
        token,
        view_token,
        no_auth,
        insecure,
        allow_origin,
        tls_cert,
        tls_key,
        tls_self_signed,
        log_format,
        ws_ping,
        base_path,
        no_webexec,
        no_wsep,
        no_pow,
        no_webterm,
        shell,
        wsep_session_timeout,
        webterm_html_output,
        udp_ports,
        ice_server,
        turn_secret,
        turn_url,
        turn_ttl,
        webrtc_certificate,
        record,
        record_max_bytes,
        process,
    } = file;
    take!(common.listen = listen, "listen");
    // The token and --no-auth exclude each other: one given on the
    // command line overrides the file's either.
    let auth_given = given(matches, "token") || given(matches, "no_auth");
    if !auth_given {
        if let Some(token) = token {
            args.common.token = Some(token);
        }
        if let Some(no_auth) = no_auth {
            args.common.no_auth = no_auth;
        }
    }
    if let Some(view) = view_token
        && !given(matches, "view_token")
    {
        args.common.view_token = Some(view);
    }
    take!(common.insecure = insecure, "insecure");
    if let Some(origins) = allow_origin
        && !given(matches, "allow_origins")
    {
        args.common.allow_origins = origins
            .iter()
            .map(|o| o.parse::<Origin>())
            .collect::<Result<_, _>>()
            .map_err(|e| FileError::Value {
                key: "allow-origin",
                why: e.to_string(),
            })?;
    }
    // The certificate files and a self-signed one exclude each other too.
    let tls_given = given(matches, "tls_cert")
        || given(matches, "tls_key")
        || given(matches, "tls_self_signed");
    if !tls_given {
        if tls_cert.is_some() {
            args.common.tls_cert = tls_cert;
        }
        if tls_key.is_some() {
            args.common.tls_key = tls_key;
        }
        if let Some(self_signed) = tls_self_signed {
            args.common.tls_self_signed = self_signed;
        }
    }
    if let Some(format) = log_format
        && !given(matches, "log_format")
    {
        args.common.log_format =
            LogFormat::from_str(&format, true).map_err(|_| FileError::Value {
                key: "log-format",
                why: format!("{format:?}: use text or json"),
            })?;
    }
    take!(common.ws_ping = ws_ping, "ws_ping");
    if let Some(path) = base_path
        && !given(matches, "base_path")
    {
        args.common.base_path =
            server_kit::parse_base_path(&path).map_err(|why| FileError::Value {
                key: "base-path",
                why,
            })?;
    }
    take!(no_webexec = no_webexec, "no_webexec");
    take!(no_wsep = no_wsep, "no_wsep");
    take!(no_pow = no_pow, "no_pow");
    take!(no_webterm = no_webterm, "no_webterm");
    take!(shell = shell.map(Some), "shell");
    take!(
        wsep_session_timeout = wsep_session_timeout,
        "wsep_session_timeout"
    );
    take!(
        webterm_html_output = webterm_html_output,
        "webterm_html_output"
    );
    take!(rtc.udp_ports = udp_ports, "udp_ports");
    take!(rtc.ice_servers = ice_server, "ice_servers");
    take!(rtc.turn_secret = turn_secret.map(Some), "turn_secret");
    take!(rtc.turn_urls = turn_url, "turn_urls");
    take!(rtc.turn_ttl = turn_ttl, "turn_ttl");
    take!(
        webrtc_certificate = webrtc_certificate.map(Some),
        "webrtc_certificate"
    );
    take!(record = record.map(Some), "record");
    take!(record_max_bytes = record_max_bytes, "record_max_bytes");
    check(&args.common)?;
    Ok(process)
}

/// What clap checks of the command line, checked again once the file
/// added its settings.
fn check(flags: &Flags) -> Result<(), FileError> {
    let bad = |key, why: &str| {
        Err(FileError::Value {
            key,
            why: why.to_owned(),
        })
    };
    if flags.no_auth && flags.token.is_some() {
        return bad("token, no-auth", "give a token or no-auth, not both");
    }
    if flags.no_auth && flags.view_token.is_some() {
        return bad(
            "view-token, no-auth",
            "a view token needs authentication on: without it everyone may do everything",
        );
    }
    if flags.tls_cert.is_some() != flags.tls_key.is_some() {
        return bad("tls-cert, tls-key", "give both or neither");
    }
    if flags.tls_self_signed && flags.tls_cert.is_some() {
        return bad(
            "tls-self-signed, tls-cert",
            "give a certificate or tls-self-signed, not both",
        );
    }
    Ok(())
}

async fn run(mut args: Args, matches: ArgMatches) -> anyhow::Result<()> {
    // Everything that can be wrong in the settings fails before anything
    // listens.
    let processes = match args.config.clone() {
        Some(path) => {
            let file = FileConfig::read(&path)?;
            merge(&mut args, file, &matches).with_context(|| format!("{}", path.display()))?
        }
        None => None,
    };
    let registry = match processes {
        Some(processes) => processes.registry()?,
        None => pow_server::registry_from_toml(pow_server::DEFAULT_CONFIG)?,
    };
    // WebRTC binds the interface HTTP listens on (the first --listen,
    // else the default's); a wildcard listen binds every interface.
    let udp_ip = args
        .common
        .listen
        .first()
        .or(SPEC.listen.first())
        .map_or(std::net::Ipv4Addr::LOCALHOST.into(), SocketAddr::ip);
    let rtc = args.rtc.config(udp_ip)?;
    // webexec's identity, kept: made now if need be, so that a path it
    // cannot be written to is refused before anything listens.
    let certificate = match &args.webrtc_certificate {
        Some(path) if !args.no_webexec => {
            Some(webexec_server::Certificate::keep(path).context("webrtc-certificate")?)
        }
        _ => None,
    };
    let fingerprint = certificate
        .as_ref()
        .map(webexec_server::Certificate::fingerprint);
    let generated = !args.common.no_auth && args.common.token.as_deref().is_none_or(str::is_empty);
    let launched = server_kit::launch(&SPEC, &args.common, &[]).await?;
    let common = launched.common;
    let addrs = launched
        .listeners
        .iter()
        .map(tokio::net::TcpListener::local_addr)
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let shell = args.shell.clone();
    let record = args.record.clone().map(|dir| exec_core::RecordConfig {
        dir,
        max_bytes: args.record_max_bytes,
    });
    let config = Config {
        webexec: (!args.no_webexec).then(|| webexec_server::Config {
            rtc,
            authorized: Authorized {
                file: None,
                tokens: Vec::new(),
                view_tokens: Vec::new(),
                open: common.token.is_none(),
            },
            shell: shell
                .clone()
                .unwrap_or_else(|| webexec_server::Config::default().shell),
            record: record.clone(),
            certificate,
            ..webexec_server::Config::default()
        }),
        wsep: (!args.no_wsep).then(|| wsep_server::Config {
            session_timeout: Duration::from_secs(args.wsep_session_timeout),
            record,
            ..wsep_server::Config::default()
        }),
        pow: (!args.no_pow).then(|| Pow {
            config: pow_server::Config::default(),
            handler: Arc::new(registry),
        }),
        webterm: (!args.no_webterm).then(|| webterm_server::Config {
            html_output: args.webterm_html_output,
            shell: shell.unwrap_or_else(webterm_server::default_shell),
            ..webterm_server::Config::default()
        }),
        common,
    };
    for addr in &addrs {
        print!(
            "{}",
            announce(&config, *addr, generated, fingerprint.as_deref())
        );
    }
    execwire::serve(launched.listeners, config, server_kit::shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}

/// What the daemon prints for a listener on `addr`: per protocol, the URL
/// its client uses, with the token where the client takes it in the URL
/// when the token was generated (a given one the operator knows), and
/// webexec's certificate fingerprint when it is kept (`fingerprint`).
fn announce(
    config: &Config,
    addr: SocketAddr,
    generated: bool,
    fingerprint: Option<&str>,
) -> String {
    use std::fmt::Write as _;
    let common = &config.common;
    let tls = common.tls.is_some();
    let base = common.base();
    let http = |path: &str| server_kit::url(addr, tls, false, &format!("{base}{path}"));
    let ws = |path: &str| server_kit::url(addr, tls, true, &format!("{base}{path}"));
    let token = match (&common.token, generated) {
        (None, _) => None,
        (Some(token), true) => Some(token.expose().to_owned()),
        (Some(_), false) => Some("TOKEN".to_owned()),
    };
    let mut out = format!("execwire listening on {}\n", http("/"));
    if config.webexec.is_some() {
        let page = match &token {
            Some(token) => format!("{}#token={token}", http("/")),
            None => http("/"),
        };
        let _ = writeln!(out, "  webexec (open in a browser): {page}");
        if let Some(fingerprint) = fingerprint {
            let _ = writeln!(out, "    its certificate: {fingerprint}");
        }
    }
    if config.wsep.is_some() {
        let url = ws(WSEP_PATH);
        let cli = match &token {
            Some(token) => format!("wsep --token {token} {url} -- bash"),
            None => format!("wsep {url} -- bash"),
        };
        let _ = writeln!(out, "  wsep: {url}   (CLI: {cli})");
    }
    if config.pow.is_some() {
        let _ = writeln!(
            out,
            "  pow-1: {}   (REST API and docs: {})",
            ws(&format!("{POW_PATH}/")),
            http(&format!("{POW_PATH}/docs/"))
        );
    }
    if config.webterm.is_some() {
        let _ = writeln!(out, "  Web-Terminal v3: {}", ws(WEBTERM_PATH));
    }
    if config.webexec.is_some() || config.wsep.is_some() {
        // The panes wsep and webexec share, with their numbers to attach.
        let _ = writeln!(out, "  panes: {}", http("/panes"));
    }
    let _ = writeln!(out, "  metrics: {}", http("/metrics"));
    out
}
