//! A process's input, written by a task of its own behind a queue bounded
//! in bytes.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, TryAcquireError, mpsc};

use crate::budget::ByteBudget;
use crate::error::Error;
use crate::process::Stdin;

/// A process's input: chunks go into a queue of at most `max_bytes`, and a
/// task of its own writes them to the process.
///
/// Why a task: a server that writes a child's stdin from the loop that also
/// reads the child's output stalls on any filter (`cat`, `tee`, `sort` fed a
/// lot of input). Once the child's output pipe is full the child stops
/// reading, its input pipe fills, the write waits, and the output that
/// would free it is never read; a cancel waiting behind that write is never
/// seen either. Here only the writer task waits for the process. A sender
/// waits only for room in the queue ([`StdinWriter::send`]) or is refused
/// at once ([`StdinWriter::try_send`]), and whoever reads the output is
/// never behind either.
///
/// The queue counts bytes, not chunks; one chunk larger than the whole
/// queue is taken alone, when the queue is empty. Clones feed the same
/// queue. The writer ends, and sends fail with [`Error::StdinClosed`], when
/// input was closed and everything queued was written, when the process
/// stops reading (its pipe breaks), or when its [`Process`](crate::Process)
/// is dropped (which kills its group): a write blocked on a process that
/// never reads ends with the process.
#[derive(Debug, Clone)]
pub struct StdinWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// To the writer task; `None` once input was closed. Dropping the last
    /// sender tells the task to close the input after what is queued.
    queue: Mutex<Option<mpsc::UnboundedSender<Chunk>>>,
    /// Room in the queue; closed when the input closes or the writer
    /// ends, which fails every waiting sender.
    room: ByteBudget,
    terminal: bool,
}

/// Queued input, holding its room in the queue until it was written.
#[derive(Debug)]
struct Chunk {
    data: Bytes,
    _room: OwnedSemaphorePermit,
}

impl StdinWriter {
    /// Starts the task that writes to `stdin`; the queue holds at most
    /// `max_bytes` (at least one). Must be called inside a tokio runtime.
    pub fn new(stdin: Stdin, max_bytes: usize) -> Self {
        let room = ByteBudget::new(max_bytes);
        let (tx, rx) = mpsc::unbounded_channel();
        let terminal = stdin.is_terminal();
        tokio::spawn(write_queued(stdin, rx, room.clone()));
        StdinWriter {
            shared: Arc::new(Shared {
                queue: Mutex::new(Some(tx)),
                room,
                terminal,
            }),
        }
    }

    /// Queues `data`, waiting while the queue is full: the backpressure
    /// a sender faster than the process feels.
    ///
    /// Cancel-safe: dropped while waiting, nothing was queued, so the
    /// caller may keep a clone of `data` and send it again.
    pub async fn send(&self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return self.check_open();
        }
        let room = self
            .shared
            .room
            .reserve(data.len())
            .await
            .ok_or(Error::StdinClosed)?;
        self.enqueue(data, room)
    }

    /// Queues `data` if the queue has room for it now, else refuses it with
    /// [`Error::StdinFull`] (nothing queued): for protocols without flow
    /// control for input, which must not stop reading a connection for one
    /// process.
    pub fn try_send(&self, data: Bytes) -> Result<(), Error> {
        if data.is_empty() {
            return self.check_open();
        }
        let room = match self.shared.room.try_reserve(data.len()) {
            Ok(room) => room,
            Err(TryAcquireError::NoPermits) => return Err(Error::StdinFull),
            Err(TryAcquireError::Closed) => return Err(Error::StdinClosed),
        };
        self.enqueue(data, room)
    }

    /// Ends the input: what is queued is written, then the pipe is closed
    /// and the process reads end of file. A terminal's input cannot be
    /// closed on its own, so for a terminal the end-of-file character
    /// (Ctrl-D) is written instead. Later sends fail; closing again is
    /// harmless.
    pub fn close(&self) {
        lock(&self.shared.queue).take();
        self.shared.room.close();
    }

    /// True when the process reads a terminal (see [`StdinWriter::close`]).
    pub fn is_terminal(&self) -> bool {
        self.shared.terminal
    }

    /// True once sends fail: input was closed, or the writer ended.
    pub fn is_closed(&self) -> bool {
        self.shared.room.is_closed()
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.is_closed() {
            Err(Error::StdinClosed)
        } else {
            Ok(())
        }
    }

    fn enqueue(&self, data: Bytes, room: OwnedSemaphorePermit) -> Result<(), Error> {
        let queue = lock(&self.shared.queue);
        let tx = queue.as_ref().ok_or(Error::StdinClosed)?;
        tx.send(Chunk { data, _room: room })
            .map_err(|_| Error::StdinClosed)
    }
}

