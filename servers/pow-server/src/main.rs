//! `pow-server`: serve pow-1 processes over WebSocket.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use exec_core::auth::check_exposure;

/// Run server-defined processes for pow-1 clients.
///
/// Authentication is on by default: give a token with --token (or the
/// POW_TOKEN environment variable), or one is generated and printed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on (the reference example server uses port 3000).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// The token clients must present.
    #[arg(long, env = "POW_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Serve without authentication (only on a loopback address unless --insecure).
    #[arg(long, conflicts_with = "token")]
    no_auth: bool,
    /// Allow --no-auth on a non-loopback address.
    #[arg(long)]
    insecure: bool,
    /// Let web pages of ORIGIN (scheme://host[:port]) call; repeatable.
    /// Without auth only the server's own pages (/docs/) and these may;
    /// with auth, given at all, it restricts browsers to them.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<exec_core::auth::Origin>,
    /// TOML file of processes (default: the built-in set: echo, date, ls, wc).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// Path prefix of the API, e.g. /api/v1/pow/.
    #[arg(long, default_value = "/")]
    base_path: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pow-server: {e:#}");
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
    check_exposure(args.listen, !args.no_auth, args.insecure)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let token =
        exec_core::serve::startup_token(args.no_auth, args.token).context("generating a token")?;
    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => pow_server::DEFAULT_CONFIG.to_owned(),
    };
    let registry = pow_server::registry_from_toml(&text)?;
    let config = pow_server::Config {
        token,
        allowed_origins: args.allow_origins,
        base_path: args.base_path,
        ..pow_server::Config::default()
    };
    let (addr, base) = (listener.local_addr()?, config.base());
    println!("pow-server listening on ws://{addr}{base}/");
    println!("REST API and docs: http://{addr}{base}/docs/");
    let mut names: Vec<&str> = registry.names().collect();
    names.sort_unstable();
    println!("processes: {}", names.join(", "));
    pow_server::serve(
        listener,
        config,
        Arc::new(registry),
        exec_core::serve::shutdown_signal(),
    )
    .await?;
    Ok(())
}
