//! One pow-1 WebSocket session, over any [`Transport`].
//!
//! Before the call, text frames are kept (up to a byte limit) and delivered
//! in order once the process starts; the reader never stops for them, so a
//! flood of early input cannot deadlock the call behind it. After the call,
//! input waits in a queue the process drains at its own pace while control
//! frames are still read, so a cancel is seen at once however much input is
//! queued. When the process ends: its remaining output, one result frame, a
//! 1000 close with an empty reason, and the client's half of the handshake.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use exec_core::{
    ByteSender, CloseReason, Message, TextDecoder, Transport, TransportError, TransportRx,
    TransportTx,
};
use pow_proto::{Call, Outcome, Signal, reason};
use server_kit::{Access, Probe};
use tokio_util::sync::CancellationToken;

use crate::process::{CancelCause, Handler, io_pair};

/// What every session of one server shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) call_timeout: Duration,
    pub(crate) max_pending_input: usize,
    pub(crate) shutdown: CancellationToken,
    pub(crate) probe: Probe,
}

/// How long to wait for the client's close after ours.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);

/// Input in flight to the process, beyond what the connection holds in
/// `Pending` (at most `max_pending_input`): one of the largest messages.
const INPUT_BYTES: usize = 1 << 20;

/// Output bytes in flight between the process and the socket: a few of
/// the largest chunks a command's read returns (64 KiB).
const OUTPUT_BYTES: usize = 256 * 1024;

/// Serves one session; a viewer's ([`Access::View`]) call is rejected:
/// every pow-1 call starts a process.
pub(crate) async fn run<T: Transport>(transport: T, shared: Shared, access: Access) {
    let (mut tx, mut rx) = transport.split();
    let mut pending = Pending::default();
    let call = tokio::select! {
        call = wait_for_call(&mut rx, &mut pending, shared.max_pending_input, &shared.probe) => call,
        () = tokio::time::sleep(shared.call_timeout) => Err(Some(reason::TIMEOUT.to_owned())),
        () = shared.shutdown.cancelled() => Err(Some("server shutting down".to_owned())),
    };
    let call = match call {
        Ok(call) => call,
        Err(Some(why)) => return finish(tx, rx, Outcome::Rejected { reason: why }).await,
        Err(None) => return, // the client left before calling
    };
    if access.is_view() {
        shared.probe.viewer_refused();
        tracing::info!(call = %call.call, "viewer refused");
        let reason = "read-only (view token): starting a process is not allowed".to_owned();
        return finish(tx, rx, Outcome::Rejected { reason }).await;
    }
    let process = match shared.handler.get(&call.call, &call.params).await {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("failed to get process: {e}");
            return finish(tx, rx, Outcome::Rejected { reason }).await;
        }
    };
    tracing::debug!(call = %call.call, params = call.params.len(), "process started");
    let _running = shared.probe.process();
    let (io, input, mut output) = io_pair(INPUT_BYTES, OUTPUT_BYTES);
    let cancel = io.cancel.clone();
    let mut task = tokio::spawn(process.run(io));
    let mut input = Some(input);
    let mut close_requested = false;
    let mut cancels = 0;
    let mut client_gone = false;
    // The client sent what the WebSocket layer cannot read (a message
    // over the limit, text that is not UTF-8): nothing more is read, but
    // the client still gets the result that says so.
    let mut unreadable = false;
    let mut decoder = TextDecoder::new();

    let joined = loop {
        if close_requested && pending.is_empty() {
            input = None; // the process sees the end of its input
        }
        let feeder = input.as_ref().zip(pending.front_len());
        tokio::select! {
            biased;
            result = &mut task => break result,
            permit = reserve(feeder) => match permit {
                Some(permit) => {
                    if let Some(chunk) = pending.pop() {
                        // The process may return meanwhile; then its input
                        // is gone with it, as below.
                        let _ = permit.send(chunk);
                    }
                }
                None => {
                    // The process dropped its input: later input goes nowhere.
                    input = None;
                    pending.clear();
                }
            },
            chunk = output.recv() => {
                if let Some(chunk) = chunk
                    && !client_gone
                    && send_text(&mut tx, decoder.push(&chunk)).await.is_err()
                {
                    client_gone = true;
                    cancel.cancel(CancelCause::ClientGone);
                }
            }
            msg = rx.recv(), if !client_gone && !unreadable && pending.bytes < shared.max_pending_input => match msg {
                Ok(Some(Message::Text(data))) => {
                    if input.is_some() && !close_requested {
                        pending.push(data);
                    }
                }
                Ok(Some(Message::Binary(frame))) => match Signal::decode(&frame) {
                    Ok(Signal::Close) => close_requested = true,
                    Ok(Signal::Cancel) => {
                        cancels += 1;
                        cancel.cancel(CancelCause::ClientCancel);
                        pending.clear();
                        if cancels >= 2 {
                            close_requested = true;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "bad control frame");
                        shared.probe.protocol_error();
                        cancel.cancel(CancelCause::ProtocolError);
                    }
                },
                Err(e @ (TransportError::MessageTooLarge | TransportError::Malformed(_))) => {
                    tracing::debug!(error = %e, "unreadable message");
                    shared.probe.protocol_error();
                    unreadable = true;
                    cancel.cancel(CancelCause::ProtocolError);
                    input = None;
                    pending.clear();
                }
                Ok(None) | Err(_) => {
                    client_gone = true;
                    cancel.cancel(CancelCause::ClientGone);
                    input = None;
                    pending.clear();
                }
            },
            () = shared.shutdown.cancelled(), if !cancel_fired(&cancel) => {
                cancel.cancel(CancelCause::Shutdown);
            }
        }
    };
    if client_gone {
        return;
    }
    // Output the process wrote before it returned comes before the result.
    while let Some(chunk) = output.try_recv() {
        if send_text(&mut tx, decoder.push(&chunk)).await.is_err() {
            return;
        }
    }
    if send_text(&mut tx, decoder.finish()).await.is_err() {
        return;
    }
    let outcome = match joined {
        Ok(Ok(value)) => Outcome::Fulfilled { value },
        Ok(Err(reason)) => Outcome::Rejected { reason },
        Err(e) => {
            tracing::warn!(error = %e, "process task failed");
            Outcome::Rejected {
                reason: "process failed".into(),
            }
        }
    };
    finish(tx, rx, outcome).await;
}

