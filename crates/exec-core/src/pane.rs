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
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::command::{Command, ExitStatus, PtySize};
use crate::error::Error;
use crate::process::{Event, Events, MAX_CHUNK, Process, ProcessControl, VEOF};
use crate::record::{RecordConfig, Recorder};
use crate::replay::{ReadFrom, ReplayRing};
use crate::screen::Screen;
use crate::stdin::StdinWriter;

/// How long the group gets between `SIGHUP`/`SIGTERM` and `SIGKILL`.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Input a pane queues for its process beyond the pipe or terminal: a
/// generous paste. Writers wait while it is full.
const INPUT_QUEUE: usize = 256 * 1024;

/// Limits and lifetimes of a pane.
#[derive(Debug, Clone)]
pub struct PaneConfig {
    /// Bytes of recent output kept for clients that fall behind or resume
    /// from an offset.
    pub replay_bytes: usize,
    /// Most bytes one [`PaneEvent::Output`] carries (a reader that fell
    /// behind gets its backlog in pieces this large): the output a
    /// protocol's largest message holds, at most [`MAX_CHUNK`].
    pub chunk: usize,
    /// Record a terminal pane's output to an asciicast file (see
    /// [`Recorder`]); panes without a terminal are not recorded.
    pub record: Option<RecordConfig>,
}

