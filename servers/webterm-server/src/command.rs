//! One command of a connection: the shell runs the line, its output goes
//! out as incremental `update` messages, coalesced under load.
//!
//! Breakpoints: each requested pipe `a | b` becomes `a 2>/dev/fd/S | tee
//! /dev/fd/D | b`, where `D` and `S` are pipes the server reads. `tee`
//! passes every byte on unchanged and blocks when `b` is slow, so the
//! pipeline's output, exit status and backpressure are what they were; the
//! server sees exactly the bytes that crossed, and the writing stage's
//! stderr, which it reports both as the stage's and as the command's.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use exec_core::{
    Batcher, ByteReceiver, Decoded, Event, Events, Pacing, Process, ProcessControl, StdinWriter,
    TextDecoder,
};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use webterm_proto::{Breakpoint, Output, Raw, Reply, Status, Streams, Update};

/// Small updates of one command are paced at one per 5 ms on average,
/// with bursts of 4: output after a quiet spell (an echoed keystroke, a
/// prompt) goes out at once, while a stream of small writes is coalesced
/// instead of flooding the client with tiny messages, each of which
/// repeats the command's line and ids. An update goes out as soon as
/// 32 KiB of output is waiting.
const PACING: Pacing = Pacing {
    interval: Duration::from_millis(5),
    burst: 4,
    batch_bytes: 32 * 1024,
};

/// After the shell exits, how long breakpoint pipes may take to drain
/// before whatever still holds them (a background job) is killed.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Descriptor numbers the shell sees for breakpoint pipes: data of tap k at
/// `FIRST_TAP_FD + 2k`, the writing stage's stderr at the next one.
const FIRST_TAP_FD: i32 = 100;

