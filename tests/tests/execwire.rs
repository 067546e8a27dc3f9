//! The `execwire` daemon as a whole (every scenario of each protocol
//! through it is in the matrix, `tests/tests/matrix.rs`): one token for
//! every protocol, one `/metrics` that counts them all, a protocol
//! switched off, and the webexec demo page in Chromium through it. Real
//! daemon on `127.0.0.1:0`, real clients.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use execwire::{POW_PATH, WEBTERM_PATH, WSEP_PATH};
use execwire_tests::matrix::{Event, Pow, Session, Webexec, Webterm, Wsep};
use execwire_tests::webexec::{Client, ConnectError, Signaling};
use execwire_tests::{TestServer, ws_connect};
use serde_json::json;
use tokio_tungstenite::tungstenite;

/// Runs `echo WORD` through adapter `S` at `server` and checks its output.
async fn echo<S: Session>(server: &TestServer, word: &str) {
    let mut session = S::start(server, &format!("echo {word}")).await;
    let mut out = Vec::new();
    while let Some(event) = session.next().await {
        if let Event::Stdout(b) = event {
            out.extend_from_slice(&b);
        }
    }
    assert_eq!(String::from_utf8_lossy(&out), format!("{word}\n"));
}

/// `GET /metrics` with `token`: the status and the text.
async fn metrics(server: &TestServer, token: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("http://{}/metrics", server.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// The value of the series `line` (`name{labels}`) in metrics `text`.
fn series(text: &str, line: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' ')?.parse().ok())
}

/// The HTTP status a WebSocket upgrade at `url` was refused with.
async fn refused_upgrade(url: &str, token: Option<&str>, subprotocol: Option<&str>) -> u16 {
    match ws_connect(url, token, subprotocol).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
        Ok(_) => panic!("{url}: upgraded"),
    }
}

/// One token runs commands over all four protocols on one listener, a
/// wrong one is refused by each, and the one `/metrics` counts every
/// protocol apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_every_protocol_one_metrics() {
    let server = TestServer::execwire("").await;
    echo::<Wsep>(&server.at(WSEP_PATH), "through-wsep").await;
    echo::<Pow>(&server.at(POW_PATH), "through-pow").await;
    echo::<Webterm>(&server.at(WEBTERM_PATH), "through-webterm").await;
    echo::<Webexec>(&server, "through-webexec").await;

    let wrong = "not-the-token";
    let base = format!("ws://{}", server.addr);
    let wsep = refused_upgrade(&format!("{base}{WSEP_PATH}"), Some(wrong), None).await;
    assert_eq!(wsep, 401);
    let pow = refused_upgrade(&format!("{base}{POW_PATH}/"), Some(wrong), Some("pow-1")).await;
    assert_eq!(pow, 401);
    let mut webterm = execwire_tests::webterm::Client::connect(&server.at(WEBTERM_PATH), "").await;
    let reply = webterm
        .request(json!({"type":"authentication","payload":{"token":wrong}}))
        .await;
    assert_ne!(reply["payload"]["result"], "ok", "{reply}");
    match Client::connect(server.addr, Some(wrong), &Signaling::Offer).await {
        Err(ConnectError::Http(status, _)) => assert_eq!(status, 401),
        Err(e) => panic!("webexec: {e:?}"),
        Ok(_) => panic!("webexec admitted a wrong token"),
    }
    assert_eq!(metrics(&server, wrong).await.0, 401);

    let (status, text) = metrics(&server, &server.token).await;
    assert_eq!(status, 200, "{text}");
    for protocol in ["wsep", "pow", "webterm", "webexec"] {
        let started = format!("execwire_processes_started_total{{protocol=\"{protocol}\"}}");
        assert!(series(&text, &started) >= Some(1), "{started} in\n{text}");
    }
    for protocol in ["wsep", "pow", "webexec"] {
        let failed = format!("execwire_auth_failures_total{{protocol=\"{protocol}\"}}");
        assert!(series(&text, &failed) >= Some(1), "{failed} in\n{text}");
    }
    // One registry: each series once, not once per protocol's router.
    let name = "execwire_processes_started_total{protocol=\"wsep\"}";
    assert_eq!(text.matches(name).count(), 1);
    server.shutdown().await;
}

/// A protocol switched off answers `404` on its paths; the others serve on.
#[tokio::test]
async fn a_protocol_switched_off_answers_404() {
    let mut config = execwire_tests::execwire_matrix_config();
    config.wsep = None;
    config.pow = None;
    let server = TestServer::execwire_auth(config, true, "").await;
    let base = format!("ws://{}", server.addr);
    let token = Some(server.token.as_str());
    assert_eq!(
        refused_upgrade(&format!("{base}{WSEP_PATH}"), token, None).await,
        404
    );
    let pow = refused_upgrade(&format!("{base}{POW_PATH}/"), token, Some("pow-1")).await;
    assert_eq!(pow, 404);
    let docs = reqwest::get(format!("http://{}{POW_PATH}/docs/", server.addr))
        .await
        .unwrap();
    assert_eq!(docs.status().as_u16(), 404);
    echo::<Webterm>(&server.at(WEBTERM_PATH), "still-here").await;
    let (_, text) = metrics(&server, &server.token).await;
    assert!(!text.contains("protocol=\"wsep\""), "{text}");
    server.shutdown().await;
}

/// The webexec demo page, served by the daemon at its root, runs a
/// command in a real Chromium with the browser's own WebRTC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_echo_through_the_daemons_demo_page() {
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let server = TestServer::execwire("").await;
    let url = format!("http://{}/#token={}", server.addr, server.token);
    let stdout =
        execwire_tests::run_browser_script(&chromium, &dir.join("webexec.mjs"), &[url.as_ref()])
            .await;
    assert!(stdout.contains("ok:"), "{stdout}");
}
