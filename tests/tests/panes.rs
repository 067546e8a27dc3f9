//! Panes shared across protocols in the `execwire` daemon (issue 12,
//! part 2): a terminal started over wsep (by the real `wsep` command) is
//! attached from webexec and the other way round, both clients' input
//! reaches it, the newest resize wins, `GET /panes` lists who is
//! attached by protocol, each pane keeps the idle rule of the protocol
//! that started it, and bad input on one protocol leaves the other's
//! panes alone. Real daemon on `127.0.0.1:0`, real clients, real
//! processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use execwire::WSEP_PATH;
use execwire_tests::webexec::{Client, ClientChannel, Msg, Signaling};
use execwire_tests::{TestServer, execwire_matrix_config, wait_gone};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wsep_client::{Input, Output, Outputs};
use wsep_proto::StartCommand;

/// How long any one awaited step may take before the test fails.
const STEP: Duration = Duration::from_secs(10);

/// The `wsep` command of this workspace. `cargo test --workspace` builds
/// it (for wsep-client's own tests), and so does CI before the tests
/// (`cargo build --workspace --bins`); a test of this package alone needs
/// `cargo build -p wsep-client --bin wsep` first.
fn wsep_command() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/panes-HASH -> target/<profile>/wsep
    let path = exe.parent().unwrap().parent().unwrap().join("wsep");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p wsep-client --bin wsep` first",
        path.display()
    );
    path
}

/// The real `wsep` command, its input and output through pipes (it then
/// sends a 24x80 terminal size and does not touch any terminal of ours).
struct Cli {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
    seen: Vec<u8>,
    /// Where the next [`Cli::read_until`] starts looking.
    from: usize,
}

impl Cli {
    /// `wsep ws://ADDR/wsep/ --tty [--id ID] -- sh`.
    fn start(server: &TestServer, id: &str) -> Cli {
        let mut cmd = tokio::process::Command::new(wsep_command());
        cmd.arg(server.at(WSEP_PATH).url()).arg("--tty");
        if !id.is_empty() {
            cmd.args(["--id", id]);
        }
        let mut child = cmd
            .args(["--", "sh"])
            .env("WSEP_TOKEN", &server.token)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Cli {
            child,
            stdin,
            stdout,
            seen: Vec::new(),
            from: 0,
        }
    }

    async fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Reads the command's output until `needle` appears after what the
    /// previous call found.
    async fn read_until(&mut self, needle: &str) {
        let found = tokio::time::timeout(STEP, async {
            loop {
                let window = &self.seen[self.from..];
                if let Some(at) = window
                    .windows(needle.len())
                    .position(|w| w == needle.as_bytes())
                {
                    self.from += at + needle.len();
                    return true;
                }
                let mut buf = [0u8; 4096];
                match self.stdout.read(&mut buf).await.unwrap() {
                    0 => return false,
                    n => self.seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(
            found == Ok(true),
            "wsep never printed {needle:?}; got {:?}",
            String::from_utf8_lossy(&self.seen)
        );
    }

    /// Waits for the command to exit; its exit code.
    async fn exit_code(mut self) -> Option<i32> {
        drop(self.stdin);
        let mut rest = Vec::new();
        tokio::time::timeout(STEP, self.stdout.read_to_end(&mut rest))
            .await
            .unwrap()
            .unwrap();
        let status = tokio::time::timeout(STEP, self.child.wait())
            .await
            .unwrap()
            .unwrap();
        status.code()
    }
}

/// A webexec peer of `server`, authenticated by its token.
async fn webexec(server: &TestServer) -> Client {
    Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .unwrap()
}

/// The first message of a pane channel: `ID` or `ID,ROWSxCOLS`.
async fn hello(channel: &ClientChannel) -> String {
    match channel.recv().await.expect("closed before the pane id") {
        Msg::Binary(b) => String::from_utf8(b).unwrap(),
        Msg::Text(t) => panic!("pane id as text: {t}"),
    }
}

/// The number of a terminal pane from its channel's first message
/// (`ID,ROWSxCOLS`).
async fn pane_number(channel: &ClientChannel) -> u64 {
    let hello = hello(channel).await;
    let (id, _) = hello.split_once(',').expect("a terminal's size");
    id.parse().unwrap()
}

/// A wsep terminal running `sh`, named (or attached by number) `id`.
async fn wsep_terminal(server: &TestServer, id: &str, rows: u16, cols: u16) -> (Input, Outputs) {
    let start = StartCommand {
        command: "sh".into(),
        tty: true,
        rows,
        cols,
        id: id.into(),
        ..StartCommand::default()
    };
    wsep_client::start(&server.at(WSEP_PATH).url(), Some(&server.token), start)
        .await
        .unwrap()
}

/// Reads a wsep client's output until `needle` appears.
async fn wsep_read_until(out: &mut Outputs, needle: &str) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(STEP, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            match out.next().await.unwrap() {
                Some(Output::Stdout(b) | Output::Stderr(b)) => seen.extend_from_slice(&b),
                _ => return false,
            }
        }
        true
    })
    .await;
    assert!(
        found == Ok(true),
        "wsep client never got {needle:?}; got {:?}",
        String::from_utf8_lossy(&seen)
    );
}

