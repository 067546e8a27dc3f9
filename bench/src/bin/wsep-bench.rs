//! wsep benchmark: throughput both ways against a plain pipe, terminal output
//! against a bare local terminal, echo latency under load, and the server's
//! memory with many idle sessions. Prints figures; asserts nothing.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/wsep-bench`
//! (`--mib N` for another data size, `--sessions N` for another session count).

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use exec_core::{Event, Events, Process, PtySize};
use wsep_client::Output;
use wsep_proto::StartCommand;

#[derive(Debug, Parser)]
struct Args {
    /// Size of the data streamed in each throughput run, in MiB.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Idle sessions to open for the memory figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Echo round trips to time.
    #[arg(long, default_value_t = 2000)]
    echoes: usize,
    /// Run only this part.
    #[arg(long, value_enum)]
    only: Option<Section>,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Non-TTY throughput both ways against a plain pipe.
    Pipes,
    /// TTY output against a bare local PTY.
    Tty,
    /// Echo latency, idle and under load.
    Echo,
    /// Server memory with idle sessions.
    Sessions,
}

impl Args {
    fn wants(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("no executable directory")?
        .to_path_buf();
    let server_bin = sibling(&bin_dir, "wsep-server")?;
    let client_bin = sibling(&bin_dir, "wsep")?;

    let work = tempdir()?;
    let bytes = args.mib << 20;
    let random = work.join("random.bin");
    write_random(&random, bytes)?;
    let text = work.join("text.txt");
    write_text(&text, bytes)?;

    let server = Server::start(&server_bin)?;
    println!(
        "wsep benchmark: {} MiB per run, median of {} runs, {} cores",
        args.mib,
        args.runs,
        cores()
    );
    println!();

    let mib = args.mib as f64;
    if args.wants(Section::Pipes) {
        // Rounds interleave the baseline with the runs it is compared to, so
        // that drift in the machine's speed affects both alike.
        let (mut pipe, mut stdin, mut stdout) = (Runs::default(), Runs::default(), Runs::default());
        for _ in 0..args.runs.max(1) {
            let script = format!("cat {} | cat > /dev/null", random.display());
            pipe.push(server.time(Command::new("sh").args(["-c", &script]))?);
            let file = std::fs::File::open(&random)?;
            stdin.push(
                server.time(
                    server
                        .client(&client_bin)
                        .args(["--", "sh", "-c", "cat > /dev/null"])
                        .stdin(file),
                )?,
            );
            stdout.push(
                server.time(
                    server
                        .client(&client_bin)
                        .args(["--", "cat"])
                        .arg(&random)
                        .stdin(Stdio::null()),
                )?,
            );
        }
        println!("non-TTY throughput ({} MiB of random bytes)", args.mib);
        let pipe = pipe.median()?;
        row("plain pipe: cat FILE | cat > /dev/null", mib, pipe, None);
        row(
            "wsep stdin: wsep -- sh -c 'cat > /dev/null' < FILE",
            mib,
            stdin.median()?,
            Some(pipe),
        );
        row(
            "wsep stdout: wsep -- cat FILE > /dev/null",
            mib,
            stdout.median()?,
            Some(pipe),
        );
        println!();
    }

    let runtime = tokio::runtime::Runtime::new()?;
    if args.wants(Section::Tty) {
        let (mut bare_pty, mut wsep_pty) = (Runs::default(), Runs::default());
        for _ in 0..args.runs.max(1) {
            bare_pty.push(runtime.block_on(time_bare_pty(&text))?);
            wsep_pty.push(
                server.time(
                    server
                        .client(&client_bin)
                        .args(["--tty", "--", "cat"])
                        .arg(&text)
                        .stdin(Stdio::null()),
                )?,
            );
        }
        println!("TTY output ({} MiB of text through a terminal)", args.mib);
        let bare_pty = bare_pty.median()?;
        row("bare local PTY: cat FILE", mib, bare_pty, None);
        row(
            "wsep --tty -- cat FILE",
            mib,
            wsep_pty.median()?,
            Some(bare_pty),
        );
        println!();
    }

    runtime.block_on(async {
        if args.wants(Section::Echo) {
            let idle = echo_latency(&server, args.echoes).await?;
            let mut load = server
                .client(&client_bin)
                .args(["--", "sh", "-c"])
                .arg(format!("while :; do cat {}; done", random.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()?;
            // Let the bulk stream reach full speed before timing.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let loaded = echo_latency(&server, args.echoes).await;
            let _ = load.kill();
            let _ = load.wait();
            let loaded = loaded?;
            println!("TTY echo round trip, 1-byte writes to `stty raw -echo; cat` ({} samples)", args.echoes);
            println!("  {:<52} p50 {:>8.3} ms   p99 {:>8.3} ms", "idle server", idle.0, idle.1);
            println!(
                "  {:<52} p50 {:>8.3} ms   p99 {:>8.3} ms",
                "while another session streams bulk output", loaded.0, loaded.1
            );
            println!();
        }

        if args.wants(Section::Sessions) {
            for tty in [false, true] {
                let (base, held, errors) = idle_sessions(&server, args.sessions, tty).await?;
                let per = (held.saturating_sub(base)) as f64 / args.sessions as f64;
                println!(
                    "{} idle {} sessions: server RSS {:.1} MiB -> {:.1} MiB, {:.1} KiB per session, {} errors",
                    args.sessions,
                    if tty { "TTY (sh)" } else { "plain (cat)" },
                    base as f64 / 1048576.0,
                    held as f64 / 1048576.0,
                    per / 1024.0,
                    errors
                );
            }
        }
        anyhow::Ok(())
    })?;
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn sibling(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build all binaries first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("wsep-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn write_random(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let mut src = std::fs::File::open("/dev/urandom")?;
    let mut dst = std::fs::File::create(path)?;
    std::io::copy(&mut std::io::Read::take(&mut src, bytes as u64), &mut dst)?;
    Ok(())
}

/// Printable lines of 79 characters, like a log or a source file.
fn write_text(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let mut dst = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0;
    let mut n: u64 = 0;
    while written < bytes {
        n = n
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let line: String = (0..79)
            .map(|i| char::from(b' ' + ((n >> (i % 57)) as u8 % 94)))
            .collect();
        dst.write_all(line.as_bytes())?;
        dst.write_all(b"\n")?;
        written += 80;
    }
    dst.flush()?;
    Ok(())
}

/// One timed run: wall-clock seconds and CPU seconds spent by every
/// process involved (the machine may be shared; CPU time is steadier).
#[derive(Debug, Clone, Copy)]
struct Run {
    wall: f64,
    cpu: f64,
}

#[derive(Debug, Default)]
struct Runs(Vec<Run>);

impl Runs {
    fn push(&mut self, run: Run) {
        self.0.push(run);
    }

    /// The median wall time and, apart, the median CPU time.
    fn median(&self) -> anyhow::Result<Run> {
        let pick = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().context("no runs")
        };
        Ok(Run {
            wall: pick(self.0.iter().map(|r| r.wall).collect())?,
            cpu: pick(self.0.iter().map(|r| r.cpu).collect())?,
        })
    }
}

/// CPU seconds of a process and its reaped children, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime is field 14.
    let rest = stat.rsplit_once(") ").context("bad stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields
        .get(11..15)
        .context("short stat")?
        .iter()
        .map(|f| f.parse::<f64>().unwrap_or(0.0))
        .sum();
    // Linux reports these in USER_HZ, 100 per second on every platform.
    Ok(ticks / 100.0)
}

/// `cat FILE` under a terminal of our own, output read and dropped.
async fn time_bare_pty(file: &Path) -> anyhow::Result<Run> {
    let cpu = cpu_seconds("self")?;
    let cmd = exec_core::Command::new("cat")
        .arg(file)
        .pty(PtySize { rows: 24, cols: 80 });
    let start = Instant::now();
    let mut events = Events::new(Process::spawn(&cmd)?);
    while let Some(event) = events.next().await {
        if let Event::Exit(_) = event? {
            break;
        }
    }
    let wall = start.elapsed().as_secs_f64();
    Ok(Run {
        wall,
        cpu: cpu_seconds("self")? - cpu,
    })
}

fn row(label: &str, mib: f64, run: Run, baseline: Option<Run>) {
    let speed = mib / run.wall;
    let cpu = format!("CPU {:.2} s", run.cpu);
    match baseline {
        Some(b) => println!(
            "  {label:<52} {speed:>8.1} MiB/s   {:>5.1}% of baseline   {cpu} ({:.1}x)",
            b.wall / run.wall * 100.0,
            run.cpu / b.cpu.max(0.01)
        ),
        None => println!("  {label:<52} {speed:>8.1} MiB/s   (baseline)        {cpu}"),
    }
}

/// p50 and p99 in milliseconds of single-byte round trips through a TTY.
async fn echo_latency(server: &Server, samples: usize) -> anyhow::Result<(f64, f64)> {
    let start = StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), "stty raw -echo; echo ready; exec cat".into()],
        tty: true,
        rows: 24,
        cols: 80,
        ..StartCommand::default()
    };
    let (mut input, mut out) = wsep_client::start(&server.url, Some(&server.token), start).await?;
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("ready") {
        match out.next().await? {
            Some(Output::Stdout(b)) => seen.extend_from_slice(&b),
            other => bail!("echo session ended early: {other:?}"),
        }
    }
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples {
        let byte = b'a' + (i % 26) as u8;
        let t = Instant::now();
        input.write(&[byte]).await?;
        loop {
            match out.next().await? {
                Some(Output::Stdout(b)) if b.contains(&byte) => break,
                Some(Output::Stdout(_)) => continue,
                other => bail!("echo session ended early: {other:?}"),
            }
        }
        rtts.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    input.write(&[4]).await?; // ^D is a byte in raw mode: end with a close instead
    drop(input);
    rtts.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        rtts.get(((rtts.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((pick(0.50), pick(0.99)))
}

/// Opens `n` idle sessions; returns server RSS before and while they are
/// held, and how many failed to open.
async fn idle_sessions(server: &Server, n: usize, tty: bool) -> anyhow::Result<(u64, u64, usize)> {
    let base = server.rss()?;
    let mut held = Vec::with_capacity(n);
    let mut errors = 0;
    for _ in 0..n {
        let start = StartCommand {
            command: if tty { "sh".into() } else { "cat".into() },
            tty,
            rows: 24,
            cols: 80,
            ..StartCommand::default()
        };
        match wsep_client::start(&server.url, Some(&server.token), start).await {
            Ok(pair) => held.push(pair),
            Err(e) => {
                if errors == 0 {
                    eprintln!("session failed: {e}");
                }
                errors += 1;
            }
        }
    }
    // Give the server a moment to settle the last sessions' first output.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = server.rss()?;
    for (mut input, out) in held.drain(..) {
        let _ = input.close_stdin().await;
        drop(input);
        drop(out);
    }
    Ok((base, during, errors))
}

/// The wsep-server binary, run as operators run it.
struct Server {
    child: Child,
    url: String,
    token: String,
}

impl Server {
    fn start(bin: &Path) -> anyhow::Result<Server> {
        let token = "bench-token".to_owned();
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--token", &token])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines.next().context("server exited before listening")??;
            if let Some(rest) = line.strip_prefix("wsep-server listening on ") {
                break rest.trim().to_owned();
            }
        };
        Ok(Server { child, url, token })
    }

    /// The `wsep` command, pointed at this server with its token.
    fn client(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg(&self.url).env("WSEP_TOKEN", &self.token);
        cmd
    }

    /// Runs `cmd` to completion (stdout discarded); wall time and the CPU
    /// time of this process's children plus the server's.
    fn time(&self, cmd: &mut Command) -> anyhow::Result<Run> {
        let server_pid = self.child.id().to_string();
        let cpu = cpu_seconds("self")? + cpu_seconds(&server_pid)?;
        let start = Instant::now();
        let status = cmd.stdout(Stdio::null()).status()?;
        let wall = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!("{cmd:?} failed: {status}");
        }
        let cpu = cpu_seconds("self")? + cpu_seconds(&server_pid)? - cpu;
        Ok(Run { wall, cpu })
    }

    fn rss(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kib * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