/// Why a command could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StartError {
    #[error("empty command")]
    Empty,
    #[error("cannot find the pipes of the command: {0}")]
    Pipeline(#[from] webterm_proto::PipelineError),
    #[error("breakpoint {index} does not exist: the command has {pipes} pipe(s)")]
    NoSuchPipe { index: usize, pipes: usize },
    #[error("{0}")]
    Spawn(#[from] exec_core::Error),
    #[error("creating a breakpoint pipe: {0}")]
    Pipe(#[from] std::io::Error),
}

/// What to run and how to report it.
pub(crate) struct Spec {
    pub(crate) shell: String,
    pub(crate) line: String,
    pub(crate) breakpoints: Vec<usize>,
    pub(crate) client_id: Value,
    pub(crate) server_id: u64,
    pub(crate) html: bool,
    /// Bytes of input the command may have waiting (see [`StdinWriter`]).
    pub(crate) max_pending_input: usize,
}

/// A started command, as its connection keeps it.
#[derive(Debug)]
pub(crate) struct Started {
    /// The command's input, written by a task of its own so that a command
    /// not reading it holds up neither its output nor the connection.
    pub(crate) input: StdinWriter,
    pub(crate) control: ProcessControl,
    /// Fires once the command's last update is queued (or it was stopped).
    pub(crate) finished: CancellationToken,
}

/// `line` with a `tee` on every tapped pipe and the writing stage's stderr
/// sent to its own descriptor. `taps` holds pipe indexes, sorted, unique.
pub(crate) fn tapped_line(line: &str, taps: &[usize]) -> Result<String, StartError> {
    let pipes = webterm_proto::pipes(line)?;
    let mut out = String::with_capacity(line.len() + taps.len() * 48);
    let mut copied = 0;
    let mut stage_start = 0;
    for (index, pipe) in pipes.iter().enumerate() {
        if let Ok(k) = taps.binary_search(&index) {
            let data_fd = FIRST_TAP_FD + 2 * k as i32;
            out.push_str(line.get(copied..pipe.offset).unwrap_or_default());
            let stage = line.get(stage_start..pipe.offset).unwrap_or_default();
            // A stage that redirects its own stderr keeps its choice: ours,
            // written after, would override it.
            if !pipe.with_stderr && !redirects_stderr(stage) {
                out.push_str(&format!(" 2>/dev/fd/{}", data_fd + 1));
            }
            let op = if pipe.with_stderr { "|&" } else { "|" };
            out.push_str(&format!(" {op} tee /dev/fd/{data_fd} | "));
            copied = pipe.offset + pipe.len();
        }
        stage_start = pipe.offset + pipe.len();
    }
    if let Some(&index) = taps.iter().find(|&&i| i >= pipes.len()) {
        return Err(StartError::NoSuchPipe {
            index,
            pipes: pipes.len(),
        });
    }
    out.push_str(line.get(copied..).unwrap_or_default());
    Ok(out)
}

/// Whether a stage's text redirects file descriptor 2 (`2>`, `&>`,
/// `>&file`). Errs on the side of yes: quotes are not looked into.
fn redirects_stderr(stage: &str) -> bool {
    let b = stage.as_bytes();
    b.windows(2).enumerate().any(|(i, w)| match w {
        b"2>" | b"&>" => true,
        b">&" => !b
            .get(i + 2)
            .is_some_and(|c| c.is_ascii_digit() || *c == b'-'),
        _ => false,
    })
}

/// Starts the command; its updates go to `out` until it completes or
/// `stop` fires (then it is killed).
pub(crate) fn start(
    spec: Spec,
    out: exec_core::ByteSender<String>,
    stop: CancellationToken,
    probe: &server_kit::Probe,
) -> Result<Started, StartError> {
    if spec.line.trim().is_empty() {
        return Err(StartError::Empty);
    }
    let mut taps = spec.breakpoints.clone();
    taps.sort_unstable();
    taps.dedup();
    let line = if taps.is_empty() {
        spec.line.clone()
    } else {
        tapped_line(&spec.line, &taps)?
    };
    let mut cmd = exec_core::Command::new(&spec.shell).args(["-c", &line]);
    let mut readers = Vec::new();
    for (k, &location) in taps.iter().enumerate() {
        for stderr in [false, true] {
            let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
                .map_err(std::io::Error::from)?;
            cmd = cmd.inherit_fd(FIRST_TAP_FD + 2 * k as i32 + i32::from(stderr), write);
            readers.push((location, stderr, read));
        }
    }
    let mut process = Process::spawn(&cmd)?;
    let running = probe.process();
    // Our copies of the write ends go with the command, so the readers see
    // the end of the data when the shell's copies close.
    drop(cmd);
    let control = process.control();
    let control_for_task = control.clone();
    // Commands are started with input enabled: it is always there.
    let input = process
        .take_stdin()
        .map(|stdin| StdinWriter::new(stdin, spec.max_pending_input))
        .ok_or(exec_core::Error::StdinClosed)?;
    let begin = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let taps_rx = spawn_tap_readers(readers)?;
    let finished = CancellationToken::new();
    let reporter = Reporter {
        spec,
        begin,
        out,
        pending: Pending::default(),
        batcher: Batcher::new(PACING, Instant::now()),
    };
    let done = finished.clone();
    let task = async move {
        let _finished = done.drop_guard();
        let _running = running;
        reporter
            .run(Events::new(process), taps_rx, control_for_task, stop)
            .await;
    };
    tokio::spawn(task.instrument(tracing::Span::current()));
    Ok(Started {
        input,
        control,
        finished,
    })
}

/// A chunk from a breakpoint pipe: (pipe index, is stderr, bytes).
type TapChunk = (usize, bool, Bytes);

/// Tap output read but not yet batched for the client: a few of the
/// largest reads.
const TAP_BYTES: usize = 1 << 20;

fn spawn_tap_readers(
    readers: Vec<(usize, bool, OwnedFd)>,
) -> Result<ByteReceiver<TapChunk>, StartError> {
    let (tx, rx) = exec_core::byte_queue(TAP_BYTES);
    for (location, stderr, fd) in readers {
        let mut pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)?;
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                buf.reserve(64 * 1024);
                match pipe.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let Some(room) = tx.reserve(n).await else {
                            break;
                        };
                        if room.send((location, stderr, buf.split().freeze())).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    Ok(rx)
}

/// Text of one stream of output, kept as the update will carry it.
#[derive(Debug, Default)]
struct Field {
    text: String,
    /// The exact bytes, as shared chunks (no copy); joined only when some
    /// were not UTF-8 and `raw` must carry them.
    chunks: Vec<Bytes>,
    len: usize,
    lossy: bool,
}

impl Field {
    fn push(&mut self, d: &Decoded, html: bool) {
        let text = std::str::from_utf8(&d.text).unwrap_or_default();
        if html {
            webterm_proto::html_escape(text, &mut self.text);
        } else {
            self.text.push_str(text);
        }
        self.len += d.bytes.len();
        self.chunks.push(d.bytes.clone());
        self.lossy |= d.lossy;
    }

    fn raw(&self) -> Option<String> {
        self.lossy
            .then(|| base64::engine::general_purpose::STANDARD.encode(self.chunks.concat()))
    }
}

/// stdout, stderr and both in arrival order.
#[derive(Debug, Default)]
struct Fields {
    stdout: Field,
    stderr: Field,
    combined: Field,
}

impl Fields {
    fn push(&mut self, stderr: bool, d: &Decoded, html: bool) {
        if stderr {
            &mut self.stderr
        } else {
            &mut self.stdout
        }
        .push(d, html);
        self.combined.push(d, html);
    }

    fn take(&mut self) -> Streams {
        let f = std::mem::take(self);
        let raw = (f.stdout.lossy || f.stderr.lossy).then(|| Raw {
            combined: f.combined.raw(),
            stdout: f.stdout.raw(),
            stderr: f.stderr.raw(),
        });
        Streams {
            combined: f.combined.text,
            stdout: f.stdout.text,
            stderr: f.stderr.text,
            raw,
        }
    }

    fn is_empty(&self) -> bool {
        self.combined.len == 0
    }
}

/// Output not yet sent, with a decoder per source so that a character split
/// by a read is never split in the text.
#[derive(Debug, Default)]
struct Pending {
    main: Fields,
    taps: BTreeMap<usize, Fields>,
    /// Bytes waiting, in all fields: 0 exactly when the update would be
    /// empty.
    bytes: usize,
    decoders: BTreeMap<(Option<usize>, bool), TextDecoder>,
}

impl Pending {
    /// Output of the shell (`tap` None) or of a breakpoint pipe.
    fn push(&mut self, tap: Option<usize>, stderr: bool, chunk: &Bytes, html: bool) {
        let decoded = self
            .decoders
            .entry((tap, stderr))
            .or_default()
            .push_exact(chunk);
        self.add(tap, stderr, &decoded, html);
    }

    fn add(&mut self, tap: Option<usize>, stderr: bool, d: &Decoded, html: bool) {
        self.bytes += d.bytes.len();
        match tap {
            None => self.main.push(stderr, d, html),
            Some(location) => {
                self.taps.entry(location).or_default().push(stderr, d, html);
                // A stage's stderr is the command's stderr too.
                if stderr {
                    self.main.push(true, d, html);
                }
            }
        }
    }

    /// The end of every stream: what decoders held back.
    fn finish(&mut self, html: bool) {
        let held: Vec<_> = std::mem::take(&mut self.decoders)
            .into_iter()
            .map(|((tap, stderr), mut d)| (tap, stderr, d.finish_exact()))
            .collect();
        for (tap, stderr, d) in held {
            if !d.bytes.is_empty() {
                self.add(tap, stderr, &d, html);
            }
        }
    }

    fn take(&mut self) -> Output {
        self.bytes = 0;
        let breakpoints = std::mem::take(&mut self.taps)
            .into_iter()
            .filter(|(_, f)| !f.is_empty())
            .map(|(location, mut f)| Breakpoint {
                location,
                streams: f.take(),
            })
            .collect();
        Output {
            streams: self.main.take(),
            breakpoints,
        }
    }
}

struct Reporter {
    spec: Spec,
    begin: String,
    out: exec_core::ByteSender<String>,
    pending: Pending,
    /// When `pending` goes out.
    batcher: Batcher,
}

impl Reporter {
    async fn run(
        mut self,
        mut events: Events,
        mut taps: ByteReceiver<TapChunk>,
        control: ProcessControl,
        stop: CancellationToken,
    ) {
        let html = self.spec.html;
        let mut taps_open = true;
        let status = loop {
            let deadline = self.batcher.deadline(self.pending.bytes);
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(Event::Stdout(data))) => self.pending.push(None, false, &data, html),
                    Some(Ok(Event::Stderr(data))) => self.pending.push(None, true, &data, html),
                    Some(Ok(Event::Exit(status))) => break Some(status),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "reading command output");
                        break None;
                    }
                    None => break None,
                },
                chunk = taps.recv(), if taps_open => match chunk {
                    Some((location, stderr, data)) => {
                        self.pending.push(Some(location), stderr, &data, html);
                    }
                    None => taps_open = false,
                },
                () = sleep_until(deadline) => {}
                () = stop.cancelled() => {
                    // The connection is gone: dropping `events` kills the group.
                    return;
                }
            }
            if self.batcher.due(self.pending.bytes, Instant::now())
                && !self.send(Status::Running, None).await
            {
                return;
            }
        };
        // Whatever crossed the taps before the exit is still to come; a
        // background job holding them gets a moment, then the group ends.
        if taps_open {
            let drain = tokio::time::sleep(DRAIN_AFTER_EXIT);
            tokio::pin!(drain);
            loop {
                tokio::select! {
                    chunk = taps.recv() => match chunk {
                        Some((location, stderr, data)) => {
                            self.pending.push(Some(location), stderr, &data, html);
                            // Full batches go out as they fill, as before
                            // the exit: gathered into the last update, a
                            // tap's backlog (its pipe and channel, escaped
                            // up to six times) outgrew the WebSocket's write
                            // buffer and cut the connection. The time spent
                            // waiting for the client is not the job's.
                            if self.pending.bytes >= PACING.batch_bytes {
                                let sending = Instant::now();
                                if !self.send(Status::Running, None).await {
                                    return;
                                }
                                let until = drain.deadline() + sending.elapsed();
                                drain.as_mut().reset(until);
                            }
                        }
                        None => break,
                    },
                    () = &mut drain => {
                        control.kill_group();
                        break;
                    }
                }
            }
        }
        self.pending.finish(html);
        self.send(Status::Completed, status).await;
    }

    /// Sends an update; false when the connection is gone.
    async fn send(&mut self, status: Status, exit: Option<exec_core::ExitStatus>) -> bool {
        let completed = status == Status::Completed;
        let update = Update {
            command: self.spec.line.clone(),
            client_id: self.spec.client_id.clone(),
            server_id: self.spec.server_id,
            output: self.pending.take(),
            begin: self.begin.clone(),
            end: completed.then(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string()),
            status,
            exit_code: completed.then(|| match exit {
                Some(s) => s
                    .code
                    .unwrap_or_else(|| 128 + s.signal.map_or(0, |sig| sig.number())),
                None => -1,
            }),
            signal: exit.and_then(|s| s.signal).map(|sig| sig.number()),
        };
        self.out
            .send(Reply::Update(Box::new(update)).encode())
            .await
            .is_ok()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_insert_tee_and_stage_stderr() {
        let line = "printf 'a\\nb\\nc\\n' | grep -v b | tr a-z A-Z";
        assert_eq!(
            tapped_line(line, &[0, 1]).unwrap(),
            "printf 'a\\nb\\nc\\n'  2>/dev/fd/101 | tee /dev/fd/100 |  grep -v b  2>/dev/fd/103 | tee /dev/fd/102 |  tr a-z A-Z"
        );
        assert_eq!(
            tapped_line(line, &[1]).unwrap(),
            "printf 'a\\nb\\nc\\n' | grep -v b  2>/dev/fd/101 | tee /dev/fd/100 |  tr a-z A-Z"
        );
    }

    #[test]
    fn a_stage_that_redirects_stderr_keeps_it() {
        assert_eq!(
            tapped_line("a 2>&1 | b", &[0]).unwrap(),
            "a 2>&1  | tee /dev/fd/100 |  b"
        );
        assert_eq!(
            tapped_line("a >&/dev/null | b", &[0]).unwrap(),
            "a >&/dev/null  | tee /dev/fd/100 |  b"
        );
        assert_eq!(
            tapped_line("a >&2 | b", &[0]).unwrap(),
            "a >&2  2>/dev/fd/101 | tee /dev/fd/100 |  b"
        );
        assert_eq!(
            tapped_line("a |& b", &[0]).unwrap(),
            "a  |& tee /dev/fd/100 |  b"
        );
    }

    #[test]
    fn missing_pipes_are_errors() {
        let e = tapped_line("ls | wc", &[0, 3]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "breakpoint 3 does not exist: the command has 1 pipe(s)"
        );
        assert!(tapped_line("echo 'a | b", &[0]).is_err());
    }
}
