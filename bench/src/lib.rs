//! What the benchmark programs share: test data, timing with CPU
//! accounting, medians and percentiles, and servers run as operators run
//! them. Benchmarks print figures; they assert nothing.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub mod pow;
pub mod webexec;
pub mod webterm;
pub mod wsep;

/// The binary `name` beside the running benchmark (target/release).
pub fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?
        .parent()
        .context("no executable directory")?
        .to_path_buf();
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found: build all binaries first (cargo build --release --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// A fresh directory for test data, named after the benchmark and process.
pub fn tempdir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// `bytes` random bytes.
pub fn write_random(path: &Path, bytes: usize) -> anyhow::Result<()> {
    let mut src = std::fs::File::open("/dev/urandom")?;
    let mut dst = std::fs::File::create(path)?;
    std::io::copy(&mut std::io::Read::take(&mut src, bytes as u64), &mut dst)?;
    Ok(())
}

/// Printable lines of 79 characters, like a log or a source file.
pub fn write_text(path: &Path, bytes: usize) -> anyhow::Result<()> {
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
pub struct Run {
    /// Wall-clock seconds.
    pub wall: f64,
    /// CPU seconds, user and system, of every process involved.
    pub cpu: f64,
}

/// Several runs of one measurement.
#[derive(Debug, Default)]
pub struct Runs(Vec<Run>);

impl Runs {
    /// Records a run.
    pub fn push(&mut self, run: Run) {
        self.0.push(run);
    }

    /// The median wall time and, apart, the median CPU time.
    pub fn median(&self) -> anyhow::Result<Run> {
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

/// CPU seconds of a process (`"self"` or a pid) and its reaped children,
/// from `/proc/PID/stat`.
pub fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
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

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS")?;
    Ok(kib * 1024)
}

/// The value at quantile `q` (0..=1) of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q) as usize)
        .copied()
        .unwrap_or(0.0)
}

/// Prints one throughput figure, against a baseline when there is one.
pub fn row(label: &str, mib: f64, run: Run, baseline: Option<Run>) {
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

/// A server binary, run as operators run it, killed when dropped.
#[derive(Debug)]
pub struct Server {
    child: Child,
}

impl Server {
    /// Starts `bin` with `args`; returns it once it prints a line starting
    /// with `ready`, with the rest of that line.
    pub fn start(bin: &Path, args: &[&str], ready: &str) -> anyhow::Result<(Server, String)> {
        let mut child = Command::new(bin)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no server stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let server = Server { child };
        let rest = loop {
            let line = lines.next().context("server exited before listening")??;
            if let Some(rest) = line.strip_prefix(ready) {
                break rest.trim().to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Ok((server, rest))
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory, in bytes.
    pub fn rss(&self) -> anyhow::Result<u64> {
        rss(self.pid())
    }

    /// CPU seconds the server has used so far.
    pub fn cpu(&self) -> anyhow::Result<f64> {
        cpu_seconds(&self.pid().to_string())
    }

    /// Runs `cmd` to completion (stdout discarded); wall time and the CPU
    /// time of this process's children plus the server's.
    pub fn time(&self, cmd: &mut Command) -> anyhow::Result<Run> {
        let cpu = cpu_seconds("self")? + self.cpu()?;
        let start = Instant::now();
        let status = cmd.stdout(Stdio::null()).status()?;
        let wall = start.elapsed().as_secs_f64();
        if !status.success() {
            bail!("{cmd:?} failed: {status}");
        }
        let cpu = cpu_seconds("self")? + self.cpu()? - cpu;
        Ok(Run { wall, cpu })
    }
}

impl Drop for Server {
    /// Stops the server as an operator would (SIGTERM), so it ends its
    /// sessions' processes itself; a server that dies by SIGKILL cannot,
    /// and a pane looping on `cat` would outlive the benchmark. SIGKILL
    /// only after five seconds.
    fn drop(&mut self) {
        let pid = i32::try_from(self.child.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(pid) = pid {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a process holds, read from `/proc`: the figures a leak shows in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holdings {
    /// Open file descriptors (`/proc/PID/fd`).
    pub fds: usize,
    /// Threads (`Threads:` in `/proc/PID/status`).
    pub threads: usize,
    /// Resident memory, bytes.
    pub rss: u64,
    /// Live processes below it (children, their children...), found by
    /// following every process's parent in `/proc/*/stat`.
    pub descendants: usize,
}

impl Holdings {
    /// Reads them for `pid`.
    pub fn of(pid: u32) -> anyhow::Result<Holdings> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let threads = status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .context("no Threads")?;
        Ok(Holdings {
            fds,
            threads,
            rss: rss(pid)?,
            descendants: descendants(pid).len(),
        })
    }
}

/// The pids of every live process below `pid`: each process's parent is
/// field 4 of `/proc/PID/stat`; a process whose chain of parents reaches
/// `pid` is a descendant. Zombies count (a zombie is a leak until reaped).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parent = std::collections::HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            // A process may end between the listing and this read.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(ppid) = ppid {
                parent.insert(child, ppid);
            }
        }
    }
    let below = |mut p: u32| {
        // Chains are short; the bound only guards against a cycle read
        // across pid reuse.
        for _ in 0..64 {
            match parent.get(&p) {
                Some(&up) if up == pid => return true,
                Some(&up) if up > 1 => p = up,
                _ => return false,
            }
        }
        false
    };
    let mut found: Vec<u32> = parent.keys().copied().filter(|&p| below(p)).collect();
    found.sort_unstable();
    found
}

/// A small seeded generator (SplitMix64): a benchmark's random choices are
/// repeated by giving the seed it printed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// A seed from the clock, for runs not told one.
    pub fn clock_seed() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The highest resident memory of a process, sampled every `every` by a
/// task until dropped.
#[derive(Debug)]
pub struct PeakRss {
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PeakRss {
    /// Starts sampling `pid` (inside a tokio runtime).
    pub fn watch(pid: u32, every: Duration) -> PeakRss {
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(rss(pid).unwrap_or(0)));
        let sampled = peak.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Ok(r) = rss(pid) {
                    sampled.fetch_max(r, std::sync::atomic::Ordering::Relaxed);
                }
                tokio::time::sleep(every).await;
            }
        });
        PeakRss { peak, task }
    }

    /// The highest seen so far, bytes.
    pub fn peak(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.task.abort();
    }
}
