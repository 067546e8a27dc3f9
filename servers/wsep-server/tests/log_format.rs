//! `--log-format json`: the real binary logs one JSON object per line, with
//! the connection's span.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};

#[test]
fn json_logs_are_json_lines_with_the_connection_span() {
    let mut server = Command::new(env!("CARGO_BIN_EXE_wsep-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--log-format",
            "json",
        ])
        .env_remove("RUST_LOG")
        .env_remove("WSEP_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "no address printed"
        );
        if let Some(url) = line.trim().strip_prefix("wsep-server listening on ws://") {
            break url.trim_end_matches('/').to_owned();
        }
    };
    // A page of another site, refused by the origin rule: logged at info
    // before the answer is written.
    let mut http = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        http,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nOrigin: https://evil.example\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    http.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    server.kill().unwrap();
    server.wait().unwrap();
    let mut logs = String::new();
    server
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let events: Vec<serde_json::Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let refused = events
        .iter()
        .find(|e| e["fields"]["message"] == "request refused")
        .unwrap_or_else(|| panic!("no refusal logged in {logs}"));
    assert_eq!(refused["level"], "INFO");
    let span = &refused["span"];
    assert_eq!(span["name"], "connection", "{refused}");
    assert_eq!(span["protocol"], "wsep", "{refused}");
    assert!(span["id"].is_number(), "{refused}");
    assert!(span["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
}
