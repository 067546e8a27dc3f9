//! The execwire exec engine.
//!
//! `exec-core` runs commands (with pipes or under a pseudo terminal) and
//! shares their output with network clients. It knows nothing of any wire
//! protocol: protocol servers translate their messages into these words —
//! [`Command`], [`Process`], [`Event`], [`Pane`], [`Transport`] — and back.
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
//! It is not a sandbox: commands run with the server's privileges unless a
//! uid/gid is given. Nor is it a server: who may connect, over what (HTTP,
//! TLS, WebSocket) and what gets counted is the server kit's business
//! (`server-kit`), so an embedder with its own [`Transport`] pulls in none
//! of it.

mod command;
mod error;
mod pane;
mod process;
mod replay;
mod screen;
mod session;
mod signal;
mod stdin;
mod text;
mod transport;

pub use command::{Command, ExitStatus, PtySize};
pub use error::{Error, TransportError};
pub use pane::{Attachment, Pane, PaneConfig, PaneEvent, Replay};
pub use process::{
    DRAIN_AFTER_EXIT, Event, Events, MAX_CHUNK, Output, Process, ProcessControl, Stdin,
    raise_open_files_limit,
};
pub use session::{
    EndReason, Entry, Lease, Listed, Marker, PaneId, Payload, Session, SessionConfig,
};
pub use signal::Signal;
pub use stdin::StdinWriter;
pub use text::{Decoded, TextDecoder};
pub use transport::{
    CloseFrame, MAX_CLOSE_REASON, MemoryRx, MemoryTransport, MemoryTx, Message, Transport,
    TransportRx, TransportTx, memory_pair, truncate_reason,
};
