//! webexec benchmark: data-channel throughput of PTY-less output (`cat
//! FILE`) and input (`head -c N > /dev/null`), keystroke echo latency over
//! a PTY (idle, and while another pane of the same peer streams bulk
//! output), and the time from offer to first output. The server is the
//! real binary, as operators run it; the client is the `webrtc` crate over
//! loopback UDP, then headless Chromium with its own WebRTC
//! (`tests/browser/bench.mjs` and `webexec.mjs --time`), when `node`,
//! `chromium` and `tests/browser/node_modules` are there. Prints figures;
//! asserts nothing but that every byte arrived.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/webexec-bench`
//! (`--mib N`, `--runs N`, `--echoes N`, `--connects N`, `--no-chromium`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use execwire_bench::webexec::{echoes, node, open_pane, settle, start_server};
use execwire_bench::{cores, cpu_seconds, quantile, tempdir, write_random};
use execwire_tests::webexec::{Client, Msg, Signaling};

#[derive(Debug, Parser)]
struct Args {
    /// Size of each throughput run, in MiB.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keystrokes to time, idle and under load each.
    #[arg(long, default_value_t = 300)]
    echoes: usize,
    /// Connections to time from offer to first output.
    #[arg(long, default_value_t = 10)]
    connects: usize,
    /// Skip the figures from headless Chromium.
    #[arg(long)]
    no_chromium: bool,
}

