//! Sessions: what a server keeps for its clients between their
//! connections — panes (or other processes) by id and name, output markers,
//! a shared payload, and how long an entry nobody uses is kept.
//!
//! Every protocol has such a table: wsep's named sessions, webexec's panes
//! with their markers and payload, pow's REST processes that expire when no
//! request touches them. [`Session`] is that table once, so the rules
//! (ids nobody can guess into existence, an idle timeout that starts when
//! the last client leaves, everything ended on shutdown) hold for all.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::command::Command;
use crate::error::Error;
use crate::pane::{Attachment, Pane, PaneConfig};

/// Markers a session keeps; making one more forgets the oldest.
const MAX_MARKERS: usize = 64;

/// The id of an entry of a [`Session`].
///
/// Only the session hands ids out, and only for entries it holds: a number
/// from the wire becomes an id through [`Session::find`], which fails for
/// anything not live. There is deliberately no `From<u64>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaneId(NonZeroU64);

impl PaneId {
    /// The number to put on the wire.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for PaneId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A point in the output of every entry of a session, to resume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Marker(NonZeroU64);

impl Marker {
    /// The number to put on the wire.
    pub fn get(self) -> u64 {
        self.0.get()
    }
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a session ends an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Nobody used it for the session's idle timeout.
    Idle,
    /// The session is shutting down ([`Session::end_all`]).
    Shutdown,
}

/// What a [`Session`] can hold: anything it can end.
pub trait Entry: Clone + Send + Sync + 'static {
    /// Ends the entry (kills its process group, cancels its work). Called
    /// once, after the session has forgotten it.
    fn end(&self, why: EndReason);

    /// The offset one past its newest output byte, for markers; `None`
    /// for entries without replayable output.
    fn output_offset(&self) -> Option<u64> {
        None
    }
}

impl Entry for Pane {
    fn end(&self, _why: EndReason) {
        self.terminate();
    }

    fn output_offset(&self) -> Option<u64> {
        Some(Pane::output_offset(self))
    }
}

/// Limits and lifetimes of a session's entries.
#[derive(Debug, Clone, Default)]
pub struct SessionConfig {
    /// When set, an entry added by [`Session::insert`] is ended and
    /// forgotten this long after its last [`Lease`] was dropped (or after
    /// it was inserted, if nobody leased it), unless it is leased again
    /// before. A pane started by [`Session::spawn`] or
    /// [`Session::get_or_spawn`] has the timeout of its [`Claim`] instead.
    pub idle_timeout: Option<Duration>,
}

/// Who starts or attaches a pane, and how long a pane it starts is kept
/// once nobody holds it.
///
/// One session can be shared by clients of several protocols, each with
/// its own rule for panes nobody is attached to (wsep ends a named
/// terminal after its session timeout; webexec keeps a pane until it
/// exits). The rule belongs to the pane, set by whoever started it, so a
/// client of another protocol that attaches later neither shortens nor
/// lengthens it: while it holds its [`Lease`] the pane is not idle, and
/// once the last lease goes, the starter's timeout runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The kind of client (a protocol's name: `"wsep"`), counted per kind
    /// in [`Listed::clients`] while its lease is held.
    pub client: &'static str,
    /// For a pane this call starts: ended this long after its last lease
    /// went; `None`, kept until its process exits.
    pub idle_timeout: Option<Duration>,
}

/// The payload clients share, and who set it last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// The payload; `None` until a client sets one, or after one cleared it.
    pub data: Option<Bytes>,
    /// The tag the setter gave ([`Session::set_payload`]), so it can skip
    /// the echo of its own change.
    pub from: u64,
}

/// One entry of a [`Session::list`].
#[derive(Debug, Clone)]
pub struct Listed<T> {
    /// Its id.
    pub id: PaneId,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// When it was inserted.
    pub started: SystemTime,
    /// Clients holding a [`Lease`] on it.
    pub leases: usize,
    /// The same clients by kind ([`Claim::client`]), for a listing that
    /// says who is attached.
    pub clients: BTreeMap<&'static str, usize>,
    /// The entry.
    pub entry: T,
}

