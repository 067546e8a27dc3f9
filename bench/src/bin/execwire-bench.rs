//! execwire daemon benchmark, issue 12's targets, against the real release
//! binaries as operators run them (port 0, a token):
//!
//! - `compare`: for each protocol, output throughput (`cat FILE`, every
//!   byte checked) and echo round trips, through its single-protocol server
//!   and through the daemon at its path, in alternating runs of the same
//!   process on the same machine, with a plain pipe as the raw baseline;
//!   the ratio daemon/single and whether it is within 10 %.
//! - `panes`: many idle terminal panes across protocols in one daemon
//!   (half wsep named sessions, half webexec panes, 10 a peer): errors,
//!   the daemon's memory, fds and threads before, while held and after,
//!   per idle pane; then every pane ended and its processes gone.
//! - `redraw`: a pane writing without a pause, streamed by one client,
//!   attached again and again by a second (wsep `start` with the same id,
//!   webexec `reconnect_pane`): the time from the attach request to the
//!   first message of the redraw.
//!
//! Prints figures; asserts nothing but that every byte arrived.
//!
//! Run from the workspace root:
//! `cargo build --release --bins --workspace && ./target/release/execwire-bench`
//! (`--mib N`, `--runs N`, `--echoes N`, `--panes N`, `--attaches N`,
//! `--only compare|panes|redraw`).

// Indexing a `serde_json::Value` yields `Null` for what is missing; it never panics.
#![allow(clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use execwire_bench::webexec::{open_pane, open_pane_id, settle, start_server};
use execwire_bench::{Holdings, Run, Runs, Server, cores, quantile, sibling, tempdir, write_text};
use execwire_tests::webexec::{Client, ClientChannel, Signaling};
use futures_util::{Stream, StreamExt as _};
use serde_json::json;
use wsep_client::{Input, Output, Outputs, Trust};
use wsep_proto::StartCommand;

#[derive(Debug, Parser)]
struct Args {
    /// Size of each throughput run, in MiB.
    #[arg(long, default_value_t = 32)]
    mib: usize,
    /// Rounds of the comparison; each runs single and daemon once, in
    /// alternating order (the median throughput is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Echo round trips per protocol, server and round.
    #[arg(long, default_value_t = 200)]
    echoes: usize,
    /// Idle panes held at once in the daemon (half wsep, half webexec).
    #[arg(long, default_value_t = 1000)]
    panes: usize,
    /// Attaches to the busy pane, per protocol and server.
    #[arg(long, default_value_t = 200)]
    attaches: usize,
    /// Run only this part.
    #[arg(long, value_enum)]
    only: Option<Section>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    /// Throughput and echo, single servers against the daemon.
    Compare,
    /// Idle panes across protocols in the daemon.
    Panes,
    /// A second client attaching a busy pane.
    Redraw,
}

impl Args {
    fn wants(&self, section: Section) -> bool {
        self.only.is_none_or(|only| only == section)
    }
}

const TOKEN: &str = "bench-token";

/// Webexec panes a peer opens in `panes`.
const PANES_PER_PEER: usize = 10;

/// Where every protocol is served: the single servers, or the daemon.
#[derive(Debug, Clone, Copy)]
enum Place {
    Single,
    Daemon,
}

impl Place {
    fn name(self) -> &'static str {
        match self {
            Place::Single => "single",
            Place::Daemon => "daemon",
        }
    }
}

/// The protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Wsep,
    Pow,
    Webterm,
    Webexec,
}

const PROTOS: [Proto; 4] = [Proto::Wsep, Proto::Pow, Proto::Webterm, Proto::Webexec];

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Wsep => "wsep",
            Proto::Pow => "pow-1",
            Proto::Webterm => "webterm",
            Proto::Webexec => "webexec",
        }
    }
}

/// One protocol's server: the process (for its CPU time) and the URL its
/// client takes (webexec: the signaling address).
#[derive(Debug)]
struct Endpoint<'a> {
    server: &'a Server,
    url: String,
}

