//! Web-Terminal v3 end to end: the real server on port 0, a real WebSocket
//! client, real shells.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use execwire_tests::webterm::Client;
use execwire_tests::{
    FILTER_FRAME, FILTER_FRAMES, FILTER_NET, FilterCheck, TestServer, filter_frame, wait_gone,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

async fn server() -> TestServer {
    TestServer::webterm_with(webterm_server::Config {
        shell: "/bin/sh".into(),
        ..webterm_server::Config::default()
    })
    .await
}

#[tokio::test]
async fn authentication_is_per_connection() {
    let server = server().await;
    let mut c = Client::connect(&server, "").await;
    // Nothing but authentication before it.
    let r = c
        .request(json!({"type":"command","payload":{"command":"echo hi","clientId":1}}))
        .await;
    assert_eq!(r["type"], "command");
    assert_eq!(r["payload"]["result"], "error");
    assert!(
        r["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("authenticat")
    );
    assert_eq!(r["payload"]["clientId"], 1);
    let r = c
        .request(json!({"type":"authentication","payload":{"token":"wrong"}}))
        .await;
    assert_eq!(
        r["payload"],
        json!({"result":"error","message":"wrong token"})
    );
    let token = c.token.clone();
    let r = c
        .request(json!({"type":"authentication","payload":{"token":token}}))
        .await;
    assert_eq!(r["payload"]["result"], "ok");
    let session = r["payload"]["sessionToken"].as_str().unwrap().to_owned();
    assert!(session.len() >= 32);
    // The original client sends no sessionToken: accepted on this connection.
    let id = c.run("echo hi", json!(1), &[]).await;
    assert_eq!(c.finish(id).await.stdout, "hi\n");
    // The right one is accepted, a wrong one refused.
    let r = c
        .request(json!({"type":"command","sessionToken":session,"payload":{"command":"true","clientId":2}}))
        .await;
    assert_eq!(r["payload"]["result"], "ok");
    let r = c
        .request(json!({"type":"command","sessionToken":"nope","payload":{"command":"true","clientId":3}}))
        .await;
    assert_eq!(r["payload"]["result"], "error");
    assert_eq!(r["payload"]["message"], "invalid sessionToken");

    // Guessing is cut short.
    let mut c = Client::connect(&server, "").await;
    for _ in 0..5 {
        c.send(json!({"type":"authentication","payload":{"token":"guess"}}))
            .await;
    }
    let mut errors = 0;
    while let Some(m) = c.next().await {
        assert_eq!(m["payload"]["result"], "error");
        errors += 1;
    }
    assert_eq!(errors, 5);
}

#[tokio::test]
async fn a_command_life_cycle() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c
        .run("echo out; echo err >&2; exit 3", json!("cmd-1"), &[])
        .await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "out\n");
    assert_eq!(run.stderr, "err\n");
    assert_eq!(run.combined.len(), 8);
    assert!(run.combined.contains("out\n") && run.combined.contains("err\n"));
    assert_eq!(run.exit_code, Some(3));
    assert_eq!(run.signal, None);
    for u in &run.updates {
        assert_eq!(u["payload"]["clientId"], "cmd-1");
        assert_eq!(u["payload"]["command"], "echo out; echo err >&2; exit 3");
    }
    // Only the last update is completed.
    let statuses: Vec<&Value> = run
        .updates
        .iter()
        .map(|u| &u["payload"]["status"])
        .collect();
    assert_eq!(statuses.last().unwrap().as_str(), Some("completed"));
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == "running")
    );
}

/// stdin drives the command step by step, so the combined order is known.
#[tokio::test]
async fn stdin_and_combined_order() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c
        .run(
            "echo a; read x; echo b >&2; echo \"got $x\"; read y; echo c",
            json!(1),
            &[],
        )
        .await;
    let first = c.until_stdout(id, "a\n").await;
    c.stdin(id, "one\n", false).await;
    let mut run = c.until_stdout(id, "got one\n").await;
    c.stdin(id, "two\n", true).await;
    let rest = c.finish(id).await;
    run.combined = first.combined + &run.combined + &rest.combined;
    assert_eq!(run.combined.replace("got one\n", ""), "a\nb\nc\n");
    assert_eq!(rest.exit_code, Some(0));

    // `cat` fed and closed.
    let id = c.run("cat", json!(2), &[]).await;
    c.stdin(id, "hello\n", false).await;
    c.stdin(id, "world\n", true).await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "hello\nworld\n");
    assert_eq!(run.exit_code, Some(0));
}

#[tokio::test]
async fn sigterm_ends_sleep() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("echo $$; exec sleep 30", json!(1), &[]).await;
    let run = c.until_stdout(id, "\n").await;
    let pid: u32 = run.stdout.trim().parse().unwrap();
    c.send(
        json!({"type":"update","payload":{"type":"signal","serverId":id,"clientId":1,"signal":15}}),
    )
    .await;
    let run = c.finish(id).await;
    assert_eq!(run.signal, Some(15));
    assert_eq!(run.exit_code, Some(143));
    wait_gone(pid).await;
}

