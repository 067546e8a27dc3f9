//! Shared harness of the end-to-end scenarios: start a real server on
//! `127.0.0.1:0`, talk to it with a real client, observe real processes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use exec_core::auth::AccessToken;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A wsep server running in this process.
#[derive(Debug)]
pub struct WsepServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The token it expects.
    pub token: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl WsepServer {
    /// A server with a fresh token and the default configuration.
    pub async fn start() -> WsepServer {
        Self::start_with(wsep_server::Config::default()).await
    }

    /// A server with `config`; a token is generated when `config` has none.
    pub async fn start_with(mut config: wsep_server::Config) -> WsepServer {
        let token = config
            .token
            .get_or_insert_with(|| AccessToken::generate().unwrap())
            .expose()
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            wsep_server::serve(listener, config, shutdown)
                .await
                .unwrap();
        });
        WsepServer {
            addr,
            token,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `ws://addr/`
    pub fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for WsepServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Waits until process `pid` has exited, by its pidfd becoming readable
/// (an event, not a poll). Returns at once if it is already gone.
pub async fn wait_gone(pid: u32) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let fd: OwnedFd = match rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(_) => return, // no such process
    };
    let ready = tokio::task::spawn_blocking(move || {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&timeout)).unwrap_or(0)
    })
    .await
    .unwrap();
    assert_eq!(ready, 1, "process {pid:?} is still running");
}

/// True when process `pid` exists and has not exited.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z") && !s.contains(") X"))
        .unwrap_or(false)
}
