//! webexec control channel (`%`): any message a peer sends
//! ([`webexec_proto::decode_control`]): the envelope and every request.
//!
//! - decoding never panics; only a frame that is not an envelope is an
//!   error, anything inside one is a request or a reason to nack it by id;
//! - only a JSON object is an envelope, and its id is what a plain JSON
//!   reading of the frame says (when that reading works: it also fails on
//!   invalid UTF-8 in fields the envelope ignores and never reads);
//! - the requests the server also sends (ack, nack, resize, set_payload)
//!   come back the same when the server's encoding of them is decoded:
//!   a payload a peer stores is what the other peers get.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use webexec_proto::{Notice, Request, decode_control};

fuzz_target!(|data: &[u8]| {
    let Ok(incoming) = decode_control(data) else {
        return;
    };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    if let Ok(frame) = serde_json::from_slice::<Value>(data) {
        assert_eq!(
            incoming.message_id,
            frame
                .get("message_id")
                .map_or(0, |id| id.as_i64().expect("an i64 id"))
        );
    }
    let request = match incoming.request {
        Ok(request) => request,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    let notice = match &request {
        Request::Ack { reference, body } => Notice::Ack {
            reference: *reference,
            body: body.as_str().map(str::to_owned),
        },
        Request::Nack {
            reference,
            description,
        } => Notice::Nack {
            reference: *reference,
            description: description.clone(),
        },
        Request::SetPayload { payload } => Notice::SetPayload {
            payload: payload.clone(),
        },
        Request::Resize {
            pane_id: Some(pane_id),
            cols,
            rows,
        } => Notice::Resize {
            pane_id: *pane_id,
            cols: *cols,
            rows: *rows,
        },
        Request::AddPane { parent, .. } => {
            assert_ne!(*parent, Some(0), "parent 0 means none");
            return;
        }
        _ => return,
    };
    let encoded = notice.encode(incoming.message_id, 0);
    let again = decode_control(encoded.as_bytes()).expect("a notice decodes");
    assert_eq!(again.message_id, incoming.message_id);
    let expected = match request {
        // An empty body is left out, and reads back as none.
        Request::Ack { reference, body } if body == "" => Request::Ack {
            reference,
            body: Value::Null,
        },
        // Only a string body is sent back.
        Request::Ack { reference, body } if !body.is_string() => Request::Ack {
            reference,
            body: Value::Null,
        },
        other => other,
    };
    assert_eq!(again.request, Ok(expected));
});
