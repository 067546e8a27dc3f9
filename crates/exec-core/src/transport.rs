//! Message transports: what a protocol session talks through.
//!
//! A WebSocket and a WebRTC data channel are both ordered, message-oriented,
//! text-or-binary pipes with a close. A protocol session is written once
//! against [`Transport`] and is served over either, and tested over
//! [`memory_pair`] without sockets.
//!
//! Why a transport closes is said in the engine's words ([`CloseReason`]);
//! each adapter says it in its wire's terms (a WebSocket close code; a data
//! channel, which has none, says nothing), so no wire's numbers reach a
//! protocol session or the engine.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, mpsc};

use crate::budget::ByteBudget;
use crate::error::TransportError;

/// One message of a message-oriented transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; the bytes are valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Message {
    /// A text message from a string.
    pub fn text(s: impl Into<String>) -> Message {
        Message::Text(Bytes::from(s.into()))
    }

    /// The payload, whatever the kind.
    pub fn payload(&self) -> &Bytes {
        match self {
            Message::Text(b) | Message::Binary(b) => b,
        }
    }
}

/// Why a transport is closed, in the engine's words. Each adapter maps
/// these to its wire and back (the WebSocket adapter to 1000, 1001, 1008,
/// 1009 and 1011), so a protocol session never names a wire's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The conversation ended as it should: a command finished, the client
    /// said goodbye.
    Normal,
    /// This end is going away: the server shuts down.
    GoingAway,
    /// The peer broke the protocol's rules: a malformed or unexpected
    /// message, failed authentication, nothing sent in time.
    Policy,
    /// The peer sent a message larger than this end accepts.
    TooBig,
    /// This end failed: a command could not start, its output could not be
    /// read.
    Internal,
}

/// A close as the peer sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// Why, in the engine's words (the nearest one when the wire said
    /// something none of them names exactly).
    pub reason: CloseReason,
    /// The peer's human-readable text, empty when it gave none.
    pub text: String,
    /// The wire's own code, as it arrived, for a server that must pass it
    /// on or log it: a WebSocket close code (including ones no
    /// [`CloseReason`] names exactly, and 1005 for a close without one);
    /// `None` on a transport whose close has no code (in memory, a data
    /// channel).
    pub code: Option<u16>,
}

/// The sending half of a transport.
#[async_trait]
pub trait TransportTx: Send + 'static {
    /// Sends one message; waits while the peer is not reading (bounded
    /// buffers all the way down).
    async fn send(&mut self, msg: Message) -> Result<(), TransportError>;

    /// Closes the transport for `reason`, with `text` for a person reading
    /// it where the wire carries one (the adapter cuts it to what its wire
    /// takes). Nothing may be sent after it.
    async fn close(&mut self, reason: CloseReason, text: &str) -> Result<(), TransportError>;
}

/// The receiving half of a transport.
#[async_trait]
pub trait TransportRx: Send + 'static {
    /// The next message; `Ok(None)` once the peer closed (see
    /// [`TransportRx::close_frame`] for why).
    async fn recv(&mut self) -> Result<Option<Message>, TransportError>;

    /// The peer's close frame, once one arrived.
    fn close_frame(&self) -> Option<&CloseFrame> {
        None
    }
}

/// A bidirectional transport, split so that sending and receiving can run in
/// different tasks.
pub trait Transport: Send + 'static {
    /// The sending half.
    type Tx: TransportTx;
    /// The receiving half.
    type Rx: TransportRx;
    /// Splits into halves.
    fn split(self) -> (Self::Tx, Self::Rx);
}

enum Frame {
    /// A message, holding its room in the buffer until it is received.
    Msg(Message, Option<OwnedSemaphorePermit>),
    Close(CloseFrame),
}

/// One end of an in-memory transport.
#[derive(Debug)]
pub struct MemoryTransport {
    tx: MemoryTx,
    rx: MemoryRx,
}

/// Sending half of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemoryTx {
    tx: Option<mpsc::UnboundedSender<Frame>>,
    /// Room for what this direction has in flight.
    buffer: ByteBudget,
}

/// Receiving half of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemoryRx {
    rx: mpsc::UnboundedReceiver<Frame>,
    close: Option<CloseFrame>,
    /// Room for what this direction has in flight.
    buffer: ByteBudget,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Msg(m, _) => m.fmt(f),
            Frame::Close(c) => c.fmt(f),
        }
    }
}

