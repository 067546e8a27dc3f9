//! One connected client: its control channel (`%`) and its pane channels.
//!
//! Panes belong to the [`Host`], not to the peer: when a peer goes, its
//! channels detach and the panes run on, their output kept in the pane's
//! replay ring for the next peer that reconnects.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use exec_core::{Attachment, PaneEvent, Replay};
use server_kit::{Open, Probe};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use webexec_proto::{Label, Notice, Request};

use crate::host::{Host, PaneEntry, ToPeer};
use crate::rtc::{Channel, Peer};

/// How long a peer that must authenticate with an `auth` message (seed
/// `/connect` without a known token or fingerprint) has to do so.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Wrong `auth` tokens before the peer is disconnected.
const MAX_AUTH_FAILURES: u32 = 5;

/// One peer's state, shared by its channel tasks.
struct PeerState {
    host: Arc<Host>,
    rtc: Peer,
    id: u64,
    authenticated: AtomicBool,
    auth_failures: AtomicU32,
    /// The marker a `restore` chose: reconnects replay from it.
    restore: Mutex<Option<u64>>,
    /// The PTY pane a seed `resize` without `pane_id` means: the latest
    /// one this peer opened or attached.
    last_pty: Mutex<Option<u64>>,
    next_message_id: AtomicI64,
    control: Mutex<Option<Arc<Channel>>>,
    /// Counted as a session while authenticated.
    session: std::sync::Mutex<Option<Open>>,
    /// The server's own requests (`get_clipboard`) awaiting the client's
    /// ack, by their message id.
    asks: Mutex<HashMap<i64, oneshot::Sender<Result<String, String>>>>,
    cancel: CancellationToken,
}

/// Serves one peer until it disconnects or the server shuts down.
/// `authenticated` is false when the peer must still send `auth`.
pub(crate) async fn run(
    host: Arc<Host>,
    rtc: Peer,
    mut channels: mpsc::UnboundedReceiver<Channel>,
    authenticated: bool,
    shutdown: CancellationToken,
) {
    let (id, mut notices) = host.join();
    let state = Arc::new(PeerState {
        host: host.clone(),
        rtc: rtc.clone(),
        id,
        authenticated: AtomicBool::new(authenticated),
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
    tracing::info!(peer = id, authenticated, "peer connected");
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
            () = rtc.ended() => break,
            () = state.cancel.cancelled() => break,
            () = &mut auth_deadline, if !state.authenticated.load(Ordering::Acquire) => {
                tracing::info!(peer = id, "no auth in time; disconnecting");
                break;
            }
        }
    }
    host.leave(id);
    state.cancel.cancel();
    rtc.close().await;
    tasks.close();
    tasks.wait().await;
    drop(state.session_ended());
    drop(connection);
    tracing::info!(peer = id, "peer gone");
}

impl PeerState {
    /// The peer authenticated (`auth` on `%`): it counts as a session.
    fn authenticate(&self) {
        self.authenticated.store(true, Ordering::Release);
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        if session.is_none() {
            *session = Some(self.host.probe.session());
        }
    }

