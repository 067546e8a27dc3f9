//! `wsep-server`: serve wsep on a TCP address.

use std::time::Duration;

use clap::Parser;
use server_kit::{Flags, Spec};

const SPEC: Spec = Spec {
    name: "wsep-server",
    token_env: "WSEP_TOKEN",
    listen: &[server_kit::loopback(8080)],
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
    let files = exec_core::raise_open_files_limit();
    tracing::debug!(files, "open-files limit");
    let started = args.common.start(&SPEC).await?;
    let base = format!("{}/", server_kit::base_prefix(&args.common.base_path));
    for listener in &started.listeners {
        let url = server_kit::url(listener.local_addr()?, started.tls.is_some(), true, &base);
        println!("{} listening on {url}", SPEC.name);
    }
    if started.token.is_none() {
        println!("authentication is off");
    }
    let ws_ping = args.common.ws_ping();
    let config = wsep_server::Config {
        token: started.token,
        allowed_origins: args.common.allow_origins,
        session_timeout: Duration::from_secs(args.session_timeout),
        tls: started.tls,
        ws_ping,
        base_path: args.common.base_path,
        ..wsep_server::Config::default()
    };
    wsep_server::serve(started.listeners, config, server_kit::shutdown_signal()).await?;
    tracing::info!("shut down");
    Ok(())
}
