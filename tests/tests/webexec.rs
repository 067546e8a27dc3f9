//! webexec end to end: the real server on 127.0.0.1:0, an in-process
//! WebRTC peer (the `webrtc` crate) over real UDP on loopback, real
//! processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use execwire_tests::TestServer;
use execwire_tests::webexec::{Client, ClientChannel, ConnectError, Msg, Signaling};
use serde_json::json;

async fn server() -> TestServer {
    TestServer::webexec_with(webexec_server::Config::default()).await
}

async fn client(server: &TestServer) -> Client {
    Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .unwrap()
}

/// The first message of a client-opened pane channel: its id.
async fn hello(channel: &execwire_tests::webexec::ClientChannel) -> String {
    match channel
        .recv()
        .await
        .expect("channel closed before the pane id")
    {
        // Binary, as every server message (Terminal7 reads pane data with
        // `new Uint8Array(event.data)`).
        Msg::Binary(b) => String::from_utf8(b).expect("pane id is text"),
        Msg::Text(t) => panic!("pane id came as a text message: {t}"),
    }
}

#[tokio::test]
async fn echo_runs_and_the_channel_closes_on_exit() {
    let server = server().await;
    let client = client(&server).await;
    // Opened together: see `open_all`. The current comma form (argv
    // without shell parsing) and the seed space form.
    let [current, seed] = client
        .open_all(["echo,hello world", "echo hello seed"])
        .await;
    let id = hello(&current).await;
    assert!(id.parse::<u64>().is_ok(), "pane id {id:?}");
    assert_eq!(current.read_to_close().await, b"hello world\n");
    hello(&seed).await;
    assert_eq!(seed.read_to_close().await, b"hello seed\n");
}

#[tokio::test]
async fn input_from_text_and_binary_reaches_the_process() {
    let server = server().await;
    let client = client(&server).await;
    let ch = client.open("head,-c,6").await;
    hello(&ch).await;
    ch.send_text("abc").await;
    ch.send(b"def").await;
    assert_eq!(ch.read_to_close().await, b"abcdef");
}