const TOKEN: &str = "bench-token";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempdir("webexec-bench")?;
    let file = dir.join("data.bin");
    let bytes = args.mib << 20;
    write_random(&file, bytes)?;
    let bytes = std::fs::metadata(&file)?.len();
    let state = dir.join("state");
    let (server, addr) = start_server(TOKEN, &state)?;
    println!(
        "webexec-bench: {} cores, {} MiB per run, median of {}",
        cores(),
        args.mib,
        args.runs
    );

    let mut client = Client::connect(addr, Some(TOKEN), &Signaling::Offer)
        .await
        .map_err(|e| anyhow::anyhow!("connect: {e:?}"))?;
    let file_str = file.to_str().context("temp path")?;

    // Output: `cat FILE` on a pane without a terminal.
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let cpu = cpu_seconds("self")? + server.cpu()?;
        let start = Instant::now();
        let ch = open_pane(&mut client, &format!("cat,{file_str}")).await?;
        let mut got = 0u64;
        while let Some(msg) = ch.recv_forever().await {
            got += msg.bytes().len() as u64;
        }
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds("self")? + server.cpu()? - cpu;
        if got != bytes {
            bail!("output: got {got} bytes of {bytes}");
        }
        runs.push((wall, cpu));
    }
    report("output  (server -> client, cat FILE)", bytes, &mut runs);

    // Input: the client sends the file; the process reads exactly that much.
    let data = std::fs::read(&file)?;
    let mut runs = Vec::new();
    for _ in 0..args.runs {
        let cpu = cpu_seconds("self")? + server.cpu()?;
        let start = Instant::now();
        let ch = open_pane(
            &mut client,
            &format!("sh,-c,head -c {bytes} > /dev/null; echo done"),
        )
        .await?;
        for piece in data.chunks(64 * 1024) {
            ch.send(piece).await;
        }
        let out = ch.read_to_close().await;
        let wall = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds("self")? + server.cpu()? - cpu;
        if out != b"done\n" {
            bail!(
                "input: unexpected output {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        runs.push((wall, cpu));
    }
    report("input   (client -> server, head -c N)", bytes, &mut runs);

    // Keystroke echo over a PTY, idle and under load.
    let echo = open_pane(
        &mut client,
        "24x80,sh,-c,stty raw -echo; echo ready; exec cat",
    )
    .await?;
    settle(&echo).await?;
    let idle = echoes(&echo, args.echoes).await?;
    print_latency("echo over a PTY, idle", &idle);
    // The load ends itself (its whole process group) on a byte of input:
    // a pane outlives its client, and a loop left running would load the
    // machine through every later figure.
    let bulk = open_pane(
        &mut client,
        &format!("sh,-c,while :; do cat {file_str}; done & head -c 1 >/dev/null; kill 0"),
    )
    .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn(async move {
        let mut got = 0u64;
        let mut streaming = None;
        let mut stopped = std::pin::pin!(stopped);
        loop {
            tokio::select! {
                msg = bulk.recv_forever() => match msg {
                    Some(m) => got += m.bytes().len() as u64,
                    None => break,
                },
                _ = &mut stopped, if streaming.is_none() => {
                    streaming = Some(got);
                    bulk.send(b"q").await;
                }
            }
        }
        streaming.unwrap_or(got)
    });
    // Let the bulk stream reach full speed first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    let loaded = echoes(&echo, args.echoes).await?;
    let elapsed = start.elapsed().as_secs_f64();
    print_latency("echo over a PTY, another pane streaming", &loaded);
    let _ = stop.send(());
    let streamed = drain.await?;
    client.close().await;
    println!(
        "  (the other pane streamed {:.0} MiB/s meanwhile)",
        streamed as f64 / (1 << 20) as f64 / elapsed.max(1e-9)
    );

    // Offer to first output: a fresh connection each time.
    let mut times = Vec::new();
    for _ in 0..args.connects {
        let start = Instant::now();
        let mut client = Client::connect(addr, Some(TOKEN), &Signaling::Offer)
            .await
            .map_err(|e| anyhow::anyhow!("connect: {e:?}"))?;
        let ch = open_pane(&mut client, "echo,hi").await?;
        let first = ch.recv().await;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        if first.as_ref().map(Msg::bytes) != Some(b"hi\n".as_slice()) {
            bail!("first output: {first:?}");
        }
        client.close().await;
    }
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        println!(
            "  offer to first output (client gathers, POST /offer, DTLS, SCTP, channel, echo): p50 {:.1} ms, p99 {:.1} ms, n={}",
            quantile(&times, 0.5),
            quantile(&times, 0.99),
            times.len()
        );
    }
    println!(
        "  server RSS at the end: {:.1} MiB",
        server.rss()? as f64 / (1 << 20) as f64
    );

    if args.no_chromium {
        println!("chromium: skipped (--no-chromium)");
    } else {
        chromium(addr, &file, &args).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The same figures from headless Chromium, its own WebRTC stack as the
/// client: `tests/browser/bench.mjs` (output of the same `cat`, every
/// byte checked by SHA-256; echo idle and under load) and
/// `tests/browser/webexec.mjs --time` (the demo page, offer to first
/// output). Skipped, saying why, without node, chromium or
/// `tests/browser/node_modules`.
async fn chromium(addr: SocketAddr, file: &Path, args: &Args) -> anyhow::Result<()> {
    let (chromium, dir) = match execwire_tests::browser_tools() {
        Ok(found) => found,
        Err(missing) => {
            println!("chromium: skipped ({missing})");
            return Ok(());
        }
    };
    let node_runs = tokio::process::Command::new("node")
        .arg("--version")
        .output()
        .await
        .is_ok_and(|out| out.status.success());
    if !node_runs {
        println!("chromium: skipped (no node)");
        return Ok(());
    }
    println!(
        "headless {}, its own WebRTC as the client:",
        version(&chromium).await
    );
    let url = format!("http://{addr}/#token={TOKEN}");
    let file = file.to_str().context("temp path")?;
    let runs = args.runs.to_string();
    let echoes = args.echoes.to_string();
    node(
        &chromium,
        &dir,
        &[
            "bench.mjs",
            &url,
            "--file",
            file,
            "--runs",
            &runs,
            "--echoes",
            &echoes,
        ],
    )
    .await?;
    if args.connects > 0 {
        let connects = args.connects.to_string();
        node(&chromium, &dir, &["webexec.mjs", &url, "--time", &connects]).await?;
    }
    Ok(())
}

/// `chromium --version`, for the record.
async fn version(chromium: &str) -> String {
    tokio::process::Command::new(chromium)
        .arg("--version")
        .output()
        .await
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn print_latency(label: &str, sorted: &[f64]) {
    println!(
        "  {label:<44} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        quantile(sorted, 0.5),
        quantile(sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0),
        sorted.len()
    );
}

fn report(label: &str, bytes: u64, runs: &mut [(f64, f64)]) {
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (wall, cpu) = runs
        .get(runs.len() / 2)
        .copied()
        .unwrap_or((f64::NAN, f64::NAN));
    let mib = bytes as f64 / (1 << 20) as f64;
    println!(
        "  {label:<44} {:>7.1} MiB/s = {:>6.0} Mbit/s   (CPU {cpu:.2} s, server + client)",
        mib / wall,
        mib * 8.388_608 / wall
    );
}
