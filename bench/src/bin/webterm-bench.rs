//! Web-Terminal v3 benchmark: output throughput of a pipeline with and
//! without a breakpoint on its pipe (so the cost of a breakpoint is known),
//! against a plain local pipe, and the round trip of interactive input
//! (which batching must not delay). Prints figures; asserts nothing.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/webterm-bench`
//! (`--mib N`, `--runs N`, `--echoes N`).

// Indexing a `serde_json::Value` yields `Null` for what is missing; it never panics.
#![allow(clippy::indexing_slicing)]

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use clap::Parser;
use execwire_bench::{
    Run, Runs, Server, cores, cpu_seconds, quantile, row, sibling, tempdir, write_text,
};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the output of each throughput run, in MiB.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Input round trips to time.
    #[arg(long, default_value_t = 500)]
    echoes: usize,
}

const TOKEN: &str = "bench-token";

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server_bin = sibling("webterm-server")?;
    let work = tempdir("webterm-bench")?;
    let text = work.join("text.txt");
    write_text(&text, args.mib << 20)?;
    let (server, url) = Server::start(
        &server_bin,
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--shell",
            "/bin/sh",
        ],
        "webterm-server listening on ",
    )?;
    println!(
        "webterm benchmark: {} MiB per run, median of {} runs, {} cores",
        args.mib,
        args.runs,
        cores()
    );
    println!();
    let runtime = tokio::runtime::Runtime::new()?;
    let line = format!("cat {} | cat", text.display());
    let bytes = args.mib << 20;
    let (mut pipe, mut plain, mut tapped) = (Runs::default(), Runs::default(), Runs::default());
    let (mut plain_updates, mut tapped_updates) = (0, 0);
    for _ in 0..args.runs.max(1) {
        let script = format!("cat {} | cat > /dev/null", text.display());
        pipe.push(server.time(Command::new("sh").args(["-c", &script]))?);
        let (run, updates) = runtime.block_on(time_command(&server, &url, &line, &[], bytes))?;
        plain.push(run);
        plain_updates = updates;
        let (run, updates) = runtime.block_on(time_command(&server, &url, &line, &[0], bytes))?;
        tapped.push(run);
        tapped_updates = updates;
    }
    println!(
        "output of `cat FILE | cat` ({} MiB of text lines)",
        args.mib
    );
    let mib = args.mib as f64;
    let pipe = pipe.median()?;
    row("plain pipe: cat FILE | cat > /dev/null", mib, pipe, None);
    let plain = plain.median()?;
    row(
        &format!("webterm, no breakpoint ({plain_updates} updates)"),
        mib,
        plain,
        Some(pipe),
    );
    row(
        &format!("webterm, breakpoint on pipe 0 ({tapped_updates} updates)"),
        mib,
        tapped.median()?,
        Some(pipe),
    );
    println!(
        "  (with a breakpoint the client receives every byte twice: the pipe's and the output)"
    );
    println!();
    let (p50, p99) = runtime.block_on(echo(&url, args.echoes))?;
    println!(
        "interactive input, 10 ms apart: stdin update -> output update through `cat` ({} samples): p50 {p50:.3} ms, p99 {p99:.3} ms",
        args.echoes
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

async fn connect(url: &str) -> anyhow::Result<Ws> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::text(
        json!({"type":"authentication","payload":{"token":TOKEN}}).to_string(),
    ))
    .await?;
    let reply = next(&mut ws).await?;
    if reply["payload"]["result"] != "ok" {
        bail!("authentication failed: {reply}");
    }
    Ok(ws)
}

async fn next(ws: &mut Ws) -> anyhow::Result<Value> {
    loop {
        match ws.next().await.context("connection closed")?? {
            Message::Text(t) => return Ok(serde_json::from_str(&t)?),
            Message::Close(_) => bail!("connection closed"),
            _ => {}
        }
    }
}

async fn start(ws: &mut Ws, line: &str, breakpoints: &[u64]) -> anyhow::Result<()> {
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
/// server with its children) and the number of updates.
async fn time_command(
    server: &Server,
    url: &str,
    line: &str,
    breakpoints: &[u64],
    expected: usize,
) -> anyhow::Result<(Run, usize)> {
    let mut ws = connect(url).await?;
    let cpu = cpu_seconds("self")? + server.cpu()?;
    let started = Instant::now();
    start(&mut ws, line, breakpoints).await?;
    let (mut stdout, mut tapped, mut updates) = (0, 0, 0);
    loop {
        let msg = next(&mut ws).await?;
        let p = &msg["payload"];
        updates += 1;
        stdout += p["output"]["stdout"].as_str().map_or(0, str::len);
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
    if stdout != expected || (!breakpoints.is_empty() && tapped != expected) {
        bail!("{line}: {stdout} bytes out, {tapped} through the breakpoint, {expected} expected");
    }
    Ok((Run { wall, cpu }, updates))
}

/// p50 and p99 in milliseconds from a stdin update to the update with the
/// echoed line.
async fn echo(url: &str, samples: usize) -> anyhow::Result<(f64, f64)> {
    let mut ws = connect(url).await?;
    start(&mut ws, "cat", &[]).await?;
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        // Keystroke pace: 10 ms apart is faster than any typist.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
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
    rtts.sort_by(f64::total_cmp);
    Ok((quantile(&rtts, 0.5), quantile(&rtts, 0.99)))
}
