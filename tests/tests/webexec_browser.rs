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
    let out = tokio::process::Command::new("node")
        .arg(dir.join("webexec.mjs"))
        .arg(&url)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser test failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ok:"), "{stdout}");
}
