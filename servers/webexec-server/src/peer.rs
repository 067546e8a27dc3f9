//! One connected client: its control channel (`%`) and its pane channels.
//!
//! Panes belong to the [`Host`], not to the peer: when a peer goes, its
//! channels detach and the panes run on, their output kept in the pane's
//! replay ring for the next peer that reconnects.
//!
//! A peer talks to its client through exec-core [`Transport`]s only: the
//! channels the client opens arrive as [`Accepted`], and those the server
//! opens come from the peer's [`Connection`]. Served by WebRTC, those are
//! data channels (`rtc`); in the tests below they are
//! [`exec_core::memory_pair`] ends, so every control message is tested
//! without a WebRTC stack.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use exec_core::{
    Attachment, CloseReason, Framing, Lease, Message, Outgoing, OutputPump, Replay, Transport,
    TransportError, TransportRx, TransportTx,
};
use server_kit::{Access, Open, Probe};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use webexec_proto::{Label, Notice, Request};

use crate::host::{Host, PaneEntry, ToPeer};

/// What a peer needs of the connection its channels come from.
pub(crate) trait Connection: Clone + Send + Sync + 'static {
    /// One channel of the connection.
    type Channel: Transport;

    /// Largest message a pane's output is sent in: the connection's flow
    /// control may depend on it (see `rtc`).
    const OUTPUT_PIECE: usize;

    /// Opens a channel labelled `label` to the client; completes once it
    /// is open.
    fn open_channel(
        &self,
        label: &str,
    ) -> impl Future<Output = Result<Self::Channel, crate::Error>> + Send;

    /// Completes once the connection failed or was closed.
    fn ended(&self) -> impl Future<Output = ()> + Send;

    /// Closes the connection and every channel on it.
    fn close(&self) -> impl Future<Output = ()> + Send;
}

/// A channel the client opened, with the label it gave it.
#[derive(Debug)]
pub(crate) struct Accepted<T> {
    /// What the client asks of the channel (`%`, a command, `>ID`).
    pub(crate) label: String,
    /// The channel.
    pub(crate) channel: T,
}

type TxOf<C> = <<C as Connection>::Channel as Transport>::Tx;
type RxOf<C> = <<C as Connection>::Channel as Transport>::Rx;

/// The sending half of a control channel: the control task sends its
/// replies on it, the peer's own loop its notices.
type SharedTx<C> = Arc<Mutex<TxOf<C>>>;

/// How long a peer that must authenticate with an `auth` message (seed
/// `/connect` without a known token or fingerprint) has to do so.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Wrong `auth` tokens before the peer is disconnected.
const MAX_AUTH_FAILURES: u32 = 5;

/// One peer's state, shared by its channel tasks.
struct PeerState<C: Connection> {
    host: Arc<Host>,
    conn: C,
    id: u64,
    authenticated: AtomicBool,
    /// Authenticated with a view token: attaches and watches only.
    viewer: AtomicBool,
    auth_failures: AtomicU32,
    /// The marker a `restore` chose: reconnects replay from it.
    restore: Mutex<Option<u64>>,
    /// The PTY pane a seed `resize` without `pane_id` means: the latest
    /// one this peer opened or attached.
    last_pty: Mutex<Option<u64>>,
    next_message_id: AtomicI64,
    control: Mutex<Option<SharedTx<C>>>,
    /// Counted as a session while authenticated.
    session: std::sync::Mutex<Option<Open>>,
    /// The server's own requests (`get_clipboard`) awaiting the client's
    /// ack, by their message id.
    asks: Mutex<HashMap<i64, oneshot::Sender<Result<String, String>>>>,
    cancel: CancellationToken,
}

/// Serves one peer until it disconnects or the server shuts down.
/// `access` is `None` when the peer must still send `auth`.
pub(crate) async fn run<C: Connection>(
    host: Arc<Host>,
    conn: C,
    mut channels: mpsc::UnboundedReceiver<Accepted<C::Channel>>,
    access: Option<Access>,
    shutdown: CancellationToken,
) {
    let authenticated = access.is_some();
    let (id, mut notices) = host.join();
    let state = Arc::new(PeerState {
        host: host.clone(),
        conn: conn.clone(),
        id,
        authenticated: AtomicBool::new(authenticated),
        viewer: AtomicBool::new(access == Some(Access::View)),
        auth_failures: AtomicU32::new(0),
        restore: Mutex::new(None),
        last_pty: Mutex::new(None),
        next_message_id: AtomicI64::new(1),
        control: Mutex::new(None),
        session: std::sync::Mutex::new(authenticated.then(|| host.probe.session())),
        asks: Mutex::new(HashMap::new()),
        cancel: shutdown.child_token(),
    });
    let connection = host.probe.connection();
    tracing::info!(peer = id, authenticated, ?access, "peer connected");
    let auth_deadline = tokio::time::sleep(AUTH_TIMEOUT);
    tokio::pin!(auth_deadline);
    let tasks = tokio_util::task::TaskTracker::new();
    loop {
        tokio::select! {
            channel = channels.recv() => match channel {
                Some(channel) => {
                    tasks.spawn(on_channel(state.clone(), channel).instrument(tracing::Span::current()));
                }
                None => break,
            },
            Some(message) = notices.recv() => state.deliver(message).await,
            () = conn.ended() => break,
            () = state.cancel.cancelled() => break,
            // The condition is read when the select starts: an `auth` that
            // came while it waited is seen here, and the next round leaves
            // the deadline out.
            () = &mut auth_deadline, if !state.authenticated.load(Ordering::Acquire) => {
                if !state.authenticated.load(Ordering::Acquire) {
                    tracing::info!(peer = id, "no auth in time; disconnecting");
                    break;
                }
            }
        }
    }
    host.leave(id);
    state.cancel.cancel();
    conn.close().await;
    tasks.close();
    tasks.wait().await;
    drop(state.session_ended());
    drop(connection);
    tracing::info!(peer = id, "peer gone");
}

