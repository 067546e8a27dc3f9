//! Vectors from the protocol document (seed 002) and the original client.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::*;

#[test]
fn seed_authentication() {
    let e = decode(r#"{"type":"authentication","payload":{"token":"s3cret"}}"#).unwrap();
    assert_eq!(e.session_token, None);
    assert_eq!(
        e.request,
        Request::Authentication {
            token: "s3cret".into()
        }
    );
    let ok: Value = serde_json::from_str(
        &Reply::Authenticated {
            session_token: "abc".into(),
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(
        ok,
        json!({"type":"authentication","payload":{"result":"ok","sessionToken":"abc"}})
    );
    let err: Value = serde_json::from_str(
        &Reply::Error {
            kind: "authentication",
            message: "wrong token".into(),
            client_id: None,
            server_id: None,
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(
        err,
        json!({"type":"authentication","payload":{"result":"error","message":"wrong token"}})
    );
}

#[test]
fn seed_command_with_and_without_breakpoints() {
    let e = decode(
        r#"{"type":"command","sessionToken":"t","payload":{"command":"echo","clientId":1}}"#,
    )
    .unwrap();
    assert_eq!(e.session_token.as_deref(), Some("t"));
    assert_eq!(
        e.request,
        Request::Command {
            command: "echo".into(),
            client_id: json!(1),
            breakpoints: vec![]
        }
    );
    let e = decode(
        r#"{"type":"command","sessionToken":"","payload":{"command":"ls | grep \"png\"","breakpoints":[0],"clientId":1}}"#,
    )
    .unwrap();
    assert_eq!(
        e.request,
        Request::Command {
            command: "ls | grep \"png\"".into(),
            client_id: json!(1),
            breakpoints: vec![0]
        }
    );
    let ack: Value = serde_json::from_str(
        &Reply::Started {
            command: "echo".into(),
            client_id: json!(1),
            server_id: 1,
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(
        ack,
        json!({"type":"command","payload":{"result":"ok","command":"echo","clientId":1,"serverId":1}})
    );
}

#[test]
fn the_original_client_sends_commands_without_a_session_token() {
    // Its clientId is whatever it uses as a key; echo it back as sent.
    let e = decode(r#"{"type":"command","payload":{"command":"ls","clientId":"c-7"}}"#).unwrap();
    assert_eq!(e.session_token, None);
    assert!(matches!(e.request, Request::Command { client_id, .. } if client_id == json!("c-7")));
}

#[test]
fn seed_updates() {
    let e = decode(
        r#"{"type":"update","sessionToken":"","payload":{"type":"stdin","command":"","serverId":1,"input":"hi\n"}}"#,
    )
    .unwrap();
    assert_eq!(
        e.request,
        Request::Stdin {
            server_id: 1,
            input: "hi\n".into(),
            eof: false
        }
    );
    let e = decode(
        r#"{"type":"update","sessionToken":"","payload":{"type":"signal","command":"","serverId":1,"clientId":1,"signal":15}}"#,
    )
    .unwrap();
    assert_eq!(
        e.request,
        Request::Signal {
            server_id: 1,
            signal: 15
        }
    );
    for name in ["SIGTERM", "TERM", "term", "15"] {
        let text =
            json!({"type":"update","payload":{"type":"signal","serverId":"1","signal":name}});
        let e = decode(&text.to_string()).unwrap();
        assert_eq!(
            e.request,
            Request::Signal {
                server_id: 1,
                signal: 15
            },
            "{name}"
        );
    }
    let e = decode(
        r#"{"type":"update","payload":{"type":"stdin","serverId":2,"input":"x","eof":true}}"#,
    )
    .unwrap();
    assert!(matches!(e.request, Request::Stdin { eof: true, .. }));
}

#[test]
fn update_encoding_matches_the_seed_shape() {
    let update = Update {
        command: "ls | grep png".into(),
        client_id: json!(1),
        server_id: 1,
        output: Output {
            streams: Streams {
                combined: "bui.png\n".into(),
                stdout: "bui.png\n".into(),
                stderr: String::new(),
                raw: None,
            },
            breakpoints: vec![Breakpoint {
                location: 0,
                streams: Streams {
                    combined: "a.txt\nbui.png\n".into(),
                    stdout: "a.txt\nbui.png\n".into(),
                    stderr: String::new(),
                    raw: None,
                },
            }],
        },
        begin: "2026-11-22T10:00:00.000Z".into(),
        end: None,
        status: Status::Running,
        exit_code: None,
        signal: None,
    };
    let v: Value = serde_json::from_str(&Reply::Update(Box::new(update.clone())).encode()).unwrap();
    assert_eq!(
        v,
        json!({"type":"update","payload":{
            "command":"ls | grep png","clientId":1,"serverId":1,
            "output":{"combined":"bui.png\n","stdout":"bui.png\n","stderr":"",
                "breakpoints":[{"location":0,"combined":"a.txt\nbui.png\n","stdout":"a.txt\nbui.png\n","stderr":""}]},
            "begin":"2026-11-22T10:00:00.000Z","end":null,"status":"running"}})
    );
    let done = Update {
        output: Output::default(),
        end: Some("2026-11-22T10:00:01.000Z".into()),
        status: Status::Completed,
        exit_code: Some(143),
        signal: Some(15),
        ..update
    };
    let v: Value = serde_json::from_str(&Reply::Update(Box::new(done)).encode()).unwrap();
    assert_eq!(v["payload"]["status"], "completed");
    assert_eq!(v["payload"]["exitCode"], 143);
    assert_eq!(v["payload"]["signal"], 15);
    assert!(v["payload"]["output"].get("breakpoints").is_none());
    assert!(v["payload"]["output"].get("raw").is_none());
}

#[test]
fn bad_input_says_what_and_where() {
    let cases: &[(&str, &str, &str)] = &[
        ("not json", "error", "invalid JSON"),
        ("[1,2]", "error", "JSON object"),
        (r#"{"payload":{}}"#, "error", "missing `type`"),
        (
            r#"{"type":"bogus","payload":{}}"#,
            "error",
            "unknown message type",
        ),
        (r#"{"type":"command"}"#, "command", "`payload`"),
        (
            r#"{"type":"command","payload":{"clientId":3}}"#,
            "command",
            "missing `command`",
        ),
        (
            r#"{"type":"command","payload":{"command":5}}"#,
            "command",
            "must be a string",
        ),
        (
            r#"{"type":"command","payload":{"command":"a","breakpoints":[-1]}}"#,
            "command",
            "not a pipe index",
        ),
        (
            r#"{"type":"command","payload":{"command":"a","breakpoints":"0"}}"#,
            "command",
            "must be an array",
        ),
        (
            r#"{"type":"authentication","payload":{}}"#,
            "authentication",
            "missing `token`",
        ),
        (
            r#"{"type":"update","payload":{"type":"stdin"}}"#,
            "update",
            "missing `serverId`",
        ),
        (
            r#"{"type":"update","payload":{"type":"stdin","serverId":"x"}}"#,
            "update",
            "invalid serverId",
        ),
        (
            r#"{"type":"update","payload":{"type":"stdin","serverId":1,"input":3}}"#,
            "update",
            "`input`",
        ),
        (
            r#"{"type":"update","payload":{"type":"signal","serverId":1,"signal":0}}"#,
            "update",
            "invalid signal",
        ),
        (
            r#"{"type":"update","payload":{"type":"signal","serverId":1,"signal":"SIGNOPE"}}"#,
            "update",
            "invalid signal",
        ),
        (
            r#"{"type":"update","payload":{"type":"resize","serverId":1}}"#,
            "update",
            "unknown update type",
        ),
        (
            r#"{"type":"update","payload":{"serverId":1}}"#,
            "update",
            "without a `type`",
        ),
        (
            r#"{"type":"command","sessionToken":7,"payload":{"command":"a"}}"#,
            "command",
            "sessionToken",
        ),
    ];
    for (text, kind, needle) in cases {
        let e = decode(text).unwrap_err();
        assert_eq!(e.kind, *kind, "{text}");
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
    // The ids of a failed request are echoed so the client can match it.
    let e = decode(r#"{"type":"command","payload":{"clientId":9,"command":1}}"#).unwrap_err();
    assert_eq!(e.client_id, Some(json!(9)));
    let e = decode(r#"{"type":"update","payload":{"type":"nope","serverId":4}}"#).unwrap_err();
    assert_eq!(e.server_id, Some(4));
    let v: Value = serde_json::from_str(&Reply::from(e).encode()).unwrap();
    assert_eq!(v["type"], "update");
    assert_eq!(v["payload"]["result"], "error");
    assert_eq!(v["payload"]["serverId"], 4);
}

#[test]
fn html_escaping() {
    let mut out = String::new();
    html_escape("<a href=\"x\">it's & that</a>\r\nnext\nline", &mut out);
    assert_eq!(
        out,
        "&lt;a href=&quot;x&quot;&gt;it&#39;s &amp; that&lt;/a&gt;<br>next<br>line"
    );
}