/// Every protocol's endpoint at one place.
#[derive(Debug)]
struct Endpoints<'a> {
    wsep: Endpoint<'a>,
    pow: Endpoint<'a>,
    webterm: Endpoint<'a>,
    webexec: Endpoint<'a>,
}

impl Endpoints<'_> {
    fn of(&self, proto: Proto) -> &Endpoint<'_> {
        match proto {
            Proto::Wsep => &self.wsep,
            Proto::Pow => &self.pow,
            Proto::Webterm => &self.webterm,
            Proto::Webexec => &self.webexec,
        }
    }

    fn webexec_addr(&self) -> anyhow::Result<SocketAddr> {
        self.webexec.url.parse().context("webexec address")
    }
}

/// The four single-protocol servers.
struct Singles {
    wsep: Server,
    pow: Server,
    webterm: Server,
    webexec: Server,
    urls: [String; 4],
}

impl Singles {
    fn start(config: &str, state: &Path) -> anyhow::Result<Singles> {
        let common = ["--listen", "127.0.0.1:0", "--token", TOKEN];
        let (wsep, wsep_url) = Server::start(
            &sibling("wsep-server")?,
            &common,
            "wsep-server listening on ",
        )?;
        let (pow, pow_addr) = Server::start(
            &sibling("pow-server")?,
            &[&common[..], &["--config", config]].concat(),
            "pow-server listening on ws://",
        )?;
        let (webterm, webterm_url) = Server::start(
            &sibling("webterm-server")?,
            &[&common[..], &["--shell", "/bin/sh"]].concat(),
            "webterm-server listening on ",
        )?;
        let (webexec, webexec_addr) = start_server(TOKEN, state)?;
        let pow_url = format!("ws://{}/", pow_addr.trim_end_matches('/'));
        Ok(Singles {
            wsep,
            pow,
            webterm,
            webexec,
            urls: [wsep_url, pow_url, webterm_url, webexec_addr.to_string()],
        })
    }

    fn endpoints(&self) -> Endpoints<'_> {
        let [wsep, pow, webterm, webexec] = self.urls.clone();
        Endpoints {
            wsep: Endpoint {
                server: &self.wsep,
                url: wsep,
            },
            pow: Endpoint {
                server: &self.pow,
                url: pow,
            },
            webterm: Endpoint {
                server: &self.webterm,
                url: webterm,
            },
            webexec: Endpoint {
                server: &self.webexec,
                url: webexec,
            },
        }
    }
}

/// The daemon, every protocol on one listener; its address.
fn start_daemon(config: &str) -> anyhow::Result<(Server, String)> {
    let (server, rest) = Server::start(
        &sibling("execwire")?,
        &[
            "--listen",
            "127.0.0.1:0",
            "--token",
            TOKEN,
            "--udp-ports",
            "0-0",
            "--shell",
            "/bin/sh",
            "--config",
            config,
        ],
        "execwire listening on http://",
    )?;
    let addr = rest.split('/').next().context("no address")?.to_owned();
    Ok((server, addr))
}

fn daemon_endpoints<'a>(server: &'a Server, addr: &str) -> Endpoints<'a> {
    let at = |url: String| Endpoint { server, url };
    Endpoints {
        wsep: at(format!("ws://{addr}/wsep")),
        pow: at(format!("ws://{addr}/pow/")),
        webterm: at(format!("ws://{addr}/webterm")),
        webexec: at(addr.to_owned()),
    }
}

