//! What the server keeps across peers: the panes (which outlive every peer),
//! the payload clients share, output markers, the peers to broadcast to,
//! and who is authorized.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use exec_core::{
    Attachment, ByteReceiver, ByteSender, Claim, Command, Lease, Pane, PaneConfig, PtySize, Session,
};
use serde_json::Value;
use server_kit::{Access, AccessToken, Probe, TokenCheck};
use tokio::sync::oneshot;
use webexec_proto::{Notice, Size};

use crate::Error;

/// Bytes of notices (as encoded on the control channel) queued for one
/// peer before more are dropped: a peer that does not read its control
/// channel loses broadcasts, never stalls the sender, and costs at most
/// this much (or one notice larger than it).
const NOTICE_BYTES: usize = 1 << 20;

/// How long a request to a client (`get_clipboard`) waits for its ack.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the host hands a peer, for its control channel.
#[derive(Debug)]
pub(crate) enum ToPeer {
    /// A broadcast; nobody waits for it.
    Notice(Notice),
    /// A request of the server's own: `reply` gets the client's ack body
    /// or nack reason, or, when `await_ack` is false, an empty body once
    /// the request was sent.
    Ask {
        notice: Notice,
        await_ack: bool,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// Why a clipboard request to a client failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// No client is connected.
    #[error("no client is connected")]
    NoClient,
    /// The client did not ack in time.
    #[error("the client did not answer within {}s", ASK_TIMEOUT.as_secs())]
    Timeout,
    /// The client refused, or went away before answering.
    #[error("the client refused: {0}")]
    Refused(String),
}

/// Who may connect: the authorized file (re-read on every check, so an
/// operator's edit takes effect at once) and the tokens given on the
/// command line.
#[derive(Debug, Clone, Default)]
pub struct Authorized {
    /// The authorized file: tokens and certificate fingerprints, one per
    /// line (`#` comments, text after the first space is a label).
    pub file: Option<PathBuf>,
    /// Tokens from `--token`.
    pub tokens: Vec<AccessToken>,
    /// Read-only tokens (`--view-token`): their peers attach to panes and
    /// watch, and start, write, resize and set nothing.
    pub view_tokens: Vec<AccessToken>,
    /// Everyone is authorized (`--no-auth`).
    pub open: bool,
}

impl Authorized {
    /// What `token` or `fingerprint` (colons removed, upper case) may do:
    /// everything for a token or the file's entries, watching for a view
    /// token, `None` when neither is authorized.
    pub(crate) fn access(&self, token: Option<&str>, fingerprint: Option<&str>) -> Option<Access> {
        if self.open || self.allows(token, fingerprint) {
            return Some(Access::Full);
        }
        let token = token.filter(|t| !t.is_empty())?;
        self.view_tokens
            .iter()
            .any(|known| known.matches(token))
            .then_some(Access::View)
    }

    /// True when `token` or `fingerprint` has full access.
    fn allows(&self, token: Option<&str>, fingerprint: Option<&str>) -> bool {
        if self.open {
            return true;
        }
        let token = token.filter(|t| !t.is_empty());
        if let Some(t) = token
            && self.tokens.iter().any(|known| known.matches(t))
        {
            return true;
        }
        let Some(file) = &self.file else {
            return false;
        };
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %file.display(), error = %e, "cannot read the authorized file");
                }
                return false;
            }
        };
        webexec_proto::authorized_entries(&text)
            .iter()
            .any(|entry| {
                let entry = AccessToken::new(entry.as_str());
                token.is_some_and(|t| entry.matches(t))
                    || fingerprint
                        .is_some_and(|f| entry.matches(f) || entry.matches(&f.to_ascii_lowercase()))
            })
    }
}

/// The tokens of `/metrics`: those of `Authorized::access`.
impl TokenCheck for Authorized {
    fn required(&self) -> bool {
        !self.open
    }

    fn access(&self, token: &str) -> Option<Access> {
        Authorized::access(self, Some(token), None)
    }
}

