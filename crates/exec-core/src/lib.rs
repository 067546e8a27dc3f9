//! The execwire exec engine.
//!
//! `exec-core` runs commands (with pipes or under a pseudo terminal) and
//! shares their output with network clients. It knows nothing of any wire
//! protocol: protocol servers translate their messages into these words and
//! back:
//! - [`Command`] → [`Process`] (stdin, stdout/stderr as [`Output`], a
//!   [`ProcessControl`] for [`Signal`]s and resizes), read as one ordered
//!   stream of [`Event`]s ending in an [`ExitStatus`];
//! - [`Pane`]: a process that outlives its clients, whose output fans out to
//!   any number of [`Attachment`]s, with replay by byte offset and a screen
//!   redraw for clients that fell behind;
//! - [`Session`]: the table a server keeps between connections — panes (or
//!   any [`Entry`]) by a [`PaneId`] only the session hands out, optional
//!   names, [`Marker`]s, a shared [`Payload`], an idle timeout that starts
//!   when the last [`Lease`] goes, and [`Session::end_all`] on shutdown;
//! - [`OutputPump`]: a process's [`Events`] or a pane's [`Attachment`] as
//!   messages of a [`Stream`], cut and headed as a protocol's [`Framing`]
//!   says, then the exit ([`Outgoing`]): the output half of every
//!   connection;
//! - [`Batcher`]: when waiting output goes out, paced as [`Pacing`] says
//!   (a burst at once, then one small message per interval, a full batch
//!   at once), for protocols that coalesce small writes;
//! - [`Recorder`]: a terminal pane's output and resizes as an asciicast v2
//!   file, when its [`PaneConfig`] asks for one ([`RecordConfig`]);
//! - [`Transport`]: how messages reach a client (a WebSocket, a WebRTC data
//!   channel, [`memory_pair`] in tests), so the engine can be driven over
//!   anything message-shaped; why one closes is a [`CloseReason`], which
//!   each adapter says in its wire's terms.
//!
//! What it promises:
//! - every child leads its own process group, and the group is killed when
//!   its [`Process`] is dropped or its [`Pane`] ends; children are reaped;
//! - output is read only as fast as it is consumed, so a slow client slows the
//!   process instead of growing memory (see [`Pane`] for shared panes);
//! - [`Event::Exit`] comes after all output;
//! - input is written by a task of its own ([`StdinWriter`]) behind a queue
//!   bounded in bytes, so a process that does not read its input never keeps
//!   its output from being read, nor a cancel from being seen.
//!
//! Its contract: it runs inside a tokio runtime (multi-threaded or not;
//! spawning uses the current runtime), on Linux (process groups, `/proc`,
//! pseudo terminals through `pty-process`).
//!
//! It is not a sandbox: commands run with the server's privileges unless a
//! uid/gid is given. Nor is it a server: who may connect, over what (HTTP,
//! TLS, WebSocket) and what gets counted is the server kit's business
//! (`server-kit`), so an embedder with its own [`Transport`] pulls in none
//! of it.

mod batch;
mod budget;
mod command;
mod error;
mod pane;
mod process;
mod pump;
mod queue;
mod record;
mod replay;
mod screen;
mod session;
mod signal;
mod stdin;
mod text;
mod transport;

pub use batch::{Batcher, Pacing};
pub use command::{Command, ExitStatus, PtySize};
pub use error::{Error, TransportError};
pub use pane::{Attachment, Pane, PaneConfig, PaneEvent, Replay, Resized};
pub use process::{
    DRAIN_AFTER_EXIT, Event, Events, MAX_CHUNK, Output, Process, ProcessControl, Stdin,
    raise_open_files_limit,
};
pub use pump::{Framing, Outgoing, OutputPump, Stream};
pub use queue::{BytePermit, ByteReceiver, ByteSender, byte_queue};
pub use record::{FLUSH_EVERY, RecordConfig, Recorder};
pub use session::{
    Claim, EndReason, Entry, Lease, Listed, Marker, PaneId, Payload, Session, SessionConfig,
};
pub use signal::Signal;
pub use stdin::StdinWriter;
pub use text::{Decoded, TextDecoder};
pub use transport::{
    CloseFrame, CloseReason, MemoryRx, MemoryTransport, MemoryTx, Message, Transport, TransportRx,
    TransportTx, memory_pair,
};
