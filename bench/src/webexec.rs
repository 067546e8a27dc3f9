//! What the webexec figures share (webexec-bench, execwire-bench,
//! deploy-bench): the server binary started, panes opened through the
//! `webrtc` crate's client, and keystroke round trips.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use execwire_tests::webexec::{Client, ClientChannel, Msg};
use serde_json::json;

use crate::{Server, sibling};

/// webexec-server (beside this binary) on 127.0.0.1 with `token`, its
/// state (certificate, authorized file) in `state`, WebRTC on any free UDP
/// port; with its HTTP address.
pub fn start_server(token: &str, state: &Path) -> anyhow::Result<(Server, SocketAddr)> {
    let state = state.to_str().context("temp path")?;
    let (server, rest) = Server::start(
        &sibling("webexec-server")?,
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            token,
            "--udp-ports",
            "0-0",
            "--dir",
            state,
        ],
        "webexec-server listening on http://",
    )?;
    let addr = rest
        .split('/')
        .next()
        .context("no address")?
        .parse()
        .context("webexec-server's address")?;
    Ok((server, addr))
}

/// Opens a pane channel and reads its id. The `webrtc` crate reuses a
/// stream id as soon as the server's close of the previous channel on it
/// arrives, and its reset of that old stream, still queued, then closes the
/// new channel: after such a close, let a control round trip carry the
/// queued reset out and open again (up to three times).
pub async fn open_pane(client: &mut Client, label: &str) -> anyhow::Result<ClientChannel> {
    Ok(open_pane_id(client, label).await?.0)
}

/// [`open_pane`], with the pane's id (for `reconnect_pane`).
pub async fn open_pane_id(
    client: &mut Client,
    label: &str,
) -> anyhow::Result<(ClientChannel, u64)> {
    for attempt in 0..3 {
        if attempt > 0 {
            client.control.request("get_payload", json!({})).await;
        }
        let Some(ch) = client.try_open(label).await else {
            continue;
        };
        match ch.recv().await {
            // `"<id>"`, or `"<id>,<rows>x<cols>"` for a terminal.
            Some(Msg::Binary(first)) => {
                let first = String::from_utf8_lossy(&first);
                let id = first.split(',').next().unwrap_or_default();
                let id = id.parse().with_context(|| format!("pane id {first:?}"))?;
                return Ok((ch, id));
            }
            Some(other) => bail!("expected the pane id, got {other:?}"),
            None => continue,
        }
    }
    bail!("{label}: closed before its pane id three times")
}

/// Waits until the terminal is raw and without echo (the shell says so).
pub async fn settle(ch: &ClientChannel) -> anyhow::Result<()> {
    let seen = ch.read_until("ready").await;
    if !seen.ends_with("ready\r\n") && !seen.ends_with("ready\n") {
        // Anything after the marker would be counted as an echo.
        let _ = ch.read_until("\n").await;
    }
    Ok(())
}

/// Round trips of one byte through `cat` on a raw terminal, in ms, sorted.
pub async fn echoes(ch: &ClientChannel, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let byte = [b'a' + (i % 26) as u8];
        let start = Instant::now();
        ch.send(&byte).await;
        let mut got = Vec::new();
        while got.is_empty() {
            match ch.recv().await {
                Some(m) => got.extend_from_slice(m.bytes()),
                None => bail!("echo pane closed"),
            }
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        if got != byte {
            bail!("echo: sent {byte:?}, got {got:?}");
        }
        // Keystrokes, not a flood: a person types at most ~20 a second;
        // 5 ms apart keeps the run short.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}

/// Runs a script of `tests/browser` and prints its figures (the lines that
/// start with `chromium`), indented as the others.
pub async fn node(chromium: &str, dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = tokio::process::Command::new("node")
        .current_dir(dir)
        .args(args)
        .env("CHROMIUM", chromium)
        .kill_on_drop(true)
        .output()
        .await
        .context("running node")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        if let Some(figure) = line.strip_prefix("chromium") {
            println!("  chromium{figure}");
        }
    }
    if !out.status.success() {
        bail!(
            "node {} failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
