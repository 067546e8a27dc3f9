//! Child processes with pipes or a pseudo terminal.
//!
//! Every child leads its own process group (a new session when it has a
//! terminal), so signals and the final kill reach everything it started.
//! Children are reaped by tokio; a dropped [`Process`] kills its group.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::{BufMut as _, Bytes, BytesMut};
use futures_util::FutureExt as _;
use rustix::process::{Pid, Signal};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio_util::sync::CancellationToken;

use crate::command::{Command, ExitStatus, PtySize};
use crate::error::Error;

/// Largest chunk one read of a process's output returns: the default pipe
/// buffer, so one read drains it. A protocol with smaller messages says so
/// with [`Output::set_prefix`] or [`Events::with_prefixes`].
pub const MAX_CHUNK: usize = 64 * 1024;

/// How long output may keep flowing after the leader exited before the rest
/// of its group (background jobs holding the pipe open) is killed.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// A running child process.
#[derive(Debug)]
pub struct Process {
    child: Child,
    control: ProcessControl,
    stdin: Option<Stdin>,
    stdout: Option<Output>,
    stderr: Option<Output>,
    /// Fired when this is dropped, so a writer blocked on the process's
    /// input ends with it (see [`crate::StdinWriter`]).
    gone: CancellationToken,
}

impl Process {
    /// Starts `cmd`.
    pub fn spawn(cmd: &Command) -> Result<Process, Error> {
        match cmd.pty {
            Some(size) => spawn_pty(cmd, size),
            None => spawn_pipes(cmd),
        }
    }

    /// The operating system's process id (also the process group id).
    pub fn pid(&self) -> u32 {
        self.control.inner.pid
    }

    /// A cloneable handle for signals and resizes, usable while another task
    /// waits for the process.
    pub fn control(&self) -> ProcessControl {
        self.control.clone()
    }

    /// The input side; `None` once taken or when started without stdin.
    pub fn take_stdin(&mut self) -> Option<Stdin> {
        self.stdin.take()
    }

    /// Standard output (for a terminal: everything the terminal shows).
    pub fn take_stdout(&mut self) -> Option<Output> {
        self.stdout.take()
    }

    /// Standard error; `None` under a terminal, where it is part of stdout.
    pub fn take_stderr(&mut self) -> Option<Output> {
        self.stderr.take()
    }

    /// Waits for the process to exit and reaps it.
    pub async fn wait(&mut self) -> Result<ExitStatus, Error> {
        let status = self.child.wait().await?;
        self.control.inner.exited.store(true, Ordering::Release);
        Ok(status.into())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Whatever happens to the owner, nothing it started may outlive it.
        self.control.kill_group();
        self.gone.cancel();
    }
}

/// Signals and resizes for a process, shared between the tasks serving it.
#[derive(Debug, Clone)]
pub struct ProcessControl {
    inner: Arc<ControlInner>,
}

#[derive(Debug)]
struct ControlInner {
    pid: u32,
    /// A duplicate of the terminal's master side, for window-size changes.
    pty: Option<OwnedFd>,
    exited: AtomicBool,
}

impl ProcessControl {
    fn new(pid: u32, pty: Option<OwnedFd>) -> Self {
        ProcessControl {
            inner: Arc::new(ControlInner {
                pid,
                pty,
                exited: AtomicBool::new(false),
            }),
        }
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.inner.pid
    }

    /// Changes the terminal size; the process gets `SIGWINCH`.
    pub fn resize(&self, size: PtySize) -> Result<(), Error> {
        let fd = self.inner.pty.as_ref().ok_or(Error::NoTerminal)?;
        let winsize = rustix::termios::Winsize {
            ws_row: size.rows,
            ws_col: size.cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(fd.as_fd(), winsize).map_err(|e| Error::Io(e.into()))
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: crate::Signal) -> Result<(), Error> {
        let raw = Signal::from_named_raw(signal.number()).ok_or_else(|| {
            Error::Signal(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot send {signal}"),
            ))
        })?;
        self.signal_group(raw)
    }

    fn signal_group(&self, signal: Signal) -> Result<(), Error> {
        let pid = i32::try_from(self.inner.pid)
            .ok()
            .and_then(Pid::from_raw)
            .ok_or_else(|| Error::Signal(io::Error::from(io::ErrorKind::InvalidInput)))?;
        rustix::process::kill_process_group(pid, signal).map_err(|e| Error::Signal(e.into()))
    }

