//! Which PTY crate for exec-core: portable-pty (blocking reads, a thread per
//! terminal) against pty-process (an async master, as exec-core uses it).
//!
//! Measures, for each: throughput of `cat FILE` through a terminal into an
//! async consumer (what a server does with it), and this process's memory and
//! thread count while holding N idle shells. Prints figures, asserts nothing.
//!
//! `cargo run --release -p execwire-bench --bin pty-bench -- [--mib 100] [--sessions 1000]`

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;
use exec_core::{Event, Events, Process, PtySize};

#[derive(Debug, Parser)]
struct Args {
    /// MiB of text pushed through each terminal.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Idle shells held for the memory figure.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    exec_core::raise_open_files_limit();
    let file = std::env::temp_dir().join(format!("pty-bench-{}.txt", std::process::id()));
    write_text(&file, args.mib << 20)?;
    let runtime = tokio::runtime::Runtime::new()?;

    println!(
        "PTY crates, {} MiB of text through `cat`, {} idle shells",
        args.mib, args.sessions
    );
    let mib = args.mib as f64;
    let mut async_runs = Vec::new();
    let mut thread_runs = Vec::new();
    for _ in 0..3 {
        async_runs.push(runtime.block_on(async_cat(&file))?);
        thread_runs.push(runtime.block_on(threaded_cat(&file))?);
    }
    println!(
        "  pty-process (async master):   {:>7.1} MiB/s",
        mib / median(async_runs)
    );
    println!(
        "  portable-pty (reader thread): {:>7.1} MiB/s",
        mib / median(thread_runs)
    );

    let base = memory()?;
    let held = runtime.block_on(async_idle(args.sessions))?;
    let with_async = memory()?;
    for task in held {
        task.abort(); // dropping the task drops its Process: the shell is killed
    }
    println!(
        "  pty-process:  {} idle shells: +{:.1} KiB RSS each, {} threads",
        args.sessions,
        (with_async.0.saturating_sub(base.0)) as f64 / 1024.0 / args.sessions as f64,
        with_async.1
    );
    let base = memory()?;
    let held = threaded_idle(args.sessions)?;
    let with_threads = memory()?;
    println!(
        "  portable-pty: {} idle shells: +{:.1} KiB RSS each, {} threads",
        args.sessions,
        (with_threads.0.saturating_sub(base.0)) as f64 / 1024.0 / args.sessions as f64,
        with_threads.1
    );
    drop(held);
    let _ = std::fs::remove_file(&file);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn write_text(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let line = "the quick brown fox jumps over the lazy dog 0123456789\n";
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut written = 0;
    while written < bytes {
        out.write_all(line.as_bytes())?;
        written += line.len();
    }
    out.flush()?;
    Ok(())
}

/// RSS in bytes and thread count of this process.
fn memory() -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Ok((
        field("VmRSS:").context("no VmRSS")? * 1024,
        field("Threads:").context("no Threads")?,
    ))
}

async fn async_cat(file: &Path) -> anyhow::Result<f64> {
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
    Ok(start.elapsed().as_secs_f64())
}

fn portable_size() -> portable_pty::PtySize {
    portable_pty::PtySize {
        rows: 24,
        cols: 80,
        pixel_width: 0,
        pixel_height: 0,
    }
}

/// portable-pty as a server would use it: a thread reads the master and
/// hands chunks to async code over a bounded channel.
async fn threaded_cat(file: &Path) -> anyhow::Result<f64> {
    let pair = portable_pty::native_pty_system()
        .openpty(portable_size())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cmd = portable_pty::CommandBuilder::new("cat");
    cmd.arg(file);
    let start = Instant::now();
    let mut child = pair
        .slave
        .spawn_command(cmd)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    drop(pair.slave);
    let mut reader = pair
        .master
        .try_clone_reader()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    let thread = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || tx
                    .blocking_send(buf.get(..n).unwrap_or_default().to_vec())
                    .is_err()
            {
                break;
            }
        }
    });
    while rx.recv().await.is_some() {}
    let _ = thread.join();
    let _ = child.wait();
    Ok(start.elapsed().as_secs_f64())
}

/// Each idle shell as exec-core runs one: a task reading its output.
async fn async_idle(n: usize) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let cmd = exec_core::Command::new("sh").pty(PtySize { rows: 24, cols: 80 });
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut events = Events::new(Process::spawn(&cmd)?);
        tasks.push(tokio::spawn(async move {
            while let Some(Ok(event)) = events.next().await {
                if let Event::Exit(_) = event {
                    break;
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    Ok(tasks)
}

/// Each idle shell as portable-pty needs it: a reader thread and a waiter
/// thread (its `Child::wait` blocks).
struct Held {
    _master: Box<dyn portable_pty::MasterPty + Send>,
    killers: Vec<Box<dyn portable_pty::ChildKiller + Send + Sync>>,
}

impl Drop for Held {
    fn drop(&mut self) {
        for k in &mut self.killers {
            let _ = k.kill();
        }
    }
}

fn threaded_idle(n: usize) -> anyhow::Result<Vec<Held>> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let pair = portable_pty::native_pty_system()
            .openpty(portable_size())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut child = pair
            .slave
            .spawn_command(portable_pty::CommandBuilder::new("sh"))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        drop(pair.slave);
        let killer = child.clone_killer();
        let mut reader = pair
            .master
            .try_clone_reader()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        });
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        held.push(Held {
            _master: pair.master,
            killers: vec![killer],
        });
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    Ok(held)
}
