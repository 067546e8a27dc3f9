//! Session recording through the daemon (`--record`): a terminal started
//! over wsep is written as asciicast v2, and the real `asciinema` reads it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use exec_core::RecordConfig;
use execwire::WSEP_PATH;
use execwire_tests::deploy::Scratch;
use execwire_tests::{TestServer, execwire_matrix_config};
use wsep_client::{Input, Output, Outputs};
use wsep_proto::StartCommand;

/// The daemon with every protocol, recording terminal panes as `record` says.
async fn daemon(record: RecordConfig) -> TestServer {
    let mut config = execwire_matrix_config();
    if let Some(wsep) = &mut config.wsep {
        wsep.record = Some(record.clone());
    }
    if let Some(webexec) = &mut config.webexec {
        webexec.record = Some(record);
    }
    TestServer::execwire_auth(config, true, WSEP_PATH).await
}

/// A terminal running `sh -c script` under the name `id`.
async fn terminal(server: &TestServer, script: &str, id: &str) -> (Input, Outputs) {
    let start = StartCommand {
        command: "sh".into(),
        args: vec!["-c".into(), script.into()],
        tty: true,
        rows: 24,
        cols: 80,
        id: id.into(),
        ..StartCommand::default()
    };
    wsep_client::start(&server.url(), Some(&server.token), start)
        .await
        .unwrap()
}

/// Reads output until `needle` was seen (into `seen`).
async fn read_until(out: &mut Outputs, seen: &mut Vec<u8>, needle: &[u8]) {
    while !seen.windows(needle.len()).any(|w| w == needle) {
        match out.next().await.unwrap() {
            Some(Output::Stdout(b) | Output::Stderr(b)) => seen.extend_from_slice(&b),
            other => panic!("ended before {needle:?}: {other:?}"),
        }
    }
}

/// Everything until the exit (whose code must be 0) and the close.
async fn read_to_exit(out: &mut Outputs, seen: &mut Vec<u8>) {
    let mut code = None;
    while let Some(event) = out.next().await.unwrap() {
        match event {
            Output::Stdout(b) | Output::Stderr(b) => seen.extend_from_slice(&b),
            Output::Exit { code: c, .. } => code = Some(c),
        }
    }
    assert_eq!(code, Some(0));
}

/// The one `.cast` file in `dir`.
fn the_cast(dir: &Path) -> PathBuf {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(name.ends_with("Z.cast"), "{name}");
    files[0].clone()
}

/// What `asciinema cat` prints of `file`. It insists on opening
/// `/dev/tty` (asciinema 2.2), so it runs under a terminal of its own,
/// its standard output (what is compared) going to a file.
async fn asciinema_cat(file: &Path) -> Vec<u8> {
    let printed = file.with_extension("printed");
    let cmd = exec_core::Command::new("sh")
        .args(["-c", "exec asciinema cat \"$0\" > \"$1\""])
        .arg(file)
        .arg(&printed)
        .env("LC_ALL", "C.UTF-8")
        .pty(exec_core::PtySize { rows: 24, cols: 80 });
    let process = exec_core::Process::spawn(&cmd).expect("sh runs");
    let mut events = exec_core::Events::new(process);
    let mut said = Vec::new();
    let status = loop {
        match events.next().await.unwrap().unwrap() {
            exec_core::Event::Stdout(b) | exec_core::Event::Stderr(b) => said.extend_from_slice(&b),
            exec_core::Event::Exit(status) => break status,
        }
    };
    assert!(
        status.success(),
        "asciinema cat (apt-get install asciinema; .ci/run does): {}",
        String::from_utf8_lossy(&said)
    );
    let out = std::fs::read(&printed).unwrap();
    std::fs::remove_file(printed).unwrap();
    out
}