/// pow's processes, in the file both pow-server and the daemon read.
fn processes(text: &Path) -> String {
    let file = text.display().to_string();
    format!(
        "[process.cat]\nargv = [\"cat\", \"{}\"]\n\n[process.idle]\nargv = [\"cat\"]\n",
        file.replace('\\', "\\\\").replace('"', "\\\"")
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    exec_core::raise_open_files_limit();
    let work = tempdir("execwire-bench")?;
    let text = work.join("text.txt");
    write_text(&text, args.mib << 20)?;
    let data = std::fs::read(&text)?;
    let config = work.join("execwire.toml");
    std::fs::write(&config, processes(&text))?;
    let config = config.to_str().context("temp path")?;
    let state = work.join("webexec-state");

    println!(
        "execwire-bench: the daemon against the single-protocol servers, {} cores",
        cores()
    );
    println!();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        if args.wants(Section::Compare) || args.wants(Section::Redraw) {
            let singles = Singles::start(config, &state)?;
            let (daemon, addr) = start_daemon(config)?;
            let single = singles.endpoints();
            let daemon = daemon_endpoints(&daemon, &addr);
            if args.wants(Section::Compare) {
                compare(&args, &single, &daemon, &text, &data).await?;
            }
            if args.wants(Section::Redraw) {
                redraw(&args, &single, &daemon).await?;
            }
        }
        if args.wants(Section::Panes) {
            panes(&args, config).await?;
        }
        anyhow::Ok(())
    })?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A webexec peer per place for the comparison: its throughput panes and
/// one echo pane (`cat` on a raw terminal).
struct WebexecPeer {
    client: Client,
    echo: ClientChannel,
}

impl WebexecPeer {
    async fn connect(at: &Endpoints<'_>) -> anyhow::Result<WebexecPeer> {
        let mut client = Client::connect(at.webexec_addr()?, Some(TOKEN), &Signaling::Offer)
            .await
            .map_err(|e| anyhow::anyhow!("webexec connect: {e:?}"))?;
        let echo = open_pane(
            &mut client,
            "24x80,sh,-c,stty raw -echo; echo ready; exec cat",
        )
        .await?;
        settle(&echo).await?;
        Ok(WebexecPeer { client, echo })
    }
}

/// One protocol's figures at one place.
#[derive(Default)]
struct Figures {
    runs: Runs,
    echoes: Vec<f64>,
}

async fn compare(
    args: &Args,
    single: &Endpoints<'_>,
    daemon: &Endpoints<'_>,
    text: &Path,
    data: &[u8],
) -> anyhow::Result<()> {
    let mut peers = [
        WebexecPeer::connect(single).await?,
        WebexecPeer::connect(daemon).await?,
    ];
    let mut figures: [[Figures; 2]; 4] = Default::default();
    let mut pipe = Runs::default();
    for round in 0..args.runs.max(1) {
        let script = format!("cat {} | cat > /dev/null", text.display());
        pipe.push(
            single
                .wsep
                .server
                .time(Command::new("sh").args(["-c", &script]))?,
        );
        // Alternate which goes first, so that drift in the machine's speed
        // (and a warm cache) favours neither.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for (proto, places) in PROTOS.into_iter().zip(figures.iter_mut()) {
            for place in order {
                let at = if place == 0 { single } else { daemon };
                let peer = peers.get_mut(place).context("two peers")?;
                let f = places.get_mut(place).context("two places")?;
                f.runs
                    .push(output(proto, at.of(proto), peer, text, data).await?);
                f.echoes
                    .extend(echoes(proto, at.of(proto), peer, args.echoes).await?);
            }
        }
    }
    for peer in &peers {
        peer.client.close().await;
    }
    let pipe = pipe.median()?;
    let mib = args.mib as f64;
    println!(
        "throughput: `cat FILE` ({} MiB of text lines, every byte checked), median of {} runs; plain pipe `cat FILE | cat > /dev/null` {:.0} MiB/s",
        args.mib,
        args.runs.max(1),
        mib / pipe.wall
    );
    println!(
        "  {:<8} {:>13} {:>13} {:>14} {:>11}   {:>9} {:>9}",
        "", "single MiB/s", "daemon MiB/s", "daemon/single", "within 10%", "CPU s sgl", "CPU s dmn"
    );
    for (proto, [s, d]) in PROTOS.into_iter().zip(&figures) {
        let (s, d) = (s.runs.median()?, d.runs.median()?);
        let ratio = s.wall / d.wall;
        println!(
            "  {:<8} {:>13.1} {:>13.1} {:>14.3} {:>11}   {:>9.2} {:>9.2}",
            proto.name(),
            mib / s.wall,
            mib / d.wall,
            ratio,
            yes(ratio >= 0.9),
            s.cpu,
            d.cpu
        );
    }
    println!();
    println!(
        "echo round trip, ms ({} samples per protocol and place: {} rounds of {}; wsep and webexec through a raw PTY `cat`, pow-1 and webterm through `cat` on pipes, webexec 5 ms apart, webterm 10 ms)",
        args.echoes * args.runs.max(1),
        args.runs.max(1),
        args.echoes
    );
    println!(
        "  {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "",
        "single p50",
        "single p99",
        "daemon p50",
        "daemon p99",
        "ratio p50",
        "ratio p99",
        "within 10%"
    );
    for (proto, [s, d]) in PROTOS.into_iter().zip(&mut figures) {
        s.echoes.sort_by(f64::total_cmp);
        d.echoes.sort_by(f64::total_cmp);
        let (s50, s99) = (quantile(&s.echoes, 0.5), quantile(&s.echoes, 0.99));
        let (d50, d99) = (quantile(&d.echoes, 0.5), quantile(&d.echoes, 0.99));
        let (r50, r99) = (d50 / s50, d99 / s99);
        println!(
            "  {:<8} {s50:>10.3} {s99:>10.3} {d50:>10.3} {d99:>10.3} {r50:>10.3} {r99:>10.3} {:>11}",
            proto.name(),
            yes(r50 <= 1.1 && r99 <= 1.1),
        );
    }
    println!(
        "  (throughput within 10 %: daemon/single >= 0.90; echo: daemon/single <= 1.10 at p50 and p99)"
    );
    println!();
    Ok(())
}

