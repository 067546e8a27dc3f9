//! Reliability benchmark, against the real server binaries as operators
//! run them (`target/release/*-server`, a token, a free loopback port):
//!
//! - `soak`: thousands of short sessions, each ending one of seven ways
//!   (normal exit, client gone mid-output, client gone mid-input, the
//!   client process killed with SIGKILL, a malformed message, an oversized
//!   message, a wrong token), while the server's file descriptors,
//!   threads, resident memory and descendant processes are read from
//!   `/proc` before, during and after. What a leak would show.
//! - `load`: many sessions (1000; webexec 100 peers x 10 panes) streaming
//!   output at once, each checked byte for byte: aggregate throughput,
//!   server CPU and memory, errors.
//! - `slow`: a shared pane (wsep named session, webexec pane) with one
//!   client stopped (SIGSTOP of its process) and another typing: the
//!   typist's echo round trip with and without the stalled client, and
//!   the server's memory while it is stalled.
//!
//! Prints figures; asserts nothing, but counts every failure it sees.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/reliability-bench soak --server wsep`

mod pow;
mod webexec;
mod webterm;
mod wsep;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand, ValueEnum};
use execwire_bench::{Holdings, PeakRss, Rng, Server, cores, quantile, sibling, tempdir};
use tokio::io::AsyncBufReadExt as _;

#[derive(Debug, Parser)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// Many short sessions ending every which way; what the server holds
    /// before, during and after.
    Soak {
        /// Which server.
        #[arg(long, value_enum)]
        server: Proto,
        /// Sessions to run.
        #[arg(long, default_value_t = 10_000)]
        cycles: u64,
        /// Seed of the random choices (printed; a clock seed when absent).
        #[arg(long)]
        seed: Option<u64>,
        /// Sessions at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Sessions run before the baseline is taken (the allocator's and
        /// the runtime's pools grow to their working size).
        #[arg(long, default_value_t = 200)]
        warmup: u64,
        /// How long, at most, to wait after the run for the server to
        /// settle (idle timeouts, its blocking threads' keep-alive).
        #[arg(long, default_value_t = 60)]
        settle_secs: u64,
    },
    /// Sessions streaming output at once, every byte checked.
    Load {
        /// Which server.
        #[arg(long, value_enum)]
        server: Proto,
        /// Sessions at once (webexec: peers x 10 panes).
        #[arg(long, default_value_t = 1000)]
        sessions: usize,
        /// Each session's output: `seq 1 LINES`.
        #[arg(long, default_value_t = 100_000)]
        lines: u64,
    },
    /// One client of a shared pane stalled, another typing.
    Slow {
        /// Which server (wsep or webexec: the protocols with shared panes).
        #[arg(long, value_enum)]
        server: Proto,
        /// Round trips per phase.
        #[arg(long, default_value_t = 300)]
        echoes: usize,
        /// How long the stalled client stays stopped before the typing
        /// starts (its buffers fill meanwhile).
        #[arg(long, default_value_t = 5)]
        stall_secs: u64,
    },
    /// One command writing GiBs without a newline (`head -c N /dev/zero |
    /// tr '\0' x`), every byte counted and checked.
    Nonl {
        /// Which server.
        #[arg(long, value_enum)]
        server: Proto,
        /// Output size, MiB.
        #[arg(long, default_value_t = 1024)]
        mib: u64,
    },
    /// A client in a process of its own, for `soak` to kill and `slow`
    /// to stop: it starts (or attaches to) a streaming command, prints
    /// `streaming` at its first output, then reads and discards.
    #[command(hide = true)]
    Client {
        #[arg(long, value_enum)]
        server: Proto,
        #[arg(long)]
        addr: String,
        #[arg(long)]
        token: String,
        /// Under a terminal.
        #[arg(long)]
        pty: bool,
        /// Attach to this shared pane (wsep session id, webexec pane id)
        /// instead of starting a command.
        #[arg(long)]
        attach: Option<String>,
    },
}

/// The servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Proto {
    Wsep,
    Pow,
    Webterm,
    Webexec,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Wsep => "wsep",
            Proto::Pow => "pow",
            Proto::Webterm => "webterm",
            Proto::Webexec => "webexec",
        }
    }

    /// Whether the protocol runs commands under a terminal.
    fn has_pty(self) -> bool {
        matches!(self, Proto::Wsep | Proto::Webexec)
    }
}