    /// Ends the group: `SIGHUP` and `SIGTERM` now (shells and well-behaved
    /// programs clean up), `SIGKILL` after `grace` for whatever is left.
    pub fn terminate(&self, grace: Duration) {
        if self.signal_group(Signal::HUP).is_err() {
            return; // the group is already gone
        }
        let _ = self.signal_group(Signal::CONT);
        let _ = self.signal_group(Signal::TERM);
        let this = self.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                tokio::time::sleep(grace).await;
                this.kill_group();
            });
        } else {
            this.kill_group();
        }
    }

    /// `SIGKILL` to the whole group. Harmless when it is already gone.
    pub fn kill_group(&self) {
        let _ = self.signal_group(Signal::KILL);
    }

    /// True when the process runs under a terminal.
    pub fn is_terminal(&self) -> bool {
        self.inner.pty.is_some()
    }

    /// True once the leader was reaped.
    pub fn has_exited(&self) -> bool {
        self.inner.exited.load(Ordering::Acquire)
    }
}

fn spawn_error(cmd: &Command, error: io::Error) -> Error {
    Error::Spawn {
        program: cmd.program.to_string_lossy().into_owned(),
        error,
    }
}

fn spawn_pipes(cmd: &Command) -> Result<Process, Error> {
    let mut c = tokio::process::Command::new(&cmd.program);
    c.args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .stdin(if cmd.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        c.current_dir(dir);
    }
    if let Some(uid) = cmd.uid {
        c.uid(uid);
    }
    if let Some(gid) = cmd.gid {
        c.gid(gid);
    }
    if !cmd.fds.is_empty() {
        let mappings = cmd
            .fds
            .iter()
            .map(|(child_fd, fd)| {
                Ok(command_fds::FdMapping {
                    parent_fd: fd.try_clone()?,
                    child_fd: *child_fd,
                })
            })
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| spawn_error(cmd, e))?;
        command_fds::CommandFdExt::fd_mappings(&mut c, mappings)
            .map_err(|e| spawn_error(cmd, io::Error::other(e.to_string())))?;
    }
    let mut child = c.spawn().map_err(|e| spawn_error(cmd, e))?;
    let pid = child.id().ok_or_else(|| {
        spawn_error(
            cmd,
            io::Error::other("child exited before its pid was read"),
        )
    })?;
    let gone = CancellationToken::new();
    let stdin = child.stdin.take().map(|s| Stdin {
        inner: StdinInner::Pipe(s),
        gone: gone.clone(),
    });
    let stdout = child.stdout.take().map(|s| Output::new(Source::Stdout(s)));
    let stderr = child.stderr.take().map(|s| Output::new(Source::Stderr(s)));
    Ok(Process {
        child,
        control: ProcessControl::new(pid, None),
        stdin,
        stdout,
        stderr,
        gone,
    })
}

fn spawn_pty(cmd: &Command, size: PtySize) -> Result<Process, Error> {
    if !cmd.fds.is_empty() {
        return Err(spawn_error(
            cmd,
            io::Error::new(
                io::ErrorKind::Unsupported,
                "extra descriptors are not supported under a terminal",
            ),
        ));
    }
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(size.rows, size.cols))?;
    let resize_fd = pty.as_fd().try_clone_to_owned()?;
    let mut c = pty_process::Command::new(&cmd.program)
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true);
    if let Some(dir) = &cmd.cwd {
        c = c.current_dir(dir);
    }
    if let Some(uid) = cmd.uid {
        c = c.uid(uid);
    }
    if let Some(gid) = cmd.gid {
        c = c.gid(gid);
    }
    let child = c.spawn(pts).map_err(|e| match e {
        pty_process::Error::Io(io) => spawn_error(cmd, io),
        other => Error::Pty(other),
    })?;
    let pid = child.id().ok_or_else(|| {
        spawn_error(
            cmd,
            io::Error::other("child exited before its pid was read"),
        )
    })?;
    let (read, write) = pty.into_split();
    let gone = CancellationToken::new();
    let stdin = cmd.stdin.then_some(Stdin {
        inner: StdinInner::Pty(write),
        gone: gone.clone(),
    });
    Ok(Process {
        child,
        control: ProcessControl::new(pid, Some(resize_fd)),
        stdin,
        stdout: Some(Output::new(Source::Pty(read))),
        stderr: None,
        gone,
    })
}

/// The input side of a process. Writing it directly waits for the process
/// to read; a server that also reads the process's output hands it to a
/// [`StdinWriter`](crate::StdinWriter) instead.
#[derive(Debug)]
pub struct Stdin {
    inner: StdinInner,
    /// Fires when the [`Process`] is dropped.
    gone: CancellationToken,
}

#[derive(Debug)]
enum StdinInner {
    Pipe(ChildStdin),
    Pty(pty_process::OwnedWritePty),
}

/// The terminal's end-of-file character (Ctrl-D), what a user types to end
/// input to a program that reads a terminal.
pub(crate) const VEOF: u8 = 0x04;

