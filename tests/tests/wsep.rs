//! wsep end to end: the real server on port 0, the real client library over
//! a real socket, real processes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use bytes::Bytes;
use execwire_tests::wsep::{close_of, raw, start_frame};
use execwire_tests::{
    FILTER_FRAME, FILTER_FRAMES, FILTER_NET, FilterCheck, TestServer, alive, filter_frame,
    wait_gone,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wsep_client::{Error, Input, Output, Outputs};
use wsep_proto::StartCommand;

#[derive(Debug, Default)]
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
    error: String,
}

fn cmd(program: &str, args: &[&str]) -> StartCommand {
    StartCommand {
        command: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..StartCommand::default()
    }
}

fn sh(script: &str) -> StartCommand {
    cmd("sh", &["-c", script])
}

fn tty(program: &str, args: &[&str], id: &str) -> StartCommand {
    StartCommand {
        tty: true,
        rows: 24,
        cols: 80,
        id: id.into(),
        ..cmd(program, args)
    }
}

async fn collect(mut out: Outputs) -> Ran {
    let mut ran = Ran::default();
    let mut exited = false;
    while let Some(event) = out.next().await.unwrap() {
        match event {
            Output::Stdout(b) => ran.stdout.extend_from_slice(&b),
            Output::Stderr(b) => ran.stderr.extend_from_slice(&b),
            Output::Exit { code, error } => {
                assert!(!exited, "two exit codes");
                exited = true;
                ran.code = code;
                ran.error = error;
            }
        }
    }
    assert!(exited, "no exit code before the close");
    ran
}

async fn run(server: &TestServer, start: StartCommand) -> Ran {
    let (mut input, out) = wsep_client::start(&server.url(), Some(&server.token), start)
        .await
        .unwrap();
    input.close_stdin().await.unwrap();
    collect(out).await
}

async fn open(server: &TestServer, start: StartCommand) -> (Input, Outputs) {
    wsep_client::start(&server.url(), Some(&server.token), start)
        .await
        .unwrap()
}

