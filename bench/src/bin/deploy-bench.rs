//! Deployment benchmark: what the gateway and the relay of `deploy/` cost.
//!
//! - Through nginx with TLS (`deploy/nginx/execwire.conf`, wss:// to
//!   nginx, ws:// behind it) against the same wsep server direct over
//!   plain ws://, in the same run, rounds interleaved: output throughput
//!   (`cat FILE`) and keystroke echo over a PTY (p50/p99, and what p99
//!   the gateway adds); nginx's own CPU apart, and the ratio its work
//!   alone allows on this machine's cores.
//! - Through coturn (`deploy/coturn/turnserver.conf`), the `webrtc`
//!   crate's client allowed relayed candidates only, credentials minted by
//!   the server from the shared secret: webexec output throughput and
//!   echo, against the same client connected directly; then headless
//!   Chromium relay-only (`tests/browser/bench.mjs --relay`) when it is
//!   there.
//!
//! The servers run in this process (as the tests run them); nginx and
//! coturn are the system's. Prints figures; asserts nothing but that every
//! byte arrived. Targets (issue 14): through nginx >= 0.6 of direct, echo
//! p99 + < 1 ms; through the relay >= 200 Mbit/s, echo p99 < 10 ms.
//!
//! `cargo build --release -p execwire-bench --bin deploy-bench &&
//! ./target/release/deploy-bench` (`--mib N`, `--runs N`, `--echoes N`,
//! `--only gateway` or `--only relay`). On a machine others share, the CPU
//! figures (this process's and nginx's, per run) are steadier than the
//! speeds.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use execwire_bench::webexec::{echoes, node, open_pane, settle};
use execwire_bench::wsep::Echo;
use execwire_bench::{Run, Runs, cores, cpu_seconds, descendants, quantile, tempdir, write_random};
use execwire_tests::TestServer;
use execwire_tests::deploy::{Gateway, Turn};
use execwire_tests::webexec::{Client, Relay, Signaling};
use wsep_client::{Output, Trust};
use wsep_proto::StartCommand;
use wsep_server::CommonConfig as _;

#[derive(Debug, Parser)]
struct Args {
    /// Size of each throughput run, in MiB.
    #[arg(long, default_value_t = 100)]
    mib: usize,
    /// Runs per throughput figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Keystrokes to time per path.
    #[arg(long, default_value_t = 300)]
    echoes: usize,
    /// Run only this part.
    #[arg(long, value_enum)]
    only: Option<Part>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    /// wsep through nginx with TLS, and the server's own TLS.
    Gateway,
    /// webexec through coturn.
    Relay,
}

