//! The wsep client, command and library, against every server it is meant
//! to work with: this project's `wsep-server` and a stand-in for coder's
//! reference server (`reference.rs`). Each scenario is written once and run
//! against both ([`on_every_server!`]); the few that only one server can
//! play (tokens) say so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::process::Stdio;

use server_kit::{AccessToken, CommonConfig as _};
use tokio::sync::oneshot;
use wsep_proto::StartCommand;

/// Each named scenario function, once per server: tests `NAME::ours` and
/// `NAME::reference`. `sync:` scenarios take `&Server`, `async:` ones are
/// awaited on a test runtime.
macro_rules! on_every_server {
    (sync: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[test]
            fn ours() {
                super::$name(&crate::Server::start(crate::Kind::Ours));
            }
            #[test]
            fn reference() {
                super::$name(&crate::Server::start(crate::Kind::Reference));
            }
        }
    )*};
    (async: $($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn ours() {
                super::$name(&crate::Server::start(crate::Kind::Ours)).await;
            }
            #[tokio::test]
            async fn reference() {
                super::$name(&crate::Server::start(crate::Kind::Reference)).await;
            }
        }
    )*};
}

mod cli;
mod library;
mod reference;

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `wsep-server`, with a token.
    Ours,
    /// The stand-in for the reference's `dev/server`: no authentication.
    Reference,
}

/// A server on `127.0.0.1:0`, on a runtime thread of its own (so that the
/// command's tests, which block, and the library's, which await, share it);
/// stopped, with every process it started, when dropped.
#[derive(Debug)]
struct Server {
    url: String,
    token: Option<String>,
    _stop: oneshot::Sender<()>,
}

impl Server {
    fn start(kind: Kind) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let token = (kind == Kind::Ours).then(|| AccessToken::generate().unwrap());
        let exposed = token.as_ref().map(|t| t.expose().to_owned());
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let shutdown = async {
                    let _ = stopped.await;
                };
                match kind {
                    Kind::Ours => {
                        let config = wsep_server::Config::default().with_token(token);
                        wsep_server::serve(listener, config, shutdown)
                            .await
                            .unwrap();
                    }
                    Kind::Reference => reference::serve(listener, shutdown).await,
                }
            });
        });
        Server {
            url: format!("ws://{addr}/"),
            token: exposed,
            _stop: stop,
        }
    }

    /// The `wsep` command for this server, output captured, no input.
    fn wsep(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wsep"));
        cmd.arg(&self.url)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.token {
            Some(token) => cmd.env("WSEP_TOKEN", token),
            None => cmd.env_remove("WSEP_TOKEN"),
        };
        cmd
    }

    /// Starts `command` with the library.
    async fn open(&self, command: StartCommand) -> (wsep_client::Input, wsep_client::Outputs) {
        wsep_client::start(&self.url, self.token.as_deref(), command)
            .await
            .unwrap()
    }
}

/// `count` bytes that are the same on every run and compress badly.
fn test_data(count: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The SHA-256 of `data` as `sha256sum` prints it, by the local
/// `sha256sum`.
fn local_sha256(data: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

/// Ten mebibytes: the size of the bulk input scenarios.
const BULK: usize = 10 << 20;
