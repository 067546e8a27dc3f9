//! Read-only viewers (`--view-token`) on the `execwire` daemon: a viewer
//! attached to a wsep terminal and to a webexec pane sees the output and
//! the redraw, while its input, resizes and requests never reach the
//! process and its connection stays; a viewer starts nothing on any of
//! the four protocols and gets each protocol's error; the full token
//! still does everything; wrong tokens are still refused. Real daemon on
//! `127.0.0.1:0`, real clients, real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use execwire::{POW_PATH, WEBTERM_PATH, WSEP_PATH};
use execwire_tests::webexec::{Client, ClientChannel, Signaling};
use execwire_tests::{TestServer, ws_connect};
use futures_util::SinkExt as _;
use pow_proto::Outcome;
use serde_json::{Value, json};
use server_kit::AccessToken;
use wsep_client::Output;
use wsep_proto::StartCommand;

/// The view token of every test here.
const VIEW: &str = "a-view-token-for-tests";

/// A wrong token, one byte short of [`VIEW`].
const NEAR: &str = "a-view-token-for-test";

/// A terminal program that says what it reads, line by line (`size`
/// also prints the terminal's size): whatever reaches it shows as
/// `got:LINE`, and the terminal's echo shows the line itself.
const ECHO: &str = "while read -r l; do [ \"$l\" = size ] && stty size; echo \"got:$l\"; done";

/// The daemon with every protocol, a fresh full token and [`VIEW`].
async fn daemon() -> TestServer {
    let mut config = execwire_tests::execwire_matrix_config();
    config.common.view_token = Some(AccessToken::new(VIEW));
    TestServer::execwire_auth(config, true, "").await
}

/// `GET /metrics` with the full token.
async fn metrics(server: &TestServer) -> String {
    reqwest::Client::new()
        .get(format!("http://{}/metrics", server.addr))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The viewer refusals `protocol` counted.
async fn refusals(server: &TestServer, protocol: &str) -> u64 {
    let line = format!("execwire_viewer_refusals_total{{protocol=\"{protocol}\"}} ");
    metrics(server)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&line)?.parse().ok())
        .unwrap_or(0)
}

