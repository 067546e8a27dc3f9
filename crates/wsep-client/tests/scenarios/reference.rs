//! A stand-in for coder's reference wsep server, as strict as the original.
//!
//! Written from the reference's code (`cdr.dev/wsep`, newest master:
//! `server.go`, `session.go`, `localexec_unix.go`, `internal/proto`, and
//! `dev/server/main.go`, the server its README tells a user to run), and
//! checked by hand against that server built from its repository. It runs
//! real processes through exec-core and frames output with wsep-proto;
//! `start` and `exit_code` are parsed and written here, field by field as Go
//! reads and writes them, because wsep-proto is deliberately lenient.
//!
//! What it does as the reference does:
//! - `start` is Go's `proto.ClientStartHeader`: `command` must be an object
//!   (the flat seed form fails), a missing field is zero, so a missing
//!   `stdin` turns input off. A terminal with 0 rows gets 80 rows, with 0
//!   columns 24 columns (the reference's swapped defaults). `TERM` is not
//!   set: the command inherits the server's environment.
//! - `pid`, output, and after both output streams ended `exit_code` with
//!   `exit_code` and `error` only. Then nothing: the connection stays open
//!   until the client closes it (the reference's `Serve` returns only when
//!   its read fails, and `dev/server` closes only then).
//! - Every failure ends the session with 1011 "failed to serve execer" (the
//!   real error goes to the log) and the process is killed: a start that
//!   fails, a second `start`, `resize` before `start`, a malformed message,
//!   non-empty `stdin` when input is off or closed or the process has
//!   stopped reading. A message over 64000 bytes: 1009.
//! - `stdin` or `close_stdin` before `start`: the reference dereferences a
//!   nil process, the handler panics and the connection is left hanging.
//! - `close_stdin` on a terminal closes the terminal (it is the same file as
//!   the output): nothing is sent after it, no exit code either.
//! - `resize` applies what it is given (0x0 too) and is ignored without a
//!   terminal. Unknown types are ignored; text and binary frames are read.
//! - `tty` with a non-empty `id` is a session that outlives the connection,
//!   which the reference runs in GNU screen (`screen -S UUID -xRR`, ended
//!   30 s after the last client left in `dev/server`). Modelled here by an
//!   exec-core pane: the same shell on every attach, a redraw of its screen
//!   first (screen redraws too), several clients at once. From what the
//!   real one did by hand: the size a re-attach asks for is not applied
//!   (screen keeps the window's size), and when the session's command ends
//!   the exit code is screen's, 0, whatever the command returned. The pid
//!   is the pane's, where the reference reports its `screen` client's.
//!
//! Not modelled: a server without `screen` (the reference then runs the
//! command plainly and forgets the id); screen's own output (status line,
//! `^S` as its command key); a re-attach within milliseconds of a
//! disconnect, which by hand got no output at all; that the reference kills
//! only the command and not the command's children.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use exec_core::{
    Claim, Command, Event, Events, ExitStatus, Lease, Pane, PaneConfig, PaneEvent, Process,
    ProcessControl, PtySize, Replay, Session, Stdin,
};
use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use wsep_proto::OutputStream;

/// `maxMessageSize` of the reference, its read limit.
const READ_LIMIT: usize = 64_000;
/// `dev/server`'s `SessionTimeout`.
const SESSION_TIMEOUT: Duration = Duration::from_secs(30);
/// The reference's `defaultRows` and `defaultCols`: swapped.
const DEFAULT_ROWS: u16 = 80;
const DEFAULT_COLS: u16 = 24;
/// The only close reason `dev/server` gives.
const FAILED: &str = "failed to serve execer";

/// Serves every connection on `listener` until `shutdown` completes.
pub(crate) async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let sessions: Session = Session::default();
    let accepting = async {
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(connection(stream, sessions.clone()));
            }
        }
    };
    tokio::select! {
        () = accepting => {}
        () = shutdown => {}
    }
    sessions.end_all();
}