/// Entries (panes, by default) by an id and an optional name, with markers,
/// a shared payload and an idle timeout. Cloning shares the session.
#[derive(Debug)]
pub struct Session<T: Entry = Pane> {
    inner: Arc<Inner<T>>,
}

impl<T: Entry> Clone for Session<T> {
    fn clone(&self) -> Self {
        Session {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct Inner<T> {
    state: Mutex<State<T>>,
    /// Notified whenever a reservation ends (its entry was inserted, or
    /// its spawn failed), for [`Session::get_or_spawn`] waiting on a name.
    reservations: Notify,
    payload: watch::Sender<Payload>,
    config: SessionConfig,
}

#[derive(Debug)]
struct State<T> {
    entries: BTreeMap<PaneId, Slot<T>>,
    /// Names of entries, and of ids reserved for an entry still starting
    /// (in `reserved`, not yet in `entries`).
    names: HashMap<String, PaneId>,
    /// Ids handed to spawns in progress: their process is being started
    /// outside the lock. Not live: `get`, `find` and `by_name` skip them.
    reserved: HashSet<PaneId>,
    next_id: u64,
    markers: VecDeque<(Marker, HashMap<PaneId, u64>)>,
    next_marker: u64,
}

#[derive(Debug)]
struct Slot<T> {
    entry: T,
    name: Option<String>,
    started: SystemTime,
    /// Leases held, by kind of client; a kind leaves when its count is 0.
    clients: BTreeMap<&'static str, usize>,
    /// How long it is kept after its last lease went (`None`: forever).
    idle_timeout: Option<Duration>,
    /// Bumped whenever a lease is taken, so an idle timer knows it was
    /// superseded.
    generation: u64,
}

impl<T> Slot<T> {
    fn leases(&self) -> usize {
        self.clients.values().sum()
    }

    /// Counts one more lease of `client`.
    fn take_lease(&mut self, client: &'static str) {
        *self.clients.entry(client).or_default() += 1;
        self.generation += 1;
    }
}

impl<T: Entry> Default for Session<T> {
    fn default() -> Self {
        Session::new(SessionConfig::default())
    }
}

impl<T: Entry> Session<T> {
    /// An empty session.
    pub fn new(config: SessionConfig) -> Self {
        Session {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    entries: BTreeMap::new(),
                    names: HashMap::new(),
                    reserved: HashSet::new(),
                    next_id: 1,
                    markers: VecDeque::new(),
                    next_marker: 1,
                }),
                reservations: Notify::new(),
                payload: watch::Sender::new(Payload::default()),
                config,
            }),
        }
    }

    /// Adds `entry` under a new id (and `name`, which must be free). Its
    /// idle timer, if the session has one, starts now.
    pub fn insert(&self, entry: T, name: Option<String>) -> Result<PaneId, Error> {
        let mut state = self.lock();
        if let Some(name) = &name
            && state.names.contains_key(name)
        {
            return Err(Error::NameTaken(name.clone()));
        }
        let id = state.new_id();
        if let Some(name) = &name {
            state.names.insert(name.clone(), id);
        }
        let idle_timeout = self.inner.config.idle_timeout;
        state.entries.insert(
            id,
            Slot {
                entry,
                name,
                started: SystemTime::now(),
                clients: BTreeMap::new(),
                idle_timeout,
                generation: 0,
            },
        );
        drop(state);
        arm_idle(&self.inner, id, 0, idle_timeout);
        Ok(id)
    }

    /// The entry `id`, while the session holds it.
    pub fn get(&self, id: PaneId) -> Option<T> {
        self.lock().entries.get(&id).map(|s| s.entry.clone())
    }

    /// The live entry with the wire number `number`.
    pub fn find(&self, number: u64) -> Option<(PaneId, T)> {
        let id = PaneId(NonZeroU64::new(number)?);
        self.get(id).map(|entry| (id, entry))
    }

    /// The entry named `name`.
    pub fn by_name(&self, name: &str) -> Option<(PaneId, T)> {
        let state = self.lock();
        let id = *state.names.get(name)?;
        state.entries.get(&id).map(|s| (id, s.entry.clone()))
    }

    /// Forgets `id` without ending it (it ended by itself, or its owner
    /// ends it).
    pub fn remove(&self, id: PaneId) -> Option<T> {
        let mut state = self.lock();
        let slot = state.entries.remove(&id)?;
        if let Some(name) = &slot.name {
            state.forget_name(name, id);
        }
        Some(slot.entry)
    }

    /// Counts a client of `id` (of kind `client`, see [`Claim::client`])
    /// until the lease is dropped: the idle timeout waits for the last
    /// lease to go.
    pub fn lease(&self, id: PaneId, client: &'static str) -> Option<Lease> {
        let mut state = self.lock();
        state.entries.get_mut(&id)?.take_lease(client);
        drop(state);
        Some(self.lease_counted(id, client))
    }

    /// The [`Lease`] of a claim on `id` already counted in its slot.
    fn lease_counted(&self, id: PaneId, client: &'static str) -> Lease {
        Lease {
            release: Some(Box::new(Releaser {
                session: Arc::downgrade(&self.inner),
                id,
                client,
            })),
        }
    }

    /// Every entry, in id order.
    pub fn list(&self) -> Vec<Listed<T>> {
        self.lock()
            .entries
            .iter()
            .map(|(id, slot)| Listed {
                id: *id,
                name: slot.name.clone(),
                started: slot.started,
                leases: slot.leases(),
                clients: slot.clients.clone(),
                entry: slot.entry.clone(),
            })
            .collect()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// True when the session holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets and ends every entry (server shutdown). An entry still
    /// starting ([`Session::spawn`]) is ended as soon as it has started.
    pub fn end_all(&self) {
        let entries: Vec<T> = {
            let mut state = self.lock();
            state.names.clear();
            state.reserved.clear();
            std::mem::take(&mut state.entries)
                .into_values()
                .map(|slot| slot.entry)
                .collect()
        };
        for entry in entries {
            entry.end(EndReason::Shutdown);
        }
    }

    /// A marker: the output offset of every entry now. The session keeps
    /// the newest 64.
    pub fn mark(&self) -> Marker {
        let mut state = self.lock();
        let offsets = state
            .entries
            .iter()
            .filter_map(|(id, slot)| Some((*id, slot.entry.output_offset()?)))
            .collect();
        let marker = Marker(NonZeroU64::MIN.saturating_add(state.next_marker - 1));
        state.next_marker += 1;
        state.markers.push_back((marker, offsets));
        while state.markers.len() > MAX_MARKERS {
            state.markers.pop_front();
        }
        marker
    }

    /// The marker with the wire number `number`, while it is kept.
    pub fn marker(&self, number: u64) -> Option<Marker> {
        self.lock()
            .markers
            .iter()
            .map(|(m, _)| *m)
            .find(|m| m.get() == number)
    }

    /// The output offset of `id` when `marker` was made; `None` when the
    /// entry did not exist then or the marker was forgotten.
    pub fn marker_offset(&self, marker: Marker, id: PaneId) -> Option<u64> {
        let state = self.lock();
        let (_, offsets) = state.markers.iter().find(|(m, _)| *m == marker)?;
        offsets.get(&id).copied()
    }

    /// Stores the shared payload (`None` clears it) and wakes every
    /// [`Session::watch_payload`] receiver; `from` tags the change so its
    /// setter can ignore it.
    pub fn set_payload(&self, data: Option<Bytes>, from: u64) {
        self.inner.payload.send_replace(Payload { data, from });
    }

    /// The shared payload, if one was set.
    pub fn payload(&self) -> Option<Bytes> {
        self.inner.payload.borrow().data.clone()
    }

    /// A receiver that wakes on every payload change.
    pub fn watch_payload(&self) -> watch::Receiver<Payload> {
        self.inner.payload.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        lock(&self.inner.state)
    }
}