impl<C: Connection> PeerState<C> {
    /// The peer authenticated (`auth` on `%`) with `access`: it counts
    /// as a session.
    fn authenticate(&self, access: Access) {
        // The access level before the flag that makes it count.
        self.viewer.store(access.is_view(), Ordering::Release);
        if access.is_view() {
            self.host.set_viewer(self.id);
        }
        self.authenticated.store(true, Ordering::Release);
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            *session = Some(self.host.probe.session());
        }
    }

    /// True for a peer with a view token: it may attach and watch only.
    fn viewer(&self) -> bool {
        self.viewer.load(Ordering::Acquire)
    }

    /// Counts and logs a viewer's refused `what`, and says why, for a nack
    /// or a channel's close.
    fn refuse_viewer(&self, what: &str) -> String {
        self.host.probe.viewer_refused();
        tracing::info!(peer = self.id, what, "viewer refused");
        format!("read-only (view token): {what} is not allowed")
    }

    /// The peer's session count, taken to be dropped when it leaves.
    fn session_ended(&self) -> Option<Open> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Sends on the peer's control channel, counting what went out.
    async fn send_control(&self, control: &SharedTx<C>, text: String) -> Result<(), crate::Error> {
        let len = text.len();
        send(&mut *control.lock().await, text)
            .await
            .map_err(|_| crate::Error::ChannelClosed)?;
        self.host.probe.sent(len);
        Ok(())
    }

    fn message_id(&self) -> i64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Records `entry` as the pane a seed `resize` without `pane_id` means,
    /// when it has a terminal: called before the client learns the pane's
    /// id, so a resize right after that finds it.
    async fn note_pane(&self, entry: &PaneEntry) {
        if entry.size().is_some() {
            *self.last_pty.lock().await = Some(entry.id);
        }
    }

    /// Sends what the host has for this peer on its control channel.
    /// Nothing reaches a peer that has not authenticated: not the payload
    /// of a broadcast, not a clipboard request.
    async fn deliver(&self, message: ToPeer) {
        let control = self.control.lock().await.clone();
        let control = control.filter(|_| self.authenticated.load(Ordering::Acquire));
        let (notice, ask) = match message {
            ToPeer::Notice(notice) => (notice, None),
            ToPeer::Ask {
                notice,
                await_ack,
                reply,
            } => (notice, Some((await_ack, reply))),
        };
        let Some(control) = control else {
            if let Some((_, reply)) = ask {
                let _ = reply.send(Err("no authenticated control channel".into()));
            }
            return;
        };
        if self.viewer()
            && let Some((_, reply)) = ask
        {
            // Not the host's clipboard, neither way, for a read-only peer.
            let _ = reply.send(Err("the client is a read-only viewer".into()));
            return;
        }
        let id = self.message_id();
        let text = notice.encode(id, now_ms());
        match ask {
            None => {
                let _ = self.send_control(&control, text).await;
            }
            Some((false, reply)) => {
                let sent = self.send_control(&control, text).await;
                let _ = reply.send(sent.map(|()| String::new()).map_err(|e| e.to_string()));
            }
            Some((true, reply)) => {
                // Registered before sending: the ack may come at once.
                self.asks.lock().await.insert(id, reply);
                if let Err(e) = self.send_control(&control, text).await
                    && let Some(reply) = self.asks.lock().await.remove(&id)
                {
                    let _ = reply.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Hands the client's ack or nack of one of our requests to its asker.
    async fn answered(&self, reference: i64, answer: Result<String, String>) {
        if let Some(reply) = self.asks.lock().await.remove(&reference) {
            let _ = reply.send(answer);
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Sends `bytes` as one binary message: everything the server sends is
/// binary (see `rtc`'s `RtcTx::send` for why).
async fn send<Tx: TransportTx>(tx: &mut Tx, bytes: impl Into<Bytes>) -> Result<(), TransportError> {
    tx.send(Message::Binary(bytes.into())).await
}

/// Refuses a channel: says why on the channel itself (a data channel's
/// close carries no reason), then closes it.
async fn refuse<Tx: TransportTx>(mut tx: Tx, reason: CloseReason, why: String) {
    let _ = send(&mut tx, why.clone()).await;
    let _ = tx.close(reason, &why).await;
}

async fn on_channel<C: Connection>(state: Arc<PeerState<C>>, accepted: Accepted<C::Channel>) {
    let (mut tx, rx) = accepted.channel.split();
    let label = match webexec_proto::parse_label(&accepted.label) {
        Ok(label) => label,
        Err(e) => {
            tracing::info!(peer = state.id, error = %e, "bad channel label");
            state.host.probe.protocol_error();
            // The label is the only thing the client sent.
            return refuse(tx, CloseReason::Policy, e.to_string()).await;
        }
    };
    match label {
        Label::Control => control(state, tx, rx).await,
        _ if !state.authenticated.load(Ordering::Acquire) => {
            state.host.probe.protocol_error();
            refuse(tx, CloseReason::Policy, "not authenticated".into()).await;
        }
        Label::Command { .. } if state.viewer() => {
            let why = state.refuse_viewer("starting a command");
            refuse(tx, CloseReason::Policy, why).await;
        }
        Label::Command { size, argv } => match state.host.spawn_pane(&argv, size, None) {
            Ok((entry, attachment, lease)) => {
                state.note_pane(&entry).await;
                let hello = webexec_proto::pane_hello(entry.id, entry.size());
                if send(&mut tx, hello).await.is_ok() {
                    serve_pane(&state, tx, rx, entry, attachment, lease).await;
                }
            }
            Err(e) => {
                tracing::info!(peer = state.id, error = %e, "pane failed to start");
                refuse(tx, CloseReason::Internal, e.to_string()).await;
            }
        },
        Label::Reconnect { size, pane } => {
            let Some((entry, lease)) = state.host.attach_pane(pane) else {
                return refuse(tx, CloseReason::Policy, format!("no pane {pane}")).await;
            };
            match size {
                // A viewer's window does not size the pane.
                Some(_) if state.viewer() => {
                    state.refuse_viewer("resizing");
                }
                Some(size) => {
                    resize(&state, &entry, size.rows, size.cols).ok();
                }
                None => {}
            }
            state.note_pane(&entry).await;
            let hello = webexec_proto::pane_hello(entry.id, entry.size());
            if send(&mut tx, hello).await.is_ok() {
                let attachment = entry.pane.attach(replay_for(&state, entry.id).await);
                serve_pane(&state, tx, rx, entry, attachment, lease).await;
            }
        }
    }
}

/// Where a reconnect starts: after the restored marker when the peer chose
/// one that knows this pane, else with a screen redraw.
async fn replay_for<C: Connection>(state: &PeerState<C>, pane: u64) -> Replay {
    let marker = *state.restore.lock().await;
    match marker.and_then(|m| state.host.marker_offset(m, pane)) {
        Some(offset) => Replay::From(offset),
        None => Replay::Screen,
    }
}

fn resize<C: Connection>(
    state: &PeerState<C>,
    entry: &PaneEntry,
    rows: u16,
    cols: u16,
) -> Result<(), crate::Error> {
    entry.resize(rows, cols)?;
    let size = entry.size().unwrap_or(webexec_proto::Size { rows, cols });
    state.host.broadcast(
        state.id,
        &Notice::Resize {
            pane_id: entry.id,
            cols: size.cols,
            rows: size.rows,
        },
    );
    Ok(())
}

/// Streams a pane to a channel and the channel's input to the pane, until
/// the process exits (then the channel closes) or the channel closes (then
/// the pane runs on without this client). The client holds `_lease` on
/// the pane meanwhile.
async fn serve_pane<C: Connection>(
    state: &PeerState<C>,
    mut tx: TxOf<C>,
    mut rx: RxOf<C>,
    entry: Arc<PaneEntry>,
    attachment: Attachment,
    _lease: Lease,
) {
    let input = async {
        while let Ok(Some(msg)) = rx.recv().await {
            let (Message::Text(data) | Message::Binary(data)) = msg;
            // A viewer is never the peer at the keyboard: the clipboard
            // commands would hand it the host's clipboard.
            if !state.viewer() {
                state.host.touch(state.id);
            }
            state.host.probe.received(data.len());
            if state.viewer() {
                // A pane channel carries bytes only, no error: a viewer's
                // input is dropped (and counted), the channel stays.
                state.refuse_viewer("input");
                continue;
            }
            // An error means the process stopped reading for good; its
            // output side closes the channel when it exits.
            let _ = entry.pane.write(data).await;
        }
    };
    let output = pump_output(&mut tx, attachment, &state.host.probe, C::OUTPUT_PIECE);
    let close = tokio::select! {
        () = input => None,
        exited = output => exited.then_some(CloseReason::Normal),
        () = state.cancel.cancelled() => Some(CloseReason::GoingAway),
    };
    if let Some(reason) = close {
        let _ = tx.close(reason, "").await;
    }
}

/// Sends the pane's output, in messages of at most `piece` bytes (where
/// the stream is cut means nothing to its reader), until it exits (true)
/// or the channel closes (false).
///
/// A send waits while the channel has its fill unacknowledged; the
/// attachment keeps its offset meanwhile. That never holds back anyone
/// else: other panes have channels and pumps of their own, and a pane waits
/// only for its fastest client, so one that stopped reading falls behind
/// the ring and comes back with a redraw (or the oldest output kept) while
/// the others go on. A pane whose only client is slow is slowed, as a
/// terminal is, rather than losing output.
async fn pump_output<Tx: TransportTx>(
    tx: &mut Tx,
    attachment: Attachment,
    probe: &Probe,
    piece: usize,
) -> bool {
    let mut output = OutputPump::pane(attachment, Framing::plain(piece));
    // A pane's pump yields no errors.
    while let Some(Ok(item)) = output.next().await {
        let Outgoing::Output(_, data) = item else {
            return true;
        };
        let len = data.len();
        if send(tx, data).await.is_err() {
            return false;
        }
        probe.sent(len);
    }
    true
}

/// The control channel: requests in, acks/nacks and notices out.
async fn control<C: Connection>(state: Arc<PeerState<C>>, tx: TxOf<C>, mut rx: RxOf<C>) {
    let tx: SharedTx<C> = Arc::new(Mutex::new(tx));
    *state.control.lock().await = Some(tx.clone());
    loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg.ok().flatten(),
            () = state.cancel.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        let data = msg.payload();
        state.host.probe.received(data.len());
        let reply = match webexec_proto::decode_control(data) {
            Ok(incoming) => match incoming.request {
                Ok(request) => handle(&state, incoming.message_id, request).await,
                Err(description) => {
                    state.host.probe.protocol_error();
                    Some(Notice::Nack {
                        reference: incoming.message_id,
                        description,
                    })
                }
            },
            Err(e) => {
                state.host.probe.protocol_error();
                Some(Notice::Nack {
                    reference: 0,
                    description: e.to_string(),
                })
            }
        };
        if let Some(reply) = reply {
            let text = reply.encode(state.message_id(), now_ms());
            if state.send_control(&tx, text).await.is_err() {
                break;
            }
        }
        if state.auth_failures.load(Ordering::Relaxed) >= MAX_AUTH_FAILURES {
            tracing::info!(peer = state.id, "too many bad tokens; disconnecting");
            state.cancel.cancel();
            break;
        }
    }
    let mut control = state.control.lock().await;
    if control.as_ref().is_some_and(|c| Arc::ptr_eq(c, &tx)) {
        *control = None;
    }
}

fn ack(reference: i64, body: Option<String>) -> Option<Notice> {
    Some(Notice::Ack { reference, body })
}

fn nack(reference: i64, description: impl Into<String>) -> Option<Notice> {
    Some(Notice::Nack {
        reference,
        description: description.into(),
    })
}

/// Answers one request; `None` for messages that get no reply (the
/// client's own acks).
async fn handle<C: Connection>(
    state: &Arc<PeerState<C>>,
    reference: i64,
    request: Request,
) -> Option<Notice> {
    let host = &state.host;
    if let Request::Auth { token } = &request {
        return if let Some(access) = host.authorized.access(Some(token), None) {
            state.authenticate(access);
            ack(reference, host.payload())
        } else {
            state.auth_failures.fetch_add(1, Ordering::Relaxed);
            host.probe.auth_failed();
            nack(reference, "unauthorized")
        };
    }
    if !state.authenticated.load(Ordering::Acquire) {
        host.probe.protocol_error();
        return nack(reference, "not authenticated: send auth first");
    }
    if !state.viewer() {
        host.touch(state.id);
    }
    if state.viewer()
        && let Some(what) = match &request {
            Request::Resize { .. } => Some("resize"),
            Request::SetPayload { .. } => Some("set_payload"),
            Request::AddPane { .. } => Some("add_pane"),
            // Markers are shared and few: a viewer's would push out the
            // owners' (restoring one, a read, stays allowed).
            Request::Mark => Some("mark"),
            _ => None,
        }
    {
        return nack(reference, state.refuse_viewer(what));
    }
    match request {
        Request::Auth { .. } => None,
        Request::Resize {
            pane_id,
            cols,
            rows,
        } => {
            let id = match pane_id {
                Some(id) => Some(id),
                None => *state.last_pty.lock().await,
            };
            let Some(entry) = id.and_then(|id| host.pane(id)) else {
                return nack(reference, "no such pane");
            };
            match resize(state, &entry, rows, cols) {
                Ok(()) => ack(reference, None),
                Err(e) => nack(reference, e.to_string()),
            }
        }
        Request::GetPayload => ack(reference, host.payload()),
        Request::SetPayload { payload } => {
            let stored = host.set_payload(state.id, payload);
            ack(reference, stored)
        }
        Request::AddPane {
            command,
            rows,
            cols,
            parent,
        } => {
            let size = (rows != 0 || cols != 0).then_some(webexec_proto::Size { rows, cols });
            let (entry, attachment, lease) = match host.spawn_pane(&command, size, parent) {
                Ok(spawned) => spawned,
                Err(e) => return nack(reference, e.to_string()),
            };
            open_pane_channel(state, reference, entry, attachment, lease).await
        }
        Request::ReconnectPane { id } => {
            let Some((entry, lease)) = host.attach_pane(id) else {
                return nack(reference, format!("no pane {id}"));
            };
            let attachment = entry.pane.attach(replay_for(state, id).await);
            open_pane_channel(state, reference, entry, attachment, lease).await
        }
        Request::Mark => ack(reference, Some(host.mark().to_string())),
        Request::Restore { marker } => {
            if !host.has_marker(marker) {
                return nack(reference, format!("unknown marker {marker}"));
            }
            *state.restore.lock().await = Some(marker);
            ack(reference, host.payload())
        }
        Request::Ack { reference, body } => {
            let text = match body {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(text) => text,
                other => other.to_string(),
            };
            state.answered(reference, Ok(text)).await;
            None
        }
        Request::Nack {
            reference,
            description,
        } => {
            state.answered(reference, Err(description)).await;
            None
        }
    }
}

/// Opens `"<ref>:<pane>"` to the client, then acks with the pane id; the
/// channel is served in its own task.
async fn open_pane_channel<C: Connection>(
    state: &Arc<PeerState<C>>,
    reference: i64,
    entry: Arc<PaneEntry>,
    attachment: Attachment,
    lease: Lease,
) -> Option<Notice> {
    let label = webexec_proto::server_label(reference, entry.id);
    let channel = match state.conn.open_channel(&label).await {
        Ok(channel) => channel,
        Err(e) => return nack(reference, format!("cannot open channel: {e}")),
    };
    state.note_pane(&entry).await;
    let id = entry.id;
    let task_state = state.clone();
    tokio::spawn(
        async move {
            let (tx, rx) = channel.split();
            serve_pane(&task_state, tx, rx, entry, attachment, lease).await;
        }
        .instrument(tracing::Span::current()),
    );
    ack(reference, Some(id.to_string()))
}

#[cfg(test)]
mod tests {
    //! The peer over in-memory channels: each control message, the labels
    //! of the channels a client opens, and the timeouts, with real panes
    //! (real processes) and no WebRTC.

    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )]

    use exec_core::{CloseFrame, MemoryRx, MemoryTransport, MemoryTx, memory_pair};
    use serde_json::{Value, json};
    use server_kit::{AccessToken, Metrics};
    use webexec_proto::Envelope;

    use super::*;
    use crate::host::{AskError, Authorized, PaneDefaults};

    const TOKEN: &str = "sesame";
    const VIEW_TOKEN: &str = "peek";

    /// Output is sent in messages this small, so that a few bytes of it
    /// already cross messages.
    const PIECE: usize = 4;

    /// Bytes each way of a channel before its sender waits.
    const BUFFER: usize = 64 * 1024;

    /// A connection in memory: the channels the server opens reach the
    /// test's client through `opened`; ending it is cancelling `ended`.
    #[derive(Clone)]
    struct MemoryConnection {
        opened: mpsc::UnboundedSender<(String, MemoryTransport)>,
        ended: CancellationToken,
    }

    impl Connection for MemoryConnection {
        type Channel = MemoryTransport;

        const OUTPUT_PIECE: usize = PIECE;

        async fn open_channel(&self, label: &str) -> Result<MemoryTransport, crate::Error> {
            let (server, client) = memory_pair(BUFFER);
            self.opened
                .send((label.to_owned(), client))
                .map_err(|_| crate::Error::ChannelClosed)?;
            Ok(server)
        }

        async fn ended(&self) {
            self.ended.cancelled().await;
        }

        async fn close(&self) {
            self.ended.cancel();
        }
    }

    fn host() -> Arc<Host> {
        host_counted(&Metrics::new())
    }

    /// A host counting in `metrics`.
    fn host_counted(metrics: &Metrics) -> Arc<Host> {
        Arc::new(Host::new(
            metrics.probe("webexec"),
            Authorized {
                file: None,
                tokens: vec![AccessToken::new(TOKEN)],
                view_tokens: vec![AccessToken::new(VIEW_TOKEN)],
                open: false,
            },
            PaneDefaults {
                shell: "/bin/sh".into(),
                home: None,
                replay_bytes: 64 * 1024,
                record: None,
                env: Vec::new(),
            },
            exec_core::Session::default(),
        ))
    }

    /// One peer, served by [`run`] as the server serves a WebRTC peer, with
    /// the test as its client.
    struct Client {
        channels: mpsc::UnboundedSender<Accepted<MemoryTransport>>,
        opened: mpsc::UnboundedReceiver<(String, MemoryTransport)>,
        conn: MemoryConnection,
        peer: tokio::task::JoinHandle<()>,
    }

    impl Client {
        fn connect(host: &Arc<Host>, authenticated: bool) -> Client {
            let (channels, accepted) = mpsc::unbounded_channel();
            let (opened_tx, opened) = mpsc::unbounded_channel();
            let conn = MemoryConnection {
                opened: opened_tx,
                ended: CancellationToken::new(),
            };
            let peer = tokio::spawn(run(
                host.clone(),
                conn.clone(),
                accepted,
                authenticated.then_some(Access::Full),
                CancellationToken::new(),
            ));
            Client {
                channels,
                opened,
                conn,
                peer,
            }
        }

        /// Opens a channel labelled `label` to the server.
        fn open(&self, label: &str) -> Channel {
            let (client, server) = memory_pair(BUFFER);
            self.channels
                .send(Accepted {
                    label: label.to_owned(),
                    channel: server,
                })
                .unwrap();
            let (tx, rx) = client.split();
            Channel { tx, rx }
        }

        fn control(&self) -> Control {
            Control {
                channel: self.open("%"),
                next_id: 1,
            }
        }

        /// The next channel the server opened, and its label.
        async fn opened(&mut self) -> (String, Channel) {
            let (label, channel) = self.opened.recv().await.unwrap();
            let (tx, rx) = channel.split();
            (label, Channel { tx, rx })
        }

        /// Drops the connection, as when ICE fails; returns once the peer
        /// is gone.
        async fn leave(self) {
            self.conn.ended.cancel();
            self.peer.await.unwrap();
        }
    }

    /// The client's end of one channel.
    struct Channel {
        tx: MemoryTx,
        rx: MemoryRx,
    }

    impl Channel {
        /// The next message, which must be binary as everything the server
        /// sends; `None` once the server closed the channel.
        async fn next(&mut self) -> Option<Bytes> {
            match self.rx.recv().await.unwrap() {
                Some(Message::Binary(data)) => Some(data),
                Some(Message::Text(data)) => panic!("a text message from the server: {data:?}"),
                None => None,
            }
        }

        /// The next message as text.
        async fn next_text(&mut self) -> String {
            String::from_utf8(self.next().await.expect("a message").to_vec()).unwrap()
        }

        /// Reads `n` bytes of a stream cut into messages, each at most
        /// [`PIECE`] bytes long.
        async fn read(&mut self, n: usize) -> String {
            let mut got = Vec::new();
            while got.len() < n {
                let data = self.next().await.expect("more output");
                assert!(data.len() <= PIECE, "a message of {} bytes", data.len());
                got.extend_from_slice(&data);
            }
            String::from_utf8(got).unwrap()
        }

        /// Output until it holds `want`; all of it.
        async fn until(&mut self, want: &str) -> String {
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains(want) {
                let data = self.next().await.expect("more output");
                got.extend_from_slice(&data);
            }
            String::from_utf8(got).unwrap()
        }

        /// Everything up to the server's close, and the close.
        async fn until_close(&mut self) -> (String, CloseFrame) {
            let mut got = Vec::new();
            while let Some(data) = self.next().await {
                got.extend_from_slice(&data);
            }
            let close = self.rx.close_frame().cloned().expect("a close");
            (String::from_utf8(got).unwrap(), close)
        }

        async fn send(&mut self, data: &str) {
            self.tx.send(Message::text(data)).await.unwrap();
        }
    }

    /// The client's end of a control channel.
    struct Control {
        channel: Channel,
        next_id: i64,
    }

    impl Control {
        /// Sends a request; returns its message id.
        async fn send(&mut self, kind: &str, args: Value) -> i64 {
            let id = self.next_id;
            self.next_id += 1;
            let text = json!({"time": 1, "message_id": id, "type": kind, "args": args});
            self.channel.send(&text.to_string()).await;
            id
        }

        /// The server's next control message.
        async fn next(&mut self) -> Envelope {
            let text = self.channel.next_text().await;
            serde_json::from_str(&text).unwrap()
        }

        /// Sends a request and returns the server's reply to it.
        async fn call(&mut self, kind: &str, args: Value) -> Envelope {
            let id = self.send(kind, args).await;
            let reply = self.next().await;
            assert_eq!(reply.args["ref"], json!(id), "{reply:?}");
            reply
        }

        /// Sends a request that must be acked; returns the ack's body.
        async fn ok(&mut self, kind: &str, args: Value) -> Option<String> {
            let reply = self.call(kind, args).await;
            assert_eq!(reply.kind, "ack", "{kind}: {reply:?}");
            reply
                .args
                .get("body")
                .map(|b| b.as_str().unwrap().to_owned())
        }

        /// Sends a request that must be nacked; returns why.
        async fn refused(&mut self, kind: &str, args: Value) -> String {
            let reply = self.call(kind, args).await;
            nack_text(&reply)
        }
    }

    /// A nack's description, checked to be given in both spellings.
    fn nack_text(reply: &Envelope) -> String {
        assert_eq!(reply.kind, "nack", "{reply:?}");
        assert_eq!(reply.args["desc"], reply.args["description"]);
        reply.args["desc"].as_str().unwrap().to_owned()
    }

    #[tokio::test]
    async fn nothing_runs_before_auth() {
        let host = host();
        let client = Client::connect(&host, false);
        let mut control = client.control();
        let why = control.refused("get_payload", json!({})).await;
        assert!(why.contains("not authenticated"), "{why}");
        let mut pane = client.open("echo,hi");
        let (said, close) = pane.until_close().await;
        assert_eq!(said, "not authenticated");
        assert_eq!(close.reason, CloseReason::Policy);
        assert_eq!(host.pane_count(), 0);

        let why = control.refused("auth", json!({"token": "wrong"})).await;
        assert_eq!(why, "unauthorized");
        assert_eq!(control.ok("auth", json!({"token": TOKEN})).await, None);
        // The ack of `auth` carries the payload.
        let payload = control.ok("set_payload", json!({"payload": "p"})).await;
        assert_eq!(payload.as_deref(), Some("p"));
        let again = control.ok("auth", json!({"token": TOKEN})).await;
        assert_eq!(again.as_deref(), Some("p"));

        let mut pane = client.open("echo,hi");
        assert_eq!(pane.next_text().await, "1");
        let (out, close) = pane.until_close().await;
        assert_eq!(out, "hi\n");
        assert_eq!(close.reason, CloseReason::Normal);
        client.leave().await;
    }

    #[tokio::test]
    async fn five_wrong_tokens_end_the_peer() {
        let host = host();
        let client = Client::connect(&host, false);
        let mut control = client.control();
        for _ in 0..MAX_AUTH_FAILURES {
            let why = control.refused("auth", json!({"token": "guess"})).await;
            assert_eq!(why, "unauthorized");
        }
        client.peer.await.unwrap();
        assert!(client.conn.ended.is_cancelled(), "the connection is closed");
        assert_eq!(host.peer_count(), 0);
        assert_eq!(control.channel.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_authenticate_in_time_is_disconnected() {
        let host = host();
        let client = Client::connect(&host, false);
        let mut control = client.control();
        tokio::time::advance(AUTH_TIMEOUT - Duration::from_secs(1)).await;
        let why = control.refused("mark", json!({})).await;
        assert!(why.contains("not authenticated"), "{why}");
        // The clock runs on while nothing else happens.
        client.peer.await.unwrap();
        assert!(client.conn.ended.is_cancelled());
        assert_eq!(host.peer_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_authenticated_peer_has_no_deadline() {
        let host = host();
        let client = Client::connect(&host, false);
        let mut control = client.control();
        tokio::time::advance(AUTH_TIMEOUT - Duration::from_secs(1)).await;
        control.ok("auth", json!({"token": TOKEN})).await;
        tokio::time::advance(AUTH_TIMEOUT * 3).await;
        assert_eq!(control.ok("mark", json!({})).await.as_deref(), Some("1"));
        assert!(!client.peer.is_finished());

        let signaled = Client::connect(&host, true);
        let mut control = signaled.control();
        tokio::time::advance(AUTH_TIMEOUT * 3).await;
        assert_eq!(control.ok("mark", json!({})).await.as_deref(), Some("2"));
        assert!(!signaled.peer.is_finished());
        client.leave().await;
        signaled.leave().await;
    }

    #[tokio::test]
    async fn bad_messages_are_nacked_and_the_peer_keeps_working() {
        let host = host();
        let client = Client::connect(&host, true);
        let mut control = client.control();
        for frame in ["not json", "[0, 1, \"mark\", {}]", ""] {
            control.channel.send(frame).await;
            let reply = control.next().await;
            assert_eq!(reply.args["ref"], json!(0), "{frame:?}: {reply:?}");
            assert!(nack_text(&reply).contains("JSON"), "{frame:?}: {reply:?}");
        }
        let cases = [
            ("bogus", json!({}), "unknown message type"),
            ("resize", json!({"sx": "wide", "sy": 24}), "sx must be"),
            ("reconnect_pane", json!({}), "without an id"),
            ("restore", json!({"marker": 9}), "unknown marker 9"),
            ("reconnect_pane", json!({"id": 9}), "no pane 9"),
            (
                "resize",
                json!({"pane_id": 9, "sx": 80, "sy": 24}),
                "no such pane",
            ),
            // No PTY pane yet for a resize without `pane_id`.
            ("resize", json!({"sx": 80, "sy": 24}), "no such pane"),
            (
                "add_pane",
                json!({"command": ["/no/such/program"]}),
                "/no/such/program",
            ),
            ("set_payload", json!({}), "without a payload"),
        ];
        for (kind, args, want) in cases {
            let why = control.refused(kind, args.clone()).await;
            assert!(why.contains(want), "{kind} {args}: {why}");
        }
        assert_eq!(host.pane_count(), 0);
        assert_eq!(control.ok("mark", json!({})).await.as_deref(), Some("1"));
        assert_eq!(control.ok("get_payload", json!({})).await, None);
        client.leave().await;
    }

    #[tokio::test]
    async fn channel_labels() {
        let host = host();
        let client = Client::connect(&host, true);

        let mut pane = client.open("sh,-c,printf hello; exit 3");
        assert_eq!(pane.next_text().await, "1");
        assert_eq!(pane.read(5).await, "hello");
        let (rest, close) = pane.until_close().await;
        assert_eq!((rest.as_str(), close.reason), ("", CloseReason::Normal));

        let refusals = [
            ("", "no command", CloseReason::Policy),
            ("24x80,>x", "pane id is not a number", CloseReason::Policy),
            (">7", "no pane 7", CloseReason::Policy),
            (
                "/no/such/program",
                "/no/such/program",
                CloseReason::Internal,
            ),
        ];
        for (label, want, reason) in refusals {
            let mut channel = client.open(label);
            let (said, close) = channel.until_close().await;
            assert!(said.contains(want), "{label:?}: {said}");
            assert_eq!(close.reason, reason, "{label:?}");
        }
        client.leave().await;
    }

    /// A peer that authenticated with the view token attaches a pane and
    /// reads it, and everything that would start or change something is
    /// refused while its channels stay open.
    #[tokio::test]
    async fn a_viewer_watches_and_changes_nothing() {
        let metrics = Metrics::new();
        let refusals = || {
            let text = metrics.encode();
            text.lines()
                .any(|l| l == "execwire_viewer_refusals_total{protocol=\"webexec\"} 8")
        };
        let host = host_counted(&metrics);
        let owner = Client::connect(&host, true);
        let mut typed = owner.open("24x80,cat");
        assert_eq!(typed.next_text().await, "1,24x80");
        typed.send("before\n").await;
        typed.until("before\r\nbefore\r\n").await;

        let mut viewer = Client::connect(&host, false);
        let mut control = viewer.control();
        assert!(
            control
                .refused("auth", json!({"token": "wrong"}))
                .await
                .contains("unauthorized")
        );
        control.ok("auth", json!({"token": VIEW_TOKEN})).await;
        for (kind, args) in [
            ("add_pane", json!({"command": ["cat"]})),
            ("resize", json!({"pane_id": 1, "sx": 100, "sy": 30})),
            ("set_payload", json!({"payload": "x"})),
            ("mark", json!({})),
        ] {
            let why = control.refused(kind, args).await;
            assert!(why.contains("read-only"), "{kind}: {why}");
        }
        let mut started = viewer.open("echo,hi");
        let (said, close) = started.until_close().await;
        assert!(said.contains("read-only"), "{said}");
        assert_eq!(close.reason, CloseReason::Policy);
        assert_eq!(host.pane_count(), 1);

        // Attached with a size: the pane keeps its own.
        let mut watching = viewer.open("30x100,>1");
        assert_eq!(watching.next_text().await, "1,24x80");
        watching.until("before").await;
        watching.send("viewer\n").await;
        let id = control.send("reconnect_pane", json!({"id": 1})).await;
        let (label, mut again) = viewer.opened().await;
        assert_eq!(label, format!("{id}:1"));
        again.send("viewer again\n").await;
        assert_eq!(control.next().await.kind, "ack");
        control.ok("get_payload", json!({})).await;
        // Both inputs were dropped once both are counted (each channel's
        // input is handled in order, in a task of its own).
        tokio::time::timeout(Duration::from_secs(10), async {
            while !refusals() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("8 viewer refusals counted");
        // The owner's input reaches the process, and the viewer sees it
        // there; the viewer's never did.
        typed.send("after\n").await;
        let echoed = typed.until("after\r\nafter\r\n").await;
        assert!(!echoed.contains("viewer"), "{echoed:?}");
        let seen = watching.until("after\r\nafter\r\n").await;
        assert!(!seen.contains("viewer"), "{seen:?}");
        // The viewer typed and asked last, yet the clipboard commands never
        // talk to it: with the owner gone, there is nobody to ask.
        owner.leave().await;
        let asked = host
            .ask(
                Notice::SetClipboard {
                    data: "secret".into(),
                    mimetype: "text/plain".into(),
                },
                false,
            )
            .await;
        assert!(matches!(asked, Err(AskError::NoClient)), "{asked:?}");
        viewer.leave().await;
    }

    #[tokio::test]
    async fn add_pane_opens_a_channel_and_resize_finds_the_pane() {
        let host = host();
        let mut client = Client::connect(&host, true);
        let mut control = client.control();

        let id = control.send("add_pane", json!({"command": ["cat"]})).await;
        let (label, mut cat) = client.opened().await;
        assert_eq!(label, format!("{id}:1"));
        let ack = control.next().await;
        assert_eq!((ack.kind.as_str(), &ack.args["ref"]), ("ack", &json!(id)));
        assert_eq!(ack.args["body"], json!("1"));
        cat.send("ping").await;
        assert_eq!(cat.read(4).await, "ping");

        let pty = control
            .send(
                "add_pane",
                json!({"command": ["cat"], "rows": 24, "cols": 80}),
            )
            .await;
        let (label, _tty) = client.opened().await;
        assert_eq!(label, format!("{pty}:2"));
        assert_eq!(control.next().await.args["body"], json!("2"));
        // A resize without `pane_id` (the seed's) means the latest PTY pane.
        control.ok("resize", json!({"sx": 100, "sy": 30})).await;
        let size = host.pane(2).unwrap().size().unwrap();
        assert_eq!((size.rows, size.cols), (30, 100));
        control
            .ok("resize", json!({"pane_id": 2, "sx": 90, "sy": 20}))
            .await;
        let size = host.pane(2).unwrap().size().unwrap();
        assert_eq!((size.rows, size.cols), (20, 90));
        let why = control
            .refused("resize", json!({"pane_id": 1, "sx": 80, "sy": 24}))
            .await;
        assert!(why.contains("no terminal"), "{why}");

        client.leave().await;
        host.terminate_all();
    }

    #[tokio::test]
    async fn payload_and_resize_reach_the_other_peers() {
        let host = host();
        let a = Client::connect(&host, true);
        let b = Client::connect(&host, true);
        let mut a_control = a.control();
        let mut b_control = b.control();
        // Both control channels are registered once each has answered.
        a_control.ok("get_payload", json!({})).await;
        b_control.ok("get_payload", json!({})).await;

        let body = a_control
            .ok("set_payload", json!({"payload": {"tabs": [1, 2]}}))
            .await;
        assert_eq!(body.as_deref(), Some(r#"{"tabs":[1,2]}"#));
        let notice = b_control.next().await;
        assert_eq!(notice.kind, "set_payload");
        assert_eq!(notice.args["payload"], json!({"tabs": [1, 2]}));
        let body = b_control.ok("get_payload", json!({})).await;
        assert_eq!(body.as_deref(), Some(r#"{"tabs":[1,2]}"#));

        let mut tty = a.open("24x80,cat");
        assert_eq!(tty.next_text().await, "1,24x80");
        a_control
            .ok("resize", json!({"pane_id": 1, "sx": 120, "sy": 40}))
            .await;
        let notice = b_control.next().await;
        assert_eq!(notice.kind, "resize");
        assert_eq!(notice.args, json!({"pane_id": 1, "sx": 120, "sy": 40}));
        // The peer that resized is not told: its next message answers its
        // next request.
        assert_eq!(a_control.ok("mark", json!({})).await.as_deref(), Some("1"));

        a.leave().await;
        b.leave().await;
        host.terminate_all();
    }

    #[tokio::test]
    async fn restore_replays_from_the_marker_and_a_reconnect_without_one_replays_all() {
        let host = host();
        let mut a = Client::connect(&host, true);
        let mut control = a.control();
        let mut cat = a.open("cat");
        assert_eq!(cat.next_text().await, "1");
        cat.send("one").await;
        assert_eq!(cat.read(3).await, "one");
        let marker = control.ok("mark", json!({})).await.unwrap();
        cat.send("two").await;
        assert_eq!(cat.read(3).await, "two");
        let marker: u64 = marker.parse().unwrap();
        control.ok("restore", json!({"marker": marker})).await;

        let id = control.send("reconnect_pane", json!({"id": 1})).await;
        let (label, mut again) = a.opened().await;
        assert_eq!(label, format!("{id}:1"));
        assert_eq!(control.next().await.args["body"], json!("1"));
        assert_eq!(again.read(3).await, "two");
        // Both channels are the pane's now; input from either reaches it.
        again.send("three").await;
        assert_eq!(cat.read(5).await, "three");
        assert_eq!(again.read(5).await, "three");

        let mut by_label = a.open(">1");
        assert_eq!(by_label.next_text().await, "1");
        assert_eq!(by_label.read(8).await, "twothree");

        // Another peer has not restored a marker: it gets what the ring holds.
        let b = Client::connect(&host, true);
        let mut fresh = b.open(">1");
        assert_eq!(fresh.next_text().await, "1");
        assert_eq!(fresh.read(11).await, "onetwothree");

        a.leave().await;
        b.leave().await;
        host.terminate_all();
    }

    #[tokio::test]
    async fn panes_outlive_their_peer() {
        let host = host();
        let a = Client::connect(&host, true);
        let mut cat = a.open("cat");
        assert_eq!(cat.next_text().await, "1");
        cat.send("kept").await;
        assert_eq!(cat.read(4).await, "kept");
        a.leave().await;
        // The peer's channels close as it goes, the pane runs on.
        let (rest, close) = cat.until_close().await;
        assert_eq!((rest.as_str(), close.reason), ("", CloseReason::GoingAway));
        assert_eq!((host.peer_count(), host.pane_count()), (0, 1));

        let b = Client::connect(&host, true);
        let mut back = b.open(">1");
        assert_eq!(back.next_text().await, "1");
        assert_eq!(back.read(4).await, "kept");
        b.leave().await;
        host.terminate_all();
    }

    /// What `webexec-server copy`/`paste` ask of the host, in a task.
    fn ask(
        host: &Arc<Host>,
        notice: Notice,
        await_ack: bool,
    ) -> tokio::task::JoinHandle<Result<String, AskError>> {
        let host = host.clone();
        tokio::spawn(async move { host.ask(notice, await_ack).await })
    }

    #[tokio::test]
    async fn clipboard_requests_go_to_the_client_and_wait_for_its_answer() {
        let host = host();
        let client = Client::connect(&host, true);
        let mut control = client.control();
        control.ok("get_payload", json!({})).await;

        let asked = ask(&host, Notice::GetClipboard, true);
        let request = control.next().await;
        assert_eq!(request.kind, "get_clipboard");
        control
            .send(
                "ack",
                json!({"ref": request.message_id, "body": "copied text"}),
            )
            .await;
        assert_eq!(asked.await.unwrap().unwrap(), "copied text");

        let notice = Notice::SetClipboard {
            data: "x".into(),
            mimetype: "text/plain".into(),
        };
        let set = ask(&host, notice, false);
        let request = control.next().await;
        assert_eq!(request.kind, "set_clipboard");
        assert_eq!(request.args, json!({"data": "x", "mimetype": "text/plain"}));
        assert_eq!(set.await.unwrap().unwrap(), "");

        let refused = ask(&host, Notice::GetClipboard, true);
        let request = control.next().await;
        control
            .send("nack", json!({"ref": request.message_id, "desc": "denied"}))
            .await;
        match refused.await.unwrap() {
            Err(AskError::Refused(why)) => assert_eq!(why, "denied"),
            other => panic!("{other:?}"),
        }
        client.leave().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_clipboard_request_nobody_answers_times_out() {
        let host = host();
        let client = Client::connect(&host, true);
        let mut control = client.control();
        control.ok("get_payload", json!({})).await;
        let asked = ask(&host, Notice::GetClipboard, true);
        assert_eq!(control.next().await.kind, "get_clipboard");
        assert!(matches!(asked.await.unwrap(), Err(AskError::Timeout)));
        client.leave().await;
    }

    #[tokio::test]
    async fn nothing_reaches_a_peer_before_auth() {
        let host = host();
        let client = Client::connect(&host, false);
        let mut control = client.control();
        control.refused("mark", json!({})).await;
        host.set_payload(0, json!("secret"));
        // Notices reach the peer in order: once this one is refused, the
        // payload before it was dropped.
        match host.ask(Notice::GetClipboard, true).await {
            Err(AskError::Refused(why)) => assert!(why.contains("authenticated"), "{why}"),
            other => panic!("{other:?}"),
        }
        // The next message it gets is the answer to its next request.
        let reply = control.call("auth", json!({"token": TOKEN})).await;
        assert_eq!(reply.kind, "ack");
        client.leave().await;
    }
}