/// A pane, with the number clients know it by.
#[derive(Debug)]
pub(crate) struct PaneEntry {
    pub(crate) id: u64,
    pub(crate) pane: Pane,
}

impl PaneEntry {
    /// The terminal size, for a PTY pane.
    pub(crate) fn size(&self) -> Option<Size> {
        self.pane.size().map(|s| Size {
            rows: s.rows,
            cols: s.cols,
        })
    }

    /// Resizes a PTY pane; fails for a pane without a terminal.
    pub(crate) fn resize(&self, rows: u16, cols: u16) -> Result<(), Error> {
        Ok(self
            .pane
            .resize(PtySize::or_default(rows, cols), crate::PROTOCOL)?)
    }
}

/// webexec's claim on the panes it starts and attaches: they are kept
/// until they exit, as the reference keeps them.
const CLAIM: Claim = Claim {
    client: crate::PROTOCOL,
    idle_timeout: None,
};

/// How new panes are started.
#[derive(Debug, Clone)]
pub(crate) struct PaneDefaults {
    /// The login shell (`"*"` in `add_pane`).
    pub(crate) shell: String,
    /// Where panes start unless split from another.
    pub(crate) home: Option<PathBuf>,
    /// Replay ring per pane.
    pub(crate) replay_bytes: usize,
    /// Recording of every pane, if asked for.
    pub(crate) record: Option<exec_core::RecordConfig>,
    /// Extra environment of every pane.
    pub(crate) env: Vec<(String, String)>,
}

/// The state shared by every peer of one server.
#[derive(Debug)]
pub(crate) struct Host {
    /// Where this server counts what happens.
    pub(crate) probe: Probe,
    pub(crate) authorized: Authorized,
    defaults: PaneDefaults,
    /// The panes, their markers and the payload. The `execwire` daemon
    /// shares it with wsep ([`crate::Server::with_panes`]): then it holds
    /// wsep's named terminals too, which a peer attaches like its own.
    session: Session,
    /// Each peer's notices, and whether it has a view token (then it is
    /// never asked for the clipboard).
    peers: Mutex<HashMap<u64, (ByteSender<ToPeer>, bool)>>,
    /// Panes whose resizes by other protocols are told to the peers.
    followed: Mutex<HashSet<u64>>,
    next_peer: AtomicU64,
    /// The peer that sent something last (0: none): the one whose user is
    /// at the keyboard, which `webexec-server copy`/`paste` talk to.
    active_peer: AtomicU64,
}