fn cancel_fired(cancel: &crate::process::Cancel) -> bool {
    cancel.cause().is_some()
}

/// Room in the process's input for the next pending chunk; never ready
/// without a chunk (or without input).
async fn reserve(
    feeder: Option<(&ByteSender<Bytes>, usize)>,
) -> Option<exec_core::BytePermit<Bytes>> {
    match feeder {
        Some((sender, len)) => sender.reserve(len).await,
        None => std::future::pending().await,
    }
}

/// Sends decoded output as a text frame; nothing when it is empty.
async fn send_text<T: TransportTx + ?Sized>(tx: &mut T, text: Bytes) -> Result<(), TransportError> {
    if text.is_empty() {
        return Ok(());
    }
    tx.send(Message::Text(text)).await
}

/// Input that arrived but the process has not taken yet.
#[derive(Debug, Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    bytes: usize,
}

impl Pending {
    fn push(&mut self, chunk: Bytes) {
        self.bytes += chunk.len();
        self.chunks.push_back(chunk);
    }

    fn pop(&mut self) -> Option<Bytes> {
        let chunk = self.chunks.pop_front()?;
        self.bytes -= chunk.len();
        Some(chunk)
    }

    fn clear(&mut self) {
        self.chunks.clear();
        self.bytes = 0;
    }

    fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The length of the next chunk, if any.
    fn front_len(&self) -> Option<usize> {
        self.chunks.front().map(Bytes::len)
    }
}

/// Reads until the call, keeping text frames. `Err(None)`: the client left;
/// `Err(Some(reason))`: reject with that reason.
async fn wait_for_call<R: TransportRx>(
    rx: &mut R,
    pending: &mut Pending,
    max_pending: usize,
    probe: &Probe,
) -> Result<Call, Option<String>> {
    loop {
        match rx.recv().await {
            Ok(Some(Message::Text(data))) => {
                if pending.bytes + data.len() > max_pending {
                    probe.protocol_error();
                    return Err(Some(format!(
                        "{}: more than {max_pending} bytes of input before the call",
                        reason::PROTOCOL_ERROR
                    )));
                }
                pending.push(data);
            }
            Ok(Some(Message::Binary(frame))) => {
                return Call::decode(&frame).map_err(|e| {
                    tracing::debug!(error = %e, "bad call");
                    probe.protocol_error();
                    Some(reason::PROTOCOL_ERROR.to_owned())
                });
            }
            Err(e @ (TransportError::MessageTooLarge | TransportError::Malformed(_))) => {
                tracing::debug!(error = %e, "unreadable message before the call");
                probe.protocol_error();
                return Err(Some(reason::PROTOCOL_ERROR.to_owned()));
            }
            Ok(None) | Err(_) => return Err(None),
        }
    }
}

/// The result frame, a normal close (1000 on the wire) with an empty
/// reason, and the client's close: the whole handshake, which the
/// reference client checks.
async fn finish<Tx: TransportTx, Rx: TransportRx>(mut tx: Tx, mut rx: Rx, outcome: Outcome) {
    if tx
        .send(Message::Binary(outcome.encode().into()))
        .await
        .is_err()
    {
        return;
    }
    if tx.close(CloseReason::Normal, "").await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Ok(Some(_)) = rx.recv().await {}
    })
    .await;
}
