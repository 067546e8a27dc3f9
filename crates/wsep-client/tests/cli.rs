//! The `wsep` command against a real server on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::process::{Command, Stdio};

use exec_core::auth::AccessToken;

/// Starts a server on its own runtime thread; returns its URL and token.
fn server() -> (String, String) {
    let token = AccessToken::generate().unwrap();
    let exposed = token.expose().to_owned();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let config = wsep_server::Config {
                token: Some(token),
                ..wsep_server::Config::default()
            };
            wsep_server::serve(listener, config, std::future::pending())
                .await
                .unwrap();
        });
    });
    (format!("ws://{addr}/"), exposed)
}

fn wsep(url: &str, token: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsep"));
    cmd.arg(url).args(args).env("WSEP_TOKEN", token);
    cmd
}

#[test]
fn pipes_stdin_and_exits_with_the_remote_code() {
    let (url, token) = server();
    let mut child = wsep(
        &url,
        &token,
        &["--", "sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"HELLO\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn bad_token_and_missing_program_fail_clearly() {
    let (url, token) = server();
    let out = wsep(&url, "wrong", &["--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
    let out = wsep(&url, &token, &["--", "/no/such/program"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1011"));
}

#[test]
fn tty_without_a_local_terminal_still_runs() {
    let (url, token) = server();
    let out = wsep(
        &url,
        &token,
        &[
            "--tty",
            "-e",
            "FOO=bar",
            "--",
            "sh",
            "-c",
            "echo $FOO; test -t 0",
        ],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "bar");
}
