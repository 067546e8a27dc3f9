//! `wsep-server`: serve wsep on a TCP address.

use std::time::Duration;

use clap::Parser;
use server_kit::{Announce, Flags, Spec};

const SPEC: Spec = Spec {
    name: "wsep-server",
    token_env: "WSEP_TOKEN",
    view_token_env: "WSEP_VIEW_TOKEN",
    listen: &[server_kit::loopback(8080)],
    secrets: &[],
};

/// Run commands and terminals for wsep clients over one WebSocket.
///
/// Authentication is on by default: give a token with --token (or the
/// WSEP_TOKEN environment variable), or one is generated and printed. Clients
/// send it as `Authorization: Bearer <token>` or `?token=<token>`.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Flags,
    /// Seconds a named terminal session lives after its last client leaves.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    session_timeout: u64,
}

fn main() -> std::process::ExitCode {
    server_kit::run_main(&SPEC, run(SPEC.parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let launched = server_kit::launch(&SPEC, &args.common, &[Announce::WEBSOCKET]).await?;
    let config = wsep_server::Config {
        common: launched.common,
        session_timeout: Duration::from_secs(args.session_timeout),
        ..wsep_server::Config::default()
    };
    wsep_server::serve(launched.listeners, config, server_kit::shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}
