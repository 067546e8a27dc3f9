//! wsep, client to server: any bytes a client sends as one WebSocket
//! message.
//!
//! - decoding never panics; only a header that is a JSON object decodes,
//!   and a message over the limit is refused as too large;
//! - the body of `stdin` is exactly the bytes after the first `\n`;
//! - what decodes re-encodes (newest form) to the same message, as long as
//!   the encoding fits the limit;
//! - a `start` reads the same in both forms: the seed's flat form, built
//!   from what decoded, decodes to the same command whenever the flat form
//!   can say it (it has no `uid`, `gid`, `env` or `working_dir`).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use wsep_proto::{ClientMsg, DecodeError, MAX_MESSAGE_SIZE, StartCommand};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    let decoded = ClientMsg::decode(&frame);
    if data.len() > MAX_MESSAGE_SIZE {
        assert!(matches!(decoded, Err(DecodeError::TooLarge(_))));
        return;
    }
    let Ok(msg) = decoded else { return };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    if let ClientMsg::Stdin(body) = &msg {
        let after_newline = data
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&[][..], |nl| &data[nl + 1..]);
        assert_eq!(&body[..], after_newline);
    }
    let encoded = msg.encode();
    let again = ClientMsg::decode(&Bytes::from(encoded.clone()));
    if encoded.len() <= MAX_MESSAGE_SIZE {
        assert_eq!(again.expect("re-decode"), msg);
    } else {
        assert!(matches!(again, Err(DecodeError::TooLarge(_))));
    }
    if let ClientMsg::Start(start) = &msg {
        assert!(!start.command.is_empty());
        check_seed_form(start);
    }
});

/// The seed's flat `start`, with `id`, `stdin` and the size at the top
/// level, as the TypeScript client puts them.
fn check_seed_form(start: &StartCommand) {
    if start.uid != 0 || start.gid != 0 || !start.env.is_empty() || !start.working_dir.is_empty() {
        return;
    }
    let mut flat = json!({
        "type": "start",
        "id": start.id,
        "command": start.command,
        "args": start.args,
        "tty": start.tty,
        "rows": start.rows,
        "cols": start.cols,
    });
    if let Some(stdin) = start.stdin {
        flat["stdin"] = stdin.into();
    }
    let bytes = serde_json::to_vec(&flat).expect("a JSON value serializes");
    if bytes.len() > MAX_MESSAGE_SIZE {
        return;
    }
    let again = ClientMsg::decode(&Bytes::from(bytes)).expect("flat form decodes");
    assert_eq!(again, ClientMsg::Start(start.clone()));
}