impl Stdin {
    /// Writes all of `data`; waits while the process does not read (this is
    /// the backpressure that reaches the client).
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), Error> {
        let result = match &mut self.inner {
            StdinInner::Pipe(p) => p.write_all(data).await,
            StdinInner::Pty(p) => p.write_all(data).await,
        };
        result.map_err(|e| match e.kind() {
            io::ErrorKind::BrokenPipe => Error::StdinClosed,
            _ => Error::Io(e),
        })
    }

    /// Fires when the process this is the input of is dropped (and so
    /// killed): a write that waits for it to read would wait forever.
    pub(crate) fn process_gone(&self) -> CancellationToken {
        self.gone.clone()
    }

    /// True when this is a terminal's input (see [`Stdin::close`]).
    pub fn is_terminal(&self) -> bool {
        matches!(self.inner, StdinInner::Pty(_))
    }

    /// Ends input: closes the pipe, or for a terminal sends the end-of-file
    /// character, since a terminal's input cannot be closed on its own.
    pub async fn close(mut self) -> Result<(), Error> {
        match &mut self.inner {
            StdinInner::Pipe(p) => p.shutdown().await.map_err(Error::Io),
            StdinInner::Pty(p) => p.write_all(&[VEOF]).await.map_err(Error::Io),
        }
    }
}

/// An output stream of a process, read in chunks as the consumer asks for
/// them: nothing is buffered beyond the kernel's pipe, so a consumer that stops
/// reading stops the process.
#[derive(Debug)]
pub struct Output {
    source: Source,
    buf: BytesMut,
    /// Size of the next read.
    want: usize,
    /// Bytes every chunk starts with (see [`Output::set_prefix`]).
    prefix: &'static [u8],
    /// Most output bytes in one chunk, after the prefix.
    limit: usize,
}

impl Output {
    /// One read of at most `max` bytes, appended to `buf`; 0 at end of stream.
    async fn read_once(&mut self, max: usize) -> Result<usize, Error> {
        let mut limited = (&mut self.buf).limit(max);
        let n = match &mut self.source {
            Source::Stdout(s) => s.read_buf(&mut limited).await,
            Source::Stderr(s) => s.read_buf(&mut limited).await,
            Source::Pty(s) => match s.read_buf(&mut limited).await {
                // Linux reports a terminal whose other side is closed as EIO.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::IO.raw_os_error()) => Ok(0),
                other => other,
            },
        }?;
        Ok(n)
    }

    /// A stream that fills whole reads is bulk: a larger pipe lets the
    /// process run ahead between our reads, halving context switches on a
    /// busy machine. Only bulk streams get one, as pipe memory counts
    /// against a per-user limit.
    fn grow_pipe(&self) {
        let result = match &self.source {
            Source::Stdout(s) => rustix::pipe::fcntl_setpipe_size(s, BULK_PIPE),
            Source::Stderr(s) => rustix::pipe::fcntl_setpipe_size(s, BULK_PIPE),
            Source::Pty(_) => return,
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not grow the output pipe");
        }
    }
}

/// Pipe size for bulk output.
const BULK_PIPE: usize = 1 << 20;

/// First read size of an output stream.
const FIRST_READ: usize = 4096;

#[derive(Debug)]
enum Source {
    Stdout(ChildStdout),
    Stderr(ChildStderr),
    Pty(pty_process::OwnedReadPty),
}

impl Output {
    fn new(source: Source) -> Self {
        Output {
            source,
            buf: BytesMut::new(),
            want: FIRST_READ,
            prefix: &[],
            limit: MAX_CHUNK,
        }
    }

    /// Makes every chunk start with `prefix`, the data following it, and be
    /// at most `max_message` bytes long with it: a protocol whose messages
    /// are a fixed header and the output bytes gets them ready-made, within
    /// its size limit, without copying the output behind its header.
    pub fn set_prefix(&mut self, prefix: &'static [u8], max_message: usize) {
        self.prefix = prefix;
        self.limit = max_message.saturating_sub(prefix.len()).clamp(1, MAX_CHUNK);
        self.want = self.want.min(self.limit);
    }

    /// The next chunk (at most [`MAX_CHUNK`] bytes of output), or `None` at end of
    /// stream. For a terminal, the end comes when every process holding it has
    /// closed it.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>, Error> {
        // Reads start small, so an idle process costs little memory, and grow
        // while they come back full. In bulk, chunks share one allocation
        // until they are all dropped, then it is reused.
        let frame = self.prefix.len() + self.want;
        if self.buf.capacity() < frame {
            let batch = if self.want >= self.limit { 4 } else { 1 };
            self.buf.reserve(batch * frame);
        }
        // A read cancelled by `select!` leaves the prefix in place for the next.
        if self.buf.is_empty() {
            self.buf.extend_from_slice(self.prefix);
        }
        let mut n = self.read_once(self.want).await?;
        if n == 0 {
            return Ok(None);
        }
        if matches!(self.source, Source::Pty(_)) {
            // A terminal hands out at most a few KiB per read: take what else
            // is already waiting (never waiting for more), so bulk output
            // moves in large chunks and interactive output is not delayed.
            while n < self.limit {
                self.buf.reserve(4096);
                match self.read_once(self.limit - n).now_or_never() {
                    Some(Ok(more)) if more > 0 => n += more,
                    _ => break,
                }
            }
        }
        if n >= self.want * 3 / 4 && self.want < self.limit {
            self.want = (self.want * 4).min(self.limit);
            if self.want == self.limit {
                self.grow_pipe();
            }
        }
        Ok(Some(self.buf.split_to(self.prefix.len() + n).freeze()))
    }
}