#[tokio::test]
async fn two_commands_at_once() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let cat = c.run("cat", json!("a"), &[]).await;
    let echo = c.run("echo second", json!("b"), &[]).await;
    assert_ne!(cat, echo);
    assert_eq!(c.finish(echo).await.stdout, "second\n");
    c.stdin(cat, "first\n", true).await;
    let run = c.finish(cat).await;
    assert_eq!(run.stdout, "first\n");
    assert!(run.updates.iter().all(|u| u["payload"]["clientId"] == "a"));
}

#[tokio::test]
async fn breakpoints_show_each_pipe() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let line = "printf 'a\\nb\\nc\\n' | grep -v b | tr a-z A-Z";
    let id = c.run(line, json!(1), &[0, 1]).await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "A\nC\n");
    assert_eq!(run.stderr, "");
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.breakpoints[&0].0, "a\nb\nc\n");
    assert_eq!(run.breakpoints[&1].0, "a\nc\n");
    assert_eq!(run.breakpoints[&1].2, "a\nc\n");
    // The command line reported is the client's, not the tapped one.
    assert!(run.updates.iter().all(|u| u["payload"]["command"] == line));

    // Only one pipe, and the exit status is the pipeline's own.
    let id = c.run("printf 'x\\n' | grep nope", json!(2), &[0]).await;
    let run = c.finish(id).await;
    assert_eq!(run.breakpoints[&0].0, "x\n");
    assert_eq!(run.exit_code, Some(1));
}

#[tokio::test]
async fn quoted_pipes_are_not_pipes() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("echo 'a|b' | cat", json!(1), &[0]).await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "a|b\n");
    assert_eq!(run.breakpoints[&0].0, "a|b\n");
    let r = c
        .request(json!({"type":"command","payload":{"command":"echo 'a|b' | cat","clientId":2,"breakpoints":[1]}}))
        .await;
    assert_eq!(r["payload"]["result"], "error");
    assert_eq!(
        r["payload"]["message"],
        "breakpoint 1 does not exist: the command has 1 pipe(s)"
    );
}

#[tokio::test]
async fn stage_stderr_is_attributed_to_its_stage() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c
        .run(
            "sh -c 'echo e1 >&2; echo d' | cat; echo e2 >&2",
            json!(1),
            &[0],
        )
        .await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "d\n");
    assert_eq!(run.breakpoints[&0].0, "d\n");
    assert_eq!(run.breakpoints[&0].1, "e1\n");
    // The command's own stderr still has everything.
    assert_eq!(run.stderr, "e1\ne2\n");
}

#[tokio::test]
async fn ten_mib_through_a_breakpoint() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("seq 1 1500000 | cat", json!(1), &[0]).await;
    let run = c.finish(id).await;
    let expected: String = (1..=1_500_000).map(|n| format!("{n}\n")).collect();
    assert!(expected.len() > 10 << 20);
    assert_eq!(run.exit_code, Some(0));
    assert!(run.breakpoints[&0].0 == expected, "breakpoint data differs");
    assert!(run.stdout == expected, "output differs");
    // Heavy output is coalesced into few updates.
    assert!(run.updates.len() < 2000, "{} updates", run.updates.len());
}