    /// The peer's session count, taken to be dropped when it leaves.
    fn session_ended(&self) -> Option<Open> {
        self.session
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Sends on the peer's control channel, counting what went out.
    async fn send_control(&self, channel: &Channel, text: &str) -> Result<(), crate::Error> {
        channel.send(text.as_bytes()).await?;
        self.host.probe.sent(text.len());
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
        let id = self.message_id();
        let text = notice.encode(id, now_ms());
        match ask {
            None => {
                let _ = self.send_control(&control, &text).await;
            }
            Some((false, reply)) => {
                let sent = self.send_control(&control, &text).await;
                let _ = reply.send(sent.map(|()| String::new()).map_err(|e| e.to_string()));
            }
            Some((true, reply)) => {
                // Registered before sending: the ack may come at once.
                self.asks.lock().await.insert(id, reply);
                if let Err(e) = self.send_control(&control, &text).await
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

async fn on_channel(state: Arc<PeerState>, channel: Channel) {
    let channel = Arc::new(channel);
    let label = match webexec_proto::parse_label(channel.label()) {
        Ok(label) => label,
        Err(e) => {
            tracing::info!(peer = state.id, error = %e, "bad channel label");
            state.host.probe.protocol_error();
            // The label is the only thing the client sent: say why on the
            // channel itself, then close it.
            let _ = channel.send(e.to_string().as_bytes()).await;
            channel.close().await;
            return;
        }
    };
    match label {
        Label::Control => control(state, channel).await,
        _ if !state.authenticated.load(Ordering::Acquire) => {
            state.host.probe.protocol_error();
            let _ = channel.send(b"not authenticated").await;
            channel.close().await;
        }
        Label::Command { size, argv } => match state.host.spawn_pane(&argv, size, None) {
            Ok((entry, attachment)) => {
                state.note_pane(&entry).await;
                let hello = webexec_proto::pane_hello(entry.id, entry.size());
                if channel.send(hello.as_bytes()).await.is_ok() {
                    serve_pane(&state, channel, entry, attachment).await;
                }
            }
            Err(e) => {
                tracing::info!(peer = state.id, error = %e, "pane failed to start");
                let _ = channel.send(e.to_string().as_bytes()).await;
                channel.close().await;
            }
        },
        Label::Reconnect { size, pane } => {
            let Some(entry) = state.host.pane(pane) else {
                let _ = channel.send(format!("no pane {pane}").as_bytes()).await;
                channel.close().await;
                return;
            };
            if let Some(size) = size {
                resize(&state, &entry, size.rows, size.cols).ok();
            }
            state.note_pane(&entry).await;
            let hello = webexec_proto::pane_hello(entry.id, entry.size());
            if channel.send(hello.as_bytes()).await.is_ok() {
                let attachment = entry.pane.attach(replay_for(&state, entry.id).await);
                serve_pane(&state, channel, entry, attachment).await;
            }
        }
    }
}

/// Where a reconnect starts: after the restored marker when the peer chose
/// one that knows this pane, else with a screen redraw.
async fn replay_for(state: &PeerState, pane: u64) -> Replay {
    let marker = *state.restore.lock().await;
    match marker.and_then(|m| state.host.marker_offset(m, pane)) {
        Some(offset) => Replay::From(offset),
        None => Replay::Screen,
    }
}

fn resize(state: &PeerState, entry: &PaneEntry, rows: u16, cols: u16) -> Result<(), crate::Error> {
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
/// the pane runs on without this client).
async fn serve_pane(
    state: &PeerState,
    channel: Arc<Channel>,
    entry: Arc<PaneEntry>,
    attachment: Attachment,
) {
    let input = {
        let channel = channel.clone();
        let pane = entry.pane.clone();
        let host = state.host.clone();
        let peer = state.id;
        async move {
            while let Some(msg) = channel.recv().await {
                host.touch(peer);
                host.probe.received(msg.data.len());
                if pane.write(msg.data).await.is_err() {
                    // The process stopped reading for good; its output
                    // side closes the channel when it exits.
                    continue;
                }
            }
        }
    };
    let output = pump_output(&channel, attachment, &state.host.probe);
    tokio::select! {
        () = input => {}
        exited = output => if exited {
            channel.close().await;
        },
        () = state.cancel.cancelled() => channel.close().await,
    }
}

/// Sends the pane's output until it exits (true) or the channel closes
/// (false).
///
/// A send waits while the channel has its fill unacknowledged; the
/// attachment keeps its offset meanwhile. That never holds back anyone
/// else: other panes have channels and pumps of their own, and a pane waits
/// only for its fastest client, so one that stopped reading falls behind
/// the ring and comes back with a redraw (or the oldest output kept) while
/// the others go on. A pane whose only client is slow is slowed, as a
/// terminal is, rather than losing output.
async fn pump_output(channel: &Channel, mut attachment: Attachment, probe: &Probe) -> bool {
    while let Some(event) = attachment.next().await {
        let data = match event {
            PaneEvent::Output(data) | PaneEvent::Redraw(data) => data,
            PaneEvent::Exit(_) => return true,
        };
        if channel.send_stream(&data).await.is_err() {
            return false;
        }
        probe.sent(data.len());
    }
    true
}

/// The control channel: requests in, acks/nacks and notices out.
async fn control(state: Arc<PeerState>, channel: Arc<Channel>) {
    *state.control.lock().await = Some(channel.clone());
    loop {
        let msg = tokio::select! {
            msg = channel.recv() => msg,
            () = state.cancel.cancelled() => None,
        };
        let Some(msg) = msg else { break };
        state.host.probe.received(msg.data.len());
        let reply = match webexec_proto::decode_control(&msg.data) {
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
            if state.send_control(&channel, &text).await.is_err() {
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
    if control.as_ref().is_some_and(|c| Arc::ptr_eq(c, &channel)) {
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
async fn handle(state: &Arc<PeerState>, reference: i64, request: Request) -> Option<Notice> {
    let host = &state.host;
    if let Request::Auth { token } = &request {
        return if host.authorized.allows(Some(token), None) {
            state.authenticate();
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
    host.touch(state.id);
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
            host.set_payload(state.id, payload);
            ack(reference, host.payload())
        }
        Request::AddPane {
            command,
            rows,
            cols,
            parent,
        } => {
            let size = (rows != 0 || cols != 0).then_some(webexec_proto::Size { rows, cols });
            let (entry, attachment) = match host.spawn_pane(&command, size, parent) {
                Ok(spawned) => spawned,
                Err(e) => return nack(reference, e.to_string()),
            };
            open_pane_channel(state, reference, entry, attachment).await
        }
        Request::ReconnectPane { id } => {
            let Some(entry) = host.pane(id) else {
                return nack(reference, format!("no pane {id}"));
            };
            let attachment = entry.pane.attach(replay_for(state, id).await);
            open_pane_channel(state, reference, entry, attachment).await
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
async fn open_pane_channel(
    state: &Arc<PeerState>,
    reference: i64,
    entry: Arc<PaneEntry>,
    attachment: Attachment,
) -> Option<Notice> {
    let label = webexec_proto::server_label(reference, entry.id);
    let channel = match state.rtc.open_channel(&label).await {
        Ok(channel) => Arc::new(channel),
        Err(e) => return nack(reference, format!("cannot open channel: {e}")),
    };
    state.note_pane(&entry).await;
    let id = entry.id;
    let task_state = state.clone();
    tokio::spawn(
        async move { serve_pane(&task_state, channel, entry, attachment).await }
            .instrument(tracing::Span::current()),
    );
    ack(reference, Some(id.to_string()))
}
