//! Panes: processes that outlive their clients.
//!
//! A pane's output goes into one bounded [`ReplayRing`] and (under a terminal)
//! a headless terminal screen. Clients do not get queues of their own: each
//! [`Attachment`] is an offset into the ring, so fan-out costs one `Bytes`
//! clone per client and chunk.
//!
//! Backpressure follows the fastest client: the process is paused only while
//! pushing more output would evict bytes that *every* attached client still
//! has to read. A single slow client therefore slows the process, while one
//! slow client among several falls behind the ring and is resynchronised with
//! a screen redraw instead of stalling the others. With nobody attached, the
//! process runs freely and the ring keeps the most recent output.

use std::collections::HashMap;
use std::num::NonZeroU16;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::command::{Command, ExitStatus, PtySize};
use crate::error::Error;
use crate::process::{Event, Events, Process, ProcessControl, Stdin};
use crate::replay::{ReadFrom, ReplayRing};

/// How long the group gets between `SIGHUP`/`SIGTERM` and `SIGKILL`.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Limits and lifetimes of a pane.
#[derive(Debug, Clone)]
pub struct PaneConfig {
    /// Bytes of recent output kept for clients that fall behind or resume
    /// from an offset.
    pub replay_bytes: usize,
    /// When set, the pane's process is ended this long after its last client
    /// detached, unless a client attaches again before.
    pub idle_timeout: Option<Duration>,
}

impl Default for PaneConfig {
    fn default() -> Self {
        PaneConfig {
            replay_bytes: 1 << 20,
            idle_timeout: None,
        }
    }
}

/// Where a new attachment starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A redraw of the current screen (terminal panes), or what the ring
    /// holds (panes without a terminal), then live output.
    Screen,
    /// The bytes after this output offset if the ring still holds them, else
    /// as [`Replay::Screen`].
    From(u64),
    /// Only output produced from now on.
    Live,
}

/// What an attached client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaneEvent {
    /// Output, in order, without gaps since the previous `Output`.
    Output(Bytes),
    /// Bytes that redraw the whole screen from any state: sent on attach and
    /// after the client fell too far behind.
    Redraw(Bytes),
    /// The process ended; comes after all output this client was owed.
    Exit(ExitStatus),
}

/// A process (with or without a terminal) shared by any number of clients.
#[derive(Debug, Clone)]
pub struct Pane {
    inner: Arc<PaneInner>,
}

struct PaneInner {
    state: Mutex<PaneState>,
    /// Bumped whenever output or the exit status is added.
    changed: watch::Sender<()>,
    /// Signalled whenever a reader advances or leaves.
    space: Notify,
    stdin: tokio::sync::Mutex<Option<Stdin>>,
    control: ProcessControl,
    config: PaneConfig,
}

impl std::fmt::Debug for PaneInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaneInner")
            .field("pid", &self.control.pid())
            .finish_non_exhaustive()
    }
}

struct PaneState {
    ring: ReplayRing,
    screen: Option<vt100::Parser>,
    /// Attached readers: id -> offset of the next byte each will read.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    /// Bumped on every attach, so an idle timer knows it was superseded.
    generation: u64,
    exit: Option<ExitStatus>,
    on_exit: Vec<Box<dyn FnOnce() + Send>>,
}

impl PaneState {
    fn fastest_reader(&self) -> Option<u64> {
        self.readers.values().copied().max()
    }

