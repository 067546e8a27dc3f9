//! exec-core behind a transport of your own: commands over plain TCP lines.
//!
//! The wire: the client's first line is a command for `sh -c`; each later
//! line is input for it (a line holding only `.` ends the input); the
//! server sends the command's output as it comes, then `exit: CODE` and
//! closes. `nc 127.0.0.1 PORT` is a client.
//!
//! The session below is written against `exec_core::Transport` only: the
//! same function would serve a WebSocket, a data channel or a memory pair.
//!
//! `cargo run -p execwire-examples --bin line-shell` prints the address.
//! (No token, no TLS: loopback only. The servers of this workspace show
//! how to put auth in front of the engine.)

use async_trait::async_trait;
use bytes::Bytes;
use exec_core::{
    CloseReason, Command, Event, Events, Message, Process, StdinWriter, Transport, TransportError,
    TransportRx, TransportTx,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Longest line accepted: a longer one closes the connection.
const MAX_LINE: usize = 64 * 1024;

/// A TCP connection as a `Transport`: one message per line in, raw bytes out.
struct Lines(TcpStream);

struct LinesTx(OwnedWriteHalf);

struct LinesRx(BufReader<OwnedReadHalf>);

impl Transport for Lines {
    type Tx = LinesTx;
    type Rx = LinesRx;
    fn split(self) -> (LinesTx, LinesRx) {
        let (read, write) = self.0.into_split();
        (LinesTx(write), LinesRx(BufReader::new(read)))
    }
}

fn io_error(e: std::io::Error) -> TransportError {
    TransportError::Other(e.to_string())
}

#[async_trait]
impl TransportTx for LinesTx {
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        self.0.write_all(msg.payload()).await.map_err(io_error)
    }

    async fn close(&mut self, reason: CloseReason, text: &str) -> Result<(), TransportError> {
        // This wire has no close frame: an error is a last line.
        if reason != CloseReason::Normal {
            let line = format!("error: {text}\n");
            self.0.write_all(line.as_bytes()).await.map_err(io_error)?;
        }
        self.0.shutdown().await.map_err(io_error)
    }
}

#[async_trait]
impl TransportRx for LinesRx {
    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        let mut line = Vec::new();
        let mut limited = (&mut self.0).take(MAX_LINE as u64 + 1);
        let n = limited
            .read_until(b'\n', &mut line)
            .await
            .map_err(io_error)?;
        if n == 0 {
            return Ok(None);
        }
        if line.len() > MAX_LINE {
            return Err(TransportError::MessageTooLarge);
        }
        Ok(Some(Message::Binary(Bytes::from(line))))
    }
}

/// One session: a command, its input, its output, its exit.
async fn session<T: Transport>(transport: T) -> Result<(), TransportError> {
    let (mut tx, mut rx) = transport.split();
    let Some(first) = rx.recv().await? else {
        return Ok(());
    };
    let line = String::from_utf8_lossy(first.payload())
        .trim_end()
        .to_owned();
    let mut process = match Process::spawn(&Command::new("sh").args(["-c", &line])) {
        Ok(process) => process,
        Err(e) => return tx.close(CloseReason::Internal, &e.to_string()).await,
    };
    // Input goes through its own task, so a command that does not read
    // never holds up its output.
    let stdin = process
        .take_stdin()
        .map(|s| StdinWriter::new(s, 256 * 1024));
    let mut events = Events::new(process);
    let mut input_open = stdin.is_some();
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Stdout(data) | Event::Stderr(data))) => {
                    tx.send(Message::Binary(data)).await?;
                }
                Some(Ok(Event::Exit(status))) => {
                    let code = status.code.map_or_else(
                        || format!("{}", status.signal.map_or(-1, |s| 128 + s.number())),
                        |c| c.to_string(),
                    );
                    tx.send(Message::text(format!("exit: {code}\n"))).await?;
                    return tx.close(CloseReason::Normal, "").await;
                }
                Some(Err(e)) => return tx.close(CloseReason::Internal, &e.to_string()).await,
                None => return Ok(()),
            },
            msg = rx.recv(), if input_open => match (msg, &stdin) {
                (Err(TransportError::MessageTooLarge), _) => {
                    let text = format!("a line is longer than {MAX_LINE} bytes");
                    return tx.close(CloseReason::TooBig, &text).await;
                }
                (Err(e), _) => return Err(e),
                (Ok(Some(line)), Some(stdin)) if line.payload().as_ref() != b".\n" => {
                    if stdin.send(line.payload().clone()).await.is_err() {
                        input_open = false;
                    }
                }
                (_, stdin) => {
                    // `.`, or the client stopped sending: end of input.
                    stdin.iter().for_each(|s| s.close());
                    input_open = false;
                }
            },
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("line-shell listening on {}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            if let Err(e) = session(Lines(stream)).await {
                eprintln!("{peer}: {e}");
            }
        });
    }
}
