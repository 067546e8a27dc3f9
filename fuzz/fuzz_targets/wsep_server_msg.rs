//! wsep, server to client: any bytes a server sends as one WebSocket
//! message (what `wsep-client` decodes).
//!
//! - decoding never panics; only a header that is a JSON object decodes,
//!   and a message over the limit is refused as too large;
//! - the body of `stdout`/`stderr` is exactly the bytes after the first
//!   `\n`;
//! - what decodes re-encodes to the same message (when the encoding fits
//!   the limit), and an `exit_code` carries its code under both names.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsep_proto::{DecodeError, MAX_MESSAGE_SIZE, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let decoded = ServerMsg::decode(&frame);
    if data.len() > MAX_MESSAGE_SIZE {
        assert!(matches!(decoded, Err(DecodeError::TooLarge(_))));
        return;
    }
    let Ok(msg) = decoded else { return };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    if let ServerMsg::Stdout(body) | ServerMsg::Stderr(body) = &msg {
        let after_newline = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |nl| &data[nl + 1..]);
        assert_eq!(&body[..], after_newline);
    }
    let encoded = msg.encode();
    let again = ServerMsg::decode(&encoded);
    if encoded.len() > MAX_MESSAGE_SIZE {
        assert!(matches!(again, Err(DecodeError::TooLarge(_))));
        return;
    }
    assert_eq!(again.expect("re-decode"), msg);
    if let ServerMsg::ExitCode { code, .. } = msg {
        let header = encoded.split(|&b| b == b'\n').next().unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(header).expect("header is JSON");
        assert_eq!(v["exit_code"], code);
        assert_eq!(v["code"], code);
    }
});