/// How a soak session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum End {
    /// The command runs to its end; every byte of its output is checked.
    Normal,
    /// The client drops the connection after the first output of a long
    /// output.
    MidOutput,
    /// The client drops the connection after sending input to a command
    /// that reads it.
    MidInput,
    /// The client is a process of its own, killed with SIGKILL while the
    /// output streams.
    Kill9,
    /// A malformed message; the server's answer is checked.
    Malformed,
    /// A message over the server's limit; the server's answer is checked.
    Oversized,
    /// A wrong token; the refusal is checked.
    WrongToken,
}

const ENDS: [End; 7] = [
    End::Normal,
    End::MidOutput,
    End::MidInput,
    End::Kill9,
    End::Malformed,
    End::Oversized,
    End::WrongToken,
];

impl End {
    fn label(self) -> &'static str {
        match self {
            End::Normal => "normal exit (output checked)",
            End::MidOutput => "client gone mid-output",
            End::MidInput => "client gone mid-input",
            End::Kill9 => "client process killed (SIGKILL)",
            End::Malformed => "malformed message",
            End::Oversized => "oversized message",
            End::WrongToken => "wrong token",
        }
    }
}

/// Lines of the normal sessions' output (`seq 1 NORMAL_LINES`).
pub(crate) const NORMAL_LINES: u64 = 2000;

/// The token every server is started with.
pub(crate) const TOKEN: &str = "bench-token";

/// `seq 1 n`'s output, as a terminal shows it when `pty` (`\r\n`).
pub(crate) fn seq_output(n: u64, pty: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(i.to_string().as_bytes());
        if pty {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out
}

/// A server under test and how to reach it.
pub(crate) struct Target {
    pub(crate) proto: Proto,
    pub(crate) server: Server,
    /// wsep, webterm: `ws://ADDR/`; pow: `ADDR`; webexec: `ADDR`.
    pub(crate) addr: String,
    /// The `wsep` client, for the killed-client sessions of wsep.
    pub(crate) wsep_cli: Option<PathBuf>,
    /// This program, run as a `client` for the others.
    pub(crate) me: PathBuf,
    /// `seq 1 NORMAL_LINES`, without and with a terminal.
    pub(crate) expected: [Vec<u8>; 2],
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("proto", &self.proto)
            .finish()
    }
}

/// Seconds a wsep named session lives after its last client (the soak's
/// terminal sessions are named, so this idle timeout is part of the run).
const WSEP_SESSION_TIMEOUT: &str = "2";

impl Target {
    fn start(proto: Proto, work: &Path) -> anyhow::Result<Target> {
        let bin = sibling(&format!("{}-server", proto.name()))?;
        let mut args = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--token".to_owned(),
            TOKEN.to_owned(),
        ];
        let ready = match proto {
            Proto::Wsep => {
                args.extend(["--session-timeout".into(), WSEP_SESSION_TIMEOUT.into()]);
                "wsep-server listening on "
            }
            Proto::Pow => {
                let config = work.join("processes.toml");
                std::fs::write(&config, pow::CONFIG)?;
                args.extend([
                    "--config".into(),
                    config.to_str().context("temp path")?.into(),
                ]);
                "pow-server listening on ws://"
            }
            Proto::Webterm => {
                args.extend(["--shell".into(), "/bin/sh".into()]);
                "webterm-server listening on "
            }
            Proto::Webexec => {
                let state = work.join("webexec-state");
                args.extend([
                    "--udp-ports".into(),
                    "0-0".into(),
                    "--dir".into(),
                    state.to_str().context("temp path")?.into(),
                ]);
                "webexec-server listening on http://"
            }
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (server, rest) = Server::start(&bin, &args, ready)?;
        let addr = match proto {
            Proto::Wsep | Proto::Webterm => rest,
            Proto::Pow => rest.trim_end_matches('/').to_owned(),
            Proto::Webexec => rest.split('/').next().context("no address")?.to_owned(),
        };
        Ok(Target {
            proto,
            server,
            addr,
            wsep_cli: if proto == Proto::Wsep {
                Some(sibling("wsep")?)
            } else {
                None
            },
            me: std::env::current_exe()?,
            expected: [
                seq_output(NORMAL_LINES, false),
                seq_output(NORMAL_LINES, true),
            ],
        })
    }

