//! One client interface over the four protocols, so that a scenario is
//! written once and run against every server that can express it
//! (`tests/tests/matrix.rs`).
//!
//! [`Session`] is what every protocol has: start a command, send input,
//! read output, see the session end. What only some protocols have is a
//! trait of its own ([`ExitCode`], [`Stderr`], [`CloseStdin`], [`Pty`],
//! [`Reattach`]), implemented only by the adapters whose protocol has it,
//! so a scenario that needs it does not compile for a server that lacks
//! it: a protocol is left out of a scenario by the type checker, not by a
//! test that passes without testing.
//!
//! Every adapter speaks its protocol's own wire over real sockets to the
//! real server, started with [`TestServer`] on `127.0.0.1:0`.

use std::collections::VecDeque;

use async_trait::async_trait;

use crate::TestServer;

mod execwire;
mod pow;
mod webexec;
mod webterm;
mod wsep;

pub use execwire::{Execwire, Mounted};
pub(crate) use pow::PROCESSES as POW_PROCESSES;
pub use pow::Pow;
pub use webexec::Webexec;
pub use webterm::Webterm;
pub use wsep::Wsep;

/// What a session's output yields, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Output: stdout, or everything where the protocol does not keep
    /// stderr apart (a terminal, a webexec pane).
    Stdout(Vec<u8>),
    /// Output on stderr, where the protocol keeps it apart.
    Stderr(Vec<u8>),
    /// The exit code, where the protocol reports one: last.
    Exit(i32),
}

/// What an adapter read ahead of the scenario (one message may carry
/// output of both streams and the exit) and whether the session ended.
#[derive(Debug, Default)]
struct ReadAhead {
    ready: VecDeque<Event>,
    ended: bool,
}

impl ReadAhead {
    /// What [`Session::next`] returns without reading: `Some(Some(_))` an
    /// event read ahead, `Some(None)` the end; `None` when it must read.
    fn take(&mut self) -> Option<Option<Event>> {
        match self.ready.pop_front() {
            Some(event) => Some(Some(event)),
            None => self.ended.then_some(None),
        }
    }
}

/// One command on one server, through that server's protocol.
#[async_trait]
pub trait Session: Sized + Send {
    /// A server of this protocol, configured so that every scenario can
    /// run `sh -c SCRIPT` on it.
    async fn server() -> TestServer;

    /// Starts `sh -c script` without a terminal.
    async fn start(server: &TestServer, script: &str) -> Self;

    /// Sends input. The scenarios send ASCII only: pow and webterm carry
    /// input as text.
    async fn send(&mut self, data: &[u8]);

    /// The next output; `None` once the session ended (after
    /// [`Event::Exit`] where the protocol reports one).
    async fn next(&mut self) -> Option<Event>;

    /// Sends the server input its protocol refuses and returns the
    /// protocol-level error it answered with. On this session's own
    /// connection where an error leaves the connection open (webterm's
    /// error reply, webexec's nack); on a second connection to the same
    /// server where the protocol ends a connection over bad input (wsep's
    /// close 1008, pow's rejected result).
    async fn refused(&mut self) -> String;
}

/// The protocol reports the command's exit code (webexec only closes the
/// pane's channel).
pub trait ExitCode: Session {}

/// The protocol keeps stderr apart from stdout (pow streams only stdout,
/// webexec merges both into the pane).
pub trait Stderr: Session {}

/// The client can end the command's input (a webexec pane has no
/// end-of-input short of typing one into a terminal).
#[async_trait]
pub trait CloseStdin: Session {
    /// Ends the command's input.
    async fn close_stdin(&mut self);
}

/// Commands under a terminal (pow and webterm run commands on pipes).
#[async_trait]
pub trait Pty: Session {
    /// Starts an interactive `sh` on a terminal of `rows` by `cols`.
    async fn start_pty(server: &TestServer, rows: u16, cols: u16) -> Self;

    /// Gives the terminal a new size.
    async fn resize(&mut self, rows: u16, cols: u16);
}

/// A terminal session that outlives its connection, and a client that
/// comes back to it and is shown the screen.
#[async_trait]
pub trait Reattach: Pty {
    /// What names the session to come back to.
    type Handle: Send;

    /// Leaves the session running and disconnects.
    async fn detach(self) -> Self::Handle;

    /// Connects again and attaches to the session `handle` names.
    async fn reattach(server: &TestServer, handle: Self::Handle) -> Self;
}