fn yes(ok: bool) -> &'static str {
    if ok { "yes" } else { "NO" }
}

/// One output run of `proto` at `at`: `cat FILE`, every byte compared.
async fn output(
    proto: Proto,
    at: &Endpoint<'_>,
    peer: &mut WebexecPeer,
    text: &Path,
    data: &[u8],
) -> anyhow::Result<Run> {
    match proto {
        Proto::Wsep => {
            execwire_bench::wsep::time_output(at.server, &at.url, TOKEN, text, data).await
        }
        Proto::Pow => {
            execwire_bench::pow::time_output(at.server, &at.url, TOKEN, "cat", data).await
        }
        Proto::Webterm => {
            let line = format!("cat {}", text.display());
            let (run, _) =
                execwire_bench::webterm::time_command(at.server, &at.url, TOKEN, &line, &[], data)
                    .await?;
            Ok(run)
        }
        Proto::Webexec => {
            let cpu = execwire_bench::cpu_seconds("self")? + at.server.cpu()?;
            let start = Instant::now();
            let file = text.to_str().context("temp path")?;
            let ch = open_pane(&mut peer.client, &format!("cat,{file}")).await?;
            let (mut got, mut intact) = (0, true);
            while let Some(msg) = ch.recv_forever().await {
                let bytes = msg.bytes();
                intact &= data.get(got..got + bytes.len()) == Some(bytes);
                got += bytes.len();
            }
            let wall = start.elapsed().as_secs_f64();
            let cpu = execwire_bench::cpu_seconds("self")? + at.server.cpu()? - cpu;
            if got != data.len() || !intact {
                bail!(
                    "cat over webexec: {got} of {} bytes (intact: {intact})",
                    data.len()
                );
            }
            Ok(Run { wall, cpu })
        }
    }
}

/// `n` echo round trips of `proto` at `at`, in ms.
async fn echoes(
    proto: Proto,
    at: &Endpoint<'_>,
    peer: &WebexecPeer,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    match proto {
        Proto::Wsep => {
            execwire_bench::wsep::echoes(&at.url, TOKEN, &Trust::System, n, Duration::ZERO).await
        }
        Proto::Pow => execwire_bench::pow::echoes(&at.url, TOKEN, "idle", n).await,
        Proto::Webterm => execwire_bench::webterm::echoes(&at.url, TOKEN, n).await,
        Proto::Webexec => execwire_bench::webexec::echoes(&peer.echo, n).await,
    }
}

