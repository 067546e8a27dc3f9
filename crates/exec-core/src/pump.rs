//! The output side of a connection, once: from a process or a pane
//! attachment to messages no larger than a protocol allows, then the exit.
//!
//! Every protocol server reads output the same way: take the next chunk
//! (waiting for the process, which is the backpressure it feels), cut it to
//! the largest message the wire takes, put the protocol's header in front,
//! send, and after the last byte say how the process ended. [`OutputPump`]
//! is that loop's reading half; what a message looks like beyond a fixed
//! header, and how the exit is said, stays with the protocol.

use bytes::{BufMut as _, Bytes, BytesMut};

use crate::command::ExitStatus;
use crate::error::Error;
use crate::pane::{Attachment, PaneEvent};
use crate::process::{Event, Events, MAX_CHUNK, Process};

/// Which stream output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    /// Standard output of a process without a terminal; also the merged
    /// output of a pane without a terminal.
    Stdout,
    /// Standard error of a process without a terminal.
    Stderr,
    /// What a terminal shows (its program's stdout and stderr, echo, and a
    /// pane's screen redraws).
    Terminal,
}

/// How output is cut into messages: a size limit, and the bytes each
/// message of a stream starts with (a protocol's fixed header, or none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    /// The largest message, header included.
    pub max_message: usize,
    /// The header of every [`Stream::Stdout`] message.
    pub stdout: &'static [u8],
    /// The header of every [`Stream::Stderr`] message.
    pub stderr: &'static [u8],
    /// The header of every [`Stream::Terminal`] message.
    pub terminal: &'static [u8],
}

impl Framing {
    /// Messages of the output bytes alone, at most `max_message` long.
    pub fn plain(max_message: usize) -> Self {
        Framing {
            max_message,
            stdout: &[],
            stderr: &[],
            terminal: &[],
        }
    }

    fn header(&self, stream: Stream) -> &'static [u8] {
        match stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
            Stream::Terminal => self.terminal,
        }
    }

    /// The most output bytes one message of `stream` carries.
    fn body(&self, stream: Stream) -> usize {
        self.max_message
            .saturating_sub(self.header(stream).len())
            .clamp(1, MAX_CHUNK)
    }
}

/// What an [`OutputPump`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// One message: the stream's header, then output bytes, at most
    /// [`Framing::max_message`] long and never empty of output. Messages
    /// of one stream come in order without gaps (a pane's redraw after
    /// its client fell behind is where a gap is mended).
    Output(Stream, Bytes),
    /// The process ended; the last item, after all output.
    Exit(ExitStatus),
}

/// Output of a process, or of a pane as one client sees it, as messages of
/// a [`Framing`], then [`Outgoing::Exit`].
///
/// A process's output is read only when [`OutputPump::next`] is called, so
/// a client that does not take its messages slows the process (a pane
/// follows its fastest client, see [`Pane`](crate::Pane)). A process's
/// chunks are read with their header in front of them, ready to send
/// without a copy; a pane's chunks come from its replay ring and are cut
/// (and, behind a header, copied) here.
///
/// Dropping the pump of a process kills its process group; dropping the
/// pump of a pane detaches its client, and for [`OutputPump::owned_pane`]
/// ends the pane too.
#[derive(Debug)]
pub struct OutputPump {
    source: Source,
    framing: Framing,
    /// A pane chunk's bytes that did not fit the previous message.
    rest: Bytes,
    /// The stream of a pane's output.
    pane_stream: Stream,
}

#[derive(Debug)]
enum Source {
    /// A process's streams; its stdout is [`Stream::Terminal`] when
    /// `terminal`.
    Process { events: Box<Events>, terminal: bool },
    /// A client of a pane; an `owned` pane ends with the pump.
    Pane { attachment: Attachment, owned: bool },
}

