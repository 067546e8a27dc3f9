//! The bad-input matrix (README, "Reliability"): malformed and hostile
//! input, per protocol, and what the server answers. A cell tested
//! elsewhere is named in the README's table; every other cell is a test
//! here, named `ROW_PROTOCOL`. Real servers on port 0, real clients over
//! real sockets, real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use execwire_tests::webexec::{Client as Peer, ClientChannel, Msg, Signaling};
use execwire_tests::{TestServer, wait_gone};
use futures_util::{SinkExt, StreamExt};
use pow_proto::{Call, Outcome, Signal};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsep_client::Output;
use wsep_proto::StartCommand;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A safety net so a broken server fails a test instead of hanging it;
/// never reached when things work.
const NET: Duration = Duration::from_secs(60);

/// Output of the "1 GB without newlines" rows in the suite: 64 MiB, many
/// times every buffer between the process and the client (pipes, the
/// 1 MiB pane ring, 64 KiB frames, the 1 MiB `/status` buffer). The
/// benchmark streams the whole GiB (`reliability-bench nonl`).
const NO_NEWLINE_BYTES: usize = 64 << 20;

/// `sh -c` line writing [`NO_NEWLINE_BYTES`] of `x` and no newline.
fn no_newline_line() -> String {
    format!("head -c {NO_NEWLINE_BYTES} /dev/zero | tr '\\0' x")
}

// ---------------------------------------------------------------- helpers