impl Default for PaneConfig {
    fn default() -> Self {
        PaneConfig {
            replay_bytes: 1 << 20,
            chunk: MAX_CHUNK,
            record: None,
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

/// A terminal's new size, and the kind of client that set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resized {
    /// The size.
    pub size: PtySize,
    /// The client's kind (its protocol).
    pub by: &'static str,
}

/// A process (with or without a terminal) shared by any number of clients.
///
/// Output goes into one bounded replay ring (and, under a terminal, a
/// headless screen); each [`Attachment`] is a read offset into it. The
/// process is paused only while more output would evict bytes that every
/// attached client still has to read: a lone slow client slows the process,
/// while a slow client among several falls behind and gets a
/// [`PaneEvent::Redraw`] instead of stalling the others. With nobody
/// attached, the process runs freely and the ring keeps its latest output.
#[derive(Debug, Clone)]
pub struct Pane {
    inner: Arc<PaneInner>,
}

struct PaneInner {
    /// Locked before `state` wherever both are held: while the pump holds
    /// it, the ring cannot grow, so a redraw matches the ring's end exactly.
    screen: Mutex<Option<Screen>>,
    state: Mutex<PaneState>,
    /// Bumped whenever output or the exit status is added.
    changed: watch::Sender<()>,
    /// Signalled whenever a reader advances or leaves.
    space: Notify,
    /// Written by a task of its own, so a process that does not read
    /// holds back only the clients typing into it, never its output.
    stdin: Option<StdinWriter>,
    control: ProcessControl,
    /// The terminal size clients last set, and who set it (`""` for the
    /// size it started with); `None` without a terminal. A watch, so that
    /// clients of other kinds that show the size learn of each resize
    /// ([`Pane::watch_resizes`]).
    size: watch::Sender<Option<Resized>>,
    /// [`PaneConfig::chunk`].
    chunk: usize,
    /// Fed by the reader task itself, so it sees every byte whatever the
    /// clients do.
    recorder: Option<Recorder>,
    /// What runs in it ([`Command::argv`]), for listings.
    argv: Box<[String]>,
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
    /// Attached readers: id -> offset of the next byte each will read.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    exit: Option<ExitStatus>,
    on_exit: Vec<Box<dyn FnOnce() + Send>>,
}

impl PaneState {
    fn fastest_reader(&self) -> Option<u64> {
        self.readers.values().copied().max()
    }
}

impl Pane {
    /// Starts `cmd` as a pane. Under a terminal, stdout is the terminal;
    /// without one, stdout and stderr are merged into the pane's output.
    pub fn spawn(cmd: &Command, config: PaneConfig) -> Result<Pane, Error> {
        let (pane, events) = Self::started(cmd, config, None)?;
        pane.read(events);
        Ok(pane)
    }

    /// [`Pane::spawn`] with a client attached at the first byte before the
    /// process's output is read, so the process waits for it from its first
    /// write. Attaching after [`Pane::spawn`] races the process: until the
    /// attach it runs freely, and a fast writer (`cat` of a large file) can
    /// push its first output out of the ring before the client is there.
    pub fn spawn_attached(cmd: &Command, config: PaneConfig) -> Result<(Pane, Attachment), Error> {
        Self::spawn_attached_as(cmd, config, None)
    }

    /// [`Pane::spawn_attached`] for a pane whose session id is `id`, which
    /// then names its recording.
    pub(crate) fn spawn_attached_as(
        cmd: &Command,
        config: PaneConfig,
        id: Option<u64>,
    ) -> Result<(Pane, Attachment), Error> {
        let (pane, events) = Self::started(cmd, config, id)?;
        // The ring is still empty: this reader starts at offset 0 and holds
        // the process back from there.
        let attachment = pane.attach(Replay::From(0));
        pane.read(events);
        Ok((pane, attachment))
    }

    /// The pane of a started process whose output nobody reads yet. Its
    /// recording (if any) is named by `id`, else by the process id, which
    /// no other live pane has.
    fn started(
        cmd: &Command,
        config: PaneConfig,
        id: Option<u64>,
    ) -> Result<(Pane, Events), Error> {
        let mut process = Process::spawn(cmd)?;
        let recorder = match (&config.record, cmd.pty_size()) {
            (Some(record), Some(size)) => Some(Recorder::start(
                record,
                id.unwrap_or_else(|| u64::from(process.pid())),
                cmd,
                size,
            )),
            _ => None,
        };
        let stdin = process
            .take_stdin()
            .map(|s| StdinWriter::new(s, INPUT_QUEUE));
        let control = process.control();
        let screen = cmd.pty_size().map(|size| Screen::new(size.rows, size.cols));
        let chunk = config.chunk.clamp(1, MAX_CHUNK);
        let inner = Arc::new(PaneInner {
            screen: Mutex::new(screen),
            state: Mutex::new(PaneState {
                ring: ReplayRing::new(config.replay_bytes),
                readers: HashMap::new(),
                next_reader: 0,
                exit: None,
                on_exit: Vec::new(),
            }),
            changed: watch::Sender::new(()),
            space: Notify::new(),
            stdin,
            control,
            size: watch::Sender::new(cmd.pty_size().map(|size| Resized { size, by: "" })),
            chunk,
            recorder,
            argv: cmd.argv().into(),
        });
        Ok((
            Pane { inner },
            Events::with_prefixes(process, &[], &[], chunk),
        ))
    }

    /// Starts moving the process's output into the ring.
    fn read(&self, events: Events) {
        tokio::spawn(pump(self.inner.clone(), events));
    }

    /// The program and arguments the pane runs ([`Command::argv`]).
    pub fn command(&self) -> &[String] {
        &self.inner.argv
    }

    /// Process id of the pane's process (also its process group).
    pub fn pid(&self) -> u32 {
        self.inner.control.pid()
    }

    /// Attaches a client. Dropping the [`Attachment`] detaches it.
    pub fn attach(&self, replay: Replay) -> Attachment {
        let mut screen = lock(&self.inner.screen);
        let mut state = lock(&self.inner.state);
        let (start, end) = (state.ring.start(), state.ring.end());
        let (offset, redraw) = match replay {
            Replay::Live => (end, false),
            Replay::From(o) if o <= end && o >= start => (o, false),
            // Nothing was ever written: there is nothing to redraw.
            Replay::Screen | Replay::From(_) if end == 0 => (0, false),
            Replay::Screen | Replay::From(_) => match screen.is_some() {
                true => (end, true),
                false => (start, false),
            },
        };
        let id = state.next_reader;
        state.next_reader += 1;
        state.readers.insert(id, offset);
        drop(state);
        // The pump waits for the screen lock, so `end` is still the ring's end.
        let pending = screen.as_mut().filter(|_| redraw).map(Screen::redraw);
        drop(screen);
        Attachment {
            inner: self.inner.clone(),
            id,
            offset,
            pending,
            changed: self.inner.changed.subscribe(),
            exit_sent: false,
        }
    }

    /// Queues input for the process; waits while the pane's input queue is
    /// full (the process is not reading). Each write reaches the process
    /// whole, in the order writes found room.
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), Error> {
        match &self.inner.stdin {
            Some(stdin) => stdin.send(data.into()).await,
            None => Err(Error::StdinClosed),
        }
    }

    /// Ends the process's input after what is queued (see
    /// [`StdinWriter::close`]). A terminal stays writable: end of file there
    /// is a character, and other clients of the pane still type into it.
    pub async fn close_stdin(&self) -> Result<(), Error> {
        match &self.inner.stdin {
            Some(stdin) if stdin.is_terminal() => stdin.send(Bytes::from_static(&[VEOF])).await,
            Some(stdin) => {
                stdin.close();
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Resizes the terminal and the pane's screen, for a client of kind
    /// `by` (its protocol, as in [`Claim::client`](crate::Claim)): clients
    /// of other kinds watching the pane learn of it.
    pub fn resize(&self, size: PtySize, by: &'static str) -> Result<(), Error> {
        let mut result = Ok(());
        self.inner.size.send_if_modified(|current| {
            if current.is_none() {
                result = Err(Error::NoTerminal);
                return false;
            }
            if let Err(e) = self.inner.control.resize(size) {
                result = Err(e);
                return false;
            }
            *current = Some(Resized { size, by });
            // Under the size's lock, so concurrent resizes reach the
            // terminal, the recording and the screen in one order.
            if let Some(recorder) = &self.inner.recorder {
                recorder.resize(size);
            }
            if let Some(screen) = lock(&self.inner.screen).as_mut() {
                screen.resize(size.rows, size.cols);
            }
            true
        });
        result
    }

    /// Every resize from now on, with the kind of client that made it: a
    /// protocol that tells its clients of size changes (webexec's resize
    /// notice) sends those other protocols made. Ends when the pane is
    /// gone.
    pub fn watch_resizes(&self) -> watch::Receiver<Option<Resized>> {
        self.inner.size.subscribe()
    }

    /// The terminal's size (the last one set), `None` for a pane without a
    /// terminal.
    pub fn size(&self) -> Option<PtySize> {
        self.inner.size.borrow().map(|r| r.size)
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

/// The locks are only held for non-panicking sections; recover from a
/// poisoned one rather than spreading a panic to every client.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Moves the process's output into the ring and screen, waiting for room.
async fn pump(inner: Arc<PaneInner>, mut events: Events) {
    let status = loop {
        match events.next().await {
            Some(Ok(Event::Stdout(chunk) | Event::Stderr(chunk))) => loop {
                let space = inner.space.notified();
                {
                    let mut screen = lock(&inner.screen);
                    let mut state = lock(&inner.state);
                    let room = match state.fastest_reader() {
                        None => true,
                        Some(fastest) => state.ring.would_evict_to(chunk.len()) <= fastest,
                    };
                    if room {
                        state.ring.push(chunk.clone());
                        drop(state);
                        inner.changed.send_replace(());
                        if let Some(recorder) = &inner.recorder {
                            recorder.output(&chunk);
                        }
                        if let Some(screen) = screen.as_mut() {
                            screen.push(chunk);
                        }
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
    // The recording is complete before anyone learns of the exit.
    if let Some(recorder) = &inner.recorder {
        recorder.finish().await;
    }
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
                match state.ring.read_from(self.offset, self.inner.chunk) {
                    ReadFrom::Data(bytes) => {
                        self.offset += bytes.len() as u64;
                        state.readers.insert(self.id, self.offset);
                        drop(state);
                        self.inner.space.notify_one();
                        return Some(PaneEvent::Output(bytes));
                    }
                    ReadFrom::Evicted => {
                        drop(state);
                        if let Some(redraw) = self.resync() {
                            return Some(PaneEvent::Redraw(redraw));
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

    /// After falling behind the ring: a redraw and the offset it stands for
    /// (terminal panes), or a jump to the oldest byte held (others).
    fn resync(&mut self) -> Option<Bytes> {
        let mut screen = lock(&self.inner.screen);
        let redraw = screen.as_mut().map(Screen::redraw);
        let mut state = lock(&self.inner.state);
        self.offset = match redraw {
            Some(_) => state.ring.end(),
            None => state.ring.start(),
        };
        state.readers.insert(self.id, self.offset);
        drop(state);
        drop(screen);
        self.inner.space.notify_one();
        redraw
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
        lock(&self.inner.state).readers.remove(&self.id);
        // The pump may be waiting for this reader to make room.
        self.inner.space.notify_one();
    }
}