/// How `Serve` ended.
#[derive(Debug)]
enum End {
    /// The client closed or went away: `dev/server`'s close is then only the
    /// answer to the client's.
    ClientLeft,
    /// `Serve` returned an error (the text is what the reference logs).
    Failed(String),
    /// The read limit was exceeded.
    TooBig,
    /// The handler panicked: nothing more is read or sent.
    Panicked,
}

fn failed(why: impl std::fmt::Display) -> End {
    End::Failed(why.to_string())
}

/// What `start` started.
enum Started {
    /// Pipes; `stdin` is `None` when input is off or was closed.
    Pipes { stdin: Option<Stdin> },
    /// A terminal of this connection.
    Terminal {
        stdin: Stdin,
        control: ProcessControl,
    },
    /// A named session; the lease holds its idle timeout off.
    Session { pane: Pane, _lease: Lease },
    /// `close_stdin` closed the terminal.
    HungUp,
}

struct Connection {
    out: mpsc::Sender<Message>,
    sessions: Session,
    started: Option<Started>,
    output: Option<JoinHandle<()>>,
}

async fn connection(stream: TcpStream, sessions: Session) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(READ_LIMIT))
        .max_frame_size(Some(READ_LIMIT));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut rx) = ws.split();
    let (out, mut outgoing) = mpsc::channel::<Message>(4);
    // The reference's output goroutines and its read loop all write to the
    // socket; here they queue for one writer.
    let writer = tokio::spawn(async move {
        while let Some(message) = outgoing.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
    });
    let mut conn = Connection {
        out,
        sessions,
        started: None,
        output: None,
    };
    let end = conn.serve(&mut rx).await;
    // `Serve`'s context ends: the command is killed (a session's client
    // detaches).
    conn.stop();
    let close = match end {
        End::ClientLeft => None,
        End::Failed(why) => {
            eprintln!("reference stand-in: failed to serve execer: {why}");
            Some((CloseCode::Error, FAILED.to_owned()))
        }
        End::TooBig => Some((
            CloseCode::Size,
            format!("read limited at {} bytes", READ_LIMIT + 1),
        )),
        End::Panicked => {
            eprintln!("reference stand-in: nil process: the handler panics");
            return std::future::pending().await;
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = conn.out.send(Message::Close(Some(frame))).await;
    }
    drop(conn);
    // Until the client's answer (tungstenite answers a client's close).
    while let Some(Ok(_)) = rx.next().await {}
    let _ = writer.await;
}

/// The header every message starts with.
#[derive(Deserialize)]
struct GoHeader {
    #[serde(rename = "type", default)]
    kind: String,
}

/// `proto.ClientStartHeader`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GoStart {
    id: String,
    command: GoCommand,
}

/// `proto.Command`; Go reads `null` slices as empty.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GoCommand {
    command: String,
    args: Option<Vec<String>>,
    stdin: bool,
    tty: bool,
    rows: u16,
    cols: u16,
    uid: u32,
    gid: u32,
    env: Option<Vec<String>>,
    working_dir: String,
}

/// `proto.ClientResizeHeader`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct GoResize {
    rows: u16,
    cols: u16,
}

impl Connection {
    /// The read loop of `Serve`.
    async fn serve(&mut self, rx: &mut SplitStream<WebSocketStream<TcpStream>>) -> End {
        loop {
            let frame = match rx.next().await {
                None | Some(Ok(Message::Close(_))) => return End::ClientLeft,
                Some(Ok(Message::Binary(b))) => b,
                Some(Ok(Message::Text(t))) => Bytes::from(t),
                Some(Ok(_)) => continue,
                Some(Err(tungstenite::Error::Capacity(_))) => return End::TooBig,
                Some(Err(_)) => return End::ClientLeft,
            };
            if let Err(end) = self.handle(&frame).await {
                return end;
            }
        }
    }

