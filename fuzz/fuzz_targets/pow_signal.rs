//! pow-1 signal: every binary frame after the call, from any client.
//!
//! - decoding never panics;
//! - only a JSON object naming `close` or `cancel` decodes (fields it
//!   ignores are not read, so the plain JSON reading that checks the name
//!   may fail where the signal decodes), and each re-encodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pow_proto::Signal;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(signal) = Signal::decode(data) else {
        return;
    };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    let name = match signal {
        Signal::Close => "close",
        Signal::Cancel => "cancel",
    };
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        assert_eq!(v["signal"], name);
    }
    assert_eq!(Signal::decode(&signal.encode()).expect("re-decode"), signal);
});