impl<T: Entry> State<T> {
    fn new_id(&mut self) -> PaneId {
        let id = PaneId(NonZeroU64::MIN.saturating_add(self.next_id - 1));
        self.next_id += 1;
        id
    }

    /// Drops `name` if it still means `id` (a later entry may have taken
    /// it since `id` let it go).
    fn forget_name(&mut self, name: &str, id: PaneId) {
        if self.names.get(name) == Some(&id) {
            self.names.remove(name);
        }
    }

    /// Takes a new id (and `name`, which must be free) for an entry about
    /// to start, without making it live.
    fn reserve(&mut self, name: Option<&str>) -> Result<PaneId, Error> {
        if let Some(name) = name
            && self.names.contains_key(name)
        {
            return Err(Error::NameTaken(name.to_owned()));
        }
        let id = self.new_id();
        if let Some(name) = name {
            self.names.insert(name.to_owned(), id);
        }
        self.reserved.insert(id);
        Ok(id)
    }
}

/// Starts the idle timer of `id` if it has one (`timeout`): it ends the
/// entry unless a lease was taken since (`generation` moved) or is held.
fn arm_idle<T: Entry>(
    inner: &Arc<Inner<T>>,
    id: PaneId,
    generation: u64,
    timeout: Option<Duration>,
) {
    let Some(timeout) = timeout else {
        return;
    };
    let weak = Arc::downgrade(inner);
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        tokio::time::sleep(timeout).await;
        let Some(inner) = weak.upgrade() else { return };
        let expired = {
            let mut state = lock(&inner.state);
            let idle = state
                .entries
                .get(&id)
                .is_some_and(|s| s.clients.is_empty() && s.generation == generation);
            match idle {
                true => state.entries.remove(&id).inspect(|slot| {
                    if let Some(name) = &slot.name {
                        state.forget_name(name, id);
                    }
                }),
                false => None,
            }
        };
        if let Some(slot) = expired {
            tracing::debug!(id = %id, "idle entry timed out");
            slot.entry.end(EndReason::Idle);
        }
    });
}