/// Two connected in-memory transport ends, each way buffering at most
/// `max_bytes` of messages in flight, as a socket's buffers do: a sender
/// waits while the receiver has not taken them. A message larger than
/// that travels alone, when nothing else is in flight.
pub fn memory_pair(max_bytes: usize) -> (MemoryTransport, MemoryTransport) {
    let (a_tx, b_rx) = mpsc::unbounded_channel();
    let (b_tx, a_rx) = mpsc::unbounded_channel();
    let (a_to_b, b_to_a) = (ByteBudget::new(max_bytes), ByteBudget::new(max_bytes));
    let end = |tx, rx, sending: &ByteBudget, receiving: &ByteBudget| MemoryTransport {
        tx: MemoryTx {
            tx: Some(tx),
            buffer: sending.clone(),
        },
        rx: MemoryRx {
            rx,
            close: None,
            buffer: receiving.clone(),
        },
    };
    (
        end(a_tx, a_rx, &a_to_b, &b_to_a),
        end(b_tx, b_rx, &b_to_a, &a_to_b),
    )
}

impl Transport for MemoryTransport {
    type Tx = MemoryTx;
    type Rx = MemoryRx;
    fn split(self) -> (MemoryTx, MemoryRx) {
        (self.tx, self.rx)
    }
}

#[async_trait]
impl TransportTx for MemoryTx {
    async fn send(&mut self, msg: Message) -> Result<(), TransportError> {
        if self.tx.is_none() {
            return Err(TransportError::AlreadyClosed);
        }
        // Cancel-safe: dropped while waiting for room, nothing was sent.
        let room = self
            .buffer
            .reserve(msg.payload().len())
            .await
            .ok_or(TransportError::Closed)?;
        let tx = self.tx.as_ref().ok_or(TransportError::AlreadyClosed)?;
        tx.send(Frame::Msg(msg, Some(room)))
            .map_err(|_| TransportError::Closed)
    }

    async fn close(&mut self, reason: CloseReason, text: &str) -> Result<(), TransportError> {
        let tx = self.tx.take().ok_or(TransportError::AlreadyClosed)?;
        tx.send(Frame::Close(CloseFrame {
            reason,
            text: text.to_owned(),
            code: None,
        }))
        .map_err(|_| TransportError::Closed)
    }
}

#[async_trait]
impl TransportRx for MemoryRx {
    async fn recv(&mut self) -> Result<Option<Message>, TransportError> {
        if self.close.is_some() {
            return Ok(None);
        }
        match self.rx.recv().await {
            // Dropping the frame's permit makes its room free.
            Some(Frame::Msg(m, _room)) => Ok(Some(m)),
            Some(Frame::Close(c)) => {
                self.close = Some(c);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn close_frame(&self) -> Option<&CloseFrame> {
        self.close.as_ref()
    }
}

impl Drop for MemoryRx {
    /// Nobody will make room any more: a sender waiting for it fails.
    fn drop(&mut self) {
        self.buffer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_pair_carries_messages_and_close() {
        let (a, b) = memory_pair(64);
        let (mut atx, _arx) = a.split();
        let (_btx, mut brx) = b.split();
        atx.send(Message::text("hi")).await.unwrap();
        atx.close(CloseReason::Policy, "bye").await.unwrap();
        assert_eq!(brx.recv().await.unwrap(), Some(Message::text("hi")));
        assert_eq!(brx.recv().await.unwrap(), None);
        assert_eq!(
            brx.close_frame(),
            Some(&CloseFrame {
                reason: CloseReason::Policy,
                text: "bye".into(),
                code: None,
            })
        );
        // Still closed when asked again.
        assert_eq!(brx.recv().await.unwrap(), None);
        assert!(matches!(
            atx.send(Message::text("late")).await,
            Err(TransportError::AlreadyClosed)
        ));
    }

    #[tokio::test]
    async fn memory_pair_buffers_bytes_not_messages() {
        use futures_util::FutureExt as _;
        let (a, b) = memory_pair(10);
        let (mut atx, _arx) = a.split();
        let (_btx, mut brx) = b.split();
        // Many small messages fit where one count-bounded slot each would not.
        for _ in 0..10 {
            atx.send(Message::text("x")).await.unwrap();
        }
        assert!(
            atx.send(Message::text("y")).now_or_never().is_none(),
            "the buffer is full: the sender waits"
        );
        assert_eq!(brx.recv().await.unwrap(), Some(Message::text("x")));
        atx.send(Message::text("y")).await.unwrap();
        for _ in 0..10 {
            brx.recv().await.unwrap();
        }
        // A message larger than the buffer goes alone.
        let big = Message::Binary(Bytes::from(vec![7; 100]));
        atx.send(big.clone()).await.unwrap();
        assert!(atx.send(Message::text("z")).now_or_never().is_none());
        assert_eq!(brx.recv().await.unwrap(), Some(big));
        atx.send(Message::text("z")).await.unwrap();
        // A sender waiting for a receiver that went away fails.
        let waiting =
            tokio::spawn(async move { atx.send(Message::Binary(Bytes::from(vec![0; 10]))).await });
        drop(brx);
        assert!(matches!(
            waiting.await.unwrap(),
            Err(TransportError::Closed)
        ));
    }
}
