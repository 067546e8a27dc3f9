//! `webterm-server`: serve the Web-Terminal Protocol v3.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use exec_core::auth::check_exposure;

/// Run shell commands for Web-Terminal v3 clients over a WebSocket.
///
/// Clients authenticate with the token in their first message: give one
/// with --token (or WEBTERM_TOKEN), or one is generated and printed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; repeatable. Default: localhost:6969 on both
    /// 127.0.0.1 and [::1], since browsers resolve localhost to either.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Vec<SocketAddr>,
    /// The token clients must authenticate with.
    #[arg(long, env = "WEBTERM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Accept any token (only on loopback addresses unless --insecure).
    #[arg(long, conflicts_with = "token")]
    no_auth: bool,
    /// Allow --no-auth on a non-loopback address.
    #[arg(long)]
    insecure: bool,
    /// Let web pages of ORIGIN (scheme://host[:port]) connect; repeatable.
    /// Without auth only these may; with auth, given at all, it restricts
    /// browsers to them.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<exec_core::auth::Origin>,
    /// Send output HTML-escaped with <br> for newlines (for clients that
    /// render output as HTML, like the original web-terminal client); a
    /// connection can still ask for `?output=text`.
    #[arg(long)]
    html_output: bool,
    /// Shell that runs command lines (default: $SHELL, else /bin/sh).
    #[arg(long)]
    shell: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webterm-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    exec_core::raise_open_files_limit();
    let defaults = args.listen.is_empty();
    let addrs = if defaults {
        vec![
            SocketAddr::from(([127, 0, 0, 1], 6969)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 6969)),
        ]
    } else {
        args.listen.clone()
    };
    for addr in &addrs {
        check_exposure(*addr, !args.no_auth, args.insecure)?;
    }
    let mut listeners = Vec::new();
    for addr in &addrs {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => listeners.push(l),
            // A host without IPv6 still serves localhost on IPv4.
            Err(e) if defaults && addr.is_ipv6() => {
                tracing::warn!(%addr, error = %e, "not listening on IPv6 loopback");
            }
            Err(e) => return Err(e).with_context(|| format!("listening on {addr}")),
        }
    }
    let token =
        exec_core::serve::startup_token(args.no_auth, args.token).context("generating a token")?;
    for listener in &listeners {
        println!(
            "webterm-server listening on ws://{}/",
            listener.local_addr()?
        );
    }
    let config = webterm_server::Config {
        token,
        allowed_origins: args.allow_origins,
        html_output: args.html_output,
        shell: args.shell.unwrap_or_else(webterm_server::default_shell),
        ..webterm_server::Config::default()
    };
    webterm_server::serve(listeners, config, exec_core::serve::shutdown_signal()).await?;
    Ok(())
}
