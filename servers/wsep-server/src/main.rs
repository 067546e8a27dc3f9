//! `wsep-server`: serve wsep on a TCP address.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use exec_core::auth::check_exposure;

/// Run commands and terminals for wsep clients over one WebSocket.
///
/// Authentication is on by default: give a token with --token (or the
/// WSEP_TOKEN environment variable), or one is generated and printed. Clients
/// send it as `Authorization: Bearer <token>` or `?token=<token>`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The token clients must present.
    #[arg(long, env = "WSEP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve without authentication (only on a loopback address unless --insecure).
    #[arg(long, conflicts_with = "token")]
    no_auth: bool,
    /// Allow --no-auth on a non-loopback address. Anyone who can reach it can run commands.
    #[arg(long)]
    insecure: bool,
    /// Let web pages of ORIGIN (scheme://host[:port]) connect; repeatable.
    /// Without auth only these may; with auth, given at all, it restricts
    /// browsers to them.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<exec_core::auth::Origin>,
    /// Seconds a named terminal session lives after its last client leaves.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    session_timeout: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wsep-server: {e:#}");
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
    let files = exec_core::raise_open_files_limit();
    tracing::debug!(files, "open-files limit");
    check_exposure(args.listen, !args.no_auth, args.insecure)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let token =
        exec_core::serve::startup_token(args.no_auth, args.token).context("generating a token")?;
    let addr = listener.local_addr()?;
    println!("wsep-server listening on ws://{addr}/");
    if token.is_none() {
        println!("authentication is off");
    }
    let config = wsep_server::Config {
        token,
        allowed_origins: args.allow_origins,
        session_timeout: Duration::from_secs(args.session_timeout),
        ..wsep_server::Config::default()
    };
    wsep_server::serve(listener, config, exec_core::serve::shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}
