//! Web-Terminal v3, client to server: any text frame a client sends
//! ([`webterm_proto::decode`]), every message type.
//!
//! - decoding never panics;
//! - a refusal answers under a type the client knows, with the request's
//!   ids, as valid JSON;
//! - a request that decodes says what a plain JSON reading of the frame
//!   says, and the same request written as the original client writes it
//!   decodes to the same thing;
//! - a command's acknowledgement echoes its `clientId` exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use webterm_proto::{MAX_SIGNAL, Reply, Request, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let envelope = match decode(text) {
        Ok(envelope) => envelope,
        Err(e) => {
            assert!(["error", "authentication", "command", "update"].contains(&e.kind));
            let reply: Value =
                serde_json::from_str(&Reply::from(e.clone()).encode()).expect("reply is JSON");
            assert_eq!(reply["type"], e.kind);
            assert_eq!(reply["payload"]["result"], "error");
            assert_eq!(reply["payload"]["message"], e.message.as_str());
            assert_eq!(reply["payload"].get("clientId"), e.client_id.as_ref());
            return;
        }
    };
    let frame: Value = serde_json::from_str(text).expect("a decoded frame is JSON");
    let payload = &frame["payload"];
    let written = match &envelope.request {
        Request::Authentication { token } => {
            assert_eq!(frame["type"], "authentication");
            json!({"type": "authentication", "payload": {"token": token}})
        }
        Request::Command {
            command,
            client_id,
            breakpoints,
        } => {
            assert_eq!(frame["type"], "command");
            assert_eq!(payload["command"], command.as_str());
            assert_eq!(payload.get("clientId").unwrap_or(&Value::Null), client_id);
            let ack = Reply::Started {
                command: command.clone(),
                client_id: client_id.clone(),
                server_id: 1,
            }
            .encode();
            let ack: Value = serde_json::from_str(&ack).expect("ack is JSON");
            assert_eq!(&ack["payload"]["clientId"], client_id);
            json!({"type": "command", "payload":
                {"command": command, "clientId": client_id, "breakpoints": breakpoints}})
        }
        Request::Stdin {
            server_id,
            input,
            eof,
        } => {
            assert_eq!(frame["type"], "update");
            json!({"type": "update", "payload":
                {"type": "stdin", "serverId": server_id, "input": input, "eof": eof}})
        }
        Request::Signal { server_id, signal } => {
            assert_eq!(frame["type"], "update");
            assert!((1..=MAX_SIGNAL).contains(signal));
            json!({"type": "update", "payload":
                {"type": "signal", "serverId": server_id, "signal": signal}})
        }
    };
    let mut written = written;
    if let Some(token) = &envelope.session_token {
        written["sessionToken"] = token.as_str().into();
    }
    let again = decode(&written.to_string()).expect("the written request decodes");
    assert_eq!(again, envelope);
});