impl OutputPump {
    /// The output of `process` (take its stdin and control first).
    pub fn process(process: Process, framing: Framing) -> Self {
        let terminal = process.control().is_terminal();
        let stdout = match terminal {
            true => framing.terminal,
            false => framing.stdout,
        };
        let events = Events::with_prefixes(process, stdout, framing.stderr, framing.max_message);
        OutputPump {
            source: Source::Process {
                events: Box::new(events),
                terminal,
            },
            framing,
            rest: Bytes::new(),
            pane_stream: Stream::Stdout,
        }
    }

    /// The output of a pane to the client of `attachment`; the pane runs on
    /// when the pump is dropped.
    pub fn pane(attachment: Attachment, framing: Framing) -> Self {
        Self::attached(attachment, framing, false)
    }

    /// Like [`OutputPump::pane`], for a pane that belongs to the connection
    /// alone: dropping the pump ends the pane (`SIGHUP`, `SIGTERM`, then
    /// `SIGKILL` to its group), as a connection's own process would end.
    pub fn owned_pane(attachment: Attachment, framing: Framing) -> Self {
        Self::attached(attachment, framing, true)
    }

    fn attached(attachment: Attachment, framing: Framing, owned: bool) -> Self {
        let pane_stream = match attachment.pane().size() {
            Some(_) => Stream::Terminal,
            None => Stream::Stdout,
        };
        OutputPump {
            source: Source::Pane { attachment, owned },
            framing,
            rest: Bytes::new(),
            pane_stream,
        }
    }

    /// The next message, or the exit; `None` after [`Outgoing::Exit`].
    /// An error is the process's (waiting for it failed): nothing follows.
    ///
    /// Cancel-safe: dropping the future (in a `select!`) loses nothing.
    pub async fn next(&mut self) -> Option<Result<Outgoing, Error>> {
        loop {
            if !self.rest.is_empty() {
                return Some(Ok(self.cut()));
            }
            match &mut self.source {
                Source::Process { events, terminal } => {
                    return match events.next().await? {
                        Ok(Event::Stdout(b)) => {
                            let stream = match terminal {
                                true => Stream::Terminal,
                                false => Stream::Stdout,
                            };
                            Some(Ok(Outgoing::Output(stream, b)))
                        }
                        Ok(Event::Stderr(b)) => Some(Ok(Outgoing::Output(Stream::Stderr, b))),
                        Ok(Event::Exit(status)) => Some(Ok(Outgoing::Exit(status))),
                        Err(e) => Some(Err(e)),
                    };
                }
                Source::Pane { attachment, .. } => match attachment.next().await? {
                    PaneEvent::Output(b) | PaneEvent::Redraw(b) => self.rest = b,
                    PaneEvent::Exit(status) => return Some(Ok(Outgoing::Exit(status))),
                },
            }
        }
    }

    /// The next message of a pane's waiting output.
    fn cut(&mut self) -> Outgoing {
        let stream = self.pane_stream;
        let body = self
            .rest
            .split_to(self.framing.body(stream).min(self.rest.len()));
        let header = self.framing.header(stream);
        if header.is_empty() {
            return Outgoing::Output(stream, body);
        }
        let mut message = BytesMut::with_capacity(header.len() + body.len());
        message.put_slice(header);
        message.put_slice(&body);
        Outgoing::Output(stream, message.freeze())
    }
}

