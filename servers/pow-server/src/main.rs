//! `pow-server`: serve pow-1 processes over WebSocket.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use server_kit::{Flags, Spec};

const SPEC: Spec = Spec {
    name: "pow-server",
    token_env: "POW_TOKEN",
    // The reference example server uses port 3000.
    listen: &[server_kit::loopback(3000)],
};

/// Run server-defined processes for pow-1 clients.
///
/// Authentication is on by default: give a token with --token (or the
/// POW_TOKEN environment variable), or one is generated and printed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Flags,
    /// TOML file of processes (default: the built-in set: echo, date, ls, wc).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(SPEC.parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: {e:#}", SPEC.name);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    server_kit::init_logging(args.common.log_format)?;
    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => pow_server::DEFAULT_CONFIG.to_owned(),
    };
    let registry = pow_server::registry_from_toml(&text)?;
    let started = args.common.start(&SPEC).await?;
    let tls = started.tls.is_some();
    let ws_ping = args.common.ws_ping();
    let config = pow_server::Config {
        token: started.token,
        allowed_origins: args.common.allow_origins,
        ws_ping,
        base_path: args.common.base_path,
        tls: started.tls,
        ..pow_server::Config::default()
    };
    let base = format!("{}/", config.base());
    for listener in &started.listeners {
        let addr = listener.local_addr()?;
        println!(
            "{} listening on {}",
            SPEC.name,
            server_kit::url(addr, tls, true, &base)
        );
        println!(
            "REST API and docs: {}",
            server_kit::url(addr, tls, false, &format!("{base}docs/"))
        );
    }
    let mut names: Vec<&str> = registry.names().collect();
    names.sort_unstable();
    println!("processes: {}", names.join(", "));
    pow_server::serve(
        started.listeners,
        config,
        Arc::new(registry),
        server_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