    /// Bytes that bring any terminal to this pane's current screen.
    fn redraw(&self) -> Bytes {
        let Some(parser) = &self.screen else {
            return Bytes::new();
        };
        let screen = parser.screen();
        let mut out = String::new();
        // Leave or enter the alternate screen first: the formatted contents
        // below draw onto whichever screen the client is on.
        out.push_str(if screen.alternate_screen() {
            "\x1b[?1049h"
        } else {
            "\x1b[?1049l"
        });
        out.push_str(&screen.state_formatted());
        Bytes::from(out)
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Pane {
    /// Starts `cmd` as a pane. Under a terminal, stdout is the terminal;
    /// without one, stdout and stderr are merged into the pane's output.
    pub fn spawn(cmd: &Command, config: PaneConfig) -> Result<Pane, Error> {
        let mut process = Process::spawn(cmd)?;
        let stdin = process.take_stdin();
        let control = process.control();
        let screen = cmd
            .pty_size()
            .map(|size| vt100::Parser::new(nonzero(size.rows), nonzero(size.cols), 0));
        let inner = Arc::new(PaneInner {
            state: Mutex::new(PaneState {
                ring: ReplayRing::new(config.replay_bytes),
                screen,
                readers: HashMap::new(),
                next_reader: 0,
                generation: 0,
                exit: None,
                on_exit: Vec::new(),
            }),
            changed: watch::Sender::new(()),
            space: Notify::new(),
            stdin: tokio::sync::Mutex::new(stdin),
            control,
            config,
        });
        tokio::spawn(pump(inner.clone(), Events::new(process)));
        Ok(Pane { inner })
    }

    /// Process id of the pane's process (also its process group).
    pub fn pid(&self) -> u32 {
        self.inner.control.pid()
    }

    /// Attaches a client. Dropping the [`Attachment`] detaches it.
    pub fn attach(&self, replay: Replay) -> Attachment {
        let mut state = lock(&self.inner.state);
        let end = state.ring.end();
        let (offset, redraw) = match replay {
            Replay::Live => (end, false),
            Replay::From(o) if o <= end && o >= state.ring.start() => (o, false),
            // Nothing was ever written: there is nothing to redraw.
            Replay::Screen | Replay::From(_) if end == 0 => (0, false),
            Replay::Screen | Replay::From(_) if state.screen.is_none() => {
                (state.ring.start(), false)
            }
            Replay::Screen | Replay::From(_) => (end, true),
        };
        let pending = redraw.then(|| state.redraw());
        let id = state.next_reader;
        state.next_reader += 1;
        state.generation += 1;
        state.readers.insert(id, offset);
        drop(state);
        Attachment {
            inner: self.inner.clone(),
            id,
            offset,
            pending,
            changed: self.inner.changed.subscribe(),
            exit_sent: false,
        }
    }

    /// Sends input to the process; waits while it does not read.
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        let mut stdin = self.inner.stdin.lock().await;
        match stdin.as_mut() {
            Some(s) => s.write_all(data).await,
            None => Err(Error::StdinClosed),
        }
    }

    /// Ends the process's input (see [`Stdin::close`]).
    pub async fn close_stdin(&self) -> Result<(), Error> {
        let stdin = self.inner.stdin.lock().await.take();
        match stdin {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }

    /// Resizes the terminal and the pane's screen.
    pub fn resize(&self, size: PtySize) -> Result<(), Error> {
        self.inner.control.resize(size)?;
        if let Some(parser) = lock(&self.inner.state).screen.as_mut() {
            parser
                .screen_mut()
                .set_size(nonzero(size.rows), nonzero(size.cols));
        }
        Ok(())
    }

    /// The process's control handle (signals).
    pub fn control(&self) -> &ProcessControl {
        &self.inner.control
    }

    /// Ends the pane's process group (`SIGHUP`, `SIGTERM`, then `SIGKILL`).
    pub fn terminate(&self) {
        self.inner.control.terminate(KILL_GRACE);
    }

    /// The exit status, once the process ended and its output was read.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        lock(&self.inner.state).exit
    }

    /// Offset one past the newest output byte: a marker for [`Replay::From`].
    pub fn output_offset(&self) -> u64 {
        lock(&self.inner.state).ring.end()
    }

    /// Number of attached clients.
    pub fn attached(&self) -> usize {
        lock(&self.inner.state).readers.len()
    }

    /// Runs `f` once the pane has ended (at once if it already has).
    pub fn on_exit(&self, f: impl FnOnce() + Send + 'static) {
        let mut state = lock(&self.inner.state);
        if state.exit.is_some() {
            drop(state);
            f();
        } else {
            state.on_exit.push(Box::new(f));
        }
    }

    /// True when both handles name the same pane.
    pub fn ptr_eq(&self, other: &Pane) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// The state is only ever held for short, non-panicking sections; recover it
/// from a poisoned lock rather than spreading a panic to every client.
fn lock(state: &Mutex<PaneState>) -> MutexGuard<'_, PaneState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves the process's output into the ring and screen, waiting for room.
async fn pump(inner: Arc<PaneInner>, mut events: Events) {
    let status = loop {
        match events.next().await {
            Some(Ok(Event::Stdout(chunk) | Event::Stderr(chunk))) => loop {
                let space = inner.space.notified();
                {
                    let mut state = lock(&inner.state);
                    let room = match state.fastest_reader() {
                        None => true,
                        Some(fastest) => state.ring.would_evict_to(chunk.len()) <= fastest,
                    };
                    if room {
                        if let Some(parser) = state.screen.as_mut() {
                            parser.process(&chunk);
                        }
                        state.ring.push(chunk);
                        drop(state);
                        inner.changed.send_replace(());
                        break;
                    }
                }
                space.await;
            },
            Some(Ok(Event::Exit(status))) => break status,
            Some(Err(e)) => {
                tracing::warn!(error = %e, pid = inner.control.pid(), "pane process failed");
                inner.control.kill_group();
                break ExitStatus {
                    code: None,
                    signal: None,
                };
            }
            None => {
                break ExitStatus {
                    code: None,
                    signal: None,
                };
            }
        }
    };
    // Anything the leader left behind in its group goes with it.
    inner.control.kill_group();
    let hooks = {
        let mut state = lock(&inner.state);
        state.exit = Some(status);
        std::mem::take(&mut state.on_exit)
    };
    inner.changed.send_replace(());
    for hook in hooks {
        hook();
    }
}

/// One client's view of a pane: a read position in its output.
pub struct Attachment {
    inner: Arc<PaneInner>,
    id: u64,
    offset: u64,
    pending: Option<Bytes>,
    changed: watch::Receiver<()>,
    exit_sent: bool,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("id", &self.id)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    /// The next event for this client; `None` after [`PaneEvent::Exit`].
    ///
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn next(&mut self) -> Option<PaneEvent> {
        if let Some(redraw) = self.pending.take() {
            return Some(PaneEvent::Redraw(redraw));
        }
        loop {
            self.changed.borrow_and_update();
            {
                let mut state = lock(&self.inner.state);
                match state.ring.read_from(self.offset) {
                    ReadFrom::Data(bytes) => {
                        self.offset += bytes.len() as u64;
                        state.readers.insert(self.id, self.offset);
                        drop(state);
                        self.inner.space.notify_one();
                        return Some(PaneEvent::Output(bytes));
                    }
                    ReadFrom::Evicted => {
                        let event = if state.screen.is_some() {
                            self.offset = state.ring.end();
                            Some(PaneEvent::Redraw(state.redraw()))
                        } else {
                            // No screen to redraw: resume at the oldest byte held.
                            self.offset = state.ring.start();
                            None
                        };
                        state.readers.insert(self.id, self.offset);
                        drop(state);
                        self.inner.space.notify_one();
                        if event.is_some() {
                            return event;
                        }
                        continue;
                    }
                    ReadFrom::UpToDate => {
                        if let Some(status) = state.exit {
                            if self.exit_sent {
                                return None;
                            }
                            self.exit_sent = true;
                            return Some(PaneEvent::Exit(status));
                        }
                    }
                }
            }
            if self.changed.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Offset of the next byte this client will receive: what it has seen.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The pane this attachment reads.
    pub fn pane(&self) -> Pane {
        Pane {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let mut state = lock(&self.inner.state);
        state.readers.remove(&self.id);
        let idle = state.readers.is_empty() && state.exit.is_none();
        let generation = state.generation;
        drop(state);
        self.inner.space.notify_one();
        let Some(timeout) = self.inner.config.idle_timeout.filter(|_| idle) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner.control.kill_group();
            return;
        };
        let weak: Weak<PaneInner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(inner) = weak.upgrade() else { return };
            let state = lock(&inner.state);
            if state.readers.is_empty() && state.generation == generation && state.exit.is_none() {
                drop(state);
                tracing::debug!(pid = inner.control.pid(), "idle pane timed out");
                inner.control.terminate(KILL_GRACE);
            }
        });
    }
}

/// Panes by name, for protocols whose clients re-attach by id (wsep's
/// session `id`). An ended pane leaves the registry by itself.
#[derive(Debug, Clone, Default)]
pub struct PaneRegistry {
    panes: Arc<Mutex<HashMap<String, Pane>>>,
}

impl PaneRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The live pane named `name`, or a new one running `cmd`. The flag is
    /// true when the pane was created by this call.
    pub fn get_or_spawn(
        &self,
        name: &str,
        cmd: &Command,
        config: PaneConfig,
    ) -> Result<(Pane, bool), Error> {
        let mut panes = self.panes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pane) = panes.get(name)
            && pane.exit_status().is_none()
        {
            return Ok((pane.clone(), false));
        }
        let pane = Pane::spawn(cmd, config)?;
        panes.insert(name.to_owned(), pane.clone());
        drop(panes);
        let registry = Arc::downgrade(&self.panes);
        let key = name.to_owned();
        let this = pane.clone();
        pane.on_exit(move || {
            if let Some(panes) = registry.upgrade() {
                let mut panes = panes.lock().unwrap_or_else(|e| e.into_inner());
                if panes.get(&key).is_some_and(|p| p.ptr_eq(&this)) {
                    panes.remove(&key);
                }
            }
        });
        Ok((pane, true))
    }

    /// The live pane named `name`.
    pub fn get(&self, name: &str) -> Option<Pane> {
        let panes = self.panes.lock().unwrap_or_else(|e| e.into_inner());
        panes
            .get(name)
            .filter(|p| p.exit_status().is_none())
            .cloned()
    }

    /// Number of panes held.
    pub fn len(&self) -> usize {
        self.panes.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True when no pane is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every pane (server shutdown).
    pub fn terminate_all(&self) {
        let panes: Vec<Pane> = self
            .panes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for pane in panes {
            pane.terminate();
        }
    }
}