    fn holdings(&self) -> anyhow::Result<Holdings> {
        Holdings::of(self.server.pid())
    }

    /// One soak session.
    async fn cycle(&self, end: End, pty: bool, n: u64) -> anyhow::Result<()> {
        match self.proto {
            Proto::Wsep => wsep::cycle(self, end, pty, n).await,
            Proto::Pow => pow::cycle(self, end, n).await,
            Proto::Webterm => webterm::cycle(self, end, n).await,
            Proto::Webexec => webexec::cycle(self, end, pty, n).await,
        }
    }

    /// This program as a `client` of the server, stdout piped.
    pub(crate) fn client_process(
        &self,
        pty: bool,
        attach: Option<&str>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.me);
        cmd.args([
            "client",
            "--server",
            self.proto.name(),
            "--addr",
            &self.addr,
            "--token",
            TOKEN,
        ]);
        if pty {
            cmd.arg("--pty");
        }
        if let Some(id) = attach {
            cmd.args(["--attach", id]);
        }
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Runs `cmd` (a client process printing `streaming` once output flows),
/// waits for that line, then kills it with SIGKILL and reaps it.
pub(crate) async fn kill_when_streaming(mut cmd: tokio::process::Command) -> anyhow::Result<()> {
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    child.start_kill()?;
    child.wait().await?;
    match line {
        Ok(Ok(Some(l))) if l.trim_end() == "streaming" => Ok(()),
        other => bail!("client process said {other:?} before it was killed"),
    }
}

/// Waits for a client process's `streaming` line; returns the process.
pub(crate) async fn spawn_streaming(
    mut cmd: tokio::process::Command,
) -> anyhow::Result<tokio::process::Child> {
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    match tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        Ok(Ok(Some(l))) if l.trim_end() == "streaming" => {}
        other => bail!("client process said {other:?}"),
    }
    // Keep reading (nothing more comes) so the pipe never blocks it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(child)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    exec_core::raise_open_files_limit();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        match args.mode {
            Mode::Soak {
                server,
                cycles,
                seed,
                concurrency,
                warmup,
                settle_secs,
            } => {
                soak(
                    server,
                    cycles,
                    seed.unwrap_or_else(Rng::clock_seed),
                    concurrency,
                    warmup,
                    settle_secs,
                )
                .await
            }
            Mode::Load {
                server,
                sessions,
                lines,
            } => load(server, sessions, lines).await,
            Mode::Slow {
                server,
                echoes,
                stall_secs,
            } => slow(server, echoes, stall_secs).await,
            Mode::Nonl { server, mib } => nonl(server, mib).await,
            Mode::Client {
                server,
                addr,
                token,
                pty,
                attach,
            } => client(server, &addr, &token, pty, attach.as_deref()).await,
        }
    })
}

/// The `client` mode: stream until killed (or the output ends).
async fn client(
    proto: Proto,
    addr: &str,
    token: &str,
    pty: bool,
    attach: Option<&str>,
) -> anyhow::Result<()> {
    match proto {
        Proto::Wsep => wsep::stream_client(addr, token, pty, attach).await,
        Proto::Pow => pow::stream_client(addr, token).await,
        Proto::Webterm => webterm::stream_client(addr, token).await,
        Proto::Webexec => webexec::stream_client(addr, token, pty, attach).await,
    }
}