    async fn handle(&mut self, frame: &Bytes) -> Result<(), End> {
        let (header, body) = match frame.iter().position(|&b| b == b'\n') {
            Some(nl) => (&frame[..nl], frame.slice(nl + 1..)),
            None => (&frame[..], Bytes::new()),
        };
        let header: GoHeader =
            serde_json::from_slice(header).map_err(|e| failed(format!("unmarshal header: {e}")))?;
        match header.kind.as_str() {
            // The whole message, body included, is parsed as the header.
            "start" => self.start(frame).await,
            "resize" => self.resize(frame),
            "stdin" => self.stdin(body).await,
            "close_stdin" => self.close_stdin().await,
            _ => Ok(()), // "unrecognized header type": logged only
        }
    }

    async fn start(&mut self, frame: &Bytes) -> Result<(), End> {
        if self.started.is_some() {
            return Err(failed("command already started"));
        }
        let start: GoStart = serde_json::from_slice(frame)
            .map_err(|e| failed(format!("unmarshal start header: {e}")))?;
        let mut c = start.command;
        if c.tty {
            if c.rows == 0 {
                c.rows = DEFAULT_ROWS;
            }
            if c.cols == 0 {
                c.cols = DEFAULT_COLS;
            }
        }
        let cmd = local_command(&c);
        let (pid, started, output) = if c.tty && !start.id.is_empty() {
            let config = PaneConfig {
                chunk: wsep_proto::MAX_OUTPUT_BODY,
                ..PaneConfig::default()
            };
            let (_, pane, lease, _) = self
                .sessions
                .get_or_spawn(
                    &start.id,
                    &cmd,
                    config,
                    Claim {
                        client: "wsep",
                        idle_timeout: Some(SESSION_TIMEOUT),
                    },
                )
                .await
                .map_err(failed)?;
            let attachment = pane.attach(Replay::Screen);
            let output = tokio::spawn(pump_session(attachment, self.out.clone()));
            (
                pane.pid(),
                Started::Session {
                    pane,
                    _lease: lease,
                },
                output,
            )
        } else {
            let mut process = Process::spawn(&cmd).map_err(|e| failed(format!("start: {e}")))?;
            let pid = process.pid();
            let control = process.control();
            let stdin = process.take_stdin();
            let started = match (c.tty, stdin) {
                (true, Some(stdin)) => Started::Terminal { stdin, control },
                (_, stdin) => Started::Pipes { stdin },
            };
            let events = Events::with_prefixes(
                process,
                wsep_proto::STDOUT_HEADER,
                wsep_proto::STDERR_HEADER,
                wsep_proto::MAX_MESSAGE_SIZE,
            );
            (
                pid,
                started,
                tokio::spawn(pump_process(events, self.out.clone())),
            )
        };
        self.started = Some(started);
        let pid_message = wsep_proto::ServerMsg::Pid(i64::from(pid)).encode();
        // Queued before the output task's first message can be.
        self.out
            .send(Message::Binary(pid_message))
            .await
            .map_err(|_| End::ClientLeft)?;
        self.output = Some(output);
        Ok(())
    }

    fn resize(&mut self, frame: &Bytes) -> Result<(), End> {
        let started = self
            .started
            .as_ref()
            .ok_or_else(|| failed("resize sent before command started"))?;
        let size: GoResize = serde_json::from_slice(frame)
            .map_err(|e| failed(format!("unmarshal resize header: {e}")))?;
        let result = match started {
            Started::Terminal { control, .. } => control.resize(PtySize {
                rows: size.rows,
                cols: size.cols,
            }),
            // The pane's screen model needs a size; screen has one too.
            Started::Session { pane, .. } => {
                pane.resize(PtySize::or_default(size.rows, size.cols), "wsep")
            }
            Started::Pipes { .. } | Started::HungUp => Ok(()),
        };
        result.map_err(|e| failed(format!("resize: {e}")))
    }

