//! webexec seed signaling: any body of `POST /connect`
//! ([`webexec_proto::decode_connect`]) and the fingerprint read from the
//! offer's SDP ([`webexec_proto::sdp_fingerprint`]), which decides
//! authorization.
//!
//! - decoding never panics;
//! - the offer that decoded reads the same in every form the seed allows:
//!   the JSON body with a base64 offer (keeping its fingerprint and API
//!   version), the base64 text, the JSON offer as text, and, when it is
//!   SDP, the SDP itself;
//! - a fingerprint, when found, is in the authorized file's spelling: no
//!   colons, no lower case.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use serde_json::json;
use webexec_proto::{ConnectRequest, decode_connect, sdp_fingerprint};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        check_fingerprint(text);
    }
    let Ok(request) = decode_connect(data) else {
        return;
    };
    check_fingerprint(&request.sdp);
    let offer = json!({"type": "offer", "sdp": request.sdp}).to_string();
    let b64 = STANDARD.encode(&offer);
    let mut body = json!({"offer": b64});
    if let Some(fingerprint) = &request.fingerprint {
        body["fingerprint"] = fingerprint.as_str().into();
    }
    if let Some(version) = request.api_version {
        body["api_version"] = version.into();
    }
    assert_eq!(
        decode_connect(body.to_string().as_bytes()).expect("JSON body"),
        request
    );
    let bare = ConnectRequest {
        fingerprint: None,
        api_version: None,
        ..request.clone()
    };
    assert_eq!(decode_connect(b64.as_bytes()).expect("base64 text"), bare);
    assert_eq!(decode_connect(offer.as_bytes()).expect("JSON offer"), bare);
    if request.sdp.starts_with("v=0") {
        assert_eq!(decode_connect(request.sdp.as_bytes()).expect("SDP"), bare);
    }
});

fn check_fingerprint(sdp: &str) {
    if let Some(fingerprint) = sdp_fingerprint(sdp) {
        assert!(!fingerprint.contains(':'));
        assert!(!fingerprint.chars().any(|c| c.is_ascii_lowercase()));
    }
}