#[tokio::test]
async fn pty_pane_echoes_and_resizes() {
    let server = server().await;
    let mut client = client(&server).await;
    let ch = client.open("24x80,sh").await;
    let id = hello(&ch).await;
    let (pane, size) = id.split_once(',').expect("PTY hello has a size");
    assert_eq!(size, "24x80");
    ch.send_text("stty size; echo mark-$((6*7))\n").await;
    let out = ch.read_until("mark-42").await;
    assert!(out.contains("24 80"), "{out:?}");
    let pane: u64 = pane.parse().unwrap();
    let reply = client
        .control
        .request("resize", json!({"pane_id": pane, "sx": 100, "sy": 30}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    ch.send_text("stty size; echo mark-$((6*8))\n").await;
    let out = ch.read_until("mark-48").await;
    assert!(out.contains("30 100"), "{out:?}");
    // Seed form: no pane id, the peer's latest PTY pane is meant.
    let reply = client
        .control
        .request("resize", json!({"sx": 90, "sy": 20}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    ch.send_text("stty size; echo mark-$((6*9))\n").await;
    assert!(ch.read_until("mark-54").await.contains("20 90"));
}

#[tokio::test]
async fn resize_of_a_pane_without_pty_is_nacked() {
    let server = server().await;
    let mut client = client(&server).await;
    let ch = client.open("cat").await;
    let pane: u64 = hello(&ch).await.parse().unwrap();
    let reply = client
        .control
        .request("resize", json!({"pane_id": pane, "sx": 10, "sy": 10}))
        .await;
    assert_eq!(reply["type"], "nack");
    let desc = reply["args"]["desc"].as_str().unwrap();
    assert_eq!(reply["args"]["description"], desc);
    assert!(desc.contains("terminal"), "{desc}");
}

#[tokio::test]
async fn add_pane_opens_a_server_channel_and_acks_its_id() {
    let server = server().await;
    let mut client = client(&server).await;
    let reply = client
        .control
        .request(
            "add_pane",
            json!({"command": ["sh", "-c", "echo from-add-pane; cat"], "rows": 0, "cols": 0, "parent": 0}),
        )
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let id = reply["args"]["body"]
        .as_str()
        .expect("ack body is a string")
        .to_owned();
    let reference = reply["args"]["ref"].as_i64().unwrap();
    let (label, ch) = client.server_channel().await;
    assert_eq!(label, format!("{reference}:{id}"));
    ch.read_until("from-add-pane").await;
    ch.send_text("typed\n").await;
    ch.read_until("typed").await;
}

/// A new pane that writes far more than its replay ring (64 KiB here) as
/// fast as it can gets to its client whole, from the first byte, through
/// `add_pane` and through a labelled channel: the process waits for that
/// client from its first write. Before, it ran free until the server
/// attached the client, and a server task delayed there (a loaded
/// machine) let the first output fall out of the ring; the engine's test
/// `client_attached_at_spawn_gets_the_first_byte_however_late_it_reads`
/// pins that race down, this one the path through the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pane_is_read_from_its_first_byte_however_fast_it_writes() {
    let server = TestServer::webexec_with(webexec_server::Config {
        replay_bytes: 64 * 1024,
        ..webexec_server::Config::default()
    })
    .await;
    let mut client = client(&server).await;
    let reply = client
        .control
        .request(
            "add_pane",
            json!({"command": ["head", "-c", "4000000", "/dev/zero"], "rows": 0, "cols": 0, "parent": 0}),
        )
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let (_, ch) = client.server_channel().await;
    let got = ch.read_to_close().await;
    assert_eq!(got.len(), 4_000_000, "add_pane");

    let ch = client.open("head,-c,4000000,/dev/zero").await;
    hello(&ch).await;
    let got = ch.read_to_close().await;
    assert_eq!(got.len(), 4_000_000, "labelled channel");
}

#[tokio::test]
async fn disconnect_and_reconnect_with_screen_redraw() {
    let server = server().await;
    let first = client(&server).await;
    let ch = first.open("24x80,sh").await;
    let id = hello(&ch).await;
    let pane = id.split_once(',').unwrap().0.to_owned();
    ch.send_text("echo before-$((1+1))\n").await;
    ch.read_until("before-2").await;
    first.close().await;
    drop(ch);

    // The pane ran on; a new peer reattaches by label and gets the screen.
    let second = client(&server).await;
    let ch = second.open(&format!(">{pane}")).await;
    assert_eq!(hello(&ch).await, format!("{pane},24x80"));
    let redraw = ch.read_until("before-2").await;
    assert!(redraw.contains("before-2"), "{redraw:?}");
    ch.send_text("echo after-$((2+2))\n").await;
    ch.read_until("after-4").await;
}

#[tokio::test]
async fn mark_and_restore_replay_only_what_came_after() {
    let server = server().await;
    let mut first = client(&server).await;
    let ch = first.open("cat").await;
    let pane: u64 = hello(&ch).await.parse().unwrap();
    ch.send_text("old-line\n").await;
    ch.read_until("old-line").await;
    let reply = first.control.request("mark", json!({})).await;
    let marker: u64 = reply["args"]["body"].as_str().unwrap().parse().unwrap();
    ch.send_text("new-line\n").await;
    ch.read_until("new-line").await;
    first.close().await;

    let mut second = client(&server).await;
    let reply = second
        .control
        .request("restore", json!({"marker": marker}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let reply = second
        .control
        .request("reconnect_pane", json!({"id": pane}))
        .await;
    assert_eq!(reply["type"], "ack", "{reply}");
    let (label, ch) = second.server_channel().await;
    assert!(label.ends_with(&format!(":{pane}")), "{label}");
    ch.send_text("live-line\n").await;
    let replay = ch.read_until("live-line").await;
    assert_eq!(replay, "new-line\nlive-line\n");

    // An unknown marker and an unknown pane are refused.
    let reply = second
        .control
        .request("restore", json!({"marker": 999_999}))
        .await;
    assert_eq!(reply["type"], "nack");
    let reply = second
        .control
        .request("reconnect_pane", json!({"id": 999_999}))
        .await;
    assert_eq!(reply["type"], "nack");
}

/// Two peers, A and B, attached to one `cat` pane (A started it).
async fn two_peers_on_one_cat(
    server: &TestServer,
) -> (Client, Client, ClientChannel, ClientChannel) {
    let a = client(server).await;
    let b = client(server).await;
    let ca = a.open("cat").await;
    let pane = hello(&ca).await;
    let cb = b.open(&format!(">{pane}")).await;
    assert_eq!(hello(&cb).await, pane);
    (a, b, ca, cb)
}

#[tokio::test]
async fn two_peers_share_a_pane() {
    let server = server().await;
    let (_a, _b, ca, cb) = two_peers_on_one_cat(&server).await;
    cb.send_text("from-b\n").await;
    ca.read_until("from-b").await;
    cb.read_until("from-b").await;
    ca.send_text("from-a\n").await;
    ca.read_until("from-a").await;
    cb.read_until("from-a").await;
}

#[tokio::test]
async fn a_peer_slow_to_read_does_not_hold_back_another() {
    let server = server().await;
    let (_a, _b, ca, cb) = two_peers_on_one_cat(&server).await;
    // B pushes 8 MiB through the shared `cat` and reads the output as it
    // comes; A reads nothing until B is done. B is never held up by A, and
    // A then catches up to the end (from its offset, or, had it fallen out
    // of the pane's 1 MiB of kept output, from the oldest kept).
    const TOTAL: usize = 8 << 20;
    let line = [
        b"0123456789abcdef".repeat(64 * 4 - 1).as_slice(),
        b"012345678901234\n",
    ]
    .concat();
    let send = async {
        for _ in 0..TOTAL / line.len() {
            cb.send(&line).await;
        }
        cb.send_text("the-end\n").await;
    };
    let ((), got_b) = tokio::join!(send, count_until_end(&cb));
    assert!(got_b > 0);
    assert!(count_until_end(&ca).await > 0);
}

/// Bytes received until the output ends with `the-end\n`.
async fn count_until_end(channel: &ClientChannel) -> usize {
    let mut got = 0;
    let mut tail = Vec::new();
    while !tail.ends_with(b"the-end\n") {
        let msg = channel.recv().await.expect("channel closed");
        got += msg.bytes().len();
        tail.extend_from_slice(msg.bytes());
        let keep = tail.len().saturating_sub(64);
        tail.drain(..keep);
    }
    got
}

#[tokio::test]
async fn payload_is_stored_and_broadcast() {
    let server = server().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let reply = a.control.request("get_payload", json!({})).await;
    assert_eq!(reply["type"], "ack");
    assert!(
        reply["args"].get("body").is_none(),
        "no payload yet: {reply}"
    );
    // Terminal7 spells it `Payload`.
    let layout = json!({"windows": [{"name": "w1"}]});
    let reply = a
        .control
        .request("set_payload", json!({"Payload": layout}))
        .await;
    assert_eq!(reply["type"], "ack");
    let body = reply["args"]["body"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(body).unwrap(),
        layout
    );
    let notice = b.control.next().await;
    assert_eq!(notice["type"], "set_payload", "{notice}");
    assert_eq!(notice["args"]["payload"], layout);
    let reply = b.control.request("get_payload", json!({})).await;
    assert_eq!(reply["args"]["body"], body);
}

#[tokio::test]
async fn resize_is_broadcast_to_other_peers() {
    let server = server().await;
    let mut a = client(&server).await;
    let mut b = client(&server).await;
    let ch = a.open("24x80,cat").await;
    let pane: u64 = hello(&ch).await.split_once(',').unwrap().0.parse().unwrap();
    let reply = a
        .control
        .request("resize", json!({"pane_id": pane, "sx": 120, "sy": 40}))
        .await;
    assert_eq!(reply["type"], "ack");
    let notice = b.control.next().await;
    assert_eq!(notice["type"], "resize");
    assert_eq!(
        notice["args"],
        json!({"pane_id": pane, "sx": 120, "sy": 40})
    );
}

#[tokio::test]
async fn malformed_and_unknown_control_messages_are_nacked() {
    let server = server().await;
    let mut client = client(&server).await;
    let reply = client.control.raw("this is not json").await;
    assert_eq!(reply["type"], "nack");
    assert!(reply["args"]["desc"].as_str().unwrap().contains("JSON"));
    let reply = client.control.request("no_such_type", json!({})).await;
    assert_eq!(reply["type"], "nack");
    assert!(
        reply["args"]["description"]
            .as_str()
            .unwrap()
            .contains("no_such_type")
    );
    let reply = client
        .control
        .request("resize", json!({"sx": "wide"}))
        .await;
    assert_eq!(reply["type"], "nack");
    let reply = client
        .control
        .raw(r#"{"message_id": 7, "type": "mark", "args": [1]}"#)
        .await;
    assert_eq!(reply["type"], "nack");
    assert_eq!(reply["args"]["ref"], 7);
    // Still serving after all that.
    let reply = client.control.request("get_payload", json!({})).await;
    assert_eq!(reply["type"], "ack");
}

#[tokio::test]
async fn bad_labels_and_unknown_panes_close_the_channel() {
    let server = server().await;
    let client = client(&server).await;
    // Opened together: see `open_all`.
    let cases = [
        (">not-a-number", "pane id"),
        (">424242", "no pane"),
        ("/no/such/program", "failed to start"),
    ];
    let labels = cases.map(|(label, _)| label);
    let channels = client.open_all(labels).await;
    for ((label, expected), ch) in cases.iter().zip(&channels) {
        let Some(Msg::Binary(why)) = ch.recv().await else {
            panic!("{label}: no reason as a binary message")
        };
        let why = String::from_utf8_lossy(&why);
        assert!(why.contains(expected), "{label}: {why}");
        assert!(ch.recv().await.is_none(), "{label}: still open");
    }
}

#[tokio::test]
async fn unauthorized_offer_is_refused() {
    let server = server().await;
    match Client::connect(server.addr, Some("wrong"), &Signaling::Offer).await {
        Err(ConnectError::Http(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
    match Client::connect(server.addr, None, &Signaling::Offer).await {
        Err(ConnectError::Http(401, _)) => {}
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn trickled_candidates_connect() {
    let server = server().await;
    let client = Client::connect(server.addr, Some(&server.token), &Signaling::Trickle)
        .await
        .unwrap();
    let ch = client.open("echo,trickled").await;
    hello(&ch).await;
    assert_eq!(ch.read_to_close().await, b"trickled\n");
}

/// Signaling remembers a session for its trickled candidates without
/// keeping its connection alive: once the client has gone and its peer
/// ended, the session is gone too, long before the 30 s candidate window
/// (a strong reference there held every connection's buffers that long).
#[tokio::test]
async fn a_finished_session_takes_no_more_candidates() {
    let server = server().await;
    let client = Client::connect(server.addr, Some(&server.token), &Signaling::Trickle)
        .await
        .unwrap();
    let location = client.location.clone().expect("a trickle Location");
    let ch = client.open("echo,trickled").await;
    hello(&ch).await;
    assert_eq!(ch.read_to_close().await, b"trickled\n");
    let http = reqwest::Client::new();
    let candidate = r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}"#;
    let patch = || {
        http.patch(&location)
            .header("content-type", "application/json")
            .body(candidate)
            .send()
    };
    // While the peer lives, its session takes candidates.
    assert_eq!(patch().await.unwrap().status(), 204);
    client.close().await;
    // The peer ends once ICE gives up on the departed client (failed
    // after 6 s without an answer, as the reference; ~9 s here): poll for
    // that, short of the window.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(25);
    loop {
        let status = patch().await.unwrap().status();
        if status == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session still answers {status} after its client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn seed_connect_flow_with_auth_message() {
    let server = server().await;
    for form in [Signaling::ConnectJson, Signaling::ConnectText] {
        // No token over HTTP: the peer connects but must authenticate.
        let mut client = Client::connect(server.addr, None, &form).await.unwrap();
        let ch = client.open("echo nope").await;
        let Some(Msg::Binary(why)) = ch.recv().await else {
            panic!("no reason as a binary message")
        };
        let why = String::from_utf8_lossy(&why);
        assert!(why.contains("not authenticated"), "{why}");
        // Closed, and its stream id free before the next open (`open_all`).
        assert!(ch.recv().await.is_none(), "still open");
        let reply = client.control.request("get_payload", json!({})).await;
        assert_eq!(reply["type"], "nack");
        let reply = client
            .control
            .request("auth", json!({"token": "wrong"}))
            .await;
        assert_eq!(reply["type"], "nack");
        let reply = client
            .control
            .request("auth", json!({"token": server.token}))
            .await;
        assert_eq!(reply["type"], "ack", "{reply}");
        let ch = client.open("echo,hello,seed").await;
        hello(&ch).await;
        assert_eq!(ch.read_to_close().await, b"hello seed\n");
        client.close().await;
    }
}

#[tokio::test]
async fn signaling_rejects_garbage_and_answers_preflight() {
    let server = server().await;
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let r = http
        .post(format!("{base}/offer"))
        .bearer_auth(&server.token)
        .body("not sdp")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .post(format!("{base}/connect"))
        .body("%%%")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http
        .patch(format!(
            "{base}/candidates/00000000-0000-0000-0000-000000000000"
        ))
        .body(r#"{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .request(reqwest::Method::OPTIONS, format!("{base}/offer"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    let methods = h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    for m in ["POST", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"));
}

#[tokio::test]
async fn offer_answer_carries_location_and_cors_headers() {
    let server = server().await;
    // A raw offer from a client peer, read for its headers.
    let client = Client::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .unwrap();
    drop(client);
    let page = reqwest::get(format!("http://{}/", server.addr))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("assets/xterm.js"));
    for asset in ["xterm.js", "xterm.css", "addon-fit.js", "app.js"] {
        let r = reqwest::get(format!("http://{}/assets/{asset}", server.addr))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
}

#[tokio::test]
async fn panes_outlive_peers_and_end_with_the_server() {
    let server = server().await;
    let client = client(&server).await;
    let ch = client.open("sh,-c,echo $$; exec sleep 1000").await;
    hello(&ch).await;
    let pid: u32 = ch.read_until("\n").await.trim().parse().unwrap();
    client.close().await;
    assert!(execwire_tests::alive(pid));
    server.shutdown().await;
    execwire_tests::wait_gone(pid).await;
}

#[tokio::test]
async fn daemon_socket_serves_the_ssh_flow() {
    use webexec_server::daemon::{self, Paths};
    let dir = std::env::temp_dir().join(format!("webexec-test-{}", std::process::id()));
    let paths = Paths::new(Some(dir.clone())).unwrap();
    let server = webexec_server::Server::new(webexec_server::Config::default()).unwrap();
    let listener = daemon::bind(&paths).await.unwrap();
    // A second daemon on the same socket is refused.
    assert!(daemon::bind(&paths).await.is_err());
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_unix(listener).await }
    });
    assert!(daemon::running(&paths).await);
    // The socket is trusted: no token, no auth message.
    let addr = "127.0.0.1:9".parse().unwrap(); // unused by this flow
    let client = Client::connect(addr, None, &Signaling::Daemon(paths.clone()))
        .await
        .unwrap();
    let ch = client.open("echo,over ssh").await;
    hello(&ch).await;
    assert_eq!(ch.read_to_close().await, b"over ssh\n");
    let (status, body) = daemon::request(&paths.socket(), "GET", "/status", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("peers: 1"), "{body}");
    let (status, _) = daemon::request(&paths.socket(), "POST", "/stop", Vec::new())
        .await
        .unwrap();
    assert_eq!(status, 200);
    serving.await.unwrap().unwrap();
    server.finish();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn clipboard_both_ways_through_the_daemon_socket() {
    use webexec_server::daemon::{self, Paths};
    let dir = std::env::temp_dir().join(format!("webexec-clip-{}", std::process::id()));
    let paths = Paths::new(Some(dir.clone())).unwrap();
    let socket = paths.socket();
    let server = webexec_server::Server::new(webexec_server::Config {
        socket: Some(socket.clone()),
        ..webexec_server::Config::default()
    })
    .unwrap();
    let listener = daemon::bind(&paths).await.unwrap();
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_unix(listener).await }
    });
    // Nobody to ask yet.
    let err = daemon::paste(&socket).await.unwrap_err().to_string();
    assert!(err.contains("no client"), "{err}");

    let addr = "127.0.0.1:9".parse().unwrap(); // unused by this flow
    let mut client = Client::connect(addr, None, &Signaling::Daemon(paths.clone()))
        .await
        .unwrap();
    // Panes know their server's socket: `copy`/`paste` in them find it.
    let ch = client.open("printenv,WEBEXEC").await;
    hello(&ch).await;
    let printed = ch.read_to_close().await;
    assert_eq!(
        String::from_utf8(printed).unwrap().trim(),
        socket.display().to_string()
    );

    // copy: set_clipboard reaches the client.
    let copy = tokio::spawn({
        let socket = socket.clone();
        async move { daemon::copy(&socket, b"from the host".to_vec(), "text/plain").await }
    });
    let msg = client.control.next().await;
    assert_eq!(msg["type"], "set_clipboard");
    assert_eq!(
        msg["args"],
        json!({"data": "from the host", "mimetype": "text/plain"})
    );
    copy.await.unwrap().unwrap();

    // paste: get_clipboard, answered by the client's ack (Terminal7's form).
    let paste = tokio::spawn({
        let socket = socket.clone();
        async move { daemon::paste(&socket).await }
    });
    let msg = client.control.next().await;
    assert_eq!(msg["type"], "get_clipboard");
    let ack = json!({"type": "ack", "message_id": 90, "time": 1,
        "args": {"ref": msg["message_id"], "body": "from the phone"}});
    client.control.channel.send_text(&ack.to_string()).await;
    assert_eq!(paste.await.unwrap().unwrap(), "from the phone");

    // A refusal reaches `paste` with the client's reason.
    let paste = tokio::spawn({
        let socket = socket.clone();
        async move { daemon::paste(&socket).await }
    });
    let msg = client.control.next().await;
    let nack = json!({"type": "nack", "message_id": 91, "time": 1,
        "args": {"ref": msg["message_id"], "body": "clipboard is not text"}});
    client.control.channel.send_text(&nack.to_string()).await;
    let err = paste.await.unwrap().unwrap_err().to_string();
    assert!(err.contains("clipboard is not text"), "{err}");

    server.shutdown();
    serving.await.unwrap().unwrap();
    server.finish();
    let _ = std::fs::remove_dir_all(dir);
}

/// A filter fed 100 MiB while the client reads its output: every byte
/// comes back, in order. Each 1 MiB frame goes in 64 KiB messages, the
/// largest an SCTP data channel takes by default.
#[tokio::test]
async fn a_filter_fed_100_mib_never_stalls() {
    use execwire_tests::{
        FILTER_FRAME, FILTER_FRAMES as FRAMES, FILTER_NET, FilterCheck, filter_frame,
    };
    let server = server().await;
    let client = client(&server).await;
    let ch = client.open("cat").await;
    hello(&ch).await;
    let feed = async {
        for k in 0..FRAMES {
            let frame = filter_frame(k, FILTER_FRAME);
            for piece in frame.as_bytes().chunks(64 * 1024) {
                ch.send(piece).await;
            }
        }
    };
    let read = async {
        let mut check = FilterCheck::new(FRAMES, FILTER_FRAME);
        while !check.complete() {
            let msg = ch.recv().await.expect("channel closed");
            check.push(msg.bytes());
        }
    };
    tokio::time::timeout(FILTER_NET, async { tokio::join!(feed, read) })
        .await
        .expect("the filter stalled");
}