    async fn stdin(&mut self, body: Bytes) -> Result<(), End> {
        let started = self.started.as_mut().ok_or(End::Panicked)?;
        // `io.Copy` from an empty body writes nothing, so nothing can fail.
        if body.is_empty() {
            return Ok(());
        }
        let result = match started {
            Started::Pipes { stdin: Some(stdin) } | Started::Terminal { stdin, .. } => {
                stdin.write_all(&body).await
            }
            Started::Session { pane, .. } => pane.write(body).await,
            Started::Pipes { stdin: None } => {
                return Err(failed("read stdin: stdin is not enabled for this command"));
            }
            Started::HungUp => return Err(failed("read stdin: file already closed")),
        };
        result.map_err(|e| failed(format!("read stdin: {e}")))
    }

    async fn close_stdin(&mut self) -> Result<(), End> {
        let started = self.started.as_mut().ok_or(End::Panicked)?;
        match started {
            Started::Pipes { stdin } => {
                if let Some(stdin) = stdin.take() {
                    stdin
                        .close()
                        .await
                        .map_err(|e| failed(format!("close stdin: {e}")))?;
                }
            }
            Started::Terminal { .. } | Started::Session { .. } => {
                // The terminal's only file is closed: output ends unreported,
                // the command (or the session's client) is hung up.
                self.stop();
                self.started = Some(Started::HungUp);
            }
            Started::HungUp => {}
        }
        Ok(())
    }

    /// Ends output and drops the command (a session is only detached).
    fn stop(&mut self) {
        if let Some(output) = self.output.take() {
            output.abort();
        }
        self.started = None;
    }
}

/// What `LocalExecer.Start` runs.
fn local_command(c: &GoCommand) -> Command {
    let mut cmd = Command::new(&c.command).args(c.args.iter().flatten());
    for entry in c.env.iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            cmd = cmd.env(key, value);
        }
    }
    if !c.working_dir.is_empty() {
        cmd = cmd.current_dir(&c.working_dir);
    }
    if c.uid != 0 {
        cmd = cmd.uid(c.uid);
    }
    if c.gid != 0 {
        cmd = cmd.gid(c.gid);
    }
    if c.tty {
        cmd.env("WSEP_TTY", "true").pty(PtySize {
            rows: c.rows,
            cols: c.cols,
        })
    } else {
        cmd.stdin(c.stdin)
    }
}