/// A client's claim on an entry: while any lease is held, the idle timeout
/// does not run. Dropping the last one starts it.
pub struct Lease {
    release: Option<Box<dyn Release>>,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").finish_non_exhaustive()
    }
}

/// Type erasure for [`Lease`], so it does not carry the entry type.
trait Release: Send + Sync {
    fn release(&self);
}

struct Releaser<T> {
    session: Weak<Inner<T>>,
    id: PaneId,
    client: &'static str,
}

impl<T: Entry> Release for Releaser<T> {
    fn release(&self) {
        let Some(inner) = self.session.upgrade() else {
            return;
        };
        let mut state = lock(&inner.state);
        let Some(slot) = state.entries.get_mut(&self.id) else {
            return;
        };
        if let Some(count) = slot.clients.get_mut(self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                slot.clients.remove(self.client);
            }
        }
        let (idle, generation, timeout) =
            (slot.clients.is_empty(), slot.generation, slot.idle_timeout);
        drop(state);
        if idle {
            arm_idle(&inner, self.id, generation, timeout);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release.release();
        }
    }
}

impl Session<Pane> {
    /// Starts `cmd` as a new pane of this session (named `name`, which
    /// must be free), with a client attached from its first byte (see
    /// [`Pane::spawn_attached`]) and leasing it. The pane leaves the
    /// session when its process ends.
    ///
    /// The process is started outside the session's lock (a fork and exec
    /// would hold up every other client of the session): its id and name
    /// are reserved first, not live until the pane is in, and freed again
    /// if it fails to start.
    ///
    /// The lease is `claim`'s client's, and the pane is kept for
    /// `claim`'s idle timeout once nobody holds it.
    pub fn spawn(
        &self,
        cmd: &Command,
        config: PaneConfig,
        name: Option<String>,
        claim: Claim,
    ) -> Result<(PaneId, Attachment, Lease), Error> {
        let id = self.lock().reserve(name.as_deref())?;
        self.start(Reservation::new(self, id, name), cmd, config, claim)
    }

