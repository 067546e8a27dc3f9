//! `webterm-server`: serve the Web-Terminal Protocol v3.

use clap::Parser;
use server_kit::{Flags, Spec};

const SPEC: Spec = Spec {
    name: "webterm-server",
    token_env: "WEBTERM_TOKEN",
    // localhost on both families, since browsers resolve it to either (a
    // host without IPv6 keeps IPv4).
    listen: &[server_kit::loopback(6969), server_kit::loopback6(6969)],
};

/// Run shell commands for Web-Terminal v3 clients over a WebSocket.
///
/// Clients authenticate with the token in their first message: give one
/// with --token (or WEBTERM_TOKEN), or one is generated and printed.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: Flags,
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
    exec_core::raise_open_files_limit();
    let started = args.common.start(&SPEC).await?;
    let base = format!("{}/", server_kit::base_prefix(&args.common.base_path));
    for listener in &started.listeners {
        let url = server_kit::url(listener.local_addr()?, started.tls.is_some(), true, &base);
        println!("{} listening on {url}", SPEC.name);
    }
    let ws_ping = args.common.ws_ping();
    let config = webterm_server::Config {
        token: started.token,
        allowed_origins: args.common.allow_origins,
        html_output: args.html_output,
        shell: args.shell.unwrap_or_else(webterm_server::default_shell),
        tls: started.tls,
        ws_ping,
        base_path: args.common.base_path,
        ..webterm_server::Config::default()
    };
    webterm_server::serve(started.listeners, config, server_kit::shutdown_signal()).await?;
    Ok(())
}
