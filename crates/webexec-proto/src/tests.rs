//! Vectors from the seeds (000, 001) and the notes on the current reference
//! and Terminal7.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use serde_json::{Value, json};

use super::*;

fn incoming(v: Value) -> Incoming {
    decode_control(v.to_string().as_bytes()).unwrap()
}

#[test]
fn seed_control_messages() {
    let m = incoming(
        json!({"time":1257894000000u64,"message_id":123,"type":"auth",
        "args":{"token":"l;sdfjkghqop3i5utqiowrdhjfklasdjfhopqwi9rtujipw"}}),
    );
    assert_eq!(m.message_id, 123);
    assert_eq!(
        m.request,
        Ok(Request::Auth {
            token: "l;sdfjkghqop3i5utqiowrdhjfklasdjfhopqwi9rtujipw".into()
        })
    );
    let m = incoming(
        json!({"time":1257894000000u64,"message_id":123,"type":"resize","args":{"sx":123,"sy":45}}),
    );
    assert_eq!(
        m.request,
        Ok(Request::Resize {
            pane_id: None,
            cols: 123,
            rows: 45
        })
    );
    let m = incoming(json!({"time":1,"message_id":456,"type":"get_payload","args":{}}));
    assert_eq!(m.request, Ok(Request::GetPayload));
    let m = incoming(
        json!({"time":1,"message_id":456,"type":"set_payload","args":{"payload":{"tabs":[1]}}}),
    );
    assert_eq!(
        m.request,
        Ok(Request::SetPayload {
            payload: json!({"tabs":[1]})
        })
    );
}

#[test]
fn current_control_messages() {
    let m = incoming(
        json!({"time":1,"message_id":7,"type":"resize","args":{"pane_id":3,"sx":80,"sy":24}}),
    );
    assert_eq!(
        m.request,
        Ok(Request::Resize {
            pane_id: Some(3),
            cols: 80,
            rows: 24
        })
    );
    // Terminal7 capitalises it.
    let m = incoming(json!({"time":1,"message_id":8,"type":"set_payload","args":{"Payload":"x"}}));
    assert_eq!(
        m.request,
        Ok(Request::SetPayload {
            payload: json!("x")
        })
    );
    let m = incoming(json!({"time":1,"message_id":9,"type":"add_pane",
        "args":{"command":["*"],"rows":24,"cols":80,"parent":0}}));
    assert_eq!(
        m.request,
        Ok(Request::AddPane {
            command: vec!["*".into()],
            rows: 24,
            cols: 80,
            parent: None
        })
    );
    let m = incoming(json!({"time":1,"message_id":10,"type":"reconnect_pane","args":{"id":12.0}}));
    assert_eq!(m.request, Ok(Request::ReconnectPane { id: 12 }));
    let m = incoming(json!({"time":1,"message_id":11,"type":"mark","args":{}}));
    assert_eq!(m.request, Ok(Request::Mark));
    let m = incoming(json!({"time":1,"message_id":12,"type":"restore","args":{"marker":"4"}}));
    assert_eq!(m.request, Ok(Request::Restore { marker: 4 }));
    let m = incoming(json!({"time":1,"message_id":13,"type":"ack","args":{"ref":2,"body":"clip"}}));
    assert_eq!(
        m.request,
        Ok(Request::Ack {
            reference: 2,
            body: json!("clip")
        })
    );
}

#[test]
fn bad_requests_are_nackable_by_id() {
    for (v, needle) in [
        (
            json!({"message_id":5,"type":"explode","args":{}}),
            "unknown message type",
        ),
        (
            json!({"message_id":5,"type":"resize","args":{"sx":-1,"sy":2}}),
            "sx",
        ),
        (
            json!({"message_id":5,"type":"resize","args":{"sx":100000,"sy":2}}),
            "too large",
        ),
        (json!({"message_id":5,"type":"auth","args":{}}), "token"),
        (
            json!({"message_id":5,"type":"set_payload","args":{}}),
            "payload",
        ),
        (
            json!({"message_id":5,"type":"add_pane","args":{"command":[1]}}),
            "array of strings",
        ),
        (
            json!({"message_id":5,"type":"reconnect_pane","args":{}}),
            "id",
        ),
        (json!({"message_id":5,"type":"restore","args":{}}), "marker"),
        (json!({"message_id":5,"type":"mark","args":[1]}), "object"),
    ] {
        let m = incoming(v.clone());
        assert_eq!(m.message_id, 5);
        let why = m.request.unwrap_err();
        assert!(why.contains(needle), "{v}: {why}");
    }
    // Not an envelope at all: nothing to nack.
    assert!(decode_control(b"not json").is_err());
    assert!(decode_control(b"{\"args\":{}}").is_err());
}

