//! One scenario, every server: each scenario below is written once,
//! against the client interface of `execwire_tests::matrix`, and
//! [`matrix!`] makes it a test per server whose protocol can express it
//! (`cargo test -p execwire-tests --test matrix echo::` runs one scenario
//! on every server, `-- ::pow` one server through every scenario), and
//! per protocol of the `execwire` daemon, the same adapter at the
//! protocol's path on the daemon's one listener (`execwire_pow`).
//!
//! A protocol left out of a scenario is left out by the type checker: the
//! scenario asks for the capability trait it needs, which only the
//! adapters of protocols that have it implement. The comment at each
//! `matrix!` line says why the others are missing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::future::Future;
use std::time::Duration;

use execwire_tests::matrix::{CloseStdin, Event, ExitCode, Pty, Reattach, Session, Stderr};
use execwire_tests::{FILTER_FRAME, FilterCheck, filter_frame};

/// The adapter type of a server's protocol.
macro_rules! client {
    (wsep) => {
        execwire_tests::matrix::Wsep
    };
    (pow) => {
        execwire_tests::matrix::Pow
    };
    (webterm) => {
        execwire_tests::matrix::Webterm
    };
    (webexec) => {
        execwire_tests::matrix::Webexec
    };
    (execwire_wsep) => {
        execwire_tests::matrix::Execwire<execwire_tests::matrix::Wsep>
    };
    (execwire_pow) => {
        execwire_tests::matrix::Execwire<execwire_tests::matrix::Pow>
    };
    (execwire_webterm) => {
        execwire_tests::matrix::Execwire<execwire_tests::matrix::Webterm>
    };
    (execwire_webexec) => {
        execwire_tests::matrix::Execwire<execwire_tests::matrix::Webexec>
    };
}

/// `matrix!(scenario: wsep, pow, ...)`: a module named after the scenario
/// with one test per server, named after the server.
macro_rules! matrix {
    ($scenario:ident: $($server:ident),+ $(,)?) => {
        mod $scenario {
            $(
                #[tokio::test]
                async fn $server() {
                    super::net(super::$scenario::<client!($server)>()).await;
                }
            )+
        }
    };
}

/// Runs a scenario with a safety net, so that a server that stops
/// answering fails the test instead of hanging it; never reached when
/// things work (each scenario takes well under a second to a few).
async fn net(scenario: impl Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(120), scenario)
        .await
        .expect("the scenario stalled");
}

/// What a session produced until it ended.
#[derive(Debug, Default)]
struct Ran {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// `None` where the protocol reports no exit code.
    exit: Option<i32>,
}

/// Reads the session to its end.
async fn finish<S: Session>(session: &mut S) -> Ran {
    let mut ran = Ran::default();
    while let Some(event) = session.next().await {
        assert!(ran.exit.is_none(), "{event:?} after the exit code");
        match event {
            Event::Stdout(b) => ran.stdout.extend_from_slice(&b),
            Event::Stderr(b) => ran.stderr.extend_from_slice(&b),
            Event::Exit(code) => ran.exit = Some(code),
        }
    }
    ran
}

