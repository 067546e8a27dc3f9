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

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, http};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wsep_proto::{ClientMsg, ServerMsg, StartCommand};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

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
    /// The server closed the connection with an error (for example 1011
    /// when the command could not be started).
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

/// The sending side of a started command.
#[derive(Debug)]
pub struct Input {
    sink: SplitSink<Ws, Message>,
}

/// The receiving side of a started command.
#[derive(Debug)]
pub struct Outputs {
    stream: SplitStream<Ws>,
    pid: i64,
    exited: bool,
}

/// Opens a WebSocket to `url` with the token as a bearer header.
pub async fn connect(url: &str, token: Option<&str>) -> Result<Ws, Error> {
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
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(response)) if response.status() == 401 => {
            Err(Error::Unauthorized)
        }
        Err(tungstenite::Error::Http(response)) => Err(Error::Refused(response.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

/// Connects, sends `start`, and waits for the `pid`.
pub async fn start(
    url: &str,
    token: Option<&str>,
    command: StartCommand,
) -> Result<(Input, Outputs), Error> {
    let ws = connect(url, token).await?;
    let (sink, stream) = ws.split();
    let mut input = Input { sink };
    let mut outputs = Outputs {
        stream,
        pid: 0,
        exited: false,
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
        self.sink
            .send(Message::Binary(msg.encode().into()))
            .await
            .map_err(Error::from)
    }

    /// Sends input, split into messages that fit the protocol's limit.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        let max = wsep_proto::MAX_OUTPUT_BODY;
        for piece in data.chunks(max) {
            let msg = wsep_proto::encode_stdin(piece);
            self.sink.send(Message::Binary(msg)).await?;
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
        self.sink.send(Message::Binary(message)).await?;
        Ok(())
    }

    /// Tells the remote terminal its new size.
    pub async fn resize(&mut self, rows: u16, cols: u16) -> Result<(), Error> {
        self.send(&ClientMsg::Resize { rows, cols }).await
    }

    /// Ends the command's input.
    pub async fn close_stdin(&mut self) -> Result<(), Error> {
        self.send(&ClientMsg::CloseStdin).await
    }

    /// Sends an arbitrary raw message (for tests of servers' error handling).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), Error> {
        self.sink.send(msg).await.map_err(Error::from)
    }

    /// Closes the connection without waiting for the command (a named
    /// terminal session stays alive on the server).
    pub async fn disconnect(mut self) -> Result<(), Error> {
        self.sink.close().await.map_err(Error::from)
    }
}

impl Outputs {
    /// The remote process id.
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
                    if code != 1000 || !self.exited {
                        // Keep reading so the close handshake completes.
                        while let Some(Ok(_)) = self.stream.next().await {}
                        return Err(Error::Closed { code, reason });
                    }
                }
                Some(Ok(_)) => {} // ping/pong/frames: handled by tungstenite
            }
        }
    }

    /// The next output; `Ok(None)` once the server closed normally after the
    /// exit code.
    pub async fn next(&mut self) -> Result<Option<Output>, Error> {
        loop {
            let msg = match self.recv().await? {
                Some(m) => m,
                None if self.exited => return Ok(None),
                None => return Err(Error::Lost),
            };
            return Ok(Some(match msg {
                ServerMsg::Stdout(b) => Output::Stdout(b),
                ServerMsg::Stderr(b) => Output::Stderr(b),
                ServerMsg::ExitCode { code, error } => {
                    self.exited = true;
                    Output::Exit { code, error }
                }
                ServerMsg::Pid(_) | ServerMsg::Unknown(_) => continue,
            }));
        }
    }
}
