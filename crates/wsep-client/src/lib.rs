//! A wsep client: start a command on a wsep server and talk to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wsep_client::Error> {
//! use wsep_client::{Output, start};
//! use wsep_proto::StartCommand;
//! let cmd = StartCommand { command: "echo".into(), args: vec!["hi".into()], ..Default::default() };
//! let (mut input, mut output) = start("ws://127.0.0.1:8080/", Some("token"), cmd).await?;
//! input.close_stdin().await?;
//! while let Some(event) = output.next().await? {
//!     if let Output::Exit { code, .. } = event { println!("exit {code}"); }
//! }
//! # Ok(()) }
//! ```
//!
//! # Two kinds of server
//!
//! It works with this project's `wsep-server` and with coder's reference
//! server (`cdr.dev/wsep`, its `dev/server`), which differ where the protocol
//! leaves things unsaid. Rather than guess which one it talks to, the client
//! only does what both read the same way:
//!
//! - `start` says everything: `stdin` always (the reference reads a missing
//!   flag as "no input" and fails the session on the first `stdin`), and for
//!   a terminal a non-zero size (the reference's default is 80 rows by 24
//!   columns, swapped) and a `TERM` (the reference sets none). See
//!   [`start`].
//! - `exit_code` ends the command: the client closes the connection itself
//!   (1000) instead of waiting for the server, because the reference never
//!   closes. A close that follows the exit code, whatever its code, changes
//!   nothing. See [`Outputs::next`].
//! - Input that one of them would punish with an error close is refused
//!   here: input after `close_stdin` or when `stdin` is off, a zero terminal
//!   size. On a terminal, [`Input::close_stdin`] types end-of-file (Ctrl-D):
//!   the reference would close the terminal instead and never send an exit
//!   code.
//!
//! Nothing is sent before the server's `pid` (the reference fails a session
//! that gets `resize` before `start`, and crashes on early `stdin`): an
//! [`Input`] only exists once the command runs.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsep_proto::{ClientMsg, ServerMsg, StartCommand};

mod tls;

pub use tls::Trust;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The sending half of the socket, shared: [`Input`] writes through it and
/// [`Outputs`] closes through it when the command ends.
type SharedSink = Arc<Mutex<SplitSink<Ws, Message>>>;

/// Terminal rows sent when a terminal is asked for without a size.
pub const DEFAULT_ROWS: u16 = 24;
/// Terminal columns sent when a terminal is asked for without a size.
pub const DEFAULT_COLS: u16 = 80;
/// `TERM` sent for a terminal whose `env` names none: the reference server
/// passes its own environment on, which under a service manager has no
/// `TERM`, and programs then refuse to draw.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// How long a close we began waits for the server's answer (and for a
/// sender blocked on a full socket to let go). A server that never answers
/// must not keep a finished command from returning.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// The terminal's end-of-file character (Ctrl-D).
const VEOF: u8 = 0x04;

/// Errors of the wsep client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the token (HTTP 401).
    #[error("unauthorized: the server refused the token")]
    Unauthorized,
    /// The server answered the upgrade with another HTTP status.
    #[error("server refused the connection: HTTP {0}")]
    Refused(u16),
    /// No WebSocket could be opened (nothing listening, DNS, TLS, a
    /// non-WebSocket answer).
    #[error("cannot connect to {url}: {error}")]
    Connect {
        /// The URL that was tried.
        url: String,
        /// Why it failed (in the message, not chained: its own chain
        /// repeats itself).
        error: tungstenite::Error,
    },
    /// The server closed the connection with an error before the exit code
    /// (for example 1011 when the command could not be started; the
    /// reference server's reason is always "failed to serve execer").
    #[error("server closed the connection ({code}): {reason}")]
    Closed {
        /// WebSocket close code.
        code: u16,
        /// The server's reason.
        reason: String,
    },
    /// The connection ended without a close frame or an exit code.
    #[error("connection lost before the command finished")]
    Lost,
    /// The server sent a message this client cannot decode.
    #[error("bad message from server: {0}")]
    Decode(#[from] wsep_proto::DecodeError),
    /// The URL is not a ws:// or wss:// URL, or a header is invalid.
    #[error("bad request: {0}")]
    Request(String),
    /// Input for a command started with `stdin: Some(false)`.
    #[error("stdin is disabled for this command")]
    InputDisabled,
    /// Input after [`Input::close_stdin`].
    #[error("stdin was already closed")]
    InputClosed,
    /// The TLS trust given is unusable (an unreadable CA file, a
    /// malformed fingerprint).
    #[error("tls: {0}")]
    Tls(String),
    /// The WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tungstenite::Error),
}