impl Host {
    pub(crate) fn new(
        probe: Probe,
        authorized: Authorized,
        defaults: PaneDefaults,
        session: Session,
    ) -> Host {
        Host {
            probe,
            authorized,
            defaults,
            session,
            peers: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashSet::new()),
            next_peer: AtomicU64::new(1),
            active_peer: AtomicU64::new(0),
        }
    }

    /// Starts `argv` (`["*"]` or empty: the login shell) as a new pane,
    /// under a terminal of `size` when given, with the attachment of the
    /// client that asked for it, there from the first byte, and its lease,
    /// to hold while the client is attached. A pane split from `parent`
    /// starts in the parent's working directory.
    pub(crate) fn spawn_pane(
        self: &Arc<Self>,
        argv: &[String],
        size: Option<Size>,
        parent: Option<u64>,
    ) -> Result<(Arc<PaneEntry>, Attachment, Lease), Error> {
        let mut cmd = match argv {
            [] => Command::new(&self.defaults.shell).arg("-l"),
            [star] if star == "*" => Command::new(&self.defaults.shell).arg("-l"),
            argv => Command::from_argv(argv)?,
        };
        cmd = cmd
            .env("TERM", "xterm-256color")
            .env("COLORTERM", "truecolor");
        for (key, value) in &self.defaults.env {
            cmd = cmd.env(key, value);
        }
        let cwd = parent
            .and_then(|p| self.pane(p))
            .and_then(|p| std::fs::read_link(format!("/proc/{}/cwd", p.pane.pid())).ok())
            .or_else(|| self.defaults.home.clone());
        if let Some(dir) = cwd {
            cmd = cmd.current_dir(dir);
        }
        let pty = size.map(|s| PtySize::or_default(s.rows, s.cols));
        if let Some(pty) = pty {
            cmd = cmd.pty(pty);
        }
        // Panes outlive their peers until they exit: no idle timeout. The
        // lease only counts the peer as attached (`GET /panes`).
        let (id, attachment, lease) = self.session.spawn(
            &cmd,
            PaneConfig {
                replay_bytes: self.defaults.replay_bytes,
                record: self.defaults.record.clone(),
                ..PaneConfig::default()
            },
            None,
            CLAIM,
        )?;
        let pane = attachment.pane();
        let counted = (self.probe.pane(), self.probe.process());
        pane.on_exit(move || drop(counted));
        self.follow_resizes(id.get(), &pane);
        let entry = Arc::new(PaneEntry { id: id.get(), pane });
        Ok((entry, attachment, lease))
    }

    /// The live pane `id`, to attach, with a lease to hold while attached:
    /// a pane another protocol started keeps its own idle timeout, which
    /// the lease holds back (see [`Claim`]).
    pub(crate) fn attach_pane(self: &Arc<Self>, id: u64) -> Option<(Arc<PaneEntry>, Lease)> {
        let (id, pane) = self.session.find(id)?;
        let lease = self.session.lease(id, CLAIM.client)?;
        self.follow_resizes(id.get(), &pane);
        Some((Arc::new(PaneEntry { id: id.get(), pane }), lease))
    }

    /// Tells every peer of the resizes of pane `id` that clients of other
    /// protocols make (in the daemon, a wsep client's window), as webexec
    /// tells them of its own peers' (those are broadcast by the peer that
    /// resized, to the others). One task per pane, from the first time a
    /// peer starts or attaches it until the pane is gone.
    fn follow_resizes(self: &Arc<Self>, id: u64, pane: &Pane) {
        if !lock(&self.followed).insert(id) {
            return;
        }
        let mut resizes = pane.watch_resizes();
        let host = Arc::downgrade(self);
        tokio::spawn(async move {
            while resizes.changed().await.is_ok() {
                let resized = *resizes.borrow_and_update();
                let Some(resized) = resized.filter(|r| r.by != crate::PROTOCOL) else {
                    continue;
                };
                let Some(host) = host.upgrade() else { return };
                // Peer ids start at 1: from 0, every peer is told.
                host.broadcast(
                    0,
                    &Notice::Resize {
                        pane_id: id,
                        cols: resized.size.cols,
                        rows: resized.size.rows,
                    },
                );
            }
            if let Some(host) = host.upgrade() {
                lock(&host.followed).remove(&id);
            }
        });
    }

    /// The live pane `id`.
    pub(crate) fn pane(&self, id: u64) -> Option<Arc<PaneEntry>> {
        let (id, pane) = self.session.find(id)?;
        Some(Arc::new(PaneEntry { id: id.get(), pane }))
    }

    /// Number of live panes.
    pub(crate) fn pane_count(&self) -> usize {
        self.session.len()
    }

    /// Ends every pane (server shutdown).
    pub(crate) fn terminate_all(&self) {
        self.session.end_all();
    }

    /// The payload as the current reference sends it: a JSON string (the
    /// payload itself when it is a string, else its JSON), none when unset.
    /// The session keeps it in that form, so nothing is parsed here.
    pub(crate) fn payload(&self) -> Option<String> {
        let text = self.session.payload()?;
        Some(String::from_utf8_lossy(&text).into_owned())
    }

    /// Stores a payload and sends it, as the client gave it, to every peer
    /// but `from`. Returns the stored form ([`Host::payload`]).
    ///
    /// The broadcast is sent from here, not by each peer watching the
    /// session's payload: a watch would skip changes that come faster than
    /// a peer reads, and the stored form no longer tells a string payload
    /// from JSON text, which the broadcast keeps apart.
    pub(crate) fn set_payload(&self, from: u64, payload: Value) -> Option<String> {
        let stored = match &payload {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        self.session
            .set_payload(stored.clone().map(Bytes::from), from);
        self.broadcast(from, &Notice::SetPayload { payload });
        stored
    }

    /// A marker: the current output offset of every live pane.
    pub(crate) fn mark(&self) -> u64 {
        self.session.mark().get()
    }

    /// True when `marker` is known.
    pub(crate) fn has_marker(&self, marker: u64) -> bool {
        self.session.marker(marker).is_some()
    }

    /// Pane `pane`'s output offset at `marker`, when both are known.
    pub(crate) fn marker_offset(&self, marker: u64, pane: u64) -> Option<u64> {
        let marker = self.session.marker(marker)?;
        let (id, _) = self.session.find(pane)?;
        self.session.marker_offset(marker, id)
    }

    /// Registers a peer for broadcasts: its id and its notices.
    pub(crate) fn join(&self) -> (u64, ByteReceiver<ToPeer>) {
        let id = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = exec_core::byte_queue(NOTICE_BYTES);
        lock(&self.peers).insert(id, (tx, false));
        (id, rx)
    }

    /// Forgets a peer.
    pub(crate) fn leave(&self, id: u64) {
        lock(&self.peers).remove(&id);
        let _ = self
            .active_peer
            .compare_exchange(id, 0, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Notes that peer `id` has a view token: the clipboard commands, which
    /// hand the host's clipboard over or take one, never talk to it.
    pub(crate) fn set_viewer(&self, id: u64) {
        if let Some((_, viewer)) = lock(&self.peers).get_mut(&id) {
            *viewer = true;
        }
    }

    /// Notes that peer `id` sent something: it is the active one.
    pub(crate) fn touch(&self, id: u64) {
        self.active_peer.store(id, Ordering::Relaxed);
    }

    /// Sends `notice` to the active peer (else the one that joined last,
    /// viewers aside) and, when `await_ack`, waits for its ack: the body,
    /// or why not.
    pub(crate) async fn ask(&self, notice: Notice, await_ack: bool) -> Result<String, AskError> {
        let (reply, answer) = oneshot::channel();
        let peer = {
            let peers = lock(&self.peers);
            let active = self.active_peer.load(Ordering::Relaxed);
            peers
                .get(&active)
                .or_else(|| {
                    peers
                        .iter()
                        .filter(|(_, (_, viewer))| !viewer)
                        .max_by_key(|(id, _)| **id)
                        .map(|(_, peer)| peer)
                })
                .map(|(tx, _)| tx.clone())
        };
        let peer = peer.ok_or(AskError::NoClient)?;
        let full = || AskError::Refused("its control channel is full or closed".into());
        let permit = peer.try_reserve(weight(&notice)).ok_or_else(full)?;
        permit
            .send(ToPeer::Ask {
                notice,
                await_ack,
                reply,
            })
            .map_err(|_| full())?;
        match tokio::time::timeout(ASK_TIMEOUT, answer).await {
            Err(_) => Err(AskError::Timeout),
            Ok(Err(_)) => Err(AskError::Refused("it disconnected".into())),
            Ok(Ok(result)) => result.map_err(AskError::Refused),
        }
    }

    /// Number of connected peers.
    pub(crate) fn peer_count(&self) -> usize {
        lock(&self.peers).len()
    }

    /// Sends `notice` to every peer but `from`.
    pub(crate) fn broadcast(&self, from: u64, notice: &Notice) {
        let weight = weight(notice);
        for (id, (tx, _)) in lock(&self.peers).iter() {
            if *id == from {
                continue;
            }
            let sent = tx
                .try_reserve(weight)
                .is_some_and(|permit| permit.send(ToPeer::Notice(notice.clone())).is_ok());
            if !sent {
                tracing::debug!(peer = id, "control channel not read; notice dropped");
            }
        }
    }
}

/// What a notice weighs in a peer's queue: its length on the wire (its
/// message id and time stamp aside).
fn weight(notice: &Notice) -> usize {
    notice.encode(0, 0).len()
}

/// The locks guard short, non-panicking sections: recover from poison.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
