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

/// Every byte of a pane's bulk output reaches a Chromium page, in order
/// and intact (SHA-256 of what arrived against the file's), the channel
/// closing only after the last of it: what the benchmark times, checked
/// here without timing anything. 64 MiB of random bytes through a pane
/// without a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_receives_every_byte_of_a_cat() {
    let Some((chromium, dir)) = execwire_tests::browser() else {
        return;
    };
    let data_dir = std::env::temp_dir().join(format!("webexec-browser-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let file = data_dir.join("random.bin");
    let mut random = std::fs::File::open("/dev/urandom").unwrap();
    let mut out = std::fs::File::create(&file).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut random, 64 << 20), &mut out).unwrap();
    drop(out);
    let server = TestServer::webexec_with(webexec_server::Config::default()).await;
    let url = format!("http://{}/#token={}", server.addr, server.token);
    let out = tokio::process::Command::new("node")
        .arg(dir.join("bench.mjs"))
        .arg(&url)
        .args([
            "--file",
            file.to_str().unwrap(),
            "--runs",
            "2",
            "--echoes",
            "0",
        ])
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running node");
    let _ = std::fs::remove_dir_all(&data_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bytes lost or changed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("every byte intact in 2 of 2 runs"),
        "{stdout}"
    );
}
