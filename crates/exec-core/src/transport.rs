//! Message transports: what a protocol session talks through.
//!
//! A WebSocket and a WebRTC data channel are both ordered, message-oriented,
//! text-or-binary pipes with a close that carries a code and a reason. A
//! protocol session is written once against [`Transport`] and is served over
//! either, and tested over [`memory_pair`] without sockets.

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

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

/// Why a transport was closed, as the peer or we said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// WebSocket close code (1000 normal, 1008 policy, 1009 too big, 1011 error, ...).
    pub code: u16,
    /// Human-readable reason; at most 123 bytes on a WebSocket.
    pub reason: String,
}

/// The sending half of a transport.
#[async_trait]
pub trait TransportTx: Send + 'static {
    /// Sends one message; waits while the peer is not reading (bounded
    /// buffers all the way down).
    async fn send(&mut self, msg: Message) -> Result<(), TransportError>;

    /// Sends a close with `code` and `reason` (cut to 123 bytes on a UTF-8
    /// boundary). Nothing may be sent after it.
    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError>;
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

/// Cuts `reason` to at most `max` bytes without splitting a character.
pub fn truncate_reason(reason: &str, max: usize) -> &str {
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason.get(..end).unwrap_or("")
}

/// The longest close reason a WebSocket close frame can carry.
pub const MAX_CLOSE_REASON: usize = 123;

enum Frame {
    Msg(Message),
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
    tx: Option<mpsc::Sender<Frame>>,
}

/// Receiving half of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemoryRx {
    rx: mpsc::Receiver<Frame>,
    close: Option<CloseFrame>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Frame::Msg(m) => m.fmt(f),
            Frame::Close(c) => c.fmt(f),
        }
    }
}

/// Two connected in-memory transport ends, each buffering at most `depth`
/// messages in flight (so backpressure behaves as over a socket).
pub fn memory_pair(depth: usize) -> (MemoryTransport, MemoryTransport) {
    let (a_tx, b_rx) = mpsc::channel(depth.max(1));
    let (b_tx, a_rx) = mpsc::channel(depth.max(1));
    let end = |tx, rx| MemoryTransport {
        tx: MemoryTx { tx: Some(tx) },
        rx: MemoryRx { rx, close: None },
    };
    (end(a_tx, a_rx), end(b_tx, b_rx))
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
        let tx = self.tx.as_ref().ok_or(TransportError::AlreadyClosed)?;
        tx.send(Frame::Msg(msg))
            .await
            .map_err(|_| TransportError::Closed)
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        let tx = self.tx.take().ok_or(TransportError::AlreadyClosed)?;
        let reason = truncate_reason(reason, MAX_CLOSE_REASON).to_owned();
        tx.send(Frame::Close(CloseFrame { code, reason }))
            .await
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
            Some(Frame::Msg(m)) => Ok(Some(m)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_cut_on_char_boundaries() {
        assert_eq!(truncate_reason("abc", 123), "abc");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_reason(&long, 123);
        assert!(cut.len() <= 123);
        assert_eq!(cut.len(), 122);
    }

    #[tokio::test]
    async fn memory_pair_carries_messages_and_close() {
        let (a, b) = memory_pair(4);
        let (mut atx, _arx) = a.split();
        let (_btx, mut brx) = b.split();
        atx.send(Message::text("hi")).await.unwrap();
        atx.close(1000, "bye").await.unwrap();
        assert_eq!(brx.recv().await.unwrap(), Some(Message::text("hi")));
        assert_eq!(brx.recv().await.unwrap(), None);
        assert_eq!(brx.close_frame().unwrap().code, 1000);
        assert!(matches!(
            atx.send(Message::text("late")).await,
            Err(TransportError::AlreadyClosed)
        ));
    }
}
