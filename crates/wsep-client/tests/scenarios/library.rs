//! The client library.

use bytes::Bytes;
use wsep_client::{Error, Output, Outputs};
use wsep_proto::StartCommand;

use crate::{BULK, Server, local_sha256, test_data};

on_every_server!(async:
    input_round_trip_of_ten_mebibytes,
    the_exit_code_ends_the_command,
    a_terminal_with_resize,
    reconnect_by_id,
    input_a_server_would_punish_is_refused_here,
    a_command_that_cannot_start_is_a_1011_close,
);

fn cmd(program: &str, args: &[&str]) -> StartCommand {
    StartCommand {
        command: program.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..StartCommand::default()
    }
}

fn tty(program: &str, id: &str) -> StartCommand {
    StartCommand {
        tty: true,
        id: id.into(),
        ..cmd(program, &[])
    }
}

#[derive(Debug, Default)]
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
    error: String,
}

/// Everything up to the exit code, which must come once, and the end after
/// it.
async fn collect(mut out: Outputs) -> Ran {
    let mut ran = Ran::default();
    let mut exits = 0;
    while let Some(event) = out.next().await.unwrap() {
        match event {
            Output::Stdout(b) => ran.stdout.extend_from_slice(&b),
            Output::Stderr(b) => ran.stderr.extend_from_slice(&b),
            Output::Exit { code, error } => {
                exits += 1;
                ran.code = code;
                ran.error = error;
            }
        }
    }
    assert_eq!(exits, 1, "one exit code, then the end");
    assert!(out.next().await.unwrap().is_none());
    ran
}

/// Reads output until `needle` was seen; returns everything read.
async fn read_until(out: &mut Outputs, needle: &str) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match out.next().await.unwrap() {
            Some(Output::Stdout(b) | Output::Stderr(b)) => seen.extend_from_slice(&b),
            other => panic!(
                "ended before {needle:?}: {other:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn input_round_trip_of_ten_mebibytes(server: &Server) {
    let (mut input, out) = server.open(cmd("cat", &[])).await;
    let data = Bytes::from(test_data(BULK));
    let sent = data.clone();
    // Written while read: cat's output pushes back on its input.
    let writer = tokio::spawn(async move {
        input.write(&sent).await.unwrap();
        input.close_stdin().await.unwrap();
    });
    let ran = collect(out).await;
    writer.await.unwrap();
    assert_eq!((ran.code, ran.stdout.len()), (0, data.len()));
    assert_eq!(local_sha256(&ran.stdout), local_sha256(&data));
}

async fn the_exit_code_ends_the_command(server: &Server) {
    let script = "echo out; echo err >&2; exit 7";
    let (_input, out) = server.open(cmd("sh", &["-c", script])).await;
    let ran = collect(out).await;
    assert_eq!(
        (ran.stdout.as_slice(), ran.stderr.as_slice()),
        (&b"out\n"[..], &b"err\n"[..])
    );
    assert_eq!((ran.code, ran.error.as_str()), (7, "exit status 7"));

    let (_input, out) = server.open(cmd("sh", &["-c", "kill -KILL $$"])).await;
    let ran = collect(out).await;
    assert_eq!((ran.code, ran.error.as_str()), (-1, "signal: killed"));
}

/// A terminal asked for without a size is 24x80, resizes, has a `TERM`, and
/// reports its command's exit code.
async fn a_terminal_with_resize(server: &Server) {
    let (mut input, mut out) = server.open(tty("sh", "")).await;
    input.write(b"stty size; echo term=$TERM.\n").await.unwrap();
    let seen = read_until(&mut out, "term=xterm-256color.").await;
    assert!(seen.contains("24 80"), "{seen:?}");
    input.resize(33, 111).await.unwrap();
    input.write(b"stty size\n").await.unwrap();
    read_until(&mut out, "33 111").await;
    input.write(b"exit 5\n").await.unwrap();
    assert_eq!(collect(out).await.code, 5);
}

/// The same shell after a disconnect, by its `id`.
async fn reconnect_by_id(server: &Server) {
    let (mut input, mut out) = server.open(tty("sh", "work")).await;
    input.write(b"X=41; echo set-$((X-40))\n").await.unwrap();
    read_until(&mut out, "set-1").await;
    input.disconnect().await.unwrap();
    drop(out);

    let (mut input, mut out) = server.open(tty("sh", "work")).await;
    input.write(b"echo got-$((X+1))\n").await.unwrap();
    read_until(&mut out, "got-42").await;
    input.write(b"exit\n").await.unwrap();
    // Ours reports the shell's code, the reference screen's: both 0 here.
    assert_eq!(collect(out).await.code, 0);
}

/// Input when it is off, input after close_stdin, and close_stdin on a
/// terminal: the reference would end the session or close the terminal;
/// the library refuses or types Ctrl-D, and the command goes on to its end.
async fn input_a_server_would_punish_is_refused_here(server: &Server) {
    let off = StartCommand {
        stdin: Some(false),
        ..cmd("echo", &["ran"])
    };
    let (mut input, out) = server.open(off).await;
    assert!(matches!(input.write(b"x").await, Err(Error::InputDisabled)));
    let ran = collect(out).await;
    assert_eq!((ran.stdout.as_slice(), ran.code), (&b"ran\n"[..], 0));

    let (mut input, mut out) = server.open(cmd("cat", &[])).await;
    input.write(b"once\n").await.unwrap();
    read_until(&mut out, "once").await;
    input.close_stdin().await.unwrap();
    input.close_stdin().await.unwrap();
    assert!(matches!(input.write(b"x").await, Err(Error::InputClosed)));
    assert_eq!(collect(out).await.code, 0);

    let (mut input, mut out) = server.open(tty("cat", "")).await;
    input.write(b"typed\n").await.unwrap();
    read_until(&mut out, "typed").await;
    input.close_stdin().await.unwrap();
    assert_eq!(collect(out).await.code, 0);
}

async fn a_command_that_cannot_start_is_a_1011_close(server: &Server) {
    let err = wsep_client::start(
        &server.url,
        server.token.as_deref(),
        cmd("/no/such/program", &[]),
    )
    .await
    .unwrap_err();
    match err {
        Error::Closed { code, reason } => {
            assert_eq!(code, 1011);
            assert!(!reason.is_empty());
        }
        other => panic!("expected a 1011 close, got {other:?}"),
    }
}