/// What the remote command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Bytes on stdout (everything, under a terminal).
    Stdout(Bytes),
    /// Bytes on stderr.
    Stderr(Bytes),
    /// The command ended.
    Exit {
        /// Exit code; -1 when a signal ended it.
        code: i32,
        /// "" on success, else text like "exit status 2".
        error: String,
    },
}

/// Whether input may still be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InputState {
    Open,
    Closed,
    Disabled,
}

/// The sending side of a started command.
#[derive(Debug)]
pub struct Input {
    sink: SharedSink,
    tty: bool,
    state: InputState,
}

/// Where the receiving side is in the command's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// The exit code came and our close went out; the server's close is
    /// still owed.
    Exited,
    Done,
}

/// The receiving side of a started command.
#[derive(Debug)]
pub struct Outputs {
    stream: SplitStream<Ws>,
    sink: SharedSink,
    pid: i64,
    phase: Phase,
}

/// Opens a WebSocket to `url` with the token as a bearer header; a
/// `wss://` server must have a certificate the system trusts.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Ws, Error> {
    connect_trusting(url, token, &Trust::System).await
}

/// [`connect`], a `wss://` server trusted as `trust` says.
pub async fn connect_trusting(url: &str, token: Option<&str>, trust: &Trust) -> Result<Ws, Error> {
    let mut request = url
        .into_client_request()
        .map_err(|e| Error::Request(e.to_string()))?;
    if let Some(token) = token {
        let value = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| Error::Request(e.to_string()))?;
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    }
    // tungstenite zero-fills its read buffer before every read: size it to
    // one protocol message (servers send up to 64000 bytes, terminal output
    // included) rather than its 128 KiB default.
    let config = WebSocketConfig::default()
        .read_buffer_size(wsep_proto::MAX_MESSAGE_SIZE + 64)
        .max_message_size(Some(wsep_proto::MAX_MESSAGE_SIZE))
        .max_frame_size(Some(wsep_proto::MAX_MESSAGE_SIZE))
        .write_buffer_size(wsep_proto::MAX_MESSAGE_SIZE)
        .max_write_buffer_size(4 * wsep_proto::MAX_MESSAGE_SIZE);
    let connector = trust.connector()?;
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match connecting.await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) if response.status() == 401 => {
            Err(Error::Unauthorized)
        }
        Err(tungstenite::Error::Http(response)) => Err(Error::Refused(response.status().as_u16())),
        Err(error) => Err(Error::Connect {
            url: url.to_owned(),
            error,
        }),
    }
}

/// `command` with every field a server might default differently made
/// explicit: what is sent is what both kinds of server run.
///
/// - `stdin: None` becomes `Some(true)`: input on, as this project's server
///   and the seed protocol read a missing flag, and as the reference reads
///   only an explicit `true`.
/// - a terminal with a zero `rows` or `cols` gets [`DEFAULT_ROWS`] x
///   [`DEFAULT_COLS`] for it;
/// - a terminal without `TERM=` in `env` gets [`DEFAULT_TERM`] (first, so
///   that a caller's own entries still win where a server appends them).
///
/// An `id` without `tty` is sent as given; both servers ignore it there.
pub fn explicit(mut command: StartCommand) -> StartCommand {
    command.stdin = Some(command.stdin.unwrap_or(true));
    if command.tty {
        (command.rows, command.cols) = size_or_default(command.rows, command.cols);
        if !command.env.iter().any(|entry| entry.starts_with("TERM=")) {
            command.env.insert(0, format!("TERM={DEFAULT_TERM}"));
        }
    }
    command
}

/// A zero dimension replaced by the default for it.
fn size_or_default(rows: u16, cols: u16) -> (u16, u16) {
    (
        if rows == 0 { DEFAULT_ROWS } else { rows },
        if cols == 0 { DEFAULT_COLS } else { cols },
    )
}

/// Connects, sends `start` (made [`explicit`]), and waits for the `pid`.
///
/// A server that cannot start the command closes instead, which is
/// [`Error::Closed`] (1011 from both kinds of server).
pub async fn start(
    url: &str,
    token: Option<&str>,
    command: StartCommand,
) -> Result<(Input, Outputs), Error> {
    start_trusting(url, token, command, &Trust::System).await
}

