//! wsep benchmark: throughput both ways against a plain pipe, terminal output
//! against a bare local terminal, echo latency under load, and the server's
//! memory with many idle sessions. Prints figures; asserts nothing.
//!
//! Run from the workspace root:
//! `cargo build --release --bins && ./target/release/wsep-bench`
//! (`--mib N` for another data size, `--sessions N` for another session count,
//! `--tls` to stream through `wss://` too and compare it with `ws://`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use exec_core::{Event, Events, Process, PtySize};
use execwire_bench::{
    Run, Runs, Server, cores, cpu_seconds, quantile, row, sibling, tempdir, write_random,
    write_text,
};
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
    /// Also stream through a second server over TLS (`wss://`, a
    /// certificate made here, trusted with `wsep --ca`) and report what TLS
    /// costs against `ws://`.
    #[arg(long)]
    tls: bool,
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
    let server_bin = sibling("wsep-server")?;
    let client_bin = sibling("wsep")?;

    let work = tempdir("wsep-bench")?;
    let bytes = args.mib << 20;
    let random = work.join("random.bin");
    write_random(&random, bytes)?;
    let text = work.join("text.txt");
    write_text(&text, bytes)?;

    let server = Wsep::start(&server_bin, &[], Vec::new())?;
    let secure = if args.tls {
        Some(Wsep::start_tls(&server_bin, &work)?)
    } else {
        None
    };
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
        let (mut tls_stdin, mut tls_stdout) = (Runs::default(), Runs::default());
        for _ in 0..args.runs.max(1) {
            let script = format!("cat {} | cat > /dev/null", random.display());
            pipe.push(server.time(Command::new("sh").args(["-c", &script]))?);
            for (server, stdin, stdout) in [
                Some((&server, &mut stdin, &mut stdout)),
                secure
                    .as_ref()
                    .map(|s| (s, &mut tls_stdin, &mut tls_stdout)),
            ]
            .into_iter()
            .flatten()
            {
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
        }
        println!("non-TTY throughput ({} MiB of random bytes)", args.mib);
        let pipe = pipe.median()?;
        row("plain pipe: cat FILE | cat > /dev/null", mib, pipe, None);
        let (stdin, stdout) = (stdin.median()?, stdout.median()?);
        row(
            "wsep stdin: wsep -- sh -c 'cat > /dev/null' < FILE",
            mib,
            stdin,
            Some(pipe),
        );
        row(
            "wsep stdout: wsep -- cat FILE > /dev/null",
            mib,
            stdout,
            Some(pipe),
        );
        if secure.is_some() {
            println!("  over wss:// (TLS), against the same over ws://");
            row("wss stdin", mib, tls_stdin.median()?, Some(stdin));
            row("wss stdout", mib, tls_stdout.median()?, Some(stdout));
        }
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

/// p50 and p99 in milliseconds of single-byte round trips through a TTY.
async fn echo_latency(server: &Wsep, samples: usize) -> anyhow::Result<(f64, f64)> {
    let rtts = execwire_bench::wsep::echoes(
        &server.url,
        &server.token,
        &wsep_client::Trust::System,
        samples,
        Duration::ZERO,
    )
    .await?;
    Ok((quantile(&rtts, 0.50), quantile(&rtts, 0.99)))
}

/// Opens `n` idle sessions; returns server RSS before and while they are
/// held, and how many failed to open.
async fn idle_sessions(server: &Wsep, n: usize, tty: bool) -> anyhow::Result<(u64, u64, usize)> {
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
struct Wsep {
    server: Server,
    url: String,
    token: String,
    /// How the `wsep` command trusts the server (`--ca FILE` over TLS).
    trust: Vec<String>,
}

impl Wsep {
    fn start(bin: &Path, extra: &[&str], trust: Vec<String>) -> anyhow::Result<Wsep> {
        let token = "bench-token".to_owned();
        let mut args = vec!["--listen", "127.0.0.1:0", "--token", &token];
        args.extend_from_slice(extra);
        let (server, url) = Server::start(bin, &args, "wsep-server listening on ")?;
        Ok(Wsep {
            server,
            url,
            token,
            trust,
        })
    }

    /// A second server over TLS, with a certificate made in `work`.
    fn start_tls(bin: &Path, work: &Path) -> anyhow::Result<Wsep> {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
        let (cert, key) = (work.join("cert.pem"), work.join("key.pem"));
        std::fs::write(&cert, made.cert.pem())?;
        std::fs::write(&key, made.signing_key.serialize_pem())?;
        let (cert, key) = (cert.display().to_string(), key.display().to_string());
        let trust = vec!["--ca".to_owned(), cert.clone()];
        Wsep::start(bin, &["--tls-cert", &cert, "--tls-key", &key], trust)
    }

    /// The `wsep` command, pointed at this server with its token.
    fn client(&self, bin: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg(&self.url)
            .args(&self.trust)
            .env("WSEP_TOKEN", &self.token);
        cmd
    }

    fn time(&self, cmd: &mut Command) -> anyhow::Result<Run> {
        self.server.time(cmd)
    }

    fn rss(&self) -> anyhow::Result<u64> {
        self.server.rss()
    }
}