    /// Starts the pane of `reservation` and makes it live.
    fn start(
        &self,
        reservation: Reservation<'_>,
        cmd: &Command,
        config: PaneConfig,
        claim: Claim,
    ) -> Result<(PaneId, Attachment, Lease), Error> {
        let (pane, attachment) = Pane::spawn_attached_as(cmd, config, Some(reservation.id.get()))?;
        let id = reservation.fill(pane.clone(), claim)?;
        let session = Arc::downgrade(&self.inner);
        pane.on_exit(move || {
            if let Some(inner) = session.upgrade() {
                Session { inner }.remove(id);
            }
        });
        Ok((id, attachment, self.lease_counted(id, claim.client)))
    }

    /// The live pane named `name` with a new lease on it, or a new pane of
    /// that name running `cmd` (see [`Session::spawn`]). The flag is true
    /// when the pane was started by this call. While another call is
    /// starting a pane of that name, this one waits for it (and leases
    /// it), so two clients asking for one name at once share one pane;
    /// the wait is a task's, not a thread's. The lease is `claim`'s
    /// client's; `claim`'s idle timeout applies only to a pane this call
    /// starts.
    pub async fn get_or_spawn(
        &self,
        name: &str,
        cmd: &Command,
        config: PaneConfig,
        claim: Claim,
    ) -> Result<(PaneId, Pane, Lease, bool), Error> {
        let id = loop {
            // Taken before looking, so an end of the reservation between
            // the look and the wait is not missed.
            let ended = self.inner.reservations.notified();
            let reserved = {
                let mut state = self.lock();
                match state.names.get(name).copied() {
                    None => Some(state.reserve(Some(name))?),
                    // Starting elsewhere, outside the lock: a fork, not long.
                    Some(id) if state.reserved.contains(&id) => None,
                    Some(id) => match state.entries.get_mut(&id) {
                        Some(slot) if slot.entry.exit_status().is_none() => {
                            slot.take_lease(claim.client);
                            let pane = slot.entry.clone();
                            drop(state);
                            return Ok((id, pane, self.lease_counted(id, claim.client), false));
                        }
                        // It ended and is leaving the session: the name is free.
                        ended_slot => {
                            if let Some(slot) = ended_slot {
                                slot.name = None;
                            }
                            state.names.remove(name);
                            Some(state.reserve(Some(name))?)
                        }
                    },
                }
            };
            match reserved {
                Some(id) => break id,
                None => ended.await,
            }
        };
        let reservation = Reservation::new(self, id, Some(name.to_owned()));
        let (id, attachment, lease) = self.start(reservation, cmd, config, claim)?;
        Ok((id, attachment.pane(), lease, true))
    }
}

/// An id (and name) reserved for a pane being started: filled with the
/// pane, or, when dropped unfilled (the spawn failed), freed again.
struct Reservation<'a> {
    session: &'a Session<Pane>,
    id: PaneId,
    name: Option<String>,
    filled: bool,
}

impl<'a> Reservation<'a> {
    fn new(session: &'a Session<Pane>, id: PaneId, name: Option<String>) -> Self {
        Reservation {
            session,
            id,
            name,
            filled: false,
        }
    }