/// A WebSocket to `url` with `headers`, no client-side limits.
async fn ws(url: &str, headers: &[(&str, &str)]) -> Ws {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        let name: tokio_tungstenite::tungstenite::http::HeaderName = name.parse().unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// Reads until the server's close; its code (1005 without one), or
/// `None` when the connection ended without a close frame.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(NET, ws.next()).await.expect("silent") {
            Some(Ok(Message::Close(Some(frame)))) => return Some(frame.code.into()),
            Some(Ok(Message::Close(None))) => return Some(1005),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

/// Speaks WebSocket by hand, for what no client library sends: a text
/// frame that is not UTF-8. Upgrades `path` on `addr` with `headers`,
/// sends one masked frame of `opcode` with `payload`, and returns the
/// code of the server's close frame (`None` if the connection ended
/// without one).
async fn raw_frame(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    opcode: u8,
    payload: &[u8],
) -> Option<u16> {
    let mut frame = frame_head(opcode, payload.len() as u64);
    frame.extend_from_slice(payload);
    raw_exchange(addr, path, headers, &frame).await.close
}

/// The head of a masked client frame (FIN, `opcode`, a zero mask key, so
/// the payload goes as it is) that announces `len` bytes of payload.
fn frame_head(opcode: u8, len: u64) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match len {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u64::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&n.to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame
}

/// What a server sent on a hand-spoken WebSocket: its data frames (opcode,
/// payload) before its close, and the close's code (`None`: no close).
struct Raw {
    frames: Vec<(u8, Vec<u8>)>,
    close: Option<u16>,
}

/// Upgrades `path` on `addr` with `headers`, writes `bytes` and reads the
/// server's frames until its close.
async fn raw_exchange(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    bytes: &[u8],
) -> Raw {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        tcp.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp.write_all(bytes).await.unwrap();
    let mut frames = Vec::new();
    let close = async {
        loop {
            let mut h = [0u8; 2];
            if tokio::time::timeout(NET, tcp.read_exact(&mut h))
                .await
                .expect("silent")
                .is_err()
            {
                return None;
            }
            let len = match h[1] & 0x7f {
                126 => {
                    let mut l = [0u8; 2];
                    tcp.read_exact(&mut l).await.ok()?;
                    u64::from(u16::from_be_bytes(l))
                }
                127 => {
                    let mut l = [0u8; 8];
                    tcp.read_exact(&mut l).await.ok()?;
                    u64::from_be_bytes(l)
                }
                n => u64::from(n),
            };
            let mut body = vec![0u8; len as usize];
            tcp.read_exact(&mut body).await.ok()?;
            if h[0] & 0x0f == 0x8 {
                return Some(match body.get(..2) {
                    Some(code) => u16::from_be_bytes([code[0], code[1]]),
                    None => 1005,
                });
            }
            frames.push((h[0] & 0x0f, body));
        }
    }
    .await;
    Raw { frames, close }
}

/// Bytes that are not UTF-8: a lone continuation byte and an invalid lead.
const NOT_UTF8: &[u8] = b"ab\x80cd\xff";

// ------------------------------------------------------------------- wsep

fn wsep_cmd(program: &str, args: &[&str]) -> StartCommand {
    StartCommand {
        command: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..StartCommand::default()
    }
}

async fn wsep_raw(server: &TestServer) -> Ws {
    let auth = format!("Bearer {}", server.token);
    ws(&server.url(), &[("authorization", &auth)]).await
}

/// Sends `messages` on a fresh connection; the server's close code.
async fn wsep_close_after(server: &TestServer, messages: Vec<Message>) -> Option<u16> {
    let mut ws = wsep_raw(server).await;
    for m in messages {
        // The server may close before it read them all.
        let _ = ws.send(m).await;
    }
    close_code(&mut ws).await
}

#[derive(Debug, Default)]
struct WsepRun {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: Option<i32>,
}

async fn wsep_run(server: &TestServer, start: StartCommand, input: &[u8]) -> WsepRun {
    let (mut tx, mut out) = wsep_client::start(&server.url(), Some(&server.token), start)
        .await
        .unwrap();
    if !input.is_empty() {
        tx.write(input).await.unwrap();
    }
    tx.close_stdin().await.unwrap();
    let mut run = WsepRun::default();
    while let Some(o) = tokio::time::timeout(NET, out.next())
        .await
        .expect("silent")
        .unwrap()
    {
        match o {
            Output::Stdout(b) => run.stdout.extend_from_slice(&b),
            Output::Stderr(b) => run.stderr.extend_from_slice(&b),
            Output::Exit { code, .. } => run.code = Some(code),
        }
    }
    run
}

fn wsep_start(json: &str) -> Message {
    Message::Binary(Bytes::from(json.to_owned()))
}

#[tokio::test]
async fn truncated_json_wsep() {
    let server = TestServer::wsep().await;
    for bad in [
        r#"{"type":"start","command":{"command":"cat""#,
        r#"{"type":"#,
        "{",
    ] {
        assert_eq!(
            wsep_close_after(&server, vec![wsep_start(bad)]).await,
            Some(1008),
            "{bad}"
        );
    }
    // After a start too, and nobody else is affected.
    let start = wsep_proto::ClientMsg::Start(wsep_client::explicit(wsep_cmd("cat", &[])));
    let messages = vec![
        Message::Binary(start.encode().into()),
        wsep_start(r#"{"type":"resize","rows":2"#),
    ];
    assert_eq!(wsep_close_after(&server, messages).await, Some(1008));
    assert_eq!(
        wsep_run(&server, wsep_cmd("echo", &["ok"]), b"")
            .await
            .stdout,
        b"ok\n"
    );
}

#[tokio::test]
async fn wrong_types_wsep() {
    let server = TestServer::wsep().await;
    for bad in [
        r#"{"type":"start","command":{"command":5}}"#,
        r#"{"type":"start","command":"cat","args":"not a list"}"#,
        r#"{"type":"start","command":{"command":"cat","tty":"yes"}}"#,
        r#"{"type":"start","command":{"command":"cat","rows":-1,"tty":true}}"#,
        r#"{"type":["start"]}"#,
    ] {
        assert_eq!(
            wsep_close_after(&server, vec![wsep_start(bad)]).await,
            Some(1008),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn unknown_ids_wsep() {
    // A session id nobody started is a new session, not an error; the
    // same id again is that session.
    let server = TestServer::wsep().await;
    let tty = |id: &str| StartCommand {
        tty: true,
        rows: 24,
        cols: 80,
        id: id.into(),
        ..wsep_cmd("cat", &[])
    };
    let url = server.url();
    let (_a_in, a) = wsep_client::start(&url, Some(&server.token), tty("never-seen-1"))
        .await
        .unwrap();
    let (_b_in, b) = wsep_client::start(&url, Some(&server.token), tty("never-seen-2"))
        .await
        .unwrap();
    let (_c_in, c) = wsep_client::start(&url, Some(&server.token), tty("never-seen-1"))
        .await
        .unwrap();
    assert_ne!(a.pid(), b.pid());
    assert_eq!(a.pid(), c.pid());
}

#[tokio::test]
async fn floods_of_tiny_frames_wsep() {
    const N: usize = 50_000;
    let server = TestServer::wsep().await;
    let (mut tx, mut out) =
        wsep_client::start(&server.url(), Some(&server.token), wsep_cmd("wc", &["-c"]))
            .await
            .unwrap();
    for _ in 0..N {
        tx.write(b"x").await.unwrap();
    }
    // Empty bodies too: nothing for the process, nothing broken.
    for _ in 0..1000 {
        tx.write_encoded(wsep_proto::encode_stdin(b""))
            .await
            .unwrap();
    }
    tx.close_stdin().await.unwrap();
    let mut stdout = Vec::new();
    while let Some(o) = out.next().await.unwrap() {
        if let Output::Stdout(b) = o {
            stdout.extend_from_slice(&b);
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout).trim(), N.to_string());
}

#[tokio::test]
async fn invalid_utf8_wsep() {
    let server = TestServer::wsep().await;
    let auth = format!("Bearer {}", server.token);
    // A text frame that is not UTF-8 breaks the WebSocket's rules: the
    // connection ends with a policy close, before anything runs.
    let code = raw_frame(
        server.addr,
        "/",
        &[("authorization", &auth)],
        0x1,
        &[br#"{"type":"start","command":"echo"}"#.as_slice(), NOT_UTF8].concat(),
    )
    .await;
    assert_eq!(code, Some(1008));
    // Not UTF-8 inside the JSON of a binary frame: malformed.
    let bad = [
        br#"{"type":"start","command":""#.as_slice(),
        NOT_UTF8,
        b"\"}",
    ]
    .concat();
    assert_eq!(
        wsep_close_after(&server, vec![Message::Binary(bad.into())]).await,
        Some(1008)
    );
    // Bytes are bytes in a stdin body and in output: they arrive exactly.
    let run = wsep_run(&server, wsep_cmd("cat", &[]), NOT_UTF8).await;
    assert_eq!(run.stdout, NOT_UTF8);
}

#[tokio::test]
async fn child_closes_stdout_early_wsep() {
    let server = TestServer::wsep().await;
    let run = wsep_run(
        &server,
        wsep_cmd(
            "sh",
            &["-c", r#"exec 1>&-; read x; echo "got $x" >&2; exit 3"#],
        ),
        b"hello\n",
    )
    .await;
    assert_eq!(run.stdout, b"");
    assert_eq!(run.stderr, b"got hello\n");
    assert_eq!(run.code, Some(3));
}

#[tokio::test]
async fn child_forks_and_exits_wsep() {
    let server = TestServer::wsep().await;
    // The background child keeps stdout open; the exit is reported anyway
    // and the child ended with the command's process group.
    let run = wsep_run(&server, wsep_cmd("sh", &["-c", "sleep 60 & echo $!"]), b"").await;
    assert_eq!(run.code, Some(0));
    let pid: u32 = String::from_utf8_lossy(&run.stdout).trim().parse().unwrap();
    wait_gone(pid).await;
}

#[tokio::test]
async fn output_without_newlines_wsep() {
    let server = TestServer::wsep().await;
    let (mut tx, mut out) = wsep_client::start(
        &server.url(),
        Some(&server.token),
        wsep_cmd("sh", &["-c", &no_newline_line()]),
    )
    .await
    .unwrap();
    tx.close_stdin().await.unwrap();
    let mut got = 0;
    let mut code = None;
    while let Some(o) = out.next().await.unwrap() {
        match o {
            Output::Stdout(b) => {
                assert!(b.iter().all(|&c| c == b'x'));
                got += b.len();
            }
            Output::Exit { code: c, .. } => code = Some(c),
            Output::Stderr(b) => panic!("stderr: {b:?}"),
        }
    }
    assert_eq!((got, code), (NO_NEWLINE_BYTES, Some(0)));
}

// -------------------------------------------------------------------- pow

const POW_PROCESSES: &str = r#"
[process.cat]
argv = ["cat"]

[process.wc]
argv = ["wc", "-c"]

[process.closes]
argv = ["sh", "-c", "exec 1>&-; read x; echo \"got $x\" >&2; exit 3"]

[process.forks]
argv = ["sh", "-c", "sleep 60 & echo $!"]

[process.nonl]
argv = ["sh", "-c", "head -c 67108864 /dev/zero | tr '\\0' x"]

[process.bytes]
argv = ["printf", "ab\\200cd\\377"]
"#;

async fn pow_server() -> TestServer {
    let registry = pow_server::registry_from_toml(POW_PROCESSES).unwrap();
    TestServer::pow_with(pow_server::Config::default(), Arc::new(registry)).await
}

async fn pow_ws(server: &TestServer) -> Ws {
    let auth = format!("Bearer {}", server.token);
    ws(
        &server.url(),
        &[
            ("authorization", &auth),
            ("sec-websocket-protocol", "pow-1"),
        ],
    )
    .await
}

fn pow_call(name: &str) -> Message {
    Message::Binary(
        Call {
            call: name.into(),
            params: Vec::new(),
        }
        .encode()
        .into(),
    )
}

/// Text output (its byte count and content, up to 1 MiB kept) and the
/// result, until the close.
async fn pow_outcome(ws: &mut Ws) -> (usize, String, Outcome) {
    let (mut n, mut text, mut result) = (0, String::new(), None);
    loop {
        match tokio::time::timeout(NET, ws.next()).await.expect("silent") {
            Some(Ok(Message::Text(t))) => {
                n += t.len();
                if text.len() < 1 << 20 {
                    text.push_str(&t);
                }
            }
            Some(Ok(Message::Binary(b))) => result = Some(Outcome::decode(&b).unwrap()),
            Some(Ok(Message::Close(_))) | None => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("{e}"),
        }
    }
    (n, text, result.expect("a result"))
}

#[track_caller]
fn assert_protocol_error(outcome: Outcome) {
    assert!(
        // A built-in process's wording, and a configured command's.
        matches!(&outcome, Outcome::Rejected { reason }
            if reason.contains("protocol error") || reason.contains("broke the protocol")),
        "{outcome:?}"
    );
}

async fn pow_rest(server: &TestServer, path: &str, body: &str) -> (u16, String) {
    execwire_tests::tls::install_provider();
    let r = reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .bearer_auth(&server.token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `GET /status/{id}`: status and body.
async fn pow_status(server: &TestServer, id: &str) -> (u16, String) {
    execwire_tests::tls::install_provider();
    let r = reqwest::Client::new()
        .get(format!("http://{}/status/{id}", server.addr))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn truncated_json_pow() {
    let server = pow_server().await;
    let mut ws = pow_ws(&server).await;
    ws.send(Message::Binary(Bytes::from_static(
        b"{\"call\":\"cat\",\"par",
    )))
    .await
    .unwrap();
    assert_protocol_error(pow_outcome(&mut ws).await.2);
    // A truncated signal cancels the running process the same way.
    pow_control_frame_cancels(&server, b"{\"signal\":").await;
    let (status, _) = pow_rest(&server, "/new", r#"{"call":"cat""#).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn wrong_types_pow() {
    let server = pow_server().await;
    for bad in [
        r#"{"call":"cat","params":[1]}"#,
        r#"{"call":5}"#,
        r#"{"call":"cat","params":"x"}"#,
    ] {
        let mut ws = pow_ws(&server).await;
        ws.send(Message::Binary(Bytes::from(bad))).await.unwrap();
        assert_protocol_error(pow_outcome(&mut ws).await.2);
        let (status, _) = pow_rest(&server, "/new", bad).await;
        assert_eq!(status, 400, "{bad}");
    }
}

#[tokio::test]
async fn unknown_ids_pow() {
    let server = pow_server().await;
    for id in ["00000000-0000-0000-0000-000000000000", "not-an-id"] {
        for path in ["input", "closeInput", "cancel"] {
            let (status, _) = pow_rest(&server, &format!("/{path}/{id}"), "x").await;
            assert_eq!(status, 404, "{path}/{id}");
        }
        assert_eq!(pow_status(&server, id).await.0, 404);
    }
    // An unknown process name is a rejected result, not a crash.
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("no-such-process")).await.unwrap();
    assert!(matches!(
        pow_outcome(&mut ws).await.2,
        Outcome::Rejected { reason } if reason.contains("unknown process")
    ));
}

#[tokio::test]
async fn huge_frames_pow() {
    let server = pow_server().await;
    let auth = format!("Bearer {}", server.token);
    // A running `cat`, then a text frame that announces 2 MiB, over the
    // 1 MiB message limit: the process is cancelled as a protocol error,
    // and the client gets that result and a normal close. (Only the frame's
    // head is sent: a server that stops reading in the middle of a frame
    // leaves unread bytes, and closing on them resets the connection, which
    // may overtake the close at the client.)
    let call = Call {
        call: "cat".into(),
        params: Vec::new(),
    }
    .encode();
    let mut bytes = frame_head(0x2, call.len() as u64);
    bytes.extend_from_slice(&call);
    bytes.extend_from_slice(&frame_head(0x1, 2 << 20));
    let raw = raw_exchange(
        server.addr,
        "/",
        &[
            ("authorization", &auth),
            ("sec-websocket-protocol", "pow-1"),
        ],
        &bytes,
    )
    .await;
    assert_eq!(raw.close, Some(1000));
    let results: Vec<Outcome> = raw
        .frames
        .iter()
        .filter(|(opcode, _)| *opcode == 0x2)
        .map(|(_, body)| Outcome::decode(body).unwrap())
        .collect();
    let [outcome] = <[Outcome; 1]>::try_from(results).unwrap();
    assert_protocol_error(outcome);
    // The same through a client library: whatever arrives before the
    // reset, nobody else is affected.
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("cat")).await.unwrap();
    let _ = ws.send(Message::text("x".repeat(2 << 20))).await;
    assert!(matches!(close_code(&mut ws).await, Some(1000) | None));
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("cat")).await.unwrap();
    ws.send(Message::text("still here")).await.unwrap();
    ws.send(Message::Binary(Signal::Close.encode().into()))
        .await
        .unwrap();
    let (_, text, outcome) = pow_outcome(&mut ws).await;
    assert_eq!(text, "still here");
    assert!(matches!(outcome, Outcome::Fulfilled { .. }));
}

#[tokio::test]
async fn floods_of_tiny_frames_pow() {
    const N: usize = 50_000;
    let server = pow_server().await;
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("wc")).await.unwrap();
    for _ in 0..N {
        ws.feed(Message::text("x")).await.unwrap();
    }
    ws.send(Message::Binary(Signal::Close.encode().into()))
        .await
        .unwrap();
    let (_, text, outcome) = pow_outcome(&mut ws).await;
    assert_eq!(text.trim(), N.to_string());
    assert!(matches!(outcome, Outcome::Fulfilled { .. }));
}

#[tokio::test]
async fn binary_where_text_is_expected_pow() {
    // Binary frames are control messages: input sent as binary is not a
    // signal, and cancels the process with a protocol error.
    pow_control_frame_cancels(&pow_server().await, b"hello\n").await;
}

/// `frame` as a binary (control) frame to a running `cat` cancels it with
/// a protocol error.
async fn pow_control_frame_cancels(server: &TestServer, frame: &'static [u8]) {
    let mut ws = pow_ws(server).await;
    ws.send(pow_call("cat")).await.unwrap();
    ws.send(Message::Binary(Bytes::from_static(frame)))
        .await
        .unwrap();
    assert_protocol_error(pow_outcome(&mut ws).await.2);
}

#[tokio::test]
async fn invalid_utf8_pow() {
    let server = pow_server().await;
    let auth = format!("Bearer {}", server.token);
    let code = raw_frame(
        server.addr,
        "/",
        &[
            ("authorization", &auth),
            ("sec-websocket-protocol", "pow-1"),
        ],
        0x1,
        NOT_UTF8,
    )
    .await;
    // Before the call: rejected as a protocol error, then a normal close.
    assert_eq!(code, Some(1000));
    // Output that is not UTF-8 goes out as text: U+FFFD for what can
    // never be UTF-8 (a split character is held back until whole:
    // `characters_split_across_output_chunks_arrive_whole` in pow.rs).
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("bytes")).await.unwrap();
    let (_, text, _) = pow_outcome(&mut ws).await;
    assert_eq!(text, "ab\u{FFFD}cd\u{FFFD}");
}

#[tokio::test]
async fn child_closes_stdout_early_pow() {
    let server = pow_server().await;
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("closes")).await.unwrap();
    ws.send(Message::text("hello\n")).await.unwrap();
    let (n, _, outcome) = pow_outcome(&mut ws).await;
    assert_eq!(n, 0);
    match outcome {
        Outcome::Rejected { reason } => {
            assert!(
                reason.contains('3') && reason.contains("got hello"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn child_forks_and_exits_pow() {
    let server = pow_server().await;
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("forks")).await.unwrap();
    let (_, text, outcome) = pow_outcome(&mut ws).await;
    assert!(matches!(outcome, Outcome::Fulfilled { .. }), "{outcome:?}");
    wait_gone(text.trim().parse().unwrap()).await;
}

#[tokio::test]
async fn output_without_newlines_pow() {
    let server = pow_server().await;
    let mut ws = pow_ws(&server).await;
    ws.send(pow_call("nonl")).await.unwrap();
    let (n, text, outcome) = pow_outcome(&mut ws).await;
    assert_eq!(n, NO_NEWLINE_BYTES);
    assert!(text.bytes().all(|c| c == b'x'));
    assert!(matches!(outcome, Outcome::Fulfilled { .. }));
    // Over REST, `/status` keeps whole lines only, within its bounds: a
    // line that never ends is cut, never kept whole.
    let (status, id) = pow_rest(&server, "/new", r#"{"call":"nonl"}"#).await;
    assert_eq!(status, 200);
    let id: String = serde_json::from_str(&id).unwrap();
    let status = loop {
        let v: Value = serde_json::from_str(&pow_status(&server, &id).await.1).unwrap();
        if v["result"]["status"] != "pending" {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["result"]["status"], "fulfilled");
    let buffer = status["buffer"].as_str().unwrap_or_default();
    assert!(buffer.len() <= 1 << 20, "{} bytes kept", buffer.len());
}

// ---------------------------------------------------------------- webterm

async fn webterm_server() -> TestServer {
    TestServer::webterm_with(webterm_server::Config {
        shell: "/bin/sh".into(),
        ..webterm_server::Config::default()
    })
    .await
}

/// An authenticated webterm connection.
async fn webterm(server: &TestServer) -> Ws {
    let mut ws = ws(&server.url(), &[]).await;
    let token = server.token.clone();
    ws.send(Message::text(
        json!({"type":"authentication","payload":{"token":token}}).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(webterm_next(&mut ws).await["payload"]["result"], "ok");
    ws
}

async fn webterm_next(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(NET, ws.next()).await.expect("silent") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).unwrap(),
            Some(Ok(Message::Close(f))) => panic!("closed: {f:?}"),
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}

/// Starts `line`; its serverId.
async fn webterm_command(ws: &mut Ws, line: &str) -> u64 {
    ws.send(Message::text(
        json!({"type":"command","payload":{"command":line,"clientId":1}}).to_string(),
    ))
    .await
    .unwrap();
    let ack = webterm_next(ws).await;
    assert_eq!(ack["payload"]["result"], "ok", "{ack}");
    ack["payload"]["serverId"].as_u64().unwrap()
}

async fn webterm_stdin(ws: &mut Ws, id: u64, input: &str, eof: bool) {
    ws.send(Message::text(
        json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":input,"eof":eof}})
            .to_string(),
    ))
    .await
    .unwrap();
}

/// stdout (its length, and up to 1 MiB of it), stderr and exit code
/// until the command completes.
async fn webterm_finish(ws: &mut Ws) -> (usize, String, String, Option<i64>) {
    let (mut n, mut out, mut err) = (0, String::new(), String::new());
    loop {
        let msg = webterm_next(ws).await;
        let p = &msg["payload"];
        if let Some(s) = p["output"]["stdout"].as_str() {
            n += s.len();
            if out.len() < 1 << 20 {
                out.push_str(s);
            }
        }
        err.push_str(p["output"]["stderr"].as_str().unwrap_or_default());
        if p["status"] == "completed" {
            return (n, out, err, p["exitCode"].as_i64());
        }
    }
}

/// Sends `bad` and returns the reply, which must be an error.
async fn webterm_refused(ws: &mut Ws, bad: Message) -> Value {
    ws.send(bad).await.unwrap();
    let reply = webterm_next(ws).await;
    assert_eq!(reply["payload"]["result"], "error", "{reply}");
    reply
}

/// Sends `bad`; the reply must be the error for what is not JSON.
async fn webterm_not_json(ws: &mut Ws, bad: Message) {
    let reply = webterm_refused(ws, bad).await;
    let message = reply["payload"]["message"].as_str().unwrap();
    assert!(message.contains("invalid JSON"), "{message}");
}

/// The connection still runs commands.
async fn webterm_serves_on(ws: &mut Ws) {
    webterm_command(ws, "echo ok").await;
    assert_eq!(webterm_finish(ws).await.1, "ok\n");
}

#[tokio::test]
async fn truncated_json_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    for bad in [
        r#"{"type":"command","payload":{"command":"echo"#,
        r#"{"type":"#,
        "{",
    ] {
        webterm_not_json(&mut ws, Message::text(bad)).await;
    }
    webterm_serves_on(&mut ws).await;
}

#[tokio::test]
async fn wrong_types_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    let id = webterm_command(&mut ws, "cat").await;
    for bad in [
        json!({"type":"command","payload":{"command":42,"clientId":1}}),
        json!({"type":"command","payload":"echo hi"}),
        json!({"type":"update","payload":{"type":"stdin","serverId":"one","input":"x"}}),
        json!({"type":"update","payload":{"type":"signal","serverId":id,"signal":"NOPE"}}),
        json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":5}}),
        json!({"type":7}),
    ] {
        webterm_refused(&mut ws, Message::text(bad.to_string())).await;
    }
    webterm_stdin(&mut ws, id, "still here\n", true).await;
    assert_eq!(webterm_finish(&mut ws).await.1, "still here\n");
}

#[tokio::test]
async fn huge_frames_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    // Over the 1 MiB limit: a policy close ("bad frame: message too
    // large"), when the reset that the unread rest of the frame causes
    // does not overtake it.
    let _ = ws.send(Message::text("x".repeat(2 << 20))).await;
    assert!(matches!(close_code(&mut ws).await, Some(1008) | None));
    // Also before authentication, and nobody else is affected.
    let mut ws = self::ws(&server.url(), &[]).await;
    let _ = ws.send(Message::text("x".repeat(2 << 20))).await;
    assert!(matches!(close_code(&mut ws).await, Some(1008) | None));
    webterm_serves_on(&mut webterm(&server).await).await;
}

#[tokio::test]
async fn floods_of_tiny_frames_webterm() {
    const N: usize = 20_000;
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    let id = webterm_command(&mut ws, "wc -c").await;
    for _ in 0..N {
        ws.feed(Message::text(
            json!({"type":"update","payload":{"type":"stdin","serverId":id,"input":"x"}})
                .to_string(),
        ))
        .await
        .unwrap();
    }
    webterm_stdin(&mut ws, id, "", true).await;
    let (_, out, _, code) = webterm_finish(&mut ws).await;
    assert_eq!((out.trim(), code), (N.to_string().as_str(), Some(0)));
}

#[tokio::test]
async fn binary_where_text_is_expected_webterm() {
    // A binary frame holding a message is read as that message (the text
    // is what matters); one that is not JSON is an error.
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    ws.send(Message::Binary(Bytes::from(
        json!({"type":"command","payload":{"command":"echo bin","clientId":1}}).to_string(),
    )))
    .await
    .unwrap();
    let ack = webterm_next(&mut ws).await;
    assert_eq!(ack["payload"]["result"], "ok", "{ack}");
    assert_eq!(webterm_finish(&mut ws).await.1, "bin\n");
    webterm_refused(&mut ws, Message::Binary(Bytes::from_static(b"\x00\x01"))).await;
}

#[tokio::test]
async fn invalid_utf8_webterm() {
    let server = webterm_server().await;
    let code = raw_frame(server.addr, "/", &[], 0x1, NOT_UTF8).await;
    assert_eq!(code, Some(1008));
    // In a binary frame: not JSON, an error, and the connection serves on.
    let mut ws = webterm(&server).await;
    webterm_not_json(&mut ws, Message::Binary(Bytes::from_static(NOT_UTF8))).await;
    webterm_serves_on(&mut ws).await;
}

#[tokio::test]
async fn child_closes_stdout_early_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    let id = webterm_command(&mut ws, r#"exec 1>&-; read x; echo "got $x" >&2; exit 3"#).await;
    webterm_stdin(&mut ws, id, "hello\n", true).await;
    let (n, _, err, code) = webterm_finish(&mut ws).await;
    assert_eq!((n, err.as_str(), code), (0, "got hello\n", Some(3)));
}

#[tokio::test]
async fn child_forks_and_exits_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    webterm_command(&mut ws, "sleep 60 & echo $!").await;
    let (_, out, _, code) = webterm_finish(&mut ws).await;
    assert_eq!(code, Some(0));
    wait_gone(out.trim().parse().unwrap()).await;
}

#[tokio::test]
async fn output_without_newlines_webterm() {
    let server = webterm_server().await;
    let mut ws = webterm(&server).await;
    webterm_command(&mut ws, &no_newline_line()).await;
    let (n, out, _, code) = webterm_finish(&mut ws).await;
    assert_eq!((n, code), (NO_NEWLINE_BYTES, Some(0)));
    assert!(out.bytes().all(|c| c == b'x'));
}

// ---------------------------------------------------------------- webexec

async fn webexec_server() -> TestServer {
    TestServer::webexec_with(webexec_server::Config::default()).await
}

async fn peer(server: &TestServer) -> Peer {
    Peer::connect(server.addr, Some(&server.token), &Signaling::Offer)
        .await
        .unwrap()
}

/// Opens a pane and reads its id.
async fn pane(peer: &Peer, label: &str) -> ClientChannel {
    let ch = peer.open(label).await;
    assert!(
        matches!(ch.recv().await, Some(Msg::Binary(_))),
        "no pane id"
    );
    ch
}

async fn signaling(server: &TestServer, path: &str, body: Vec<u8>) -> u16 {
    execwire_tests::tls::install_provider();
    reqwest::Client::new()
        .post(format!("http://{}{path}", server.addr))
        .bearer_auth(&server.token)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn truncated_json_webexec() {
    let server = webexec_server().await;
    let mut peer = peer(&server).await;
    for bad in [r#"{"time":1,"message_id":3,"type":"#, "{"] {
        assert_eq!(peer.control.raw(bad).await["type"], "nack", "{bad}");
    }
    assert_eq!(
        peer.control.request("get_payload", json!({})).await["type"],
        "ack"
    );
    // Signaling bodies too.
    let status = signaling(
        &server,
        "/connect",
        br#"{"api_version":1,"offer":"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let status = signaling(
        &server,
        "/candidates/00000000-0000-0000-0000-000000000000",
        b"{\"candidate\":".to_vec(),
    )
    .await;
    assert!(status == 400 || status == 404 || status == 405, "{status}");
}

#[tokio::test]
async fn huge_frames_webexec() {
    let server = webexec_server().await;
    // Signaling bodies are bounded (64 KiB; an offer is a few KiB).
    let big = [b"v=0\r\n".as_slice(), &b"a=x\r\n".repeat(40_000)].concat();
    assert_eq!(signaling(&server, "/offer", big.clone()).await, 413);
    assert_eq!(signaling(&server, "/connect", big).await, 413);
    // A control message of 60 KiB (data channels carry up to 64 KiB): a
    // nack, and the control channel serves on.
    let mut peer = peer(&server).await;
    let huge = json!({"time":1,"message_id":9,"type":"set_payload","args":{"payload": "x".repeat(60_000)}});
    let reply = peer.control.raw(&huge.to_string()).await;
    assert!(reply["type"] == "ack" || reply["type"] == "nack", "{reply}");
    assert_eq!(
        peer.control.request("get_payload", json!({})).await["type"],
        "ack"
    );
}

#[tokio::test]
async fn floods_of_tiny_frames_webexec() {
    const N: usize = 20_000;
    let server = webexec_server().await;
    let peer = peer(&server).await;
    let ch = pane(&peer, &format!("sh,-c,head -c {N} | wc -c")).await;
    for _ in 0..N {
        ch.send(b"x").await;
    }
    let out = ch.read_to_close().await;
    assert_eq!(String::from_utf8_lossy(&out).trim(), N.to_string());
}

#[tokio::test]
async fn binary_where_text_is_expected_webexec() {
    // Clients may send control messages as text or binary: both read the
    // same.
    let server = webexec_server().await;
    let mut peer = peer(&server).await;
    let msg = json!({"time":1,"message_id":41,"type":"get_payload","args":{}});
    peer.control.channel.send(msg.to_string().as_bytes()).await;
    let reply = peer.control.next().await;
    assert_eq!(
        (&reply["type"], &reply["args"]["ref"]),
        (&json!("ack"), &json!(41))
    );
}

#[tokio::test]
async fn invalid_utf8_webexec() {
    let server = webexec_server().await;
    let mut peer = peer(&server).await;
    // A control message that is not UTF-8: a nack.
    peer.control.channel.send(NOT_UTF8).await;
    assert_eq!(peer.control.next().await["type"], "nack");
    // Pane input is bytes: it reaches the process exactly.
    let ch = pane(
        &peer,
        &format!("sh,-c,head -c {} | od -An -tx1", NOT_UTF8.len()),
    )
    .await;
    ch.send(NOT_UTF8).await;
    let out = String::from_utf8(ch.read_to_close().await).unwrap();
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["61", "62", "80", "63", "64", "ff"]
    );
}

#[tokio::test]
async fn child_closes_stdout_early_webexec() {
    // The pane ends when its process does, not when its output does:
    // input still reaches a process that closed its output.
    let server = webexec_server().await;
    let peer = peer(&server).await;
    let dir = std::env::temp_dir().join(format!("bad-input-closes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("got");
    let ch = pane(
        &peer,
        &format!(
            "sh,-c,exec 1>&- 2>&-; read x; echo \"got $x\" > {}",
            file.display()
        ),
    )
    .await;
    ch.send(b"hello\n").await;
    assert_eq!(ch.read_to_close().await, b"");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "got hello\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn child_forks_and_exits_webexec() {
    let server = webexec_server().await;
    let peer = peer(&server).await;
    let ch = pane(&peer, "sh,-c,sleep 60 & echo $!").await;
    let out = ch.read_to_close().await;
    wait_gone(String::from_utf8_lossy(&out).trim().parse().unwrap()).await;
}

#[tokio::test]
async fn output_without_newlines_webexec() {
    let server = webexec_server().await;
    let peer = peer(&server).await;
    let ch = pane(&peer, &format!("sh,-c,{}", no_newline_line())).await;
    let mut n = 0;
    while let Some(m) = ch.recv().await {
        assert!(m.bytes().iter().all(|&c| c == b'x'));
        n += m.bytes().len();
    }
    assert_eq!(n, NO_NEWLINE_BYTES);
}
