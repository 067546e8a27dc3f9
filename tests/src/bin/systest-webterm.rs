//! `systest-webterm URL LINE`: runs LINE on the Web-Terminal v3 server at
//! URL with the token in `WEBTERM_TOKEN`, prints its stdout and stderr,
//! and exits with its exit code. The systemd check (`tests/systemd`) runs
//! it inside its namespaces against `execwire@webterm`, as `wsep` is run
//! against wsep-server: the scenarios' own client ([`Client`]), so the
//! check needs no WebSocket tool from outside the workspace.
//!
//! Exit codes of its own: 125 when the server cannot be reached or
//! refuses the token (the message on stderr), 124 when the whole exchange
//! takes more than 10 s.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use execwire_tests::webterm::Client;
use serde_json::json;

/// A server that stops answering fails the check instead of hanging it.
const LIMIT: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, line] = args.as_slice() else {
        eprintln!("usage: systest-webterm URL LINE (token in WEBTERM_TOKEN)");
        return ExitCode::from(2);
    };
    let token = std::env::var("WEBTERM_TOKEN").unwrap_or_default();
    match tokio::time::timeout(LIMIT, run(url, line, token)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            eprintln!("systest-webterm: {e}");
            ExitCode::from(125)
        }
        Err(_) => {
            eprintln!("systest-webterm: no result within {LIMIT:?}");
            ExitCode::from(124)
        }
    }
}

/// Connects, authenticates, runs `line` to its end.
async fn run(url: &str, line: &str, token: String) -> Result<ExitCode, String> {
    let mut client = Client::connect_url(url, token.clone(), None)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let reply = client
        .request(json!({"type":"authentication","payload":{"token":token}}))
        .await;
    if reply.pointer("/payload/result").and_then(|r| r.as_str()) != Some("ok") {
        return Err(format!("authentication refused: {reply}"));
    }
    let id = client.run(line, json!("systest"), &[]).await;
    let run = client.finish(id).await;
    let mut out = std::io::stdout();
    let _ = out.write_all(run.stdout.as_bytes());
    let _ = out.flush();
    eprint!("{}", run.stderr);
    let code = run
        .exit_code
        .and_then(|c| u8::try_from(c).ok())
        .ok_or_else(|| format!("no exit code in its last update: {:?}", run.updates.last()))?;
    Ok(ExitCode::from(code))
}