/// [`start`], a `wss://` server trusted as `trust` says.
pub async fn start_trusting(
    url: &str,
    token: Option<&str>,
    command: StartCommand,
    trust: &Trust,
) -> Result<(Input, Outputs), Error> {
    let command = explicit(command);
    let ws = connect_trusting(url, token, trust).await?;
    let (sink, stream) = ws.split();
    let sink = Arc::new(Mutex::new(sink));
    let mut input = Input {
        sink: sink.clone(),
        tty: command.tty,
        state: if command.tty || command.stdin_enabled() {
            InputState::Open
        } else {
            InputState::Disabled
        },
    };
    let mut outputs = Outputs {
        stream,
        sink,
        pid: 0,
        phase: Phase::Running,
    };
    input.send(&ClientMsg::Start(command)).await?;
    loop {
        match outputs.recv().await? {
            Some(ServerMsg::Pid(pid)) => {
                outputs.pid = pid;
                return Ok((input, outputs));
            }
            Some(_) => {} // unknown types are ignored, as the protocol says
            None => return Err(Error::Lost),
        }
    }
}

impl Input {
    async fn send(&mut self, msg: &ClientMsg) -> Result<(), Error> {
        self.send_message(Message::Binary(msg.encode().into()))
            .await
    }

    async fn send_message(&mut self, message: Message) -> Result<(), Error> {
        self.sink
            .lock()
            .await
            .send(message)
            .await
            .map_err(Error::from)
    }

    /// Whether input may be sent now; refusing here is what keeps a server
    /// from ending the session over it.
    fn check_open(&self) -> Result<(), Error> {
        match self.state {
            InputState::Open => Ok(()),
            InputState::Closed => Err(Error::InputClosed),
            InputState::Disabled => Err(Error::InputDisabled),
        }
    }

    /// Sends input, split into messages that fit the protocol's limit.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        for piece in data.chunks(wsep_proto::MAX_OUTPUT_BODY) {
            let msg = wsep_proto::encode_stdin(piece);
            self.send_message(Message::Binary(msg)).await?;
        }
        Ok(())
    }

    /// Sends an already encoded `stdin` message (it starts with
    /// [`wsep_proto::STDIN_HEADER`]): lets a sender read input straight into
    /// the message, saving a copy on bulk input.
    pub async fn write_encoded(&mut self, message: Bytes) -> Result<(), Error> {
        if !message.starts_with(wsep_proto::STDIN_HEADER)
            || message.len() > wsep_proto::MAX_MESSAGE_SIZE
        {
            return Err(Error::Request("not an encoded stdin message".into()));
        }
        self.check_open()?;
        self.send_message(Message::Binary(message)).await
    }

    /// Tells the remote terminal its new size. A zero dimension is sent as
    /// the default for it: the reference server would apply a 0x0 size.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), Error> {
        let (rows, cols) = size_or_default(rows, cols);
        self.send(&ClientMsg::Resize { rows, cols }).await
    }

    /// Ends the command's input. Without a terminal this sends
    /// `close_stdin` once (later calls do nothing, later writes are
    /// [`Error::InputClosed`]). On a terminal it types end-of-file
    /// (Ctrl-D), as a user would, and input stays open: the reference server
    /// would close the terminal itself on `close_stdin`, and the command
    /// would then never report an exit.
    pub async fn close_stdin(&mut self) -> Result<(), Error> {
        if self.tty {
            return self.write(&[VEOF]).await;
        }
        if self.state != InputState::Open {
            return Ok(());
        }
        self.state = InputState::Closed;
        self.send(&ClientMsg::CloseStdin).await
    }

    /// Sends an arbitrary raw message (for tests of servers' error handling).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), Error> {
        self.send_message(msg).await
    }

    /// Closes the connection (1000) without waiting for the command (a
    /// named terminal session stays alive on the server). The code is said:
    /// the reference server takes a close without one for a failure.
    pub async fn disconnect(mut self) -> Result<(), Error> {
        self.send_message(normal_close()).await
    }
}

/// A close frame with code 1000 and no reason.
fn normal_close() -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

impl Outputs {
    /// The remote process id. (The reference server reports a process of
    /// its own for a named session, a different one on every attach.)
    pub fn pid(&self) -> i64 {
        self.pid
    }

