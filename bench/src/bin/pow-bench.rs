//! pow-1 benchmark: WebSocket output throughput against a plain pipe, REST
//! `/new` + `/status` round trips per second on a short process, and the
//! server's memory with many idle WebSocket sessions. Prints figures;
//! asserts nothing.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/pow-bench`
//! (`--mib N`, `--sessions N`, `--rest-seconds N`, `--only PART`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use execwire_bench::pow::{call, connect};
use execwire_bench::{Runs, Server, cores, quantile, row, sibling, tempdir, write_text};
use futures_util::{SinkExt as _, StreamExt as _};
use pow_proto::{Outcome, ResultState, Status};
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the output streamed in each throughput run, in MiB.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// How long to drive the REST API, in seconds.
    #[arg(long, default_value_t = 5)]
    rest_seconds: u64,
    /// Concurrent REST clients.
    #[arg(long, default_value_t = 8)]
    rest_clients: usize,
    /// Idle WebSocket sessions to open for the memory figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Run only this part.
    #[arg(long, value_enum)]
    only: Option<Section>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// WebSocket output throughput against a plain pipe.
    Throughput,
    /// REST `/new` + `/status` round trips.
    Rest,
    /// Server memory with idle WebSocket sessions.
    Sessions,
}

impl Args {
    fn wants(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

const TOKEN: &str = "bench-token";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    exec_core::raise_open_files_limit();
    let server_bin = sibling("pow-server")?;
    let work = tempdir("pow-bench")?;
    let bytes = args.mib << 20;
    let text = work.join("text.txt");
    let mut data = Vec::new();
    if args.wants(Section::Throughput) {
        write_text(&text, bytes)?;
        data = std::fs::read(&text)?;
    }
    let config = work.join("processes.toml");
    std::fs::write(&config, processes(&text))?;
    let config = config.to_str().context("temp path is not UTF-8")?;
    let start = || -> anyhow::Result<(Server, String)> {
        let (server, url) = Server::start(
            &server_bin,
            &[
                "--listen",
                "127.0.0.1:0",
                "--token",
                TOKEN,
                "--config",
                config,
            ],
            "pow-server listening on ws://",
        )?;
        Ok((server, url.trim_end_matches('/').to_owned()))
    };
    let (server, addr) = start()?;
    println!(
        "pow benchmark: {} MiB per throughput run, median of {} runs, {} cores",
        args.mib,
        args.runs,
        cores()
    );
    println!();

    let runtime = tokio::runtime::Runtime::new()?;
    if args.wants(Section::Throughput) {
        // Rounds interleave the baseline with the runs it is compared to, so
        // that drift in the machine's speed affects both alike.
        let (mut pipe, mut ws) = (Runs::default(), Runs::default());
        for _ in 0..args.runs.max(1) {
            let script = format!("cat {} | cat > /dev/null", text.display());
            pipe.push(server.time(Command::new("sh").args(["-c", &script]))?);
            let url = format!("ws://{addr}/");
            ws.push(runtime.block_on(execwire_bench::pow::time_output(
                &server, &url, TOKEN, "cat", &data,
            ))?);
        }
        println!(
            "WebSocket output ({} MiB of text lines as text frames)",
            args.mib
        );
        let pipe = pipe.median()?;
        let mib = args.mib as f64;
        row("plain pipe: cat FILE | cat > /dev/null", mib, pipe, None);
        row(
            "pow-1 WebSocket: call \"cat\" (cat FILE)",
            mib,
            ws.median()?,
            Some(pipe),
        );
        println!();
    }

    runtime.block_on(async {
        if args.wants(Section::Rest) {
            rest(&server, &addr, args.rest_clients, args.rest_seconds).await?;
            println!();
        }
        if args.wants(Section::Sessions) {
            for (name, what) in [("echo", "built-in echo"), ("idle", "command `cat`")] {
                // A fresh server each, so one kind does not reuse the
                // memory the other freed.
                let (server, addr) = start()?;
                let (base, held, errors) = idle_sessions(&server, &addr, name, args.sessions).await?;
                let per = held.saturating_sub(base) as f64 / args.sessions as f64;
                println!(
                    "{} idle WebSocket sessions ({what}): server RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per session, {errors} errors",
                    args.sessions,
                    base as f64 / 1048576.0,
                    held as f64 / 1048576.0,
                    per / 1024.0,
                );
            }
        }
        anyhow::Ok(())
    })?;
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The processes the benchmark calls.
fn processes(text: &Path) -> String {
    format!(
        r#"
[process.echo]
builtin = "echo"

[process.cat]
argv = ["cat", {file}]

[process.date]
argv = ["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]
result = "last-line"

[process.idle]
argv = ["cat"]
"#,
        file = toml_string(&text.display().to_string())
    )
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `clients` loops of `POST /new {"call":"date"}` then `GET /status/{id}`
/// until the result is in, for `seconds`.
async fn rest(server: &Server, addr: &str, clients: usize, seconds: u64) -> anyhow::Result<()> {
    execwire_tests::tls::install_provider();
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let cpu = server.cpu()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let http = http.clone();
        let base = format!("http://{addr}");
        tasks.push(tokio::spawn(async move {
            let mut cycles = Vec::new();
            let mut requests = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let id: String = serde_json::from_str(
                    &http
                        .post(format!("{base}/new"))
                        .bearer_auth(TOKEN)
                        .body(r#"{"call":"date"}"#)
                        .send()
                        .await?
                        .error_for_status()?
                        .text()
                        .await?,
                )?;
                requests += 1;
                loop {
                    let status: Status = serde_json::from_str(
                        &http
                            .get(format!("{base}/status/{id}"))
                            .bearer_auth(TOKEN)
                            .send()
                            .await?
                            .error_for_status()?
                            .text()
                            .await?,
                    )?;
                    requests += 1;
                    match status.result {
                        ResultState::Pending(_) => continue,
                        ResultState::Done(Outcome::Fulfilled { .. }) => break,
                        other => bail!("date failed: {other:?}"),
                    }
                }
                cycles.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            anyhow::Ok((cycles, requests))
        }));
    }
    let mut cycles = Vec::new();
    let mut requests = 0;
    for task in tasks {
        let (c, r) = task.await??;
        cycles.extend(c);
        requests += r;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu()? - cpu;
    cycles.sort_by(f64::total_cmp);
    println!(
        "REST: {clients} clients, POST /new {{\"call\":\"date\"}} then GET /status/{{id}} until the result, {seconds} s"
    );
    println!(
        "  {:.0} processes/s (new + status until done), {:.0} requests/s, {:.1} status polls per process",
        cycles.len() as f64 / elapsed,
        requests as f64 / elapsed,
        requests as f64 / cycles.len().max(1) as f64 - 1.0
    );
    println!(
        "  start to result p50 {:.2} ms, p99 {:.2} ms; server CPU {:.2} s (with its `date` processes)",
        quantile(&cycles, 0.50),
        quantile(&cycles, 0.99),
        cpu
    );
    Ok(())
}

/// Opens `n` sessions calling `name`, each left waiting for input; returns
/// server RSS before and while they are held, and how many failed.
async fn idle_sessions(
    server: &Server,
    addr: &str,
    name: &str,
    n: usize,
) -> anyhow::Result<(u64, u64, usize)> {
    let base = server.rss()?;
    let mut held = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        let opened = async {
            let mut ws = connect(&format!("ws://{addr}/"), TOKEN).await?;
            ws.send(call(name)).await?;
            anyhow::Ok(ws)
        };
        match opened.await {
            Ok(ws) => held.push(ws),
            Err(e) => {
                if errors == 0 {
                    eprintln!("session failed: {e}");
                }
                errors += 1;
            }
        }
    }
    // Every call sent: wait until the server has started them all, which a
    // round trip on the last session proves (its process echoes input).
    if let Some(last) = held.last_mut() {
        last.send(Message::text("ping")).await?;
        while !matches!(last.next().await, Some(Ok(Message::Text(_))) | None) {}
    }
    let during = server.rss()?;
    for mut ws in held {
        let _ = ws.close(None).await;
    }
    Ok((base, during, errors))
}