/// Waits until `protocol` counted `n` viewer refusals: the server handled
/// (and dropped) a viewer's messages, which answer nothing on the wire.
/// Bounded: 10 s.
async fn refused(server: &TestServer, protocol: &str, n: u64) {
    for _ in 0..500 {
        if refusals(server, protocol).await >= n {
            assert_eq!(refusals(server, protocol).await, n, "{protocol}");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{protocol}: {} viewer refusals counted, not {n}",
        refusals(server, protocol).await
    );
}

/// A scratch directory for files that a started process would create.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("execwire-viewer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// wsep output as text until it holds `want`; all of it.
async fn wsep_until(out: &mut wsep_client::Outputs, seen: &mut String, want: &str) {
    while !seen.contains(want) {
        let next = tokio::time::timeout(Duration::from_secs(10), out.next())
            .await
            .unwrap_or_else(|_| panic!("no {want:?} in 10 s; got {seen:?}"));
        match next.unwrap() {
            Some(Output::Stdout(b)) => seen.push_str(&String::from_utf8_lossy(&b)),
            other => panic!("{other:?} before {want:?}; got {seen:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wsep_viewer_watches_a_terminal_and_its_input_never_reaches_it() {
    let server = daemon().await;
    let url = server.at(WSEP_PATH).url();
    let terminal = |rows, cols| StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), ECHO.into()],
        tty: true,
        id: "work".into(),
        rows,
        cols,
        ..StartCommand::default()
    };
    let (mut input, mut output) = wsep_client::start(&url, Some(&server.token), terminal(24, 80))
        .await
        .unwrap();
    let mut typed = String::new();
    input.write(b"before\n").await.unwrap();
    wsep_until(&mut output, &mut typed, "got:before").await;

    // Attached with its own window size, which must not size the pane.
    let (mut viewer_in, mut viewer_out) = wsep_client::start(&url, Some(VIEW), terminal(50, 200))
        .await
        .unwrap();
    assert_eq!(viewer_out.pid(), output.pid());
    let mut watched = String::new();
    wsep_until(&mut viewer_out, &mut watched, "got:before").await;
    viewer_in.write(b"from-the-viewer\n").await.unwrap();
    viewer_in.resize(60, 210).await.unwrap();
    viewer_in.close_stdin().await.unwrap();
    refused(&server, "wsep", 3).await;

    input.write(b"size\nafter\n").await.unwrap();
    wsep_until(&mut output, &mut typed, "got:after").await;
    assert!(typed.contains("24 80"), "{typed:?}");
    assert!(!typed.contains("from-the-viewer"), "{typed:?}");
    // The viewer's connection still works: it sees the owner's input.
    wsep_until(&mut viewer_out, &mut watched, "got:after").await;
    assert!(!watched.contains("from-the-viewer"), "{watched:?}");
    assert!(!watched.contains("50 200") && !watched.contains("60 210"));

    // A viewer's start of anything but a live named terminal is refused.
    let dir = scratch("wsep");
    let file = dir.join("started");
    let touch = StartCommand {
        command: "touch".into(),
        args: vec![file.display().to_string()],
        ..StartCommand::default()
    };
    let absent = StartCommand {
        id: "nobody".into(),
        ..terminal(24, 80)
    };
    for start in [touch, absent] {
        match wsep_client::start(&url, Some(VIEW), start).await {
            Err(wsep_client::Error::Closed { code, reason }) => {
                assert_eq!(code, 1008, "{reason}");
                assert!(reason.contains("read-only"), "{reason}");
            }
            other => panic!("a viewer started something: {other:?}"),
        }
    }
    refused(&server, "wsep", 5).await;
    assert!(!file.exists());
    // A token near the view token is no token.
    match wsep_client::start(&url, Some(NEAR), terminal(24, 80)).await {
        Err(wsep_client::Error::Unauthorized) => {}
        other => panic!("{other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Reads `channel` until it holds `want`.
async fn pane_until(channel: &ClientChannel, want: &str) -> String {
    channel.read_until(want).await
}

/// A webexec client with the full token, its 24x80 pane running [`ECHO`]
/// (its id and channel), and `line` typed and read back.
async fn owner_pane(server: &TestServer, line: &str) -> (Client, u64, ClientChannel) {
    let mut owner = Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .unwrap();
    let ack = owner
        .control
        .request(
            "add_pane",
            json!({"command": ["sh", "-c", ECHO], "rows": 24, "cols": 80}),
        )
        .await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let pane = ack["args"]["body"].as_str().unwrap().parse().unwrap();
    let (_, typed) = owner.server_channel().await;
    typed.send_text(&format!("{line}\n")).await;
    pane_until(&typed, &format!("got:{line}")).await;
    (owner, pane, typed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webexec_viewer_watches_a_pane_and_changes_nothing() {
    let server = daemon().await;
    let (owner, pane, typed) = owner_pane(&server, "before").await;

    match Client::connect(server.addr, Some(NEAR), &Signaling::Offer).await {
        Err(execwire_tests::webexec::ConnectError::Http(401, _)) => {}
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("a wrong token connected"),
    }
    let mut viewer = Client::connect(server.addr, Some(VIEW), &Signaling::Offer)
        .await
        .unwrap();
    let nacked = |reply: &Value| {
        assert_eq!(reply["type"], "nack", "{reply}");
        assert!(
            reply["args"]["desc"]
                .as_str()
                .unwrap()
                .contains("read-only"),
            "{reply}"
        );
    };
    let dir = scratch("webexec");
    let file = dir.join("started");
    let touch = json!({"command": ["touch", file.display().to_string()]});
    nacked(&viewer.control.request("add_pane", touch).await);
    nacked(
        &viewer
            .control
            .request("resize", json!({"pane_id": pane, "sx": 200, "sy": 50}))
            .await,
    );
    let reply = viewer
        .control
        .request("reconnect_pane", json!({"id": pane}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let (_, watching) = viewer.server_channel().await;
    // The redraw on attach shows what ran before.
    pane_until(&watching, "got:before").await;
    watching.send_text("from-the-viewer\n").await;
    // A command channel is refused with the reason, and closed.
    let label = format!("touch,{}", file.display());
    if let Some(channel) = viewer.try_open(&label).await {
        let said = String::from_utf8(channel.read_to_close().await).unwrap();
        assert!(said.contains("read-only"), "{said}");
    }
    refused(&server, "webexec", 4).await;

    typed.send_text("size\nafter\n").await;
    let seen = pane_until(&typed, "got:after").await;
    assert!(seen.contains("24 80"), "{seen:?}");
    assert!(!seen.contains("from-the-viewer"), "{seen:?}");
    let watched = pane_until(&watching, "got:after").await;
    assert!(!watched.contains("from-the-viewer"), "{watched:?}");
    // Reading requests still work for the viewer.
    let reply = viewer.control.request("get_payload", json!({})).await;
    assert_eq!(reply["type"], "ack", "{reply}");
    assert!(!file.exists());

    // In the daemon a wsep viewer attaches the webexec pane by its number,
    // and its input goes nowhere there either.
    let by_number = StartCommand {
        command: "sh".into(),
        tty: true,
        id: pane.to_string(),
        ..StartCommand::default()
    };
    let url = server.at(WSEP_PATH).url();
    let (mut wsep_in, mut wsep_out) = wsep_client::start(&url, Some(VIEW), by_number)
        .await
        .unwrap();
    let mut across = String::new();
    wsep_until(&mut wsep_out, &mut across, "got:after").await;
    wsep_in.write(b"from-the-wsep-viewer\n").await.unwrap();
    refused(&server, "wsep", 1).await;
    typed.send_text("last\n").await;
    let seen = pane_until(&typed, "got:last").await;
    assert!(!seen.contains("from-the-wsep-viewer"), "{seen:?}");
    viewer.close().await;
    owner.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A viewer starts nothing over pow (WebSocket and REST) or webterm; the
/// full token still runs commands there; a wrong token is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_starts_nothing_over_pow_and_webterm() {
    let server = daemon().await;
    let dir = scratch("pow-webterm");
    let file = |name: &str| dir.join(name);
    let touch = |name: &str| format!("touch {}", file(name).display());

    // pow over WebSocket: the call's result is the refusal.
    let pow_url = format!("ws://{}{POW_PATH}/", server.addr);
    let mut ws = ws_connect(&pow_url, Some(VIEW), Some("pow-1"))
        .await
        .unwrap();
    ws.send(execwire_tests::pow::call("sh", &[&touch("pow-ws")]))
        .await
        .unwrap();
    match execwire_tests::pow::outcome(&mut ws).await {
        (_, Outcome::Rejected { reason }) => assert!(reason.contains("read-only"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // pow over REST: 403 for everything but reading a status.
    let http = reqwest::Client::new();
    let rest = |path: &str| format!("http://{}{POW_PATH}/{path}", server.addr);
    let body = |name: &str| json!({"call": "sh", "params": [touch(name)]}).to_string();
    let new = |token: &str, name: &str| {
        http.post(rest("new"))
            .bearer_auth(token)
            .body(body(name))
            .send()
    };
    let refused_new = new(VIEW, "pow-rest").await.unwrap();
    assert_eq!(refused_new.status().as_u16(), 403);
    assert!(refused_new.text().await.unwrap().contains("read-only"));
    let started = new(&server.token, "by-the-owner").await.unwrap();
    assert_eq!(started.status().as_u16(), 200);
    let id: String = serde_json::from_str(&started.text().await.unwrap()).unwrap();
    let status = http
        .get(rest(&format!("status/{id}")))
        .bearer_auth(VIEW)
        .send()
        .await
        .unwrap();
    assert_eq!(status.status().as_u16(), 200);
    for action in ["input", "closeInput", "cancel"] {
        let response = http
            .post(rest(&format!("{action}/{id}")))
            .bearer_auth(VIEW)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{action}");
    }
    let wrong = new(NEAR, "wrong").await.unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    refused(&server, "pow", 5).await;

    // webterm: the viewer authenticates, and every command is refused.
    let webterm = server.at(WEBTERM_PATH);
    let mut viewer = execwire_tests::webterm::Client::connect(&webterm, "").await;
    let reply = viewer
        .request(json!({"type":"authentication","payload":{"token":VIEW}}))
        .await;
    assert_eq!(reply["payload"]["result"], "ok", "{reply}");
    let payload = json!({"command": touch("webterm"), "clientId": 1});
    let reply = viewer
        .request(json!({"type":"command","payload":payload}))
        .await;
    assert_eq!(reply["payload"]["result"], "error", "{reply}");
    assert!(
        reply["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("read-only"),
        "{reply}"
    );
    let stdin =
        json!({"type":"update","payload":{"type":"stdin","serverId":1,"input":"x","eof":true}});
    let reply = viewer.request(stdin).await;
    assert_eq!(reply["payload"]["result"], "error", "{reply}");
    refused(&server, "webterm", 2).await;
    // The full token runs the command on the same protocol.
    let mut owner = execwire_tests::webterm::Client::authed(&webterm).await;
    let id = owner.run(&touch("webterm-owner"), json!(2), &[]).await;
    owner.finish(id).await;

    // The owner's pow process ran; none of the viewer's did.
    wait_for_file(&file("by-the-owner")).await;
    assert!(file("webterm-owner").exists());
    for name in ["pow-ws", "pow-rest", "webterm"] {
        assert!(!file(name).exists(), "{name} was started by a viewer");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Waits for the owner's REST process to have made `path` (it runs apart
/// from the request). Bounded: 10 s.
async fn wait_for_file(path: &Path) {
    for _ in 0..500 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} never appeared", path.display());
}

/// The demo page with the view token and `#view=1&pane=ID` in Chromium:
/// it shows the pane's redraw and what its owner types next, with no
/// input cursor, and the keys typed into it never reach the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_page_watches_a_pane_without_input() {
    use tokio::io::AsyncBufReadExt as _;
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let server = daemon().await;
    let (owner, pane, typed) = owner_pane(&server, "before-the-page").await;

    let url = format!("http://{}/#token={VIEW}&view=1&pane={pane}", server.addr);
    let mut page = tokio::process::Command::new("node")
        .arg(dir.join("viewer.mjs"))
        .args([
            &url,
            "got:before-the-page",
            "typed-in-the-page",
            "got:after-the-page",
        ])
        .env("CHROMIUM", &chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("running node");
    let mut lines = tokio::io::BufReader::new(page.stdout.take().unwrap()).lines();
    let mut said = Vec::new();
    // Bounded by the script's own 20 s waits.
    while let Some(line) = lines.next_line().await.unwrap() {
        let done = line == "typed";
        said.push(line);
        if done {
            break;
        }
    }
    typed.send_text("after-the-page\n").await;
    let seen = pane_until(&typed, "got:after-the-page").await;
    assert!(!seen.contains("typed-in-the-page"), "{seen:?}");
    while let Some(line) = lines.next_line().await.unwrap() {
        said.push(line);
    }
    let out = page.wait_with_output().await.unwrap();
    let said = said.join("\n");
    assert!(
        out.status.success() && said.contains("ok:"),
        "stdout:\n{said}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    owner.close().await;
}
