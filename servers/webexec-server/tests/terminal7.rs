//! Terminal7's life cycle against the real `webexec-server` binary, in
//! headless Chromium with the browser's own WebRTC: a page of another
//! origin whose handlers decode exactly as Terminal7's do (binary only)
//! connects, opens a pane, types, resizes, stores its layout, sleeps
//! (mark, the peer connection closes), comes back on a new peer connection
//! (restore, reconnect_pane) and gets what the pane wrote meanwhile, and
//! exchanges the clipboard with `webexec-server copy`/`paste` run in the
//! pane. See `tests/browser/terminal7.mjs`.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/browser` (both done
//! by `.ci/run`); without them the test says so and passes, except under
//! CI, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};

/// The browser-test folder of the workspace.
fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// A fresh directory under the system's temporary one, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal7_life_cycle_in_chromium() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let browser = browser_dir();
    let ready =
        Path::new(&chromium).exists() && browser.join("node_modules/playwright-core").exists();
    if !ready {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: install chromium and run npm ci --prefix tests/browser"
        );
        eprintln!(
            "skipped: no {chromium} or no tests/browser/node_modules (npm ci --prefix tests/browser)"
        );
        return;
    }
    let state = TempDir::new("webexec-terminal7-state");
    let work = TempDir::new("webexec-terminal7-work");
    let binary = env!("CARGO_BIN_EXE_webexec-server");
    let token = "terminal7-test-token";
    let mut server = tokio::process::Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--udp-ports", "0-0", "--dir"])
        .arg(&state.0)
        .env("WEBEXEC_TOKEN", token)
        .env_remove("WEBEXEC")
        .env("RUST_LOG", "webexec_server=info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starting webexec-server");
    // "webexec-server listening on http://ADDR/ and SOCKET"
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("webexec-server exited before listening");
        if let Some(rest) = line.strip_prefix("webexec-server listening on ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let out = tokio::process::Command::new("node")
        .arg(browser.join("terminal7.mjs"))
        .args([url.as_str(), token, binary])
        .arg(&work.0)
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("running node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Stop it as an operator would: SIGTERM ends its panes.
    if let Some(pid) = server
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let _ = server.wait().await;
    assert!(
        out.status.success(),
        "Terminal7 life cycle failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ok: set_clipboard"), "{stdout}");
}
