//! The `wsep` command, run as a user runs it.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Output, Stdio};

use crate::{BULK, Kind, Server, local_sha256, test_data};

on_every_server!(sync:
    piped_input_round_trip_of_ten_mebibytes,
    exit_codes_and_stderr_apart,
    a_command_that_cannot_start_is_255_with_the_reason,
    a_terminal_gets_its_size_and_term,
);

/// A file of test data, removed when dropped.
struct DataFile {
    path: PathBuf,
    data: Vec<u8>,
}

impl DataFile {
    fn new(count: usize) -> DataFile {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "wsep-client-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(name);
        let data = test_data(count);
        std::fs::write(&path, &data).unwrap();
        DataFile { path, data }
    }

    fn stdin(&self) -> Stdio {
        std::fs::File::open(&self.path).unwrap().into()
    }
}

impl Drop for DataFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `wsep URL -- sh -c sha256sum < FILE` and `wsep URL -- cat < FILE`: input
/// is sent (the reference needs `stdin: true` said), the command's output
/// comes back whole, and the command exits although the reference never
/// closes the connection.
fn piped_input_round_trip_of_ten_mebibytes(server: &Server) {
    let file = DataFile::new(BULK);
    let out = server
        .wsep(&["--", "sh", "-c", "sha256sum"])
        .stdin(file.stdin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        local_sha256(&file.data)
    );

    let out = server
        .wsep(&["--", "cat"])
        .stdin(file.stdin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert_eq!(out.stdout.len(), file.data.len());
    assert_eq!(local_sha256(&out.stdout), local_sha256(&file.data));
}

fn exit_codes_and_stderr_apart(server: &Server) {
    let mut child = server
        .wsep(&["--", "sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.stdout, b"HELLO\n");
    assert_eq!(out.stderr, b"oops\n");
    assert_eq!(out.status.code(), Some(3));

    let ok = server.wsep(&["--", "true"]).output().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", stderr_of(&ok));
    // Killed by a signal: -1 on the wire, 255 here, as with ssh.
    let killed = server
        .wsep(&["--", "sh", "-c", "kill -KILL $$"])
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), Some(255), "{}", stderr_of(&killed));
}

fn a_command_that_cannot_start_is_255_with_the_reason(server: &Server) {
    let out = server.wsep(&["--", "/no/such/program"]).output().unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = stderr_of(&out);
    // Ours gives the error, the reference "failed to serve execer".
    assert!(
        stderr.starts_with(
            "wsep: running \"/no/such/program\": server closed the connection (1011): "
        ),
        "{stderr}"
    );
}

/// No local terminal here: the remote one is 24x80 on both servers (the
/// reference's own default is 80x24), and gets the local `TERM`, or
/// xterm-256color without one (the reference sets none).
fn a_terminal_gets_its_size_and_term(server: &Server) {
    let script = "echo \"$TERM $FOO $WSEP_TTY\"; stty size; test -t 0";
    let out = server
        .wsep(&["--tty", "-e", "FOO=bar", "--", "sh", "-c", script])
        .env("TERM", "vt220")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    // Ours may send a redraw of the screen instead when the command wrote
    // before the client attached: the text is there either way.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("vt220 bar true") && stdout.contains("24 80"),
        "{stdout:?}"
    );

    let out = server
        .wsep(&["--tty", "--", "sh", "-c", "echo $TERM"])
        .env_remove("TERM")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("xterm-256color"), "{stdout:?}");
}

#[test]
fn a_wrong_token_is_255_and_says_so() {
    // Only ours has tokens; the reference's dev/server takes anyone.
    let server = Server::start(Kind::Ours);
    let out = server
        .wsep(&["--", "true"])
        .env("WSEP_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    assert!(
        stderr_of(&out).contains("unauthorized"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn nothing_listening_is_255_and_says_so() {
    // A port that was just free and is no more listened on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsep"))
        .arg(format!("ws://{addr}/"))
        .args(["--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let stderr = stderr_of(&out);
    assert!(
        stderr.starts_with(&format!(
            "wsep: running \"true\": cannot connect to ws://{addr}/: "
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