/// Errors seen, the first few printed as they come.
#[derive(Default)]
struct Errors(usize);

impl Errors {
    fn note(&mut self, what: &str, error: &anyhow::Error) {
        if self.0 < 5 {
            eprintln!("  error: {what}: {error:#}");
        }
        self.0 += 1;
    }
}

/// `args.panes` idle terminal panes in a fresh daemon: half wsep named
/// sessions (`tty`, an `id`, `cat`), half webexec panes (`24x80,cat`, ten
/// a peer). The wsep ids are names, never numbers, so they cannot collide
/// with webexec's numeric pane ids once both share one pane table.
async fn panes(args: &Args, config: &str) -> anyhow::Result<()> {
    let (server, addr) = start_daemon(config)?;
    let at = daemon_endpoints(&server, &addr);
    let pid = server.pid();
    let before = Holdings::of(pid)?;
    let wsep_n = args.panes / 2;
    let webexec_n = args.panes - wsep_n;
    let mut errors = Errors::default();
    let opening = Instant::now();

    let mut sessions: Vec<(Input, Outputs)> = Vec::with_capacity(wsep_n);
    for i in 0..wsep_n {
        let start = StartCommand {
            id: format!("bench-idle-{i}"),
            command: "cat".into(),
            tty: true,
            rows: 24,
            cols: 80,
            ..StartCommand::default()
        };
        match wsep_client::start(&at.wsep.url, Some(TOKEN), start).await {
            Ok(pair) => sessions.push(pair),
            Err(e) => errors.note("wsep start", &e.into()),
        }
    }
    let mut peers: Vec<(Client, Vec<ClientChannel>)> = Vec::new();
    let mut left = webexec_n;
    while left > 0 {
        let mut client =
            match Client::connect(at.webexec_addr()?, Some(TOKEN), &Signaling::Offer).await {
                Ok(client) => client,
                Err(e) => {
                    errors.note("webexec connect", &anyhow::anyhow!("{e:?}"));
                    left = left.saturating_sub(PANES_PER_PEER);
                    continue;
                }
            };
        let mut channels = Vec::new();
        for _ in 0..left.min(PANES_PER_PEER) {
            match open_pane(&mut client, "24x80,cat").await {
                Ok(ch) => channels.push(ch),
                Err(e) => errors.note("webexec pane", &e),
            }
        }
        left = left.saturating_sub(PANES_PER_PEER);
        peers.push((client, channels));
    }
    let opened = opening.elapsed().as_secs_f64();
    let webexec_held: usize = peers.iter().map(|(_, c)| c.len()).sum();
    let held_n = sessions.len() + webexec_held;
    let held = Holdings::of(pid)?;

    // End every pane: ^D at the start of a line ends `cat` on a terminal;
    // each client reads on until its pane's end arrives.
    let ending = Instant::now();
    for (mut input, mut out) in sessions {
        let ended = async {
            input.write(&[4]).await?;
            loop {
                match out.next().await? {
                    Some(Output::Exit { .. }) => return anyhow::Ok(()),
                    Some(_) => {}
                    None => bail!("connection ended before the exit"),
                }
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), ended).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => errors.note("wsep end", &e),
            Err(_) => errors.note("wsep end", &anyhow::anyhow!("no exit in 10 s")),
        }
    }
    for (client, channels) in peers {
        for ch in channels {
            ch.send(&[4]).await;
            let closed = async { while ch.recv_forever().await.is_some() {} };
            if tokio::time::timeout(Duration::from_secs(10), closed)
                .await
                .is_err()
            {
                errors.note("webexec end", &anyhow::anyhow!("pane not closed in 10 s"));
            }
        }
        client.close().await;
    }
    // Nothing announces the last process reaped: read /proc until the
    // daemon has no descendants left (at most 30 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = Holdings::of(pid)?;
    while after.descendants > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = Holdings::of(pid)?;
    }
    let ended = ending.elapsed().as_secs_f64();

    println!(
        "{} idle terminal panes in one daemon ({} wsep named sessions `cat`, {} webexec panes `cat` on {} peers), opened in {opened:.1} s, {} errors",
        held_n,
        wsep_n,
        webexec_held,
        webexec_n.div_ceil(PANES_PER_PEER),
        errors.0
    );
    let mib = |b: u64| b as f64 / 1048576.0;
    let per = |a: f64, b: f64| (b - a) / held_n.max(1) as f64;
    println!(
        "  {:<14} {:>10} {:>10} {:>10}",
        "", "before", "held", "after"
    );
    println!(
        "  {:<14} {:>10.1} {:>10.1} {:>10.1}   {:.1} KiB per idle pane",
        "RSS, MiB",
        mib(before.rss),
        mib(held.rss),
        mib(after.rss),
        per(before.rss as f64, held.rss as f64) / 1024.0
    );
    println!(
        "  {:<14} {:>10} {:>10} {:>10}   {:.2} per pane",
        "fds",
        before.fds,
        held.fds,
        after.fds,
        per(before.fds as f64, held.fds as f64)
    );
    println!(
        "  {:<14} {:>10} {:>10} {:>10}   {:.2} per pane",
        "threads",
        before.threads,
        held.threads,
        after.threads,
        per(before.threads as f64, held.threads as f64)
    );
    println!(
        "  {:<14} {:>10} {:>10} {:>10}   (all ended and reaped {ended:.1} s after the first ^D)",
        "descendants", before.descendants, held.descendants, after.descendants
    );
    println!();
    Ok(())
}

