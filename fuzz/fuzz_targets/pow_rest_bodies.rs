//! pow-1 result bodies, as a client reads them: the WebSocket result frame
//! ([`Outcome`]) and the REST `GET /status/{id}` body ([`Status`]).
//!
//! - decoding never panics, and only a JSON object is a result frame;
//! - what decodes re-encodes to JSON that decodes to the same value, so a
//!   server's answer reaches the client exactly (the `value` of a
//!   fulfilled call is any JSON a process produced).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pow_proto::{Outcome, ResultState, Status};

fuzz_target!(|data: &[u8]| {
    if let Ok(outcome) = Outcome::decode(data) {
        assert_eq!(data.trim_ascii_start().first(), Some(&b'{'));
        assert_eq!(
            Outcome::decode(&outcome.encode()).expect("re-decode"),
            outcome
        );
    }
    if let Ok(status) = serde_json::from_slice::<Status>(data) {
        let again: Status = serde_json::from_slice(&status.encode()).expect("re-decode");
        assert_eq!(again, status);
    }
    if let Ok(state) = serde_json::from_slice::<ResultState>(data) {
        let json = serde_json::to_vec(&state).expect("serializes");
        let again: ResultState = serde_json::from_slice(&json).expect("re-decode");
        assert_eq!(again, state);
    }
});