    async fn recv(&mut self) -> Result<Option<ServerMsg>, Error> {
        loop {
            match self.stream.next().await {
                None => return Ok(None),
                Some(Err(tungstenite::Error::ConnectionClosed)) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(Message::Binary(b))) => return Ok(Some(ServerMsg::decode(&b)?)),
                Some(Ok(Message::Text(t))) => {
                    return Ok(Some(ServerMsg::decode(&Bytes::from(t))?));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    // tungstenite has queued our answer; reading on sends it
                    // and sees the connection end.
                    self.drain().await;
                    return Err(Error::Closed { code, reason });
                }
                Some(Ok(_)) => {} // ping/pong/frames: handled by tungstenite
            }
        }
    }

    /// Reads until the connection ends, for at most [`CLOSE_WAIT`].
    async fn drain(&mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = self.stream.next().await {}
        })
        .await;
    }

    /// Begins the closing handshake with a normal closure. Errors are moot:
    /// the server may have closed first (this project's does), and then
    /// tungstenite answers its close by itself.
    async fn close(&mut self) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let _ = self.sink.lock().await.send(normal_close()).await;
        })
        .await;
    }

    /// The next output; `Ok(None)` after the exit code.
    ///
    /// The exit code is the end of the command: on receiving it the client
    /// sends its own normal close (the reference server never closes), and
    /// the call after [`Output::Exit`] waits briefly for the server's half
    /// of the handshake, then returns `Ok(None)`, whatever the server did.
    /// An error close before the exit code is [`Error::Closed`]; a socket
    /// that ends without either is [`Error::Lost`].
    pub async fn next(&mut self) -> Result<Option<Output>, Error> {
        loop {
            match self.phase {
                Phase::Running => {}
                Phase::Exited => {
                    self.drain().await;
                    self.phase = Phase::Done;
                    return Ok(None);
                }
                Phase::Done => return Ok(None),
            }
            let msg = match self.recv().await? {
                Some(m) => m,
                None => return Err(Error::Lost),
            };
            return Ok(Some(match msg {
                ServerMsg::Stdout(b) => Output::Stdout(b),
                ServerMsg::Stderr(b) => Output::Stderr(b),
                ServerMsg::ExitCode { code, error } => {
                    self.close().await;
                    self.phase = Phase::Exited;
                    Output::Exit { code, error }
                }
                ServerMsg::Pid(_) | ServerMsg::Unknown(_) => continue,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_json(command: StartCommand) -> serde_json::Value {
        let encoded = ClientMsg::Start(explicit(command)).encode();
        serde_json::from_slice(&encoded).unwrap_or_default()
    }

    #[test]
    fn stdin_is_always_said() {
        let plain = StartCommand {
            command: "cat".into(),
            ..StartCommand::default()
        };
        assert_eq!(start_json(plain.clone())["command"]["stdin"], true);
        let off = StartCommand {
            stdin: Some(false),
            ..plain
        };
        assert_eq!(start_json(off)["command"]["stdin"], false);
    }

    #[test]
    fn a_terminal_gets_a_size_and_a_term() {
        let value = start_json(StartCommand {
            command: "sh".into(),
            tty: true,
            rows: 40,
            env: vec!["A=b".into()],
            ..StartCommand::default()
        });
        let command = &value["command"];
        assert_eq!(
            (&command["rows"], &command["cols"]),
            (&40.into(), &80.into())
        );
        assert_eq!(
            command["env"],
            serde_json::json!(["TERM=xterm-256color", "A=b"])
        );
        assert_eq!(command["tty"], true);
        // No id given, none sent.
        assert!(value.get("id").is_none());
    }

    #[test]
    fn a_callers_term_is_kept() {
        let command = explicit(StartCommand {
            command: "sh".into(),
            tty: true,
            env: vec!["TERM=vt220".into()],
            ..StartCommand::default()
        });
        assert_eq!(command.env, ["TERM=vt220"]);
    }

    #[test]
    fn without_a_terminal_nothing_is_added() {
        let value = start_json(StartCommand {
            command: "ls".into(),
            id: "kept".into(),
            ..StartCommand::default()
        });
        assert_eq!(value["id"], "kept");
        let command = &value["command"];
        assert_eq!(command["tty"], false);
        assert!(command.get("rows").is_none() && command.get("env").is_none());
    }
}