/// A terminal that writes as fast as it can, until ^C. No commas: webexec
/// labels are comma-separated argv.
const BUSY: &str = "i=0; while :; do i=$((i+1)); echo \"busy line $i: the quick brown fox jumps over the lazy dog\"; done";

/// Output the busy pane's streaming client has received before the
/// attaches begin: its screen is full and it writes at full speed.
const BUSY_BYTES: usize = 1 << 20;

/// Sends control request `kind` with message id `id` on `client`'s `%`
/// channel and returns its ack or nack; an error after 10 s of silence
/// (the tests' `Control::request` panics instead).
async fn request(
    client: &Client,
    id: i64,
    kind: &str,
    args: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let control = &client.control.channel;
    let msg = json!({"time": 1, "message_id": id, "type": kind, "args": args});
    control.send_text(&msg.to_string()).await;
    let reply = async {
        loop {
            let msg = control
                .recv_forever()
                .await
                .context("control channel closed")?;
            let v: serde_json::Value = serde_json::from_slice(msg.bytes())?;
            if (v["type"] == "ack" || v["type"] == "nack") && v["args"]["ref"] == id {
                return anyhow::Ok(v);
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), reply)
        .await
        .with_context(|| format!("no reply to {kind} in 10 s"))?
}

/// What the attaches of one protocol at one place measured.
#[derive(Default)]
struct Attaches {
    /// Attaches that failed.
    errors: Errors,
    /// Attach request to the redraw's first message, ms.
    first: Vec<f64>,
    /// Bytes of that first message.
    sizes: Vec<usize>,
    /// First messages that were not a redraw (which starts by choosing
    /// the main or the alternate screen, `ESC [ ? 1049`).
    not_redraw: usize,
    /// What the streaming client received meanwhile, MiB/s.
    streamed: f64,
}

async fn redraw(args: &Args, single: &Endpoints<'_>, daemon: &Endpoints<'_>) -> anyhow::Result<()> {
    println!(
        "redraw: one client streams a busy terminal (sh printing lines without a pause), a second attaches it {} times; attach request to the redraw's first message",
        args.attaches
    );
    println!(
        "  {:<8} {:<7} {:>8} {:>8} {:>8} {:>9}   {:>13} {:>11} {:>7}   streamed meanwhile",
        "", "", "p50 ms", "p99 ms", "max ms", "p99<50ms", "redraw bytes", "not redraw", "errors",
    );
    for proto in [Proto::Wsep, Proto::Webexec] {
        for place in [Place::Single, Place::Daemon] {
            let at = match place {
                Place::Single => single,
                Place::Daemon => daemon,
            };
            let mut a = match proto {
                Proto::Wsep => wsep_attaches(&at.wsep.url, args.attaches).await?,
                _ => webexec_attaches(at.webexec_addr()?, args.attaches).await?,
            };
            a.first.sort_by(f64::total_cmp);
            a.sizes.sort_unstable();
            let p99 = quantile(&a.first, 0.99);
            println!(
                "  {:<8} {:<7} {:>8.2} {:>8.2} {:>8.2} {:>9}   {:>6}-{:<6} {:>11} {:>7}   {:.0} MiB/s",
                proto.name(),
                place.name(),
                quantile(&a.first, 0.5),
                p99,
                a.first.last().copied().unwrap_or(0.0),
                yes(p99 < 50.0),
                a.sizes.first().copied().unwrap_or(0),
                a.sizes.last().copied().unwrap_or(0),
                a.not_redraw,
                a.errors.0,
                a.streamed
            );
        }
    }
    println!(
        "  (wsep: connect + `start` with the busy session's id; webexec: `reconnect_pane` on a second peer, until the channel's first message. A 24x80 screen's redraw fits one message, so its first message is the whole redraw)"
    );
    println!();
    Ok(())
}

/// A busy terminal's output counted on a task of its own while a second
/// client attaches it over and over: both protocols' attach benchmarks
/// count the same way, from their own kind of message.
struct Streaming {
    /// Fires once [`BUSY_BYTES`] came: the terminal is busy.
    busy: tokio::sync::oneshot::Receiver<()>,
    /// Marks the end of the attaches.
    stop: tokio::sync::oneshot::Sender<()>,
    /// MiB/s that came from `busy` until `stop`: while the attaches ran,
    /// both moments taken where the bytes are counted.
    task: tokio::task::JoinHandle<anyhow::Result<f64>>,
}

impl Streaming {
    /// Counts `sizes` (each message's byte count) until it ends.
    fn count(sizes: impl Stream<Item = anyhow::Result<usize>> + Send + 'static) -> Streaming {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (busy_tx, busy) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut sizes = std::pin::pin!(sizes);
            let mut stopped = std::pin::pin!(stopped);
            let (mut got, mut at_busy, mut until_stop) = (0usize, 0usize, None);
            let mut busy_since = Instant::now();
            let mut busy_tx = Some(busy_tx);
            loop {
                tokio::select! {
                    size = sizes.next() => match size {
                        Some(size) => got += size?,
                        None => break,
                    },
                    _ = &mut stopped, if until_stop.is_none() => {
                        until_stop = Some((got, busy_since.elapsed().as_secs_f64()));
                    }
                }
                if got >= BUSY_BYTES
                    && let Some(tx) = busy_tx.take()
                {
                    (at_busy, busy_since) = (got, Instant::now());
                    let _ = tx.send(());
                }
            }
            let (until, seconds) =
                until_stop.unwrap_or_else(|| (got, busy_since.elapsed().as_secs_f64()));
            Ok(until.saturating_sub(at_busy) as f64 / 1048576.0 / seconds.max(1e-9))
        });
        Streaming { busy, stop, task }
    }

    /// Waits until the terminal is busy.
    async fn busy(&mut self) -> anyhow::Result<()> {
        (&mut self.busy)
            .await
            .context("the busy terminal ended before it was busy")
    }

    /// Marks the end of the attaches and returns the MiB/s streamed
    /// meanwhile, once `end` (which stops the terminal's writer) has ended
    /// the stream.
    async fn finish(self, end: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<f64> {
        let _ = self.stop.send(());
        end.await?;
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("the busy terminal did not end")??
    }
}