/// The lock is only held to take or use the sender; recover from a
/// poisoned one rather than spreading a panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Writes queued chunks in order until the input is closed (then closes
/// it), the process stops reading, or the process is dropped.
async fn write_queued(
    mut stdin: Stdin,
    mut queue: mpsc::UnboundedReceiver<Chunk>,
    room: ByteBudget,
) {
    let gone = stdin.process_gone();
    gone.run_until_cancelled_owned(async move {
        while let Some(chunk) = queue.recv().await {
            if let Err(e) = stdin.write_all(&chunk.data).await {
                tracing::debug!(error = %e, "the process stopped reading its input");
                return;
            }
        }
        if let Err(e) = stdin.close().await {
            tracing::debug!(error = %e, "closing the process's input");
        }
    })
    .await;
    // Senders waiting for room, and later ones, learn that input is over.
    room.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, Event, Events, Process};

    fn cat() -> (StdinWriter, Events) {
        let mut process = Process::spawn(&Command::new("cat")).unwrap();
        let stdin = process.take_stdin().unwrap();
        (StdinWriter::new(stdin, 1024), Events::new(process))
    }

    async fn stdout(events: &mut Events) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(event) = events.next().await {
            match event.unwrap() {
                Event::Stdout(b) => out.extend_from_slice(&b),
                Event::Stderr(_) => {}
                Event::Exit(status) => assert!(status.success()),
            }
        }
        out
    }

    /// More input than the queue and the pipe hold, output read meanwhile,
    /// chunks larger and smaller than the queue: all of it, in order.
    #[tokio::test]
    async fn everything_queued_is_written_in_order_then_closed() {
        let (writer, mut events) = cat();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let feed = {
            let data = Bytes::from(data.clone());
            let writer = writer.clone();
            async move {
                let mut at = 0;
                for size in [1, 5000, 100, 70_000].into_iter().cycle() {
                    let end = (at + size).min(data.len());
                    writer.send(data.slice(at..end)).await.unwrap();
                    at = end;
                    if at == data.len() {
                        break;
                    }
                }
                writer.close();
            }
        };
        let ((), out) = tokio::join!(feed, stdout(&mut events));
        assert!(out == data, "output differs from input");
        assert!(writer.is_closed());
        assert!(matches!(
            writer.send(Bytes::from_static(b"late")).await,
            Err(Error::StdinClosed)
        ));
    }

    /// A process that never reads: the queue fills, `try_send` is refused,
    /// and dropping the process ends the writer and fails a waiting send.
    async fn never_read_then_dropped(cmd: Command) {
        let mut process = Process::spawn(&cmd).unwrap();
        let writer = StdinWriter::new(process.take_stdin().unwrap(), 1024);
        // Whatever the writer managed to put into the pipe or terminal, the
        // queue is full at the latest once that is too.
        let chunk = Bytes::from(vec![b'x'; 512]);
        loop {
            match writer.try_send(chunk.clone()) {
                Ok(()) => tokio::task::yield_now().await,
                Err(Error::StdinFull) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let waiting = tokio::spawn({
            let writer = writer.clone();
            async move { writer.send(chunk).await }
        });
        drop(process);
        assert!(matches!(waiting.await.unwrap(), Err(Error::StdinClosed)));
        assert!(writer.is_closed());
    }

    #[tokio::test]
    async fn a_pipe_nobody_reads_refuses_then_ends_with_its_process() {
        never_read_then_dropped(Command::new("sleep").arg("1000")).await;
    }

    #[tokio::test]
    async fn a_terminal_nobody_reads_refuses_then_ends_with_its_process() {
        let cmd = Command::new("sleep")
            .arg("1000")
            .pty(crate::PtySize::DEFAULT);
        never_read_then_dropped(cmd).await;
    }
}