/// What a process does, in the words every protocol translates from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Bytes the process wrote to stdout (or to its terminal).
    Stdout(Bytes),
    /// Bytes the process wrote to stderr.
    Stderr(Bytes),
    /// The process ended; always the last event, after all output.
    Exit(ExitStatus),
}

/// A process's output and exit as one ordered stream of [`Event`]s.
///
/// stdout and stderr are read as they arrive (their relative order is kept
/// as far as the kernel shows it), and [`Event::Exit`] comes only after both
/// streams ended. Once the leader exits, the rest of its group gets
/// [`DRAIN_AFTER_EXIT`] to close the streams before it is killed, so a
/// background job holding a pipe cannot keep a finished command open forever;
/// output already written is never dropped.
#[derive(Debug)]
pub struct Events {
    process: Process,
    stdout: Option<Output>,
    stderr: Option<Output>,
    status: Option<ExitStatus>,
    drain_deadline: Option<tokio::time::Instant>,
    finished: bool,
}

impl Events {
    /// Takes over `process`'s output streams and its exit. Take stdin and
    /// [`Process::control`] first.
    pub fn new(process: Process) -> Self {
        Self::with_prefixes(process, &[], &[], MAX_CHUNK)
    }

    /// Like [`Events::new`], but every [`Event::Stdout`] chunk starts with
    /// `stdout_prefix` and every [`Event::Stderr`] chunk with
    /// `stderr_prefix`, each at most `max_message` bytes long (see
    /// [`Output::set_prefix`]).
    pub fn with_prefixes(
        mut process: Process,
        stdout_prefix: &'static [u8],
        stderr_prefix: &'static [u8],
        max_message: usize,
    ) -> Self {
        let mut stdout = process.take_stdout();
        let mut stderr = process.take_stderr();
        if let Some(out) = stdout.as_mut() {
            out.set_prefix(stdout_prefix, max_message);
        }
        if let Some(err) = stderr.as_mut() {
            err.set_prefix(stderr_prefix, max_message);
        }
        Events {
            process,
            stdout,
            stderr,
            status: None,
            drain_deadline: None,
            finished: false,
        }
    }

    /// The next event; `None` after [`Event::Exit`].
    ///
    /// Cancel-safe: dropping the future (in a `select!`) loses no event.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        if self.finished {
            return None;
        }
        loop {
            if self.stdout.is_none() && self.stderr.is_none() {
                // Only the (cancel-safe) wait may suspend here; state changes
                // after it, so a caller's `select!` can drop this future.
                let status = match self.status {
                    Some(s) => Ok(s),
                    None => self.process.wait().await,
                };
                self.finished = true;
                return Some(status.map(Event::Exit));
            }
            let deadline = self.drain_deadline;
            tokio::select! {
                r = read_opt(&mut self.stdout) => match r {
                    Ok(Some(b)) => return Some(Ok(Event::Stdout(b))),
                    other => end_stream(&mut self.stdout, other),
                },
                r = read_opt(&mut self.stderr) => match r {
                    Ok(Some(b)) => return Some(Ok(Event::Stderr(b))),
                    other => end_stream(&mut self.stderr, other),
                },
                status = self.process.wait(), if self.status.is_none() => match status {
                    Ok(s) => {
                        self.status = Some(s);
                        self.drain_deadline = Some(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                    }
                    Err(e) => return Some(Err(e)),
                },
                () = sleep_until_opt(deadline) => {
                    self.process.control.kill_group();
                    self.drain_deadline = None;
                }
            }
        }
    }
}

async fn read_opt(out: &mut Option<Output>) -> Result<Option<Bytes>, Error> {
    match out {
        Some(o) => o.next_chunk().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn end_stream(slot: &mut Option<Output>, result: Result<Option<Bytes>, Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "output stream failed; treating it as ended");
    }
    *slot = None;
}

/// Raises this process's soft limit on open files to its hard limit.
///
/// Every session holds a socket and two to four pipe or terminal ends, so the
/// common soft limit of 1024 caps a server at a few hundred sessions. Returns
/// the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open-files limit");
        }
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}