/// Streams a busy wsep named session and attaches it `n` times.
async fn wsep_attaches(url: &str, n: usize) -> anyhow::Result<Attaches> {
    let busy = StartCommand {
        id: format!("bench-busy-{}", std::process::id()),
        command: "sh".into(),
        args: vec!["-c".into(), BUSY.into()],
        tty: true,
        rows: 24,
        cols: 80,
        ..StartCommand::default()
    };
    let (mut input, out) = wsep_client::start(url, Some(TOKEN), busy.clone()).await?;
    let sizes = futures_util::stream::unfold(out, |mut out| async move {
        match out.next().await {
            Ok(Some(Output::Stdout(b))) => Some((Ok(b.len()), out)),
            Ok(Some(Output::Stderr(_))) => Some((Ok(0), out)),
            Ok(Some(Output::Exit { .. }) | None) => None,
            Err(e) => Some((Err(e.into()), out)),
        }
    });
    let mut streaming = Streaming::count(sizes);
    streaming.busy().await?;
    let mut a = Attaches::default();
    for _ in 0..n {
        let t = Instant::now();
        let (second_in, mut second_out) =
            wsep_client::start(url, Some(TOKEN), busy.clone()).await?;
        let first = loop {
            match second_out.next().await? {
                Some(Output::Stdout(b)) => break b,
                Some(Output::Stderr(_)) => {}
                other => bail!("attach ended: {other:?}"),
            }
        };
        a.first.push(t.elapsed().as_secs_f64() * 1000.0);
        a.sizes.push(first.len());
        a.not_redraw += usize::from(!first.starts_with(b"\x1b[?1049"));
        second_in.disconnect().await?;
    }
    // ^C ends the writer (the terminal's interrupt character).
    let end = async { Ok(input.write(&[3]).await?) };
    a.streamed = streaming.finish(end).await?;
    Ok(a)
}