#[test]
fn notices_encode_as_both_clients_read_them() {
    let v: Value = serde_json::from_str(
        &Notice::Ack {
            reference: 9,
            body: Some("12".into()),
        }
        .encode(3, 1000),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"time":1000,"message_id":3,"type":"ack","args":{"ref":9,"body":"12"}})
    );
    let v: Value = serde_json::from_str(
        &Notice::Ack {
            reference: 9,
            body: None,
        }
        .encode(4, 1000),
    )
    .unwrap();
    assert!(v["args"].get("body").is_none());
    let v: Value = serde_json::from_str(
        &Notice::Nack {
            reference: 12,
            description: "Stack Overflow".into(),
        }
        .encode(5, 1),
    )
    .unwrap();
    assert_eq!(
        v["args"],
        json!({"ref":12,"desc":"Stack Overflow","description":"Stack Overflow"})
    );
    let v: Value = serde_json::from_str(
        &Notice::Resize {
            pane_id: 2,
            cols: 80,
            rows: 24,
        }
        .encode(6, 1),
    )
    .unwrap();
    assert_eq!(v["args"], json!({"pane_id":2,"sx":80,"sy":24}));
    let v: Value = serde_json::from_str(
        &Notice::SetPayload {
            payload: json!({"a":1}),
        }
        .encode(7, 1),
    )
    .unwrap();
    assert_eq!(v["type"], "set_payload");
    assert_eq!(v["args"]["payload"], json!({"a":1}));
}

#[test]
fn seed_labels() {
    assert_eq!(parse_label("%").unwrap(), Label::Control);
    assert_eq!(
        parse_label("echo hello world").unwrap(),
        Label::Command {
            size: None,
            argv: vec!["echo".into(), "hello".into(), "world".into()]
        }
    );
    assert_eq!(
        parse_label("24x80 zsh").unwrap(),
        Label::Command {
            size: Some(Size { rows: 24, cols: 80 }),
            argv: vec!["zsh".into()]
        }
    );
    assert_eq!(
        parse_label("24x80 >12").unwrap(),
        Label::Reconnect {
            size: Some(Size { rows: 24, cols: 80 }),
            pane: 12
        }
    );
}

#[test]
fn current_labels() {
    assert_eq!(
        parse_label("echo,hello world").unwrap(),
        Label::Command {
            size: None,
            argv: vec!["echo".into(), "hello world".into()]
        }
    );
    assert_eq!(
        parse_label("24x80,bash,-c,echo hi").unwrap(),
        Label::Command {
            size: Some(Size { rows: 24, cols: 80 }),
            argv: vec!["bash".into(), "-c".into(), "echo hi".into()]
        }
    );
    assert_eq!(
        parse_label(">12").unwrap(),
        Label::Reconnect {
            size: None,
            pane: 12
        }
    );
    assert_eq!(
        parse_label("24x80,>12").unwrap(),
        Label::Reconnect {
            size: Some(Size { rows: 24, cols: 80 }),
            pane: 12
        }
    );
    for bad in ["", "24x80", ">x", ",echo", "24x80,"] {
        assert!(parse_label(bad).is_err(), "{bad:?}");
    }
    assert_eq!(pane_hello(12, None), "12");
    assert_eq!(
        pane_hello(12, Some(Size { rows: 24, cols: 80 })),
        "12,24x80"
    );
    assert_eq!(server_label(7, 3), "7:3");
}