impl Args {
    fn wants(&self, part: Part) -> bool {
        self.only.is_none_or(|only| only == part)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempdir("deploy-bench")?;
    let file = dir.join("data.bin");
    write_random(&file, args.mib << 20)?;
    let bytes = std::fs::metadata(&file)?.len();
    println!(
        "deploy-bench: {} cores, {} MiB per run, median of {}, {} echoes",
        cores(),
        args.mib,
        args.runs,
        args.echoes
    );
    if args.wants(Part::Gateway) {
        match execwire_tests::deploy::find("nginx") {
            Some(nginx) => gateway(&nginx, &file, bytes, &args).await?,
            None => println!("nginx: skipped (not installed)"),
        }
    }
    if args.wants(Part::Relay) {
        match execwire_tests::deploy::find("turnserver") {
            Some(turnserver) => relay(&turnserver, &file, bytes, &args).await?,
            None => println!("coturn: skipped (not installed)"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// wsep direct (ws://) against through nginx (wss:// to nginx).
async fn gateway(nginx: &Path, file: &Path, bytes: u64, args: &Args) -> anyhow::Result<()> {
    let config = wsep_server::Config::default().with_base_path("/host-b/wsep/");
    let server = TestServer::wsep_with(config).await;
    let gateway = Gateway::start(nginx, &[("server 10.0.0.2:8080;", server.addr)], "1h");
    let direct = (format!("ws://{}/host-b/wsep/", server.addr), Trust::System);
    let proxied = (
        gateway.wss("/host-b/wsep/"),
        Trust::Ca(gateway.ca_file.clone()),
    );
    // The same server's TLS without nginx, to tell what TLS costs from
    // what the proxy does.
    let identity = execwire_tests::tls::identity();
    let fingerprint = identity.fingerprint().to_owned();
    let secure = TestServer::with_tls(execwire_tests::Kind::Wsep, identity).await;
    let own_tls = (
        format!("wss://{}/", secure.addr),
        Trust::Fingerprint(fingerprint),
    );
    let script = format!("cat {}", file.display());
    let (mut plain, mut tls, mut wss) = (Runs::default(), Runs::default(), Runs::default());
    let mut proxy_cpu = Vec::new();
    for _ in 0..args.runs.max(1) {
        plain.push(wsep_output(&direct, &server.token, &script, bytes).await?.0);
        let (run, nginx) = wsep_output(&proxied, &server.token, &script, bytes).await?;
        tls.push(run);
        proxy_cpu.push(nginx);
        wss.push(
            wsep_output(&own_tls, &secure.token, &script, bytes)
                .await?
                .0,
        );
    }
    let mib = bytes as f64 / f64::from(1 << 20);
    let (plain, tls, wss) = (plain.median()?, tls.median()?, wss.median()?);
    let nginx = median(&mut proxy_cpu);
    println!("wsep through nginx with TLS (deploy/nginx), against direct plain ws://");
    println!("  (CPU: this process, client and server, and nginx's, per run)");
    println!(
        "  output, direct ws://                 {:>7.1} MiB/s                 CPU {:.2} s",
        mib / plain.wall,
        plain.cpu
    );
    println!(
        "  output, wss:// through nginx         {:>7.1} MiB/s = {:.2} of direct CPU {:.2} s (target >= 0.6)",
        mib / tls.wall,
        plain.wall / tls.wall,
        tls.cpu
    );
    println!(
        "  output, wss:// the server's own TLS  {:>7.1} MiB/s = {:.2} of direct CPU {:.2} s (no proxy)",
        mib / wss.wall,
        plain.wall / wss.wall,
        wss.cpu
    );
    // What the CPU allows, with every core busy all the time: the proxied
    // run takes at least its CPU spread over the cores; and, even with a
    // client whose TLS cost nothing, at least the direct run's CPU plus
    // nginx's.
    let cores = cores() as f64;
    println!(
        "  nginx alone: CPU {nginx:.2} s of the {:.2} s; on {cores} busy cores the proxied run's CPU allows at most {:.2} of direct, without the client's TLS {:.2}",
        tls.cpu,
        plain.wall / (tls.cpu / cores),
        plain.wall / ((plain.cpu + nginx) / cores),
    );
    // Keystrokes 5 ms apart, as webexec-bench types.
    let gap = Duration::from_millis(5);
    // Both terminals open at once and typed in turn, so that both see the
    // same moments of a shared machine's load: p99 on a busy machine is
    // mostly other programs, and timed one path after the other, the
    // difference was the load's rather than the gateway's (-15 to +4 ms
    // between runs).
    let mut near = Echo::open(&direct.0, &server.token, &direct.1).await?;
    let mut far = Echo::open(&proxied.0, &server.token, &proxied.1).await?;
    let (mut direct_echo, mut proxied_echo) = (Vec::new(), Vec::new());
    for _ in 0..args.echoes {
        direct_echo.push(near.round_trip().await?);
        tokio::time::sleep(gap).await;
        proxied_echo.push(far.round_trip().await?);
        tokio::time::sleep(gap).await;
    }
    near.close().await?;
    far.close().await?;
    direct_echo.sort_by(f64::total_cmp);
    proxied_echo.sort_by(f64::total_cmp);
    print_latency("echo over a PTY, direct ws://", &direct_echo);
    print_latency("echo over a PTY, through nginx", &proxied_echo);
    println!(
        "  p99 added by the gateway: {:.2} ms (target < 1 ms)",
        quantile(&proxied_echo, 0.99) - quantile(&direct_echo, 0.99)
    );
    drop(gateway);
    server.shutdown().await;
    secure.shutdown().await;
    Ok(())
}

/// Wall seconds to receive `cat FILE`'s `bytes` over wsep at `url`, the
/// CPU seconds this process (client, server, `cat`) and nginx spent, and
/// apart nginx's share of them.
async fn wsep_output(
    (url, trust): &(String, Trust),
    token: &str,
    script: &str,
    bytes: u64,
) -> anyhow::Result<(Run, f64)> {
    let (cpu, nginx) = (cpu_seconds("self")?, nginx_cpu());
    let start = Instant::now();
    let command = StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        ..StartCommand::default()
    };
    let (mut input, mut out) =
        wsep_client::start_trusting(url, Some(token), command, trust).await?;
    input.close_stdin().await?;
    let mut got = 0u64;
    while let Some(event) = out.next().await? {
        match event {
            Output::Stdout(b) => got += b.len() as u64,
            Output::Stderr(b) => bail!("stderr: {}", String::from_utf8_lossy(&b)),
            Output::Exit { code, .. } if code != 0 => bail!("cat exited {code}"),
            Output::Exit { .. } => {}
        }
    }
    if got != bytes {
        bail!("{url}: got {got} bytes of {bytes}");
    }
    let wall = start.elapsed().as_secs_f64();
    let nginx = nginx_cpu() - nginx;
    let cpu = cpu_seconds("self")? - cpu + nginx;
    Ok((Run { wall, cpu }, nginx))
}

/// CPU seconds of the nginx processes below this one (the gateway's
/// master and worker; none on a direct run, whose figure is then this
/// process's alone).
fn nginx_cpu() -> f64 {
    descendants(std::process::id())
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "nginx")
        })
        .filter_map(|pid| cpu_seconds(&pid.to_string()).ok())
        .sum()
}

/// webexec through coturn, relay only, against the same client direct.
async fn relay(turnserver: &Path, file: &Path, bytes: u64, args: &Args) -> anyhow::Result<()> {
    let turn = Turn::start(turnserver).await;
    let mut config = webexec_server::Config::default();
    config.rtc.turn = Some(webexec_server::TurnSecret {
        urls: vec![turn.url()],
        secret: turn.secret.clone(),
        ttl: Duration::from_secs(3600),
        user: "bench".into(),
    });
    let server = TestServer::webexec_with(config).await;
    let base = format!("http://{}", server.addr);
    // The credentials the demo page gets.
    let ice: serde_json::Value = serde_json::from_str(
        &reqwest::Client::new()
            .get(format!("{base}/ice-servers"))
            .bearer_auth(&server.token)
            .send()
            .await?
            .text()
            .await?,
    )?;
    let minted = ice
        .get("iceServers")
        .and_then(|servers| servers.get(0))
        .context("no ICE server handed out")?;
    let field = |name: &str| {
        minted
            .get(name)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let relay = Relay {
        url: turn.url(),
        username: field("username"),
        credential: field("credential"),
    };
    let mut relayed = Client::connect_relayed(&base, &server.token, &relay)
        .await
        .map_err(|e| anyhow::anyhow!("relayed connect: {e:?}"))?;
    let mut direct = Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .map_err(|e| anyhow::anyhow!("direct connect: {e:?}"))?;
    let label = format!("cat,{}", file.display());
    let (mut near, mut far) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        near.push(webexec_output(&mut direct, &label, bytes).await?);
        far.push(webexec_output(&mut relayed, &label, bytes).await?);
    }
    let mbit = bytes as f64 * 8.0 / 1e6;
    let (near, far) = (median(&mut near), median(&mut far));
    println!("webexec through coturn (deploy/coturn), relay-only client, against direct");
    println!(
        "  output, direct                       {:>7.0} Mbit/s",
        mbit / near
    );
    println!(
        "  output, relayed through coturn       {:>7.0} Mbit/s (target >= 200)",
        mbit / far
    );
    for (name, client) in [("direct", &mut direct), ("relayed", &mut relayed)] {
        let echo = open_pane(client, "24x80,sh,-c,stty raw -echo; echo ready; exec cat").await?;
        settle(&echo).await?;
        let samples = echoes(&echo, args.echoes).await?;
        print_latency(&format!("echo over a PTY, {name}"), &samples);
    }
    println!("  (relayed echo target: p99 < 10 ms)");
    relayed.close().await;
    direct.close().await;
    match execwire_tests::browser_tools() {
        Ok((chromium, dir)) => {
            // The same through Chromium's own WebRTC, relay only, the ICE
            // servers from the server as the demo page gets them.
            println!("  headless Chromium, relay only (target >= 200 Mbit/s = 23.8 MiB/s):");
            let url = format!("{base}/#token={}", server.token);
            let file = file.to_str().context("temp path")?;
            let (runs, echoes) = (args.runs.to_string(), args.echoes.to_string());
            let script = [
                "bench.mjs",
                &url,
                "--file",
                file,
                "--runs",
                &runs,
                "--echoes",
                &echoes,
                "--relay",
            ];
            node(&chromium, &dir, &script).await?;
        }
        Err(missing) => println!("  chromium: skipped ({missing})"),
    }
    server.shutdown().await;
    Ok(())
}

/// Seconds to receive all of `cat FILE` on a new pane.
async fn webexec_output(client: &mut Client, label: &str, bytes: u64) -> anyhow::Result<f64> {
    let start = Instant::now();
    let channel = open_pane(client, label).await?;
    let mut got = 0u64;
    while let Some(msg) = channel.recv_forever().await {
        got += msg.bytes().len() as u64;
    }
    if got != bytes {
        bail!("webexec output: got {got} bytes of {bytes}");
    }
    Ok(start.elapsed().as_secs_f64())
}

fn median(runs: &mut [f64]) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn print_latency(label: &str, sorted: &[f64]) {
    println!(
        "  {label:<36} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n={})",
        quantile(sorted, 0.5),
        quantile(sorted, 0.99),
        sorted.last().copied().unwrap_or(0.0),
        sorted.len()
    );
}