/// Streams a busy webexec pane on one peer and attaches it `n` times from
/// a second (`reconnect_pane`, then the channel the server opens).
async fn webexec_attaches(addr: SocketAddr, n: usize) -> anyhow::Result<Attaches> {
    let connect = || async {
        Client::connect(addr, Some(TOKEN), &Signaling::Offer)
            .await
            .map_err(|e| anyhow::anyhow!("webexec connect: {e:?}"))
    };
    let mut first_peer = connect().await?;
    let (busy, id) = open_pane_id(&mut first_peer, &format!("24x80,sh,-c,{BUSY}")).await?;
    let busy = std::sync::Arc::new(busy);
    let sizes = futures_util::stream::unfold(busy.clone(), |busy| async move {
        let size = busy.recv_forever().await?.bytes().len();
        Some((Ok(size), busy))
    });
    let mut streaming = Streaming::count(sizes);
    streaming.busy().await?;
    let mut a = Attaches::default();
    for _ in 0..n {
        // A fresh peer each time: the `webrtc` crate, as a client, loses
        // the next channel the server opens after it closed one now and
        // then (stream ids reused before their reset is through), which
        // would be measured as a hang of the server.
        let mut second = match connect().await {
            Ok(client) => client,
            Err(e) => {
                a.errors.note("webexec connect", &e);
                continue;
            }
        };
        let t = Instant::now();
        let attached = async {
            let reply = request(&second, 1, "reconnect_pane", json!({"id": id})).await?;
            if reply["type"] != "ack" {
                bail!("reconnect_pane {id}: {reply}");
            }
            let (_, ch) = second.server_channel().await;
            let first = ch.recv().await.context("attached channel closed at once")?;
            anyhow::Ok((t.elapsed().as_secs_f64() * 1000.0, first))
        };
        match attached.await {
            Ok((ms, first)) => {
                a.first.push(ms);
                a.sizes.push(first.bytes().len());
                a.not_redraw += usize::from(!first.bytes().starts_with(b"\x1b[?1049"));
            }
            Err(e) => a.errors.note("webexec attach", &e),
        }
        second.close().await;
    }
    // ^C ends the writer.
    let end = async {
        busy.send(&[3]).await;
        Ok(())
    };
    a.streamed = streaming.finish(end).await?;
    first_peer.close().await;
    Ok(a)
}