    /// Makes `pane` live under the reserved id, leased once (by the
    /// spawner, `claim`'s client) and kept for `claim`'s idle timeout.
    /// Fails, ending the pane, when the session ended everything while it
    /// started.
    fn fill(mut self, pane: Pane, claim: Claim) -> Result<PaneId, Error> {
        let mut state = self.session.lock();
        if !state.reserved.remove(&self.id) {
            drop(state);
            pane.end(EndReason::Shutdown);
            return Err(Error::SessionEnded);
        }
        state.entries.insert(
            self.id,
            Slot {
                entry: pane,
                name: self.name.take(),
                started: SystemTime::now(),
                clients: BTreeMap::from([(claim.client, 1)]),
                idle_timeout: claim.idle_timeout,
                generation: 1,
            },
        );
        self.filled = true;
        drop(state);
        self.session.inner.reservations.notify_waiters();
        Ok(self.id)
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.filled {
            return;
        }
        let mut state = self.session.lock();
        state.reserved.remove(&self.id);
        if let Some(name) = &self.name {
            state.forget_name(name, self.id);
        }
        drop(state);
        self.session.inner.reservations.notify_waiters();
    }
}

/// The lock guards short, non-panicking sections: recover from poison.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures_util::FutureExt as _;

    use super::*;

    /// An entry that counts how it was ended.
    #[derive(Clone, Default)]
    struct Counted {
        ended: Arc<Mutex<Vec<EndReason>>>,
        offset: Arc<AtomicUsize>,
    }

    impl Entry for Counted {
        fn end(&self, why: EndReason) {
            lock(&self.ended).push(why);
        }
        fn output_offset(&self) -> Option<u64> {
            Some(self.offset.load(Ordering::Relaxed) as u64)
        }
    }

    /// A client whose panes are kept until they exit.
    const KEPT: Claim = Claim {
        client: "test",
        idle_timeout: None,
    };

    fn with_idle(secs: u64) -> Session<Counted> {
        Session::new(SessionConfig {
            idle_timeout: Some(Duration::from_secs(secs)),
        })
    }

    #[test]
    fn ids_come_only_from_the_session() {
        let session = Session::<Counted>::default();
        let a = session.insert(Counted::default(), None).unwrap();
        let b = session
            .insert(Counted::default(), Some("work".into()))
            .unwrap();
        assert_ne!(a, b);
        assert_eq!(session.find(a.get()).unwrap().0, a);
        assert!(session.find(0).is_none());
        assert!(session.find(b.get() + 1).is_none());
        assert_eq!(session.by_name("work").unwrap().0, b);
        assert!(matches!(
            session.insert(Counted::default(), Some("work".into())),
            Err(Error::NameTaken(name)) if name == "work"
        ));
        session.remove(b);
        assert!(session.by_name("work").is_none());
        assert!(session.find(b.get()).is_none());
        // A removed id is never handed out again.
        let c = session.insert(Counted::default(), None).unwrap();
        assert!(c.get() > b.get());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_entries_end_after_the_last_lease() {
        let session = with_idle(10);
        let entry = Counted::default();
        let id = session.insert(entry.clone(), None).unwrap();
        let lease = session.lease(id, "test").unwrap();
        let second = session.lease(id, "test").unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(session.get(id).is_some(), "leased entries never expire");
        drop(lease);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(session.get(id).is_some(), "one lease is still held");
        drop(second);
        tokio::time::sleep(Duration::from_secs(9)).await;
        // Leasing again within the timeout restarts it.
        drop(session.lease(id, "test").unwrap());
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(session.get(id).is_some());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(session.get(id).is_none());
        assert_eq!(*lock(&entry.ended), [EndReason::Idle]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_nobody_leases_expires_from_its_insertion() {
        let session = with_idle(5);
        let entry = Counted::default();
        let id = session
            .insert(entry.clone(), Some("pending".into()))
            .unwrap();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(session.get(id).is_none());
        assert!(session.by_name("pending").is_none());
        assert_eq!(*lock(&entry.ended), [EndReason::Idle]);
    }

    #[tokio::test]
    async fn end_all_ends_everything_once() {
        let session = Session::<Counted>::default();
        let entries: Vec<Counted> = (0..3).map(|_| Counted::default()).collect();
        for e in &entries {
            session.insert(e.clone(), None).unwrap();
        }
        session.end_all();
        session.end_all();
        assert!(session.is_empty());
        for e in &entries {
            assert_eq!(*lock(&e.ended), [EndReason::Shutdown]);
        }
    }

    #[test]
    fn markers_hold_offsets_and_the_newest_64() {
        let session = Session::<Counted>::default();
        let entry = Counted::default();
        let id = session.insert(entry.clone(), None).unwrap();
        entry.offset.store(7, Ordering::Relaxed);
        let first = session.mark();
        entry.offset.store(9, Ordering::Relaxed);
        let later = session.insert(Counted::default(), None).unwrap();
        let second = session.mark();
        assert_eq!(session.marker_offset(first, id), Some(7));
        assert_eq!(session.marker_offset(second, id), Some(9));
        assert_eq!(session.marker_offset(first, later), None);
        assert_eq!(session.marker(first.get()), Some(first));
        assert_eq!(session.marker(0), None);
        for _ in 0..MAX_MARKERS {
            session.mark();
        }
        assert_eq!(session.marker(first.get()), None, "the oldest is forgotten");
        assert_eq!(
            session.marker(second.get() + 1).map(|m| m.get()),
            Some(second.get() + 1)
        );
    }

    #[tokio::test]
    async fn payload_changes_reach_watchers_with_their_setter() {
        let session = Session::<Counted>::default();
        let mut watcher = session.watch_payload();
        assert_eq!(session.payload(), None);
        session.set_payload(Some(Bytes::from_static(b"{\"a\":1}")), 3);
        watcher.changed().await.unwrap();
        let seen = watcher.borrow_and_update().clone();
        assert_eq!(seen.data.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(seen.from, 3);
        assert_eq!(session.payload().as_deref(), Some(&b"{\"a\":1}"[..]));
        session.set_payload(None, 4);
        assert_eq!(session.payload(), None);
        assert_eq!(watcher.borrow_and_update().from, 4);
    }

    #[tokio::test]
    async fn panes_leave_the_session_when_their_process_ends() {
        let session = Session::<Pane>::default();
        let cmd = Command::new("sh").args(["-c", "echo hi"]);
        let (id, mut attachment, lease) = session
            .spawn(&cmd, PaneConfig::default(), Some("job".into()), KEPT)
            .unwrap();
        while attachment.next().await.is_some() {}
        drop(lease);
        // The exit hook ran before the attachment saw the exit.
        assert!(session.get(id).is_none());
        assert!(session.by_name("job").is_none());
    }

    #[tokio::test]
    async fn get_or_spawn_reattaches_by_name() {
        let session = Session::<Pane>::default();
        let cmd = Command::new("cat");
        let (id, pane, lease, created) = session
            .get_or_spawn("w", &cmd, PaneConfig::default(), KEPT)
            .await
            .unwrap();
        assert!(created);
        let (again, same, second, created) = session
            .get_or_spawn("w", &cmd, PaneConfig::default(), KEPT)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(id, again);
        assert!(pane.ptr_eq(&same));
        assert_eq!(session.list()[0].leases, 2);
        drop((lease, second));
        session.end_all();
        assert!(session.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_name_being_spawned_is_waited_for_not_spawned_twice() {
        let session = Session::<Pane>::default();
        let cmd = Command::new("cat");
        // A spawn of "w" in progress: its id and name are reserved.
        let id = session.lock().reserve(Some("w")).unwrap();
        assert!(session.by_name("w").is_none(), "not live while starting");
        assert!(session.find(id.get()).is_none());
        assert!(session.list().is_empty());
        assert!(matches!(
            session.spawn(&cmd, PaneConfig::default(), Some("w".into()), KEPT),
            Err(Error::NameTaken(name)) if name == "w"
        ));
        // The second caller waits for the pane being started...
        let mut waiter = Box::pin(session.get_or_spawn("w", &cmd, PaneConfig::default(), KEPT));
        assert!((&mut waiter).now_or_never().is_none());
        // ...which then starts, and wakes it.
        let first = session
            .start(
                Reservation::new(&session, id, Some("w".into())),
                &cmd,
                PaneConfig::default(),
                KEPT,
            )
            .unwrap();
        let second = waiter.await.unwrap();
        let (first_id, attachment, lease) = first;
        let (second_id, pane, second_lease, created) = second;
        assert!(!created, "the second caller leases the pane being started");
        assert_eq!((first_id, second_id), (id, id));
        assert!(pane.ptr_eq(&attachment.pane()));
        assert_eq!(session.len(), 1);
        assert_eq!(session.list()[0].leases, 2);
        drop((attachment, lease, second_lease));
        session.end_all();
    }

    #[tokio::test]
    async fn a_failed_spawn_frees_its_name() {
        let session = Session::<Pane>::default();
        let missing = Command::new("/nonexistent/execwire-test-program");
        assert!(matches!(
            session
                .get_or_spawn("w", &missing, PaneConfig::default(), KEPT)
                .await,
            Err(Error::Spawn { .. })
        ));
        assert!(matches!(
            session.spawn(&missing, PaneConfig::default(), Some("w".into()), KEPT),
            Err(Error::Spawn { .. })
        ));
        assert!(session.is_empty());
        let (id, pane, lease, created) = session
            .get_or_spawn("w", &Command::new("cat"), PaneConfig::default(), KEPT)
            .await
            .unwrap();
        assert!(created, "the name is free again");
        assert_eq!(session.by_name("w").unwrap().0, id);
        assert!(pane.exit_status().is_none());
        drop(lease);
        session.end_all();
    }

    #[tokio::test]
    async fn a_pane_started_while_everything_ends_is_ended_too() {
        let session = Session::<Pane>::default();
        let id = session.lock().reserve(Some("late")).unwrap();
        session.end_all();
        let started = session.start(
            Reservation::new(&session, id, Some("late".into())),
            &Command::new("cat"),
            PaneConfig::default(),
            KEPT,
        );
        assert!(matches!(started, Err(Error::SessionEnded)));
        assert!(session.is_empty());
        assert!(session.by_name("late").is_none());
    }

    /// Two kinds of client on one session: a pane keeps the idle rule of
    /// whoever started it, whoever attaches later, and a lease of any
    /// kind holds its timer back.
    #[tokio::test(start_paused = true)]
    async fn each_pane_keeps_its_starters_idle_timeout() {
        let session = Session::<Pane>::default();
        let cmd = Command::new("cat");
        let timed = Claim {
            client: "timed",
            idle_timeout: Some(Duration::from_secs(10)),
        };
        let kept = Claim {
            client: "kept",
            idle_timeout: None,
        };
        let (forever, attachment, lease) = session
            .spawn(&cmd, PaneConfig::default(), None, kept)
            .unwrap();
        drop((attachment, lease));
        let (timed_id, timed_pane, timed_lease, _) = session
            .get_or_spawn("t", &cmd, PaneConfig::default(), timed)
            .await
            .unwrap();
        // A client of the timed kind attaches to the pane kept forever:
        // that does not give it a timeout.
        drop(session.lease(forever, "timed").unwrap());
        // A client of the other kind holds the timed pane past its timeout.
        let held = session.lease(timed_id, "kept").unwrap();
        drop(timed_lease);
        let listed = session.list();
        let entry = listed.iter().find(|l| l.id == timed_id).unwrap();
        assert_eq!(entry.leases, 1);
        assert_eq!(entry.clients, BTreeMap::from([("kept", 1)]));
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(session.get(timed_id).is_some(), "held by the other kind");
        assert!(session.get(forever).is_some(), "never idle-ended");
        // Once the last lease goes, the starter's timeout runs.
        drop(held);
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(session.get(timed_id).is_none());
        assert!(session.get(forever).is_some());
        assert!(session.list().iter().all(|l| l.clients.is_empty()));
        drop(timed_pane);
        session.end_all();
    }
}
