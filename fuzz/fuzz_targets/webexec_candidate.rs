//! webexec trickled ICE candidates: any body of `PATCH /candidates/{id}`
//! ([`webexec_proto::decode_candidate`]).
//!
//! - decoding never panics, and only a JSON object is a candidate;
//! - a candidate that decodes re-encodes (as a browser writes it, in
//!   camelCase) to JSON that decodes to the same candidate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webexec_proto::decode_candidate;

fuzz_target!(|data: &[u8]| {
    let Ok(candidate) = decode_candidate(data) else {
        return;
    };
    assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
    let json = serde_json::to_vec(&candidate).expect("serializes");
    assert_eq!(decode_candidate(&json).expect("re-decode"), candidate);
});
