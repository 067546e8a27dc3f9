//! The line-shell example, run as a user would: the binary, `nc`-style
//! clients over TCP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A safety net against a hang; never reached when things work.
const NET: Duration = Duration::from_secs(20);

/// Runs one session: sends `lines`, returns everything the server sent.
async fn session(addr: &str, lines: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(lines.as_bytes()).await.unwrap();
    let mut got = String::new();
    tokio::time::timeout(NET, stream.read_to_string(&mut got))
        .await
        .expect("the server closes after the exit line")
        .unwrap();
    got
}

#[tokio::test]
async fn commands_input_output_and_exit_over_tcp_lines() {
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_line-shell"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut banner = String::new();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    tokio::time::timeout(NET, stdout.read_line(&mut banner))
        .await
        .unwrap()
        .unwrap();
    let addr = banner.trim().rsplit(' ').next().unwrap().to_owned();

    assert_eq!(session(&addr, "echo hi\n").await, "hi\nexit: 0\n");
    assert_eq!(
        session(&addr, "cat\none\ntwo\n.\n").await,
        "one\ntwo\nexit: 0\n"
    );
    assert_eq!(session(&addr, "exit 3\n").await, "exit: 3\n");
    // Exactly one byte too many, and nothing after it: the server has read
    // all the client sent when it closes, so its close is a FIN, not a RST.
    let too_long = format!("cat\n{}", "x".repeat(64 * 1024 + 1));
    assert_eq!(
        session(&addr, &too_long).await,
        "error: a line is longer than 65536 bytes\n"
    );
}