/// `ServerExitCodeHeader`, as Go marshals it (fields in order, no `code`).
fn exit_code(code: i32, error: &str) -> Message {
    let error = serde_json::Value::from(error);
    let header = format!(r#"{{"type":"exit_code","exit_code":{code},"error":{error}}}"#);
    Message::Binary(header.into())
}

fn exit_message(status: ExitStatus) -> Message {
    let error = if status.success() {
        String::new()
    } else {
        server_kit::go_exit_text(&status)
    };
    exit_code(server_kit::go_exit_code(&status), &error)
}

/// Output, then the exit code, then nothing.
async fn pump_process(mut events: Events, out: mpsc::Sender<Message>) {
    while let Some(Ok(event)) = events.next().await {
        let message = match event {
            Event::Stdout(b) | Event::Stderr(b) => Message::Binary(b),
            Event::Exit(status) => exit_message(status),
        };
        if out.send(message).await.is_err() {
            return;
        }
    }
}

/// A session's output; its end is screen's, which exits 0.
async fn pump_session(mut attachment: exec_core::Attachment, out: mpsc::Sender<Message>) {
    while let Some(event) = attachment.next().await {
        let messages: Vec<Message> = match event {
            PaneEvent::Output(b) | PaneEvent::Redraw(b) => b
                .chunks(wsep_proto::MAX_OUTPUT_BODY)
                .map(|piece| {
                    Message::Binary(wsep_proto::encode_output(OutputStream::Stdout, piece))
                })
                .collect(),
            PaneEvent::Exit(_) => vec![exit_code(0, "")],
        };
        for message in messages {
            if out.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// The stand-in's own strictness, with a raw WebSocket: where it would fail
/// a client that assumed this project's server.
mod strictness {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    use crate::{Kind, Server};

    type Raw = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    async fn raw(server: &Server, messages: &[&str]) -> Raw {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url.as_str())
            .await
            .unwrap();
        for m in messages {
            ws.send(Message::Binary(m.as_bytes().to_vec().into()))
                .await
                .unwrap();
        }
        ws
    }

    /// The messages up to the next close frame, and its code and reason.
    async fn until_close(ws: &mut Raw) -> (Vec<String>, u16, String) {
        let mut seen = Vec::new();
        while let Some(message) = ws.next().await {
            match message.unwrap() {
                Message::Binary(b) => seen.push(String::from_utf8_lossy(&b).into_owned()),
                Message::Close(Some(frame)) => {
                    return (seen, frame.code.into(), frame.reason.to_string());
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        panic!("no close frame after {seen:?}")
    }

    #[tokio::test]
    async fn a_missing_stdin_flag_turns_input_off() {
        let server = Server::start(Kind::Reference);
        let mut ws = raw(
            &server,
            &[
                // A command that outlives the input: the failure, not its
                // exit, must end the session.
                r#"{"type":"start","command":{"command":"sleep","args":["60"]}}"#,
                "{\"type\":\"stdin\"}\nhi",
            ],
        )
        .await;
        let (seen, code, reason) = until_close(&mut ws).await;
        assert!(seen.len() == 1 && seen[0].contains("\"pid\""), "{seen:?}");
        assert_eq!((code, reason.as_str()), (1011, "failed to serve execer"));
    }

    #[tokio::test]
    async fn no_close_after_the_exit_code() {
        let server = Server::start(Kind::Reference);
        let mut ws = raw(
            &server,
            &[r#"{"type":"start","command":{"command":"true"}}"#],
        )
        .await;
        let mut exit = None;
        while exit.is_none() {
            if let Message::Binary(b) = ws.next().await.unwrap().unwrap() {
                let text = String::from_utf8_lossy(&b).into_owned();
                if text.contains("exit_code") {
                    exit = Some(text);
                }
            }
        }
        assert_eq!(
            exit.as_deref(),
            Some(r#"{"type":"exit_code","exit_code":0,"error":""}"#)
        );
        // A ping is answered after anything sent before it: a pong, not a
        // close, proves the connection was left open.
        ws.send(Message::Ping(b"still there?".to_vec().into()))
            .await
            .unwrap();
        match ws.next().await.unwrap().unwrap() {
            Message::Pong(payload) => assert_eq!(&payload[..], b"still there?"),
            other => panic!("expected the pong, got {other:?}"),
        }
        ws.close(None).await.unwrap();
    }

    #[tokio::test]
    async fn a_terminal_without_a_size_gets_the_swapped_default() {
        let server = Server::start(Kind::Reference);
        let mut ws = raw(
            &server,
            &[r#"{"type":"start","command":{"command":"stty","args":["size"],"tty":true}}"#],
        )
        .await;
        let mut seen = String::new();
        while !seen.contains("exit_code") {
            if let Message::Binary(b) = ws.next().await.unwrap().unwrap() {
                seen.push_str(&String::from_utf8_lossy(&b));
            }
        }
        assert!(seen.contains("80 24"), "{seen:?}");
    }

    #[tokio::test]
    async fn the_seed_form_and_early_resize_fail_the_session() {
        let server = Server::start(Kind::Reference);
        for messages in [
            &[r#"{"type":"start","command":"echo","args":["x"],"tty":false}"#][..],
            &[r#"{"type":"resize","rows":24,"cols":80}"#],
            &[
                r#"{"type":"start","command":{"command":"sleep","args":["60"]}}"#,
                r#"{"type":"start","command":{"command":"sleep","args":["60"]}}"#,
            ],
        ] {
            let mut ws = raw(&server, messages).await;
            let (_, code, reason) = until_close(&mut ws).await;
            assert_eq!((code, reason.as_str()), (1011, "failed to serve execer"));
        }
    }
}