/// Reads a wsep client's output until the server has closed the
/// connection.
async fn drain(out: &mut Outputs) {
    tokio::time::timeout(STEP, async { while let Ok(Some(_)) = out.next().await {} })
        .await
        .expect("the server never closed the connection");
}

/// `GET /panes` with `token`: the status and the body.
async fn list_with(server: &TestServer, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(format!("http://{}/panes", server.addr));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The daemon's panes, as `GET /panes` lists them.
async fn panes(server: &TestServer) -> Vec<Value> {
    let (status, body) = list_with(server, Some(&server.token)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The listed pane numbered `id`, if listed.
async fn pane(server: &TestServer, id: u64) -> Option<Value> {
    panes(server)
        .await
        .into_iter()
        .find(|p| p["id"].as_u64() == Some(id))
}

/// The number of the listed pane named `name`.
async fn pane_named(server: &TestServer, name: &str) -> u64 {
    panes(server)
        .await
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["id"].as_u64())
        .unwrap_or_else(|| panic!("no pane named {name}"))
}

/// Waits until pane `id` lists exactly `clients`: a client's claim goes
/// when the server has finished its connection, after the client saw it
/// end. Each round is a request to the daemon, not a timer.
async fn until_attached(server: &TestServer, id: u64, clients: Value) {
    let reached = tokio::time::timeout(STEP, async {
        loop {
            if pane(server, id).await.unwrap()["clients"] == clients {
                return;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "pane {id} never had {clients}: {:?}",
        pane(server, id).await
    );
}

/// `resize` of pane `id` over webexec's control channel.
async fn webexec_resize(client: &mut Client, id: u64, rows: u16, cols: u16) {
    let reply = client
        .control
        .request("resize", json!({"pane_id": id, "sx": cols, "sy": rows}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
}

/// Waits for the resize notice of pane `id` to `rows`x`cols` on the
/// peer's control channel (other notices skipped).
async fn resize_notice(client: &mut Client, id: u64, rows: u16, cols: u16) {
    let want = json!({"pane_id": id, "sx": cols, "sy": rows});
    tokio::time::timeout(STEP, async {
        loop {
            let msg = client.control.next().await;
            if msg["type"] == "resize" && msg["args"] == want {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no resize notice {want}"));
}

/// A line that makes the shell print the terminal size as `size-RxC`
/// (the echo of the typed line itself does not contain that).
const SIZE: &str = "echo size-$(stty size | tr ' ' x)";

/// A terminal started by the real wsep command with `--tty --id work` is
/// reattached from a webexec peer by its number: the peer gets the screen,
/// both inputs reach the shell, both see all output, `GET /panes` lists
/// it with both protocols, and the newest resize wins whoever sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wsep_cli_terminal_is_reattached_from_webexec() {
    let server = TestServer::execwire("").await;
    let mut cli = Cli::start(&server, "work");
    cli.type_line("echo from-cli-$((1+2))").await;
    cli.read_until("from-cli-3").await;

    // Behind the token, like /metrics.
    assert_eq!(list_with(&server, None).await.0, 401);
    assert_eq!(list_with(&server, Some("wrong")).await.0, 401);
    let id = pane_named(&server, "work").await;

    let mut peer = webexec(&server).await;
    let channel = peer.open(&format!(">{id}")).await;
    assert_eq!(hello(&channel).await, format!("{id},24x80"));
    channel.read_until("from-cli-3").await; // the redraw
    channel.send_text("echo from-webexec-$((2+2))\n").await;
    channel.read_until("from-webexec-4").await;
    cli.read_until("from-webexec-4").await;

    let listed = pane(&server, id).await.unwrap();
    assert_eq!(listed["name"], "work");
    assert_eq!(listed["command"], json!(["sh"]));
    assert_eq!(listed["size"], json!({"rows": 24, "cols": 80}));
    assert_eq!(listed["clients"], json!({"webexec": 1, "wsep": 1}));
    let started = listed["started_unix"].as_u64().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(started <= now && started + 3600 > now, "{listed}");

    // The newest resize wins, whichever protocol sends it.
    webexec_resize(&mut peer, id, 30, 100).await;
    cli.type_line(SIZE).await;
    cli.read_until("size-30x100").await;
    let (mut input, mut output) = wsep_terminal(&server, &id.to_string(), 40, 120).await;
    // The webexec peer is told of a size another protocol set, as of its
    // fellow peers' (Terminal7 sizes its view by it).
    resize_notice(&mut peer, id, 40, 120).await;
    input.write(format!("{SIZE}\n").as_bytes()).await.unwrap();
    wsep_read_until(&mut output, "size-40x120").await;
    let listed = pane(&server, id).await.unwrap();
    assert_eq!(listed["clients"], json!({"webexec": 1, "wsep": 2}));
    assert_eq!(listed["size"], json!({"rows": 40, "cols": 120}));
    webexec_resize(&mut peer, id, 33, 99).await;
    cli.type_line(SIZE).await;
    cli.read_until("size-33x99").await;
    channel.read_until("size-33x99").await;
    input.resize(45, 130).await.unwrap();
    resize_notice(&mut peer, id, 45, 130).await;
    input.write(format!("{SIZE}\n").as_bytes()).await.unwrap();
    wsep_read_until(&mut output, "size-45x130").await;
    cli.read_until("size-45x130").await;
    assert_eq!(
        pane(&server, id).await.unwrap()["size"],
        json!({"rows": 45, "cols": 130})
    );

    // The shell's exit ends every client's view of it.
    channel.send_text("exit 0\n").await;
    assert_eq!(cli.exit_code().await, Some(0));
    tokio::time::timeout(STEP, channel.read_to_close())
        .await
        .unwrap();
    assert!(pane(&server, id).await.is_none());
    server.shutdown().await;
}

/// The other way round: a webexec pane attached by wsep with its number
/// as `id` (the wsep command's `--id 7`), both typing into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webexec_pane_is_attached_by_wsep_number() {
    let server = TestServer::execwire("").await;
    let peer = webexec(&server).await;
    let channel = peer.open("24x80,sh").await;
    let id = pane_number(&channel).await;
    channel.send_text("echo webexec-made-$((3+3))\n").await;
    channel.read_until("webexec-made-6").await;

    let mut cli = Cli::start(&server, &id.to_string());
    cli.read_until("webexec-made-6").await; // the redraw
    cli.type_line("echo cli-typed-$((4+4))").await;
    cli.read_until("cli-typed-8").await;
    channel.read_until("cli-typed-8").await;
    let listed = pane(&server, id).await.unwrap();
    assert_eq!(listed["name"], Value::Null);
    assert_eq!(listed["command"], json!(["sh"]));
    assert_eq!(listed["clients"], json!({"webexec": 1, "wsep": 1}));
    // Attached, not started: no pane of that name appeared.
    assert_eq!(panes(&server).await.len(), 1);

    cli.type_line("exit 3").await;
    assert_eq!(cli.exit_code().await, Some(3));
    tokio::time::timeout(STEP, channel.read_to_close())
        .await
        .unwrap();
    server.shutdown().await;
}

/// A wsep terminal named `name`, left at once: its process id.
async fn wsep_left(server: &TestServer, name: &str) -> u32 {
    let (input, output) = wsep_terminal(server, name, 24, 80).await;
    let pid = u32::try_from(output.pid()).unwrap();
    input.disconnect().await.unwrap();
    drop(output);
    pid
}

/// Each pane keeps the idle rule of the protocol that started it. wsep's
/// session timeout is short here; a wsep terminal left alone after the
/// webexec pane was left is the clock: once it has been ended by the
/// timeout, the timeout has passed for the webexec pane too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pane_keeps_the_idle_rule_of_its_protocol() {
    let mut config = execwire_matrix_config();
    if let Some(wsep) = &mut config.wsep {
        wsep.session_timeout = Duration::from_millis(200);
    }
    let server = TestServer::execwire_auth(config, true, "").await;

    // A webexec pane, attached over wsep and then left by everyone.
    let peer = webexec(&server).await;
    let channel = peer.open("24x80,sh").await;
    let kept = pane_number(&channel).await;
    let (input, mut output) = wsep_terminal(&server, &kept.to_string(), 24, 80).await;
    input.disconnect().await.unwrap();
    drain(&mut output).await;
    peer.close().await;
    until_attached(&server, kept, json!({})).await;

    let clock = wsep_left(&server, "clock").await;
    wait_gone(clock).await;
    assert!(
        pane(&server, kept).await.is_some(),
        "wsep's timeout ended a webexec pane"
    );
    let peer = webexec(&server).await;
    let channel = peer.open(&format!(">{kept}")).await;
    hello(&channel).await;
    channel.send_text("echo still-$((5+5))\n").await;
    channel.read_until("still-10").await;

    // A wsep terminal held by a webexec peer outlives wsep's timeout, and
    // ends by it once the peer has left.
    // Attached from webexec before wsep leaves it, so that it is never
    // without a client meanwhile.
    let (input, mut output) = wsep_terminal(&server, "held", 24, 80).await;
    let held_pid = u32::try_from(output.pid()).unwrap();
    let held = pane_named(&server, "held").await;
    let holder = webexec(&server).await;
    let holding = holder.open(&format!(">{held}")).await;
    hello(&holding).await;
    input.disconnect().await.unwrap();
    drain(&mut output).await;
    until_attached(&server, held, json!({"webexec": 1})).await;
    let clock = wsep_left(&server, "clock-2").await;
    wait_gone(clock).await;
    assert!(pane(&server, held).await.is_some(), "ended while held");
    holder.close().await;
    wait_gone(held_pid).await;
    assert!(pane(&server, held).await.is_none());
    assert!(pane(&server, kept).await.is_some());
    server.shutdown().await;
}

/// A wsep client attached to a webexec pane that sends garbage, or asks
/// for a pane without a terminal, is refused on its own connection; the
/// panes and their other clients go on. webexec's bad labels and requests
/// leave wsep's terminals alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_one_protocol_leaves_the_others_panes() {
    let server = TestServer::execwire("").await;
    let (mut wsep_input, mut wsep_output) = wsep_terminal(&server, "keep", 24, 80).await;
    let keep = pane_named(&server, "keep").await;
    let mut peer = webexec(&server).await;
    // Opened together (see `open_all`), two of them refused.
    let [plain, terminal, bad, unknown] = peer
        .open_all(["cat", "24x80,sh", ">not-a-number", ">424242"])
        .await;
    for (channel, expected) in [(bad, "pane id"), (unknown, "no pane")] {
        let why = channel.read_to_close().await;
        let why = String::from_utf8_lossy(&why);
        assert!(why.contains(expected), "{why}");
    }
    let plain_id: u64 = hello(&plain).await.parse().unwrap();
    let terminal_id = pane_number(&terminal).await;

    // wsep: a pane without a terminal cannot be attached as one.
    let start = StartCommand {
        command: "sh".into(),
        tty: true,
        id: plain_id.to_string(),
        ..StartCommand::default()
    };
    let refused = wsep_client::start(&server.at(WSEP_PATH).url(), Some(&server.token), start).await;
    assert!(refused.is_err(), "a pane without a terminal was attached");
    plain.send_text("plain-alive\n").await;
    plain.read_until("plain-alive").await;

    // wsep: garbage from a client attached to webexec's terminal closes
    // that client only.
    let (mut input, mut output) = wsep_terminal(&server, &terminal_id.to_string(), 0, 0).await;
    input
        .send_raw(tokio_tungstenite::tungstenite::Message::Binary(
            b"\xffnot a wsep message".to_vec().into(),
        ))
        .await
        .unwrap();
    let ended = tokio::time::timeout(STEP, async {
        loop {
            match output.next().await {
                Ok(Some(Output::Stdout(_) | Output::Stderr(_))) => {}
                other => return other,
            }
        }
    })
    .await
    .unwrap();
    assert!(!matches!(ended, Ok(Some(Output::Exit { .. }))), "{ended:?}");
    terminal.send_text("echo terminal-$((6+6))\n").await;
    terminal.read_until("terminal-12").await;

    // webexec: bad requests, one naming wsep's terminal badly.
    let reply = peer
        .control
        .request("reconnect_pane", json!({"id": 999_999}))
        .await;
    assert_eq!(reply["type"], "nack", "{reply}");
    let reply = peer
        .control
        .request("resize", json!({"pane_id": keep, "sx": 0, "sy": -1}))
        .await;
    assert_eq!(reply["type"], "nack", "{reply}");
    wsep_input.write(b"echo keep-$((7+7))\n").await.unwrap();
    wsep_read_until(&mut wsep_output, "keep-14").await;

    let listed: Vec<u64> = panes(&server)
        .await
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    let mut expected = vec![keep, plain_id, terminal_id];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    server.shutdown().await;
}

/// webexec's demo page in Chromium attaches (`#pane=ID`) a terminal the
/// wsep command started: it shows the screen, and what is typed in the
/// page reaches the shell, whose output the wsep command sees too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_attaches_a_terminal_started_over_wsep() {
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let server = TestServer::execwire("").await;
    let mut cli = Cli::start(&server, "work");
    cli.type_line("echo from-wsep-$((5*5))").await;
    cli.read_until("from-wsep-25").await;
    let id = pane_named(&server, "work").await.to_string();
    let url = format!("http://{}/#token={}&pane={id}", server.addr, server.token);
    let stdout = execwire_tests::run_browser_script(
        &chromium,
        &dir.join("attach.mjs"),
        &[url.as_ref(), id.as_ref(), "from-wsep-25".as_ref()],
    )
    .await;
    assert!(stdout.contains("ok:"), "{stdout}");
    cli.read_until("from-chromium-64").await;
    cli.type_line("exit").await;
    assert_eq!(cli.exit_code().await, Some(0));
    server.shutdown().await;
}
