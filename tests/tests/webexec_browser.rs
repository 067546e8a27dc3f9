//! The demo page in a real headless Chromium: it connects with the
//! browser's own WebRTC, opens a terminal pane, and shows a command's
//! output. Needs Debian's `chromium` and `npm ci --prefix tests/browser`
//! (both done by `.ci/run`); without them the test says so and passes,
//! except under CI, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use execwire_tests::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_echo_through_the_demo_page() {
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let server = TestServer::webexec_with(webexec_server::Config::default()).await;
    let url = format!("http://{}/#token={}", server.addr, server.token);
    let stdout =
        execwire_tests::run_browser_script(&chromium, &dir.join("webexec.mjs"), &[url.as_ref()])
            .await;
    assert!(stdout.contains("ok:"), "{stdout}");
}
