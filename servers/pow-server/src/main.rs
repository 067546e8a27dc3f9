//! `pow-server`: serve pow-1 processes over WebSocket.

use std::sync::Arc;

use anyhow::Context as _;
use clap::Parser;
use server_kit::{Announce, Flags, Spec};

const SPEC: Spec = Spec {
    name: "pow-server",
    token_env: "POW_TOKEN",
    view_token_env: "POW_VIEW_TOKEN",
    // The reference example server uses port 3000.
    listen: &[server_kit::loopback(3000)],
    secrets: &[],
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

fn main() -> std::process::ExitCode {
    server_kit::run_main(&SPEC, run(SPEC.parse()))
}

/// What pow-server prints per listener: its WebSocket, and its REST API
/// with the page that documents it.
const ANNOUNCE: &[Announce] = &[
    Announce::WEBSOCKET,
    Announce {
        label: Some("REST API and docs:"),
        websocket: false,
        path: "docs/",
    },
];

async fn run(args: Args) -> anyhow::Result<()> {
    // A bad process file fails before anything listens.
    let text = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => pow_server::DEFAULT_CONFIG.to_owned(),
    };
    let registry = pow_server::registry_from_toml(&text)?;
    let launched = server_kit::launch(&SPEC, &args.common, ANNOUNCE).await?;
    let mut names: Vec<&str> = registry.names().collect();
    names.sort_unstable();
    println!("processes: {}", names.join(", "));
    let config = pow_server::Config {
        common: launched.common,
        ..pow_server::Config::default()
    };
    pow_server::serve(
        launched.listeners,
        config,
        Arc::new(registry),
        server_kit::shutdown_signal(),
    )
    .await?;
    Ok(())
}
