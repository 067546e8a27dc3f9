//! pow-1 call: the first binary frame of a WebSocket session and the body of
//! REST `POST /new`, from any client.
//!
//! - decoding never panics, and only a JSON object decodes;
//! - a call that decodes says what a plain JSON reading of the same bytes
//!   says (the name, and string parameters, absent or `null` meaning none;
//!   the plain reading fails on invalid UTF-8 in fields the call ignores
//!   and never reads, which is then no reason to refuse the call);
//! - it re-encodes to JSON that decodes to the same call.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pow_proto::Call;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(call) = Call::decode(data) else { return };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        assert_eq!(v["call"], call.call.as_str());
        match &v["params"] {
            Value::Null => assert!(call.params.is_empty()),
            Value::Array(items) => assert_eq!(items, &call.params),
            other => panic!("params decoded from {other}"),
        }
    }
    assert_eq!(Call::decode(&call.encode()).expect("re-decode"), call);
});