impl Drop for OutputPump {
    fn drop(&mut self) {
        if let Source::Pane {
            attachment,
            owned: true,
        } = &self.source
        {
            attachment.pane().terminate();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::command::{Command, PtySize};
    use crate::pane::{Pane, PaneConfig, Replay};

    /// Everything a pump yields, to its end.
    async fn drain(mut pump: OutputPump) -> (Vec<(Stream, Bytes)>, ExitStatus) {
        let mut messages = Vec::new();
        while let Some(item) = pump.next().await {
            match item.unwrap() {
                Outgoing::Output(stream, b) => messages.push((stream, b)),
                Outgoing::Exit(status) => {
                    assert!(pump.next().await.is_none(), "nothing after the exit");
                    return (messages, status);
                }
            }
        }
        panic!("no exit");
    }

    fn body_of(messages: &[(Stream, Bytes)], stream: Stream, header: &[u8]) -> Vec<u8> {
        messages
            .iter()
            .filter(|(s, _)| *s == stream)
            .flat_map(|(_, m)| {
                assert!(m.starts_with(header), "every message has its header");
                m[header.len()..].to_vec()
            })
            .collect()
    }

    const FRAMING: Framing = Framing {
        max_message: 100,
        stdout: b"O:",
        stderr: b"E:",
        terminal: b"T:",
    };

    #[tokio::test]
    async fn a_process_streams_come_apart_with_headers_and_limits() {
        let cmd = Command::new("sh").args([
            "-c",
            "head -c 1000 /dev/zero | tr '\\0' a; printf oops >&2; exit 3",
        ]);
        let pump = OutputPump::process(Process::spawn(&cmd).unwrap(), FRAMING);
        let (messages, status) = drain(pump).await;
        assert_eq!(status.code, Some(3));
        assert!(messages.iter().all(|(_, m)| m.len() <= 100 && m.len() > 2));
        assert_eq!(body_of(&messages, Stream::Stdout, b"O:"), vec![b'a'; 1000]);
        assert_eq!(body_of(&messages, Stream::Stderr, b"E:"), b"oops");
    }

    #[tokio::test]
    async fn a_pane_is_cut_to_the_limit_and_ends_with_its_exit() {
        let cmd = Command::new("sh").args(["-c", "head -c 5000 /dev/zero | tr '\\0' b"]);
        let (pane, attachment) = Pane::spawn_attached(&cmd, PaneConfig::default()).unwrap();
        let (messages, status) = drain(OutputPump::pane(attachment, FRAMING)).await;
        assert!(status.success());
        assert!(messages.iter().all(|(_, m)| m.len() <= 100 && m.len() > 2));
        assert_eq!(body_of(&messages, Stream::Stdout, b"O:"), vec![b'b'; 5000]);
        assert_eq!(pane.exit_status(), Some(status));
    }

    #[tokio::test]
    async fn terminal_output_is_the_terminal_stream_without_a_copy_when_plain() {
        let cmd = Command::new("sh")
            .args(["-c", "printf 'hello\\n'"])
            .pty(PtySize { rows: 24, cols: 80 });
        let (_pane, attachment) = Pane::spawn_attached(&cmd, PaneConfig::default()).unwrap();
        let (messages, _) = drain(OutputPump::pane(attachment, Framing::plain(3))).await;
        assert!(
            messages
                .iter()
                .all(|(s, m)| *s == Stream::Terminal && m.len() <= 3)
        );
        let text: Vec<u8> = messages.iter().flat_map(|(_, m)| m.to_vec()).collect();
        assert_eq!(text, b"hello\r\n");
    }

    #[tokio::test]
    async fn an_owned_pane_ends_with_its_pump_a_shared_one_runs_on() {
        let cmd = Command::new("cat");
        let shared = Pane::spawn(&cmd, PaneConfig::default()).unwrap();
        drop(OutputPump::pane(shared.attach(Replay::Live), FRAMING));
        let owned = Pane::spawn(&cmd, PaneConfig::default()).unwrap();
        let mut watcher = OutputPump::pane(owned.attach(Replay::Live), FRAMING);
        drop(OutputPump::owned_pane(owned.attach(Replay::Live), FRAMING));
        // The owned pane's exit reaches its other client; `cat` got SIGHUP.
        match watcher.next().await.unwrap().unwrap() {
            Outgoing::Exit(status) => assert!(status.signal.is_some()),
            other => panic!("expected the exit, got {other:?}"),
        }
        assert!(shared.exit_status().is_none());
        shared.terminate();
    }
}