/// Reads output (stdout and stderr) until it contains `needle`; returns
/// all of it.
async fn read_until<S: Session>(session: &mut S, needle: &str) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match session.next().await {
            Some(Event::Stdout(b) | Event::Stderr(b)) => seen.extend_from_slice(&b),
            other => panic!(
                "{other:?} before {needle:?}; got {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// Input the filter scenarios send in one message: what a webexec data
/// channel takes by default (the other protocols take more).
const PIECE: usize = 64 * 1024;

/// Input sent ahead of the output that came back. Webterm has no flow
/// control for input (by default it refuses input beyond 4 MiB waiting
/// for the process), so the scenarios keep their own window, the same for
/// every protocol: below that limit by more than a [`PIECE`], and large
/// enough that the slowest client (webexec's, unoptimized in tests) is
/// not held up by it.
const WINDOW: usize = 3 << 20;

/// A filter that echoes every byte of its input (`head -c`, which then
/// ends), fed filter frames while its output is checked as it comes.
struct Filter<S> {
    session: S,
    check: FilterCheck,
    sent: usize,
}

impl<S: Session> Filter<S> {
    /// Starts `head -c` for `frames` filter frames.
    async fn start(server: &execwire_tests::TestServer, frames: usize) -> Self {
        let script = format!("exec head -c {}", frames * FILTER_FRAME);
        Filter {
            session: S::start(server, &script).await,
            check: FilterCheck::new(frames, FILTER_FRAME),
            sent: 0,
        }
    }

    /// Sends `frames`, at most [`WINDOW`] bytes ahead of the output.
    async fn feed(&mut self, frames: std::ops::Range<usize>) {
        for k in frames {
            let frame = filter_frame(k, FILTER_FRAME);
            for piece in frame.as_bytes().chunks(PIECE) {
                while self.sent - self.check.received() > WINDOW {
                    self.take_output().await;
                }
                self.session.send(piece).await;
                self.sent += piece.len();
            }
        }
    }

    /// Checks the next output.
    async fn take_output(&mut self) {
        match self.session.next().await {
            Some(Event::Stdout(b)) => self.check.push(&b),
            other => panic!("{other:?} after {} bytes of output", self.check.received()),
        }
    }

    /// Reads the rest of the output, every byte of the input, and then the
    /// end: no more output, exit code 0 where the protocol has one.
    async fn ends_with_all_output(mut self) {
        while !self.check.complete() {
            self.take_output().await;
        }
        let rest = finish(&mut self.session).await;
        assert!(
            rest.stdout.is_empty() && rest.stderr.is_empty(),
            "output after the end: {rest:?}"
        );
        assert!(matches!(rest.exit, None | Some(0)), "{rest:?}");
    }
}

/// `echo hello world`: its output, then the end (exit code 0 where the
/// protocol has one).
async fn echo<S: Session>() {
    let server = S::server().await;
    let mut session = S::start(&server, "echo hello world").await;
    let ran = finish(&mut session).await;
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "hello world\n");
    assert!(matches!(ran.exit, None | Some(0)), "{ran:?}");
}

/// Exit codes 0 and 3 arrive as they are.
async fn exit_code<S: ExitCode>() {
    let server = S::server().await;
    for code in [0, 3] {
        let mut session = S::start(&server, &format!("exit {code}")).await;
        let ran = finish(&mut session).await;
        assert_eq!(ran.exit, Some(code), "{ran:?}");
        assert!(ran.stdout.is_empty() && ran.stderr.is_empty(), "{ran:?}");
    }
}

/// stdout and stderr, interleaved by the command, arrive apart.
async fn stdout_and_stderr_apart<S: Stderr + ExitCode>() {
    let server = S::server().await;
    let script = "echo out1; echo err1 >&2; echo out2; echo err2 >&2";
    let mut session = S::start(&server, script).await;
    let ran = finish(&mut session).await;
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "out1\nout2\n");
    assert_eq!(String::from_utf8_lossy(&ran.stderr), "err1\nerr2\n");
    assert_eq!(ran.exit, Some(0));
}

/// `cat` echoes input, newlines and an empty line included, and ends when
/// its input is closed.
async fn stdin_round_trip_with_close<S: CloseStdin + ExitCode>() {
    let server = S::server().await;
    let mut session = S::start(&server, "exec cat").await;
    let input = "line one\nline two\n\nend";
    session.send(input.as_bytes()).await;
    assert_eq!(read_until(&mut session, "end").await, input);
    session.close_stdin().await;
    let rest = finish(&mut session).await;
    assert!(rest.stdout.is_empty(), "{rest:?}");
    assert_eq!(rest.exit, Some(0));
}

/// 10 MiB through `head -c` (which ends after exactly that much) comes
/// back intact and in order, compared byte for byte as it arrives.
async fn ten_mib_intact<S: Session>() {
    let server = S::server().await;
    let mut filter = Filter::<S>::start(&server, 10).await;
    filter.feed(0..10).await;
    filter.ends_with_all_output().await;
}

