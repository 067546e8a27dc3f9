//! Every protocol's adapter through the `execwire` daemon: the same
//! client, unmodified, at the protocol's path on the one listener, so
//! that each scenario runs against the daemon too.

use async_trait::async_trait;

use super::{CloseStdin, Event, ExitCode, Pty, Reattach, Session, Stderr};
use super::{Pow, Webexec, Webterm, Wsep};
use crate::TestServer;

/// Where the daemon serves an adapter's protocol.
pub trait Mounted {
    /// The path (`""`: the root, webexec's).
    const PATH: &'static str;
}

impl Mounted for Wsep {
    const PATH: &'static str = execwire::WSEP_PATH;
}

impl Mounted for Pow {
    const PATH: &'static str = execwire::POW_PATH;
}

impl Mounted for Webterm {
    const PATH: &'static str = execwire::WEBTERM_PATH;
}

impl Mounted for Webexec {
    const PATH: &'static str = "";
}

/// Adapter `S` talking to the daemon, which serves every protocol at
/// once; everything but where the server is is `S`'s own.
#[derive(Debug)]
pub struct Execwire<S>(S);

#[async_trait]
impl<S: Session + Mounted> Session for Execwire<S> {
    async fn server() -> TestServer {
        TestServer::execwire(S::PATH).await
    }

    async fn start(server: &TestServer, script: &str) -> Self {
        Execwire(S::start(server, script).await)
    }

    async fn send(&mut self, data: &[u8]) {
        self.0.send(data).await;
    }

    async fn next(&mut self) -> Option<Event> {
        self.0.next().await
    }

    async fn refused(&mut self) -> String {
        self.0.refused().await
    }
}

impl<S: ExitCode + Mounted> ExitCode for Execwire<S> {}

impl<S: Stderr + Mounted> Stderr for Execwire<S> {}

#[async_trait]
impl<S: CloseStdin + Mounted> CloseStdin for Execwire<S> {
    async fn close_stdin(&mut self) {
        self.0.close_stdin().await;
    }
}

#[async_trait]
impl<S: Pty + Mounted> Pty for Execwire<S> {
    async fn start_pty(server: &TestServer, rows: u16, cols: u16) -> Self {
        Execwire(S::start_pty(server, rows, cols).await)
    }

    async fn resize(&mut self, rows: u16, cols: u16) {
        self.0.resize(rows, cols).await;
    }
}

#[async_trait]
impl<S: Reattach + Mounted> Reattach for Execwire<S> {
    type Handle = S::Handle;

    async fn detach(self) -> Self::Handle {
        self.0.detach().await
    }

    async fn reattach(server: &TestServer, handle: Self::Handle) -> Self {
        Execwire(S::reattach(server, handle).await)
    }
}