#[tokio::test]
async fn bad_input_gets_errors_and_other_commands_run_on() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let cat = c.run("cat", json!("keep"), &[]).await;
    let done = c.run("true", json!("done"), &[]).await;
    c.finish(done).await;
    let cases = [
        (Message::text("{not json"), "error", "invalid JSON"),
        (
            Message::text(r#"{"type":"resize","payload":{}}"#),
            "error",
            "unknown message type",
        ),
        (
            Message::text(
                r#"{"type":"update","payload":{"type":"stdin","serverId":999,"input":"x"}}"#,
            ),
            "update",
            "no command with serverId 999",
        ),
        (
            Message::text(
                json!({"type":"update","payload":{"type":"stdin","serverId":done,"input":"x"}})
                    .to_string(),
            ),
            "update",
            "has completed",
        ),
        (
            Message::text(
                json!({"type":"update","payload":{"type":"signal","serverId":done,"signal":15}})
                    .to_string(),
            ),
            "update",
            "has completed",
        ),
        (
            Message::text(r#"{"type":"command","payload":{"command":"   ","clientId":5}}"#),
            "command",
            "empty command",
        ),
        (
            Message::text(
                r#"{"type":"command","payload":{"command":"echo 'oops | cat","clientId":6,"breakpoints":[0]}}"#,
            ),
            "command",
            "unterminated single quote",
        ),
        (Message::binary(vec![0xff, 0xfe]), "error", "invalid JSON"),
    ];
    for (msg, kind, needle) in cases {
        c.ws.send(msg).await.unwrap();
        let r = c
            .request(json!({"type":"update","payload":{"type":"stdin","serverId":cat,"input":""}}))
            .await;
        // The first reply is the bad message's error; the probe itself is
        // fine and answers nothing.
        assert_eq!(r["type"], kind, "{r}");
        assert_eq!(r["payload"]["result"], "error");
        let message = r["payload"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    c.stdin(cat, "still here\n", true).await;
    let run = c.finish(cat).await;
    assert_eq!(run.stdout, "still here\n");
}

#[tokio::test]
async fn html_output_mode_escapes_process_output() {
    let server = server().await;
    let mut c = Client::connect(&server, "?output=html").await;
    let token = c.token.clone();
    c.request(json!({"type":"authentication","payload":{"token":token}}))
        .await;
    let id = c
        .run("echo '<b>\"x\" & y</b>'; echo two", json!(1), &[])
        .await;
    let run = c.finish(id).await;
    assert_eq!(
        run.stdout,
        "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;<br>two<br>"
    );
    // Plain text is the default.
    let mut c = Client::authed(&server).await;
    let id = c.run("echo '<b>'", json!(1), &[]).await;
    assert_eq!(c.finish(id).await.stdout, "<b>\n");
}

#[tokio::test]
async fn bytes_that_are_not_utf8_are_carried_exactly() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("printf '\\377ok \\303\\251\\n'", json!(1), &[]).await;
    let run = c.finish(id).await;
    assert_eq!(run.stdout, "\u{FFFD}ok é\n");
    let raw: String = run
        .updates
        .iter()
        .filter_map(|u| u["payload"]["output"]["raw"]["stdout"].as_str())
        .collect();
    assert_eq!(raw, "/29rIMOpCg==");
}

#[tokio::test]
async fn disconnect_ends_commands() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("echo $$; exec sleep 30", json!(1), &[]).await;
    let run = c.until_stdout(id, "\n").await;
    let pid: u32 = run.stdout.trim().parse().unwrap();
    drop(c);
    wait_gone(pid).await;
}

#[tokio::test]
async fn shutdown_closes_connections_with_1001() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c.run("echo $$; exec sleep 30", json!(1), &[]).await;
    let pid: u32 = c
        .until_stdout(id, "\n")
        .await
        .stdout
        .trim()
        .parse()
        .unwrap();
    let stopping = tokio::spawn(server.shutdown());
    let mut code = None;
    while let Some(msg) = c.ws.next().await {
        if let Ok(Message::Close(Some(frame))) = msg {
            code = Some(u16::from(frame.code));
        }
    }
    assert_eq!(code, Some(1001));
    stopping.await.unwrap();
    wait_gone(pid).await;
}

/// Output JSON must escape (control characters become six bytes each)
/// makes updates several times larger than the output they carry; they
/// still go through whole.
#[tokio::test]
async fn output_that_json_escapes_heavily_arrives_whole() {
    let server = server().await;
    let mut c = Client::authed(&server).await;
    let id = c
        .run(
            "head -c 3000000 /dev/zero | tr '\\0' '\\1' | cat",
            json!(1),
            &[1],
        )
        .await;
    let run = c.finish(id).await;
    assert_eq!(run.exit_code, Some(0));
    assert_eq!(run.stdout.len(), 3_000_000);
    assert!(run.stdout.bytes().all(|b| b == 1));
    assert_eq!(run.breakpoints[&1].0.len(), 3_000_000);
}

/// A filter fed 100 MiB in 1 MiB `stdin` updates while the client reads
/// its output: every byte comes back, in order. The protocol has no flow
/// control for input: the server queues up to `max_pending_input` bytes
/// of a command's input and refuses more with an error, so the client
/// keeps at most that much input unanswered by output (`cat` answers every
/// byte); a refusal fails the test.
#[tokio::test]
async fn a_filter_fed_100_mib_never_stalls() {
    const WINDOW: usize = 4 << 20;
    let server = TestServer::webterm_with(webterm_server::Config {
        shell: "/bin/sh".into(),
        // A 1 MiB update in its JSON envelope.
        max_message: 2 << 20,
        max_pending_input: WINDOW,
        ..webterm_server::Config::default()
    })
    .await;
    let mut c = Client::authed(&server).await;
    let id = c.run("cat", json!("filter"), &[]).await;
    let mut check = FilterCheck::new(FILTER_FRAMES, FILTER_FRAME);
    let run = async {
        let mut next = 0;
        loop {
            while next < FILTER_FRAMES && (next + 1) * FILTER_FRAME - check.received() <= WINDOW {
                let last = next + 1 == FILTER_FRAMES;
                c.stdin(id, &filter_frame(next, FILTER_FRAME), last).await;
                next += 1;
            }
            let msg = c.next().await.expect("connection closed");
            let p = &msg["payload"];
            assert!(p.get("status").is_some(), "not output: {msg}");
            assert_eq!(p["serverId"], id);
            assert_eq!(p["output"]["stderr"], "");
            check.push(p["output"]["stdout"].as_str().unwrap().as_bytes());
            if p["status"] == "completed" {
                return p["exitCode"].clone();
            }
        }
    };
    let exit = tokio::time::timeout(FILTER_NET, run)
        .await
        .expect("the filter stalled");
    check.assert_complete();
    assert_eq!(exit, json!(0));
}