fn events(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn a_wsep_terminal_plays_back_exactly_in_asciinema() {
    let dir = Scratch::new("record");
    let server = daemon(RecordConfig {
        dir: dir.path().to_owned(),
        max_bytes: 1 << 20,
    })
    .await;
    // Nothing is printed before the client types (the terminal's echo
    // included), so the client sees every byte from the first; an invalid
    // byte (\377) among multi-byte characters, a box-drawing line.
    let script = "read w; printf 'ready\\n'; read x; \
                  printf 'h\\303\\251llo \\342\\202\\254 \\346\\227\\245\\346\\234\\254 bad:\\377 \\342\\224\\200\\n'; \
                  read y; printf 'done\\n'";
    let (mut input, mut out) = terminal(&server, script, "rec").await;
    let mut seen = Vec::new();
    input.write(b"a\n").await.unwrap();
    read_until(&mut out, &mut seen, b"ready").await;
    input.resize(30, 100).await.unwrap();
    input.write(b"go\n").await.unwrap();
    read_until(&mut out, &mut seen, "─".as_bytes()).await;
    input.write(b"end\n").await.unwrap();
    // The exit comes after the recording is complete.
    read_to_exit(&mut out, &mut seen).await;
    assert!(seen.windows(5).any(|w| w == b"bad:\xff"), "{seen:?}");

    let cast = the_cast(dir.path());
    // Bytes that are not UTF-8 are U+FFFD in the file (its event data is
    // a JSON string); every other byte is as the pane produced it.
    let expected = String::from_utf8_lossy(&seen).into_owned();
    assert_eq!(
        String::from_utf8(asciinema_cat(&cast).await).unwrap(),
        expected
    );

    let events = events(&cast);
    let header = &events[0];
    assert_eq!(header["version"], 2);
    assert_eq!(
        (header["width"].clone(), header["height"].clone()),
        (80.into(), 24.into())
    );
    assert_eq!(header["command"], format!("sh -c {script}"));
    let resizes: Vec<&serde_json::Value> = events.iter().filter(|e| e[1] == "r").collect();
    assert_eq!(resizes.len(), 1, "{events:?}");
    assert_eq!(resizes[0][2], "100x30");
    // The resize sits between the first output and the second.
    let at = events.iter().position(|e| e[1] == "r").unwrap();
    let before: String = events[1..at]
        .iter()
        .map(|e| e[2].as_str().unwrap())
        .collect();
    assert_eq!(before, "a\r\nready\r\n");
}

#[tokio::test]
async fn the_byte_limit_stops_the_file_and_not_the_pane() {
    let dir = Scratch::new("record-limit");
    let server = daemon(RecordConfig {
        dir: dir.path().to_owned(),
        max_bytes: 4096,
    })
    .await;
    let (mut input, mut out) = terminal(
        &server,
        "read w; head -c 100000 /dev/zero | tr '\\0' x; printf END",
        "big",
    )
    .await;
    input.write(b"\n").await.unwrap();
    let mut seen = Vec::new();
    read_to_exit(&mut out, &mut seen).await;
    assert_eq!(seen.iter().filter(|&&b| b == b'x').count(), 100_000);
    assert!(seen.ends_with(b"END"));

    let cast = the_cast(dir.path());
    let len = std::fs::metadata(&cast).unwrap().len();
    assert!(len <= 4096 && len > 2048, "{len}");
    // What it holds is a prefix of the output, still readable.
    let played = asciinema_cat(&cast).await;
    assert!(!played.is_empty() && seen.starts_with(&played));
}

#[tokio::test]
async fn a_directory_that_cannot_be_written_does_not_stop_the_pane() {
    let dir = Scratch::new("record-missing");
    let missing = dir.path().join("not-there");
    let server = daemon(RecordConfig {
        dir: missing.clone(),
        max_bytes: 1 << 20,
    })
    .await;
    let (mut input, mut out) = terminal(&server, "read w; printf 'still here\\n'", "gone").await;
    input.write(b"\n").await.unwrap();
    let mut seen = Vec::new();
    read_to_exit(&mut out, &mut seen).await;
    assert_eq!(seen, b"\r\nstill here\r\n");
    assert!(!missing.exists());
}
