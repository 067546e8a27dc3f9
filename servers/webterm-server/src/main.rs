//! `webterm-server`: serve the Web-Terminal Protocol v3.

use clap::Parser;
use server_kit::{Announce, Flags, Spec};

const SPEC: Spec = Spec {
    name: "webterm-server",
    token_env: "WEBTERM_TOKEN",
    view_token_env: "WEBTERM_VIEW_TOKEN",
    // localhost on both families, since browsers resolve it to either (a
    // host without IPv6 keeps IPv4).
    listen: &[server_kit::loopback(6969), server_kit::loopback6(6969)],
    secrets: &[],
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

fn main() -> std::process::ExitCode {
    server_kit::run_main(&SPEC, run(SPEC.parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let launched = server_kit::launch(&SPEC, &args.common, &[Announce::WEBSOCKET]).await?;
    let config = webterm_server::Config {
        common: launched.common,
        html_output: args.html_output,
        shell: args.shell.unwrap_or_else(webterm_server::default_shell),
        ..webterm_server::Config::default()
    };
    webterm_server::serve(launched.listeners, config, server_kit::shutdown_signal()).await?;
    Ok(())
}
