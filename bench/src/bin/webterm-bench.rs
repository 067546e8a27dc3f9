//! Web-Terminal v3 benchmark: output throughput of a pipeline with and
//! without a breakpoint on its pipe (so the cost of a breakpoint is known),
//! against a plain local pipe, and the round trip of interactive input
//! (which batching must not delay). Prints figures; asserts nothing.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/webterm-bench`
//! (`--mib N`, `--runs N`, `--echoes N`).

use std::process::Command;

use clap::Parser;
use execwire_bench::webterm::{echoes, time_command};
use execwire_bench::{Runs, Server, cores, quantile, row, sibling, tempdir, write_text};

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

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server_bin = sibling("webterm-server")?;
    let work = tempdir("webterm-bench")?;
    let text = work.join("text.txt");
    write_text(&text, args.mib << 20)?;
    // `cat FILE | cat` prints the file: its output is checked against it.
    let data = std::fs::read(&text)?;
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
    let (mut pipe, mut plain, mut tapped) = (Runs::default(), Runs::default(), Runs::default());
    let (mut plain_updates, mut tapped_updates) = (0, 0);
    for _ in 0..args.runs.max(1) {
        let script = format!("cat {} | cat > /dev/null", text.display());
        pipe.push(server.time(Command::new("sh").args(["-c", &script]))?);
        let (run, updates) =
            runtime.block_on(time_command(&server, &url, TOKEN, &line, &[], &data))?;
        plain.push(run);
        plain_updates = updates;
        let (run, updates) =
            runtime.block_on(time_command(&server, &url, TOKEN, &line, &[0], &data))?;
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
    let rtts = runtime.block_on(echoes(&url, TOKEN, args.echoes))?;
    let (p50, p99) = (quantile(&rtts, 0.5), quantile(&rtts, 0.99));
    println!(
        "interactive input, 10 ms apart: stdin update -> output update through `cat` ({} samples): p50 {p50:.3} ms, p99 {p99:.3} ms",
        args.echoes
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