const SDP: &str =
    "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=fingerprint:sha-256 ab:CD:01:ef\r\n";

#[test]
fn connect_bodies() {
    let offer_json = json!({"type":"offer","sdp":SDP}).to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&offer_json);
    let body = json!({"fingerprint":"AB","api_version":2,"offer":b64}).to_string();
    let c = decode_connect(body.as_bytes()).unwrap();
    assert_eq!(c.sdp, SDP);
    assert_eq!(c.fingerprint.as_deref(), Some("AB"));
    assert_eq!(c.api_version, Some(2));
    // Plain-text forms of the seed.
    for text in [b64.as_str(), offer_json.as_str(), SDP] {
        assert_eq!(decode_connect(text.as_bytes()).unwrap().sdp, SDP);
    }
    assert!(decode_connect(b"%%%").is_err());
    let answer = json!({"type":"answer","sdp":"x"}).to_string();
    let b64_answer = base64::engine::general_purpose::STANDARD.encode(answer);
    assert!(decode_connect(b64_answer.as_bytes()).is_err());
    // The reply.
    let reply = encode_connect_answer("v=0\r\n");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(reply)
        .unwrap();
    let v: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(v, json!({"type":"answer","sdp":"v=0\r\n"}));
}

#[test]
fn candidates_fingerprints_and_authorized_files() {
    let c = decode_candidate(
        br#"{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#,
    )
    .unwrap();
    assert_eq!(c.sdp_mid.as_deref(), Some("0"));
    assert_eq!(c.sdp_mline_index, Some(0));
    assert_eq!(c.username_fragment.as_deref(), Some("abcd"));
    assert!(decode_candidate(b"{}").is_err());
    assert_eq!(sdp_fingerprint(SDP).as_deref(), Some("ABCD01EF"));
    assert_eq!(sdp_fingerprint("v=0\r\n"), None);
    let file = "# tokens and fingerprints\n\nABCD01EF my laptop\n  tok3n  \n#OLD\n";
    assert_eq!(authorized_entries(file), vec!["ABCD01EF", "tok3n"]);
}

#[test]
fn terminal7_clipboard_replies() {
    // gate.ts acks get_clipboard with the text, nacks with the error in
    // `body`, and acks set_clipboard without a body.
    let m = incoming(
        json!({"type":"ack","args":{"ref":7,"body":"copied text"},"message_id":3,"time":1}),
    );
    assert_eq!(
        m.request,
        Ok(Request::Ack {
            reference: 7,
            body: json!("copied text")
        })
    );
    let m = incoming(
        json!({"type":"nack","args":{"ref":8,"body":"no permission"},"message_id":4,"time":1}),
    );
    assert_eq!(
        m.request,
        Ok(Request::Nack {
            reference: 8,
            description: "no permission".into()
        })
    );
    let m = incoming(json!({"type":"nack","args":{"ref":9,"desc":"why"},"message_id":5,"time":1}));
    assert_eq!(
        m.request,
        Ok(Request::Nack {
            reference: 9,
            description: "why".into()
        })
    );
    let v: Value = serde_json::from_str(
        &Notice::SetClipboard {
            data: "hi".into(),
            mimetype: "text/plain".into(),
        }
        .encode(4, 5),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({"time":5,"message_id":4,"type":"set_clipboard","args":{"data":"hi","mimetype":"text/plain"}})
    );
    let v: Value = serde_json::from_str(&Notice::GetClipboard.encode(6, 7)).unwrap();
    assert_eq!(v["type"], "get_clipboard");
}

/// Seen while writing the fuzz targets: serde reads an array as a struct's
/// fields in order, so these decoded.
#[test]
fn arrays_are_not_messages() {
    assert!(decode_control(br#"[1,5,"mark",{}]"#).is_err());
    assert!(decode_candidate(br#"["candidate:1 1 udp 1 127.0.0.1 5000 typ host"]"#).is_err());
    let offer = base64::engine::general_purpose::STANDARD.encode(json!(["offer", SDP]).to_string());
    assert!(decode_connect(offer.as_bytes()).is_err());
}