/// Reads output until `needle` was seen; returns everything read.
async fn read_until(out: &mut Outputs, needle: &str) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match out.next().await.unwrap() {
            Some(Output::Stdout(b) | Output::Stderr(b)) => seen.extend_from_slice(&b),
            other => panic!(
                "ended before {needle:?}: {other:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

#[tokio::test]
async fn working_directory_and_env() {
    let server = TestServer::wsep().await;
    let mut start = sh("pwd; echo \"$GREETING\"");
    start.working_dir = "/tmp".into();
    start.env = vec!["GREETING=hello world".into()];
    let ran = run(&server, start).await;
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "/tmp\nhello world\n");
    assert_eq!((ran.code, ran.error.as_str()), (0, ""));
}

#[tokio::test]
async fn exit_codes() {
    let server = TestServer::wsep().await;
    let ok = run(&server, cmd("true", &[])).await;
    assert_eq!((ok.code, ok.error.as_str()), (0, ""));
    let two = run(&server, sh("exit 2")).await;
    assert_eq!((two.code, two.error.as_str()), (2, "exit status 2"));
    let missing = run(&server, sh("no-such-command-here")).await;
    assert_eq!(missing.code, 127);
    let killed = run(&server, sh("kill -KILL $$")).await;
    assert_eq!((killed.code, killed.error.as_str()), (-1, "signal: killed"));
}

#[tokio::test]
async fn large_input_round_trip() {
    let server = TestServer::wsep().await;
    let (mut input, out) = open(&server, cmd("sha256sum", &[])).await;
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let writer = tokio::spawn(async move {
        input.write(&data).await.unwrap();
        input.close_stdin().await.unwrap();
        data
    });
    let ran = collect(out).await;
    let data = writer.await.unwrap();
    let local = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    local.stdin.as_ref().unwrap().write_all(&data).unwrap();
    let local = local.wait_with_output().unwrap();
    assert_eq!(ran.stdout, local.stdout);
}

/// A filter fed 100 MiB while the client reads its output: every byte
/// comes back, in order. The client library cuts each 1 MiB frame into
/// `stdin` messages as large as the protocol allows.
#[tokio::test]
async fn a_filter_fed_100_mib_never_stalls() {
    let server = TestServer::wsep().await;
    let (mut input, mut out) = open(&server, cmd("cat", &[])).await;
    let feed = async move {
        for k in 0..FILTER_FRAMES {
            let frame = filter_frame(k, FILTER_FRAME);
            input.write(frame.as_bytes()).await.unwrap();
        }
        input.close_stdin().await.unwrap();
        input
    };
    let read = async move {
        let mut check = FilterCheck::new(FILTER_FRAMES, FILTER_FRAME);
        let mut code = None;
        while let Some(event) = out.next().await.unwrap() {
            match event {
                Output::Stdout(b) => check.push(&b),
                Output::Stderr(b) => panic!("stderr: {:?}", String::from_utf8_lossy(&b)),
                Output::Exit { code: c, .. } => code = Some(c),
            }
        }
        (check, code)
    };
    let (_input, (check, code)) =
        tokio::time::timeout(FILTER_NET, async { tokio::join!(feed, read) })
            .await
            .expect("the filter stalled");
    check.assert_complete();
    assert_eq!(code, Some(0));
}

/// A client that leaves while its command does not read ends the command:
/// with the pipe full, the rest of its input waits in the server's queue
/// and the server reads on, so it sees the client go (it used to wait in
/// the write, deaf to the connection, and the command lived on).
#[tokio::test]
async fn disconnect_while_stdin_is_full_ends_the_command() {
    let server = TestServer::wsep().await;
    let (mut input, out) = open(&server, cmd("sleep", &["1000"])).await;
    let pid = u32::try_from(out.pid()).unwrap();
    // More than the pipe holds (64 KiB); the server queues the rest.
    input.write(&[b'x'; 128 * 1024]).await.unwrap();
    input.disconnect().await.unwrap();
    drop(out);
    wait_gone(pid).await;
    assert!(!alive(pid));
}

#[tokio::test]
async fn tty_zero_size_gets_a_sane_default() {
    let server = TestServer::wsep().await;
    let mut start = tty("stty", &["size"], "");
    start.rows = 0;
    start.cols = 0;
    // Raw: the client library would send 24x80 itself.
    let mut ws = raw(&server).await;
    ws.send(start_frame(&start)).await.unwrap();
    let mut stdout = Vec::new();
    while let Some(Ok(Message::Binary(payload))) = ws.next().await {
        match wsep_proto::ServerMsg::decode(&payload).unwrap() {
            wsep_proto::ServerMsg::Stdout(b) => stdout.extend_from_slice(&b),
            wsep_proto::ServerMsg::ExitCode { .. } => break,
            _ => {}
        }
    }
    assert!(String::from_utf8_lossy(&stdout).contains("24 80"));
}

#[tokio::test]
async fn reconnect_by_id_redraws_the_screen() {
    let server = TestServer::wsep().await;
    let (mut input, mut out) = open(&server, tty("sh", &[], "session-a")).await;
    let pid = out.pid();
    input.write(b"echo before-$((1+1))\n").await.unwrap();
    read_until(&mut out, "before-2").await;
    input.disconnect().await.unwrap();
    drop(out);

    // Same id: same process, and the screen shows what happened before.
    let (mut input, mut out) = open(&server, tty("sh", &[], "session-a")).await;
    assert_eq!(out.pid(), pid);
    let screen = read_until(&mut out, "before-2").await;
    assert!(
        screen.contains("\x1b["),
        "a redraw is escape sequences: {screen:?}"
    );

    // A second client at the same time sees the same output; either may type.
    let (mut other_in, mut other_out) = open(&server, tty("sh", &[], "session-a")).await;
    read_until(&mut other_out, "before-2").await;
    other_in.write(b"echo shared-$((3*3))\n").await.unwrap();
    read_until(&mut out, "shared-9").await;
    read_until(&mut other_out, "shared-9").await;
    input.write(b"exit 0\n").await.unwrap();
    assert_eq!(collect(out).await.code, 0);
    assert_eq!(collect(other_out).await.code, 0);
}

#[tokio::test]
async fn named_session_ends_after_idle_timeout() {
    let config = wsep_server::Config {
        session_timeout: Duration::from_millis(100),
        ..wsep_server::Config::default()
    };
    let server = TestServer::wsep_with(config).await;
    let (input, out) = open(&server, tty("sleep", &["60"], "idle")).await;
    let pid = u32::try_from(out.pid()).unwrap();
    input.disconnect().await.unwrap();
    drop(out);
    wait_gone(pid).await;
}

#[tokio::test]
async fn disconnect_kills_a_plain_command_and_its_children() {
    let server = TestServer::wsep().await;
    let (input, mut out) = open(&server, sh("sleep 60 & echo $!; wait")).await;
    let pid = u32::try_from(out.pid()).unwrap();
    let line = read_until(&mut out, "\n").await;
    let child: u32 = line.trim().parse().unwrap();
    assert!(alive(pid) && alive(child));
    drop(input);
    drop(out);
    wait_gone(pid).await;
    wait_gone(child).await;
}

#[tokio::test]
async fn ten_concurrent_sessions_with_random_disconnects() {
    let server = TestServer::wsep().await;
    let url = server.url();
    let mut tasks = Vec::new();
    // A fixed-seed generator: "random" but the same on every run.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..10u32 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let disconnect_early = seed.is_multiple_of(3);
        let url = url.clone();
        let token = server.token.clone();
        tasks.push(tokio::spawn(async move {
            let start = if i % 2 == 0 {
                cmd("cat", &[])
            } else {
                tty("cat", &[], "")
            };
            let (mut input, mut out) = wsep_client::start(&url, Some(&token), start).await.unwrap();
            let pid = u32::try_from(out.pid()).unwrap();
            let msg = format!("session-{i}\n");
            input.write(msg.as_bytes()).await.unwrap();
            read_until(&mut out, &format!("session-{i}")).await;
            if disconnect_early {
                drop(input);
                drop(out);
            } else {
                input.close_stdin().await.unwrap();
                assert_eq!(collect(out).await.code, 0);
            }
            wait_gone(pid).await;
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // The server still serves.
    assert_eq!(
        run(&server, cmd("echo", &["alive"])).await.stdout,
        b"alive\n"
    );
}

#[tokio::test]
async fn failure_to_start_closes_1011_with_a_short_reason() {
    let server = TestServer::wsep().await;
    let long = "x".repeat(300);
    for start in [
        cmd("/no/such/binary", &[]),
        cmd(&format!("/no/{long}"), &[]),
        StartCommand {
            working_dir: "/no/such/dir".into(),
            ..cmd("true", &[])
        },
        StartCommand {
            env: vec!["NOEQUALS".into()],
            ..cmd("true", &[])
        },
    ] {
        let err = wsep_client::start(&server.url(), Some(&server.token), start)
            .await
            .unwrap_err();
        match err {
            Error::Closed { code, reason } => {
                assert_eq!(code, 1011);
                assert!(!reason.is_empty() && reason.len() <= 123, "{reason:?}");
            }
            other => panic!("expected a 1011 close, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn auth_refused_and_accepted() {
    let server = TestServer::wsep().await;
    let url = server.url();
    let start = || cmd("true", &[]);
    assert!(matches!(
        wsep_client::start(&url, None, start()).await,
        Err(Error::Unauthorized)
    ));
    assert!(matches!(
        wsep_client::start(&url, Some("wrong"), start()).await,
        Err(Error::Unauthorized)
    ));
    // Browsers cannot set headers: the query parameter works too.
    let with_query = format!("{url}?token={}", server.token);
    let (mut input, out) = wsep_client::start(&with_query, None, start())
        .await
        .unwrap();
    input.close_stdin().await.unwrap();
    assert_eq!(collect(out).await.code, 0);
}

#[tokio::test]
async fn bad_input_gets_a_clear_close() {
    let server = TestServer::wsep().await;
    let cases: Vec<(Vec<Message>, &str)> = vec![
        (
            vec![Message::Binary(Bytes::from_static(b"garbage"))],
            "malformed",
        ),
        (
            vec![Message::Text("{\"type\":\"stdin\"}\nhi".into())],
            "first message must be start",
        ),
        (
            vec![Message::Binary(Bytes::from_static(b"{\"type\":\"start\"}"))],
            "command",
        ),
        (
            vec![start_frame(&cmd("cat", &[])), start_frame(&cmd("cat", &[]))],
            "already",
        ),
        (
            vec![
                start_frame(&cmd("cat", &[])),
                Message::Binary(Bytes::from_static(b"{]")),
            ],
            "malformed",
        ),
        (
            vec![
                start_frame(&StartCommand {
                    stdin: Some(false),
                    ..cmd("sleep", &["5"])
                }),
                Message::Binary(wsep_proto::encode_stdin(b"x")),
            ],
            "stdin is not enabled",
        ),
    ];
    for (messages, expected) in cases {
        let mut ws = raw(&server).await;
        for m in messages {
            ws.send(m).await.unwrap();
        }
        let (code, reason) = close_of(&mut ws).await;
        assert_eq!(code, 1008, "{reason}");
        assert!(
            reason.contains(expected),
            "{reason:?} should mention {expected:?}"
        );
    }
}

#[tokio::test]
async fn oversize_frames_are_refused_with_1009() {
    let server = TestServer::wsep().await;
    let mut ws = raw(&server).await;
    ws.send(start_frame(&cmd("cat", &[]))).await.unwrap();
    let mut huge = b"{\"type\":\"stdin\"}\n".to_vec();
    huge.resize(200_000, b'x');
    // The server may close before reading all of it; the send may fail then.
    let _ = ws.send(Message::Binary(huge.into())).await;
    let mut code = None;
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(Some(frame))) => {
                code = Some(u16::from(frame.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1009));

    // Far beyond any limit: the connection is cut without reading it all.
    let mut ws = raw(&server).await;
    ws.send(start_frame(&cmd("cat", &[]))).await.unwrap();
    let mut giant = b"{\"type\":\"stdin\"}\n".to_vec();
    giant.resize(8 << 20, b'x');
    let _ = ws.send(Message::Binary(giant.into())).await;
    while let Some(Ok(_)) = ws.next().await {}

    // Nobody else is affected.
    assert_eq!(run(&server, cmd("echo", &["ok"])).await.stdout, b"ok\n");
}

#[tokio::test]
async fn text_frames_and_the_seed_start_form_are_accepted() {
    let server = TestServer::wsep().await;
    let mut ws = raw(&server).await;
    ws.send(Message::Text(r#"{"type":"hello"}"#.into()))
        .await
        .unwrap(); // unknown: ignored
    ws.send(Message::Text(
        r#"{"type":"start","command":"cat","args":[],"tty":false}"#.into(),
    ))
    .await
    .unwrap();
    ws.send(Message::Text("{\"type\":\"stdin\"}\nseed\n".into()))
        .await
        .unwrap();
    ws.send(Message::Text("{\"type\":\"close_stdin\"}\n".into()))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    let mut exit = None;
    while let Some(Ok(msg)) = ws.next().await {
        let payload = match msg {
            Message::Binary(b) => b,
            Message::Close(frame) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1000));
                break;
            }
            _ => continue,
        };
        match wsep_proto::ServerMsg::decode(&payload).unwrap() {
            wsep_proto::ServerMsg::Pid(_) => kinds.push("pid"),
            wsep_proto::ServerMsg::Stdout(b) => {
                assert_eq!(&b[..], b"seed\n");
                kinds.push("stdout");
            }
            wsep_proto::ServerMsg::ExitCode { code, .. } => {
                exit = Some(code);
                kinds.push("exit_code");
            }
            other => panic!("unexpected {other:?}"),
        }
        if exit.is_some() {
            // The seed form reads `code`: it is in the same message.
            let v: serde_json::Value = serde_json::from_slice(&payload).unwrap();
            assert_eq!((&v["code"], &v["exit_code"]), (&0.into(), &0.into()));
        }
    }
    assert_eq!(kinds, ["pid", "stdout", "exit_code"]);
    assert_eq!(exit, Some(0));
}

#[tokio::test]
async fn shutdown_ends_children_and_closes_clients() {
    let server = TestServer::wsep().await;
    let (_input, plain) = open(&server, cmd("sleep", &["60"])).await;
    let (_tty_in, named) = open(&server, tty("sleep", &["60"], "kept")).await;
    let pids = [plain.pid(), named.pid()].map(|p| u32::try_from(p).unwrap());
    // Clients keep reading while the server shuts down, so they answer its close.
    let expect_going_away = |out: Outputs| async move {
        let mut out = out;
        match out.next().await {
            Err(Error::Closed { code, .. }) => assert_eq!(code, 1001),
            other => panic!("expected a 1001 close, got {other:?}"),
        }
    };
    tokio::join!(
        server.shutdown(),
        expect_going_away(plain),
        expect_going_away(named)
    );
    for pid in pids {
        wait_gone(pid).await;
    }
}

#[tokio::test]
async fn uid_and_gid_are_applied_or_refused() {
    let server = TestServer::wsep().await;
    let start = StartCommand {
        uid: 65534,
        gid: 65534,
        ..sh("id -u; id -g")
    };
    let root = rustix::process::geteuid().is_root();
    let result = wsep_client::start(&server.url(), Some(&server.token), start).await;
    if root {
        let (mut input, out) = result.unwrap();
        input.close_stdin().await.unwrap();
        assert_eq!(collect(out).await.stdout, b"65534\n65534\n");
    } else {
        // Without privilege the start fails, clearly.
        assert!(
            matches!(result, Err(Error::Closed { code: 1011, .. })),
            "{result:?}"
        );
    }
}

/// A session's end leaves no task behind: each WebSocket session's pinger
/// (a ping every 30 s by default) ends with the session, not at its next
/// ping. The reliability soak saw pow-server's memory grow by about 1 KiB
/// a session, at 700 sessions a second, while finished sessions' pingers
/// waited for their tick.
#[tokio::test]
async fn ended_sessions_leave_no_tasks_behind() {
    let server = TestServer::wsep().await;
    let alive = || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
    };
    // The first connection starts what the server keeps for good.
    assert_eq!(run(&server, cmd("true", &[])).await.code, 0);
    let before = alive();
    for _ in 0..20 {
        assert_eq!(run(&server, cmd("true", &[])).await.code, 0);
    }
    // The server finishes each session just after its close frame; well
    // before the first ping would be due.
    tokio::time::timeout(Duration::from_secs(10), async {
        while alive() > before {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} tasks alive, {before} before the sessions", alive()));
}
