//! What the Web-Terminal v3 figures share (webterm-bench, execwire-bench):
//! the protocol's JSON messages over a WebSocket, command output timed and
//! checked, line echoes.

// Indexing a `serde_json::Value` yields `Null` for what is missing; it never panics.
#![allow(clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::{Run, Server, cpu_seconds};

/// A Web-Terminal WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects to `url` and authenticates with `token` (the first message).
pub async fn connect(url: &str, token: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::text(
        json!({"type":"authentication","payload":{"token":token}}).to_string(),
    ))
    .await?;
    let reply = next(&mut ws).await?;
    if reply["payload"]["result"] != "ok" {
        bail!("authentication failed: {reply}");
    }
    Ok(ws)
}

/// The next JSON message.
pub async fn next(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection closed")?? {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(_) => bail!("connection closed"),
            _ => {}
        }
    }
}

/// Starts command line `line` as client 1, breakpoints on `breakpoints`.
pub async fn start(ws: &mut Ws, line: &str, breakpoints: &[u64]) -> anyhow::Result<()> {
    ws.send(Message::text(
        json!({"type":"command","payload":{"command":line,"clientId":1,"breakpoints":breakpoints}})
            .to_string(),
    ))
    .await?;
    let ack = next(ws).await?;
    if ack["payload"]["result"] != "ok" {
        bail!("command refused: {ack}");
    }
    Ok(())
}

/// Runs `line` to completion; wall and CPU time (this process and the
/// server with its children) and the number of updates. Its output must
/// be `expected` exactly, and with breakpoints as much again must come
/// through them.
pub async fn time_command(
    server: &Server,
    url: &str,
    token: &str,
    line: &str,
    breakpoints: &[u64],
    expected: &[u8],
) -> anyhow::Result<(Run, usize)> {
    let mut ws = connect(url, token).await?;
    let cpu = cpu_seconds("self")? + server.cpu()?;
    let started = Instant::now();
    start(&mut ws, line, breakpoints).await?;
    let (mut stdout, mut tapped, mut updates) = (0, 0, 0);
    let mut intact = true;
    loop {
        let msg = next(&mut ws).await?;
        let p = &msg["payload"];
        updates += 1;
        let out = p["output"]["stdout"].as_str().unwrap_or_default();
        intact &= expected.get(stdout..stdout + out.len()) == Some(out.as_bytes());
        stdout += out.len();
        if let Some(bps) = p["output"]["breakpoints"].as_array() {
            tapped += bps
                .iter()
                .map(|b| b["stdout"].as_str().map_or(0, str::len))
                .sum::<usize>();
        }
        if p["status"] == "completed" {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self")? + server.cpu()? - cpu;
    let expected = expected.len();
    if !intact || stdout != expected || (!breakpoints.is_empty() && tapped != expected) {
        bail!(
            "{line}: {stdout} bytes out (intact: {intact}), {tapped} through the breakpoint, {expected} expected"
        );
    }
    Ok((Run { wall, cpu }, updates))
}

/// Round trips in ms, sorted, from a stdin update to the update with the
/// echoed line through `cat`, `samples` lines 10 ms apart.
pub async fn echoes(url: &str, token: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut ws = connect(url, token).await?;
    start(&mut ws, "cat", &[]).await?;
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        // Keystroke pace: 10 ms apart is faster than any typist.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let line = format!("line {i}\n");
        let t = Instant::now();
        ws.send(Message::text(
            json!({"type":"update","payload":{"type":"stdin","serverId":1,"input":line}})
                .to_string(),
        ))
        .await?;
        let mut seen = String::new();
        while !seen.contains(&line) {
            let msg = next(&mut ws).await?;
            seen += msg["payload"]["output"]["stdout"]
                .as_str()
                .unwrap_or_default();
        }
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = ws.close(None).await;
    rtts.sort_by(f64::total_cmp);
    Ok(rtts)
}
