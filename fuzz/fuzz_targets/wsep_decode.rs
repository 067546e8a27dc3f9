//! Any bytes a peer sends: decoding never panics, and what decodes
//! re-encodes to something that decodes to the same message.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wsep_proto::{ClientMsg, ServerMsg};

fuzz_target!(|data: &[u8]| {
    let frame = Bytes::copy_from_slice(data);
    if let Ok(msg) = ClientMsg::decode(&frame) {
        if !matches!(msg, ClientMsg::Unknown(_)) {
            let again = ClientMsg::decode(&Bytes::from(msg.encode())).expect("re-decode");
            assert_eq!(again, msg);
        }
    }
    if let Ok(msg) = ServerMsg::decode(&frame) {
        if !matches!(msg, ServerMsg::Unknown(_)) && msg.encode().len() <= wsep_proto::MAX_MESSAGE_SIZE {
            let again = ServerMsg::decode(&msg.encode()).expect("re-decode");
            assert_eq!(again, msg);
        }
    }
});