/// An interactive shell on a terminal: it runs what is typed, `stty size`
/// shows the size the session started with, then the size it was given.
async fn pty_echo_and_resize<S: Pty>() {
    let server = S::server().await;
    let mut session = S::start_pty(&server, 24, 80).await;
    // What the terminal echoes of the line holds `$((6*7))`, not `42`.
    session.send(b"stty size; echo tty-$((6*7))\n").await;
    let seen = read_until(&mut session, "tty-42").await;
    assert!(seen.contains("24 80"), "{seen:?}");
    session.resize(33, 111).await;
    session.send(b"stty size; echo tty-$((6*8))\n").await;
    let seen = read_until(&mut session, "tty-48").await;
    assert!(seen.contains("33 111"), "{seen:?}");
    session.send(b"exit\n").await;
    finish(&mut session).await;
}

/// The first number that stands between `before` and `after` in `text`.
fn number_between(text: &str, before: &str, after: &str) -> Option<u32> {
    text.split(before)
        .filter_map(|rest| rest.split_once(after))
        .find_map(|(number, _)| number.parse().ok())
}

/// A terminal session outlives its client: a client that comes back
/// reaches the same shell and is shown its screen, redrawn.
async fn reattach_with_redraw<S: Reattach>() {
    let server = S::server().await;
    let mut session = S::start_pty(&server, 24, 80).await;
    session.send(b"echo shell-$$-$((40+2))\n").await;
    let seen = read_until(&mut session, "-42").await;
    let pid = number_between(&seen, "shell-", "-42").expect("the shell's pid");
    let handle = session.detach().await;

    let mut session = S::reattach(&server, handle).await;
    let screen = read_until(&mut session, &format!("shell-{pid}-42")).await;
    assert!(
        screen.contains("\x1b["),
        "a redraw is escape sequences: {screen:?}"
    );
    session.send(b"echo shell-$$-$((40+3))\n").await;
    read_until(&mut session, &format!("shell-{pid}-43")).await;
    session.send(b"exit\n").await;
    finish(&mut session).await;
}

/// Input the protocol refuses is answered with its error, while a session
/// of the same server runs on and gets every byte of its output.
async fn bad_input_answered_while_another_runs<S: Session>() {
    let server = S::server().await;
    let mut filter = Filter::<S>::start(&server, 2).await;
    filter.feed(0..1).await;
    let error = filter.session.refused().await;
    assert!(!error.is_empty(), "an error without a word");
    filter.feed(1..2).await;
    filter.ends_with_all_output().await;
}

matrix!(echo: wsep, pow, webterm, webexec, execwire_wsep, execwire_pow, execwire_webterm, execwire_webexec);

// webexec: a pane's channel closes when the process exits, with no code.
matrix!(exit_code: wsep, pow, webterm, execwire_wsep, execwire_pow, execwire_webterm);

// pow streams stdout only (the end of stderr is a failed call's reason);
// webexec merges both into the pane.
matrix!(stdout_and_stderr_apart: wsep, webterm, execwire_wsep, execwire_webterm);

// webexec: a pane has no end-of-input (pane input is typed, as into a
// terminal); its input round trip is in `ten_mib_intact`.
matrix!(stdin_round_trip_with_close: wsep, pow, webterm, execwire_wsep, execwire_pow, execwire_webterm);

matrix!(ten_mib_intact: wsep, pow, webterm, webexec, execwire_wsep, execwire_pow, execwire_webterm, execwire_webexec);

// pow and webterm run commands on pipes, never on a terminal.
matrix!(pty_echo_and_resize: wsep, webexec, execwire_wsep, execwire_webexec);

// pow and webterm sessions end with their connection.
matrix!(reattach_with_redraw: wsep, webexec, execwire_wsep, execwire_webexec);

matrix!(bad_input_answered_while_another_runs: wsep, pow, webterm, webexec, execwire_wsep, execwire_pow, execwire_webterm, execwire_webexec);