/// Sends a 2 MiB text message (over webterm's 1 MiB limit) and reads
/// until the connection ends. The server stops reading at the
/// frame's header and ends the connection; its close frame, if any, may
/// be lost to the reset that the unread bytes cause, so the answer
/// checked is the end itself, with no result before it.
pub(crate) async fn oversized_ends_the_connection(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> anyhow::Result<()> {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    // The server may close before it read it all.
    let _ = ws.send(Message::text("x".repeat(2 << 20))).await;
    loop {
        match ws.next().await {
            Some(Ok(Message::Close(_)) | Err(_)) | None => return Ok(()),
            Some(Ok(Message::Binary(b))) if b.len() < 4096 => {
                bail!("answered {}", String::from_utf8_lossy(&b))
            }
            Some(Ok(_)) => continue,
        }
    }
}

/// Prints `streaming` (the parent waits for it).
pub(crate) fn say_streaming() {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "streaming");
    let _ = out.flush();
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn print_holdings(label: &str, h: &Holdings) {
    println!(
        "  {label:<28} {:>6} {:>8} {:>10.1} {:>12}",
        h.fds,
        h.threads,
        mib(h.rss),
        h.descendants
    );
}

/// Soak: `cycles` sessions, `concurrency` at a time.
async fn soak(
    proto: Proto,
    cycles: u64,
    seed: u64,
    concurrency: usize,
    warmup: u64,
    settle_secs: u64,
) -> anyhow::Result<()> {
    let work = tempdir("reliability-soak")?;
    let target = Arc::new(Target::start(proto, &work)?);
    println!(
        "soak of {}-server (pid {}): {cycles} sessions after {warmup} of warm-up, {concurrency} at once, seed {seed}, {} cores",
        proto.name(),
        target.server.pid(),
        cores()
    );
    let fresh = target.holdings()?;
    // The plan: every session's end and terminal, from the seed alone.
    let mut rng = Rng::new(seed);
    let plan: Vec<(End, bool)> = (0..warmup + cycles)
        .map(|_| {
            let end = ENDS
                .get(rng.below(ENDS.len() as u64) as usize)
                .copied()
                .unwrap_or(End::Normal);
            let pty = proto.has_pty() && rng.below(2) == 1;
            (end, pty)
        })
        .collect();
    let (warm_plan, plan) = plan.split_at(warmup as usize);
    let warm_results = run_cycles(&target, warm_plan, 0, concurrency, None).await;
    let warm_failed = warm_results.values().map(|r| r.1).sum::<u64>();
    let settle = Duration::from_secs(settle_secs);
    let baseline = settled(&target, &fresh, settle).await?;

    let peak = Arc::new(std::sync::Mutex::new(baseline));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let sampler = {
        let target = target.clone();
        let peak = peak.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut next_print = Duration::from_secs(10);
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tick.tick() => {}
                }
                if let Ok(h) = target.holdings() {
                    if let Ok(mut p) = peak.lock() {
                        p.fds = p.fds.max(h.fds);
                        p.threads = p.threads.max(h.threads);
                        p.rss = p.rss.max(h.rss);
                        p.descendants = p.descendants.max(h.descendants);
                    }
                    if started.elapsed() >= next_print {
                        next_print += Duration::from_secs(10);
                        println!(
                            "  during, {:>4.0} s: fds {}, threads {}, RSS {:.1} MiB, descendants {}",
                            started.elapsed().as_secs_f64(),
                            h.fds,
                            h.threads,
                            mib(h.rss),
                            h.descendants
                        );
                    }
                }
            }
        })
    };
    // Two halves with a settled measurement between them: memory the
    // allocator keeps after the busiest moment is not a leak, and shows
    // in both; a leak grows the second half as much as the first.
    let started = Instant::now();
    let (first_half, second_half) = plan.split_at(plan.len() / 2);
    let mut results = run_cycles(&target, first_half, warmup, concurrency, Some(started)).await;
    let paused = Instant::now();
    let midway = settled(&target, &baseline, settle).await?;
    let pause = paused.elapsed();
    let second = run_cycles(
        &target,
        second_half,
        warmup + first_half.len() as u64,
        concurrency,
        Some(started),
    )
    .await;
    for (end, (runs, failed, first)) in second {
        let e = results.entry(end).or_default();
        e.0 += runs;
        e.1 += failed;
        if e.2.is_none() {
            e.2 = first;
        }
    }
    let elapsed = started.elapsed() - pause;
    let _ = stop.send(());
    let _ = sampler.await;
    let peak = peak.lock().map(|p| *p).unwrap_or_default();
    let right_after = target.holdings()?;
    let after = settled(&target, &baseline, settle).await?;
    let waited = started.elapsed() - elapsed - pause;

    println!();
    println!(
        "{} sessions in {:.1} s ({:.0} per second; the half-way pause not counted)",
        cycles,
        elapsed.as_secs_f64(),
        cycles as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    println!(
        "  {:<36} {:>8} {:>8} {:>8}",
        "session end", "runs", "ok", "failed"
    );
    let mut failed_total = 0;
    for end in ENDS {
        let (runs, failed, first) = results.get(&end).cloned().unwrap_or_default();
        failed_total += failed;
        println!(
            "  {:<36} {:>8} {:>8} {:>8}",
            end.label(),
            runs,
            runs - failed,
            failed
        );
        if let Some(first) = first {
            println!("      first failure: {first}");
        }
    }
    println!();
    println!(
        "  {:<28} {:>6} {:>8} {:>10} {:>12}",
        "server holds", "fds", "threads", "RSS MiB", "descendants"
    );
    print_holdings("fresh server", &fresh);
    print_holdings("after warm-up, settled", &baseline);
    print_holdings("half-way, settled", &midway);
    print_holdings("peak during the run", &peak);
    print_holdings("right after the run", &right_after);
    print_holdings(
        &format!("settled ({:.0} s later)", waited.as_secs_f64()),
        &after,
    );
    let growth = (after.rss as f64 / baseline.rss.max(1) as f64 - 1.0) * 100.0;
    let second_growth = (after.rss as f64 / midway.rss.max(1) as f64 - 1.0) * 100.0;
    println!();
    println!(
        "result: descendants {} (goal 0); fds {:+} and threads {:+} against the warm baseline ({:+} and {:+} against the fresh server); RSS {growth:+.1} % over the run, {second_growth:+.1} % over its second half (goal < 10 %); failures {failed_total} ({warm_failed} in the warm-up)",
        after.descendants,
        after.fds as i64 - baseline.fds as i64,
        after.threads as i64 - baseline.threads as i64,
        after.fds as i64 - fresh.fds as i64,
        after.threads as i64 - fresh.threads as i64,
    );
    drop(target);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Per kind of end: runs, failures, the first failure's text.
type Results = BTreeMap<End, (u64, u64, Option<String>)>;

async fn run_cycles(
    target: &Arc<Target>,
    plan: &[(End, bool)],
    first: u64,
    concurrency: usize,
    progress: Option<Instant>,
) -> Results {
    let mut results = Results::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut done = 0u64;
    let mut pending = plan.iter().copied().enumerate();
    let total = plan.len() as u64;
    loop {
        while tasks.len() < concurrency.max(1) {
            let Some((i, (end, pty))) = pending.next() else {
                break;
            };
            let target = target.clone();
            let n = first + i as u64;
            tasks.spawn(async move {
                // A session stuck for a minute is a failure, not a hang.
                let result =
                    tokio::time::timeout(Duration::from_secs(60), target.cycle(end, pty, n))
                        .await
                        .unwrap_or_else(|_| Err(anyhow::anyhow!("no end in 60 s")));
                (end, pty, n, result)
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        done += 1;
        match joined {
            Ok((end, pty, n, result)) => {
                let e = results.entry(end).or_default();
                e.0 += 1;
                if let Err(err) = result {
                    e.1 += 1;
                    if e.2.is_none() {
                        e.2 = Some(format!("session {n} (pty {pty}): {err:#}"));
                    }
                }
            }
            Err(join) => {
                let e = results.entry(End::Normal).or_default();
                e.0 += 1;
                e.1 += 1;
                e.2.get_or_insert_with(|| format!("a session task failed: {join}"));
            }
        }
        if let Some(started) = progress
            && done.is_multiple_of(1000)
        {
            println!(
                "  {done}/{total} sessions of this half, {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    results
}

/// How long after calm a settled reading is taken: the servers hand the
/// heap's free pages back every 2 s (server-kit's `run_main`), and a
/// reading taken before that measures what is about to be returned.
const GIVE_BACK: Duration = Duration::from_millis(2500);

/// Waits until the server has no descendants and its fds and threads are
/// no more than `reference`'s, for at most `limit` (then returns what it
/// holds), and reads it once more [`GIVE_BACK`] later. Blocking threads
/// of the runtime live 10 s after their last job and a wsep named session
/// its idle timeout, so this takes a while.
async fn settled(
    target: &Target,
    reference: &Holdings,
    limit: Duration,
) -> anyhow::Result<Holdings> {
    let deadline = Instant::now() + limit;
    loop {
        let h = target.holdings()?;
        let calm = h.descendants == 0 && h.fds <= reference.fds && h.threads <= reference.threads;
        if calm {
            tokio::time::sleep(GIVE_BACK).await;
            return target.holdings();
        }
        if Instant::now() >= deadline {
            return Ok(h);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What each load session reports: bytes received, or why it failed.
pub(crate) type Received = anyhow::Result<u64>;

/// A load session, open and waiting: the rest of it, to run on the go.
pub(crate) type Streaming = std::pin::Pin<Box<dyn std::future::Future<Output = Received> + Send>>;

/// A load session's streaming half, run once `go` turns true (every
/// session is open by then, so all stream at once).
pub(crate) fn after_go<F>(
    go: &tokio::sync::watch::Receiver<bool>,
    stream: F,
) -> tokio::task::JoinHandle<Received>
where
    F: std::future::Future<Output = Received> + Send + 'static,
{
    let mut go = go.clone();
    tokio::spawn(async move {
        go.wait_for(|g| *g).await?;
        stream.await
    })
}

/// Load: `sessions` commands writing `seq 1 LINES` at once.
async fn load(proto: Proto, sessions: usize, lines: u64) -> anyhow::Result<()> {
    let work = tempdir("reliability-load")?;
    let target = Arc::new(Target::start(proto, &work)?);
    let expected = Arc::new(seq_output(lines, false));
    let base = target.holdings()?;
    println!(
        "load on {}-server: {sessions} sessions, each `seq 1 {lines}` ({:.2} MiB), {} cores",
        proto.name(),
        mib(expected.len() as u64),
        cores()
    );
    let (go, ready) = tokio::sync::watch::channel(false);
    let opening = Instant::now();
    // Sessions are opened one connection at a time (webexec: a peer with
    // its panes), each left waiting for its line of input.
    let per_open = match proto {
        Proto::Webexec => webexec::LOAD_PANES,
        _ => 1,
    };
    let mut tasks = Vec::with_capacity(sessions);
    let mut failed_to_open = 0;
    while tasks.len() + failed_to_open < sessions {
        let opened = match proto {
            Proto::Wsep => wsep::open_load(&target, lines, expected.clone()).await,
            Proto::Pow => pow::open_load(&target, lines, expected.clone()).await,
            Proto::Webterm => webterm::open_load(&target, lines, expected.clone()).await,
            Proto::Webexec => {
                let opening = webexec::open_load(&target, lines, expected.clone());
                tokio::time::timeout(Duration::from_secs(20), opening)
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("not open in 20 s")))
            }
        };
        match opened {
            Ok(streams) => tasks.extend(streams.into_iter().map(|s| after_go(&ready, s))),
            Err(e) => {
                eprintln!("session failed to open: {e:#}");
                failed_to_open += per_open;
            }
        }
    }
    let opened = tasks.len();
    let open_secs = opening.elapsed().as_secs_f64();
    let held = target.holdings()?;
    println!(
        "  {opened} sessions open in {open_secs:.1} s; server: {} fds, {} threads, RSS {:.1} MiB, {} descendants",
        held.fds,
        held.threads,
        mib(held.rss),
        held.descendants
    );
    let cpu = target.server.cpu()?;
    let peak_rss = PeakRss::watch(target.server.pid(), Duration::from_millis(100));
    let started = Instant::now();
    let _ = go.send(true);
    let mut received = 0u64;
    let mut errors = 0usize;
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(n)) => received += n,
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert_with(|| format!("{e:#}"));
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = target.server.cpu()? - cpu;
    let errors = errors + sessions.saturating_sub(opened);
    println!(
        "  streamed {:.1} MiB in {wall:.2} s: {:.1} MiB/s aggregate; server CPU {cpu:.2} s ({:.0} % of one core, its `seq`s included); peak RSS {:.1} MiB (idle {:.1}); errors {errors} (goal 0)",
        mib(received),
        mib(received) / wall.max(1e-9),
        cpu / wall.max(1e-9) * 100.0,
        mib(peak_rss.peak()),
        mib(base.rss),
    );
    if let Some(e) = first_error {
        println!("  first error: {e}");
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// `sh -c` line writing `bytes` of `x` and no newline.
pub(crate) fn no_newline_line(bytes: u64) -> String {
    format!("head -c {bytes} /dev/zero | tr '\\0' x")
}

/// Counts `x`s; an error at anything else.
pub(crate) fn count_x(count: &mut u64, data: &[u8]) -> anyhow::Result<()> {
    if !data.iter().all(|&c| c == b'x') {
        bail!("output holds something other than x");
    }
    *count += data.len() as u64;
    Ok(())
}

/// Nonl: one command writing `mib` MiB without a newline.
async fn nonl(proto: Proto, mib_out: u64) -> anyhow::Result<()> {
    let work = tempdir("reliability-nonl")?;
    let target = Target::start(proto, &work)?;
    let bytes = mib_out << 20;
    let base = target.holdings()?;
    let peak = PeakRss::watch(target.server.pid(), Duration::from_millis(100));
    let cpu = target.server.cpu()?;
    let started = Instant::now();
    let got = match proto {
        Proto::Wsep => wsep::nonl(&target, bytes).await,
        Proto::Pow => pow::nonl(&target, bytes).await,
        Proto::Webterm => webterm::nonl(&target, bytes).await,
        Proto::Webexec => webexec::nonl(&target, bytes).await,
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = target.server.cpu()? - cpu;
    let got = got?;
    println!(
        "{}-server, `{}`: {} of {} bytes ({}), {wall:.1} s, {:.0} MiB/s, server CPU {cpu:.1} s, server RSS {:.1} MiB before, peak {:.1} MiB",
        proto.name(),
        no_newline_line(bytes),
        got,
        bytes,
        if got == bytes { "all" } else { "MISSING BYTES" },
        mib(got) / wall.max(1e-9),
        mib(base.rss),
        mib(peak.peak()),
    );
    drop(target);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Latencies in ms, sorted.
pub(crate) fn summary(sorted: &[f64]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        quantile(sorted, 0.5),
        quantile(sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0),
        sorted.len()
    )
}

/// The shared pane's program: bulk output (digits and line ends, 14 KB
/// every 10 ms, about 1 MB/s) in the background and `cat` echoing raw
/// input (letters) in the foreground, so the typist's echo is found among
/// the bulk. Small bursts: a typist's byte waits behind at most one.
pub(crate) const SHARED_PANE: &str =
    "stty raw -echo; (while :; do seq 100000 101999; sleep 0.01; done) & echo ready; exec cat";

/// Slow client: a typist's echo round trip on a pane another client of
/// stops reading.
async fn slow(proto: Proto, echoes: usize, stall_secs: u64) -> anyhow::Result<()> {
    if !proto.has_pty() {
        bail!("slow: only wsep (named sessions) and webexec (panes) share panes");
    }
    let work = tempdir("reliability-slow")?;
    let target = Target::start(proto, &work)?;
    println!(
        "slow client on {}-server: a shared pane streams ~1 MB/s while client A types; client B is another process attached to the same pane, {} cores",
        proto.name(),
        cores()
    );
    match proto {
        Proto::Wsep => wsep::slow(&target, echoes, stall_secs).await?,
        _ => webexec::slow(&target, echoes, stall_secs).await?,
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The phases of a slow-client run, shared by the protocols: `echo` times
/// `n` round trips on the typist's side; `stalled` is client B's process.
pub(crate) async fn slow_phases<F, Fut>(
    target: &Target,
    stalled: &mut tokio::process::Child,
    stall_secs: u64,
    n: usize,
    mut echo: F,
) -> anyhow::Result<()>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Vec<f64>>>,
{
    let both = echo(n).await?;
    println!("  A's echo, B reading:                {}", summary(&both));
    let pid = stalled
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
        .context("client B has no pid")?;
    let before = target.server.rss()?;
    rustix::process::kill_process(pid, rustix::process::Signal::STOP)?;
    let peak = PeakRss::watch(target.server.pid(), Duration::from_millis(50));
    // B's socket buffers and the server's queue for B fill meanwhile.
    tokio::time::sleep(Duration::from_secs(stall_secs)).await;
    let stalled_rtts = echo(n).await;
    let after = target.server.rss()?;
    let peak = peak.peak();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
    let _ = stalled.start_kill();
    let _ = stalled.wait().await;
    let stalled_rtts = stalled_rtts?;
    println!(
        "  A's echo, B stopped (SIGSTOP):      {}",
        summary(&stalled_rtts)
    );
    println!(
        "  server RSS: {:.1} MiB when B stopped, peak {:.1} MiB while stopped ({:+.1} MiB), {:.1} MiB at the end",
        mib(before),
        mib(peak),
        (peak as f64 - before as f64) / 1048576.0,
        mib(after)
    );
    Ok(())
}
