//! A fleet host on a private network: an address of its own, no default
//! route, so no route for multicast either. WebRTC's mDNS needs one to
//! join its group; without the fallback every peer connection failed to
//! build and `/offer` answered 500 ("no UDP port free"). The real binary
//! runs in a network namespace this test makes (a user namespace maps us
//! to root in it): a veth pair, 10.9.0.1/24 on one end, nothing else.
//!
//! Needs `unshare` and `ip` (util-linux, iproute2) and user namespaces;
//! without them the test says so and passes, except under CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;

/// An offer as Chromium makes it for one data channel, its candidate on
/// the other end of the veth pair (never reached: the server only has to
/// build its side and answer).
const OFFER: &str = "v=0\r
o=- 370052613346487245 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0\r
a=extmap-allow-mixed\r
a=msid-semantic: WMS\r
m=application 46972 UDP/DTLS/SCTP webrtc-datachannel\r
c=IN IP4 10.9.0.2\r
a=candidate:208664677 1 udp 2113937151 10.9.0.2 46972 typ host generation 0 network-cost 999\r
a=ice-ufrag:Ua/h\r
a=ice-pwd:dhx1kLKpEO7wyIuTxhHbzi+9\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6C:EB:A6:68:6F:67:1C:9F:12:92:F5:53:0F:8D:5D:44:7D:91:E6:13:70:8A:3F:AE:7C:5B:21:0A:3E:A6:A8:23\r
a=setup:actpass\r
a=mid:0\r
a=sctp-port:5000\r
a=max-message-size:262144\r
";

/// In the namespace: the veth pair up, the server on 10.9.0.1 (a fixed
/// port is nobody else's in a namespace of our own), its first line
/// awaited through a pipe (20 s at most), then the offer; prints the HTTP
/// status. The shell is the PID namespace's init: when it exits, however,
/// the kernel ends the server with it.
const SCRIPT: &str = r#"
set -eu
trap 'kill %1 2>/dev/null; wait' EXIT
ip link set lo up
ip link add wx0 type veth peer name wx1
ip addr add 10.9.0.1/24 dev wx0
ip addr add 10.9.0.2/24 dev wx1
ip link set wx0 up
ip link set wx1 up
mkfifo "$DIR/out"
"$SERVER" --listen 10.9.0.1:7777 --token t --dir "$DIR/state" > "$DIR/out" 2> "$DIR/log" &
exec 3< "$DIR/out"
read -r -t 20 first <&3
curl -s -o "$DIR/answer" -w '%{http_code}\n' --max-time 20 \
  -H 'Authorization: Bearer t' -H 'Content-Type: application/sdp' \
  --data-binary @"$DIR/offer" http://10.9.0.1:7777/offer
"#;

#[test]
fn answers_offers_on_a_host_without_a_multicast_route() {
    let tools = ["unshare", "ip", "curl"].iter().all(|tool| {
        std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !tools {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this test: install util-linux, iproute2 and curl"
        );
        eprintln!("skipped: needs unshare, ip and curl");
        return;
    }
    let dir = std::env::temp_dir().join(format!("webexec-private-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("offer"), OFFER).unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "--pid", "--fork"])
        .args(["bash", "-c", SCRIPT])
        .env("SERVER", env!("CARGO_BIN_EXE_webexec-server"))
        .env("DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    let answer = std::fs::read_to_string(dir.join("answer")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare") {
        // No user namespaces here (a hardened kernel, a container).
        assert!(std::env::var_os("CI").is_none(), "unshare: {stderr}");
        eprintln!("skipped: {stderr}");
        return;
    }
    let status = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        status.trim(),
        "201",
        "the offer was refused: {answer}\nserver log:\n{log}\n{stderr}"
    );
    assert!(answer.starts_with("v=0"), "not an answer: {answer}");
    // It says once why `.local` candidates will not resolve.
    assert_eq!(log.matches("mDNS off").count(), 1, "{log}");
}
