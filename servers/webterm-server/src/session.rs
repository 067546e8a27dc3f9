//! One WebSocket connection: authentication, then any number of commands
//! running at once, each reported by its own task through one writer.
//!
//! A bad message gets an error reply and nothing else: other commands of
//! the connection run on. The connection ends its commands when it closes.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use exec_core::{CloseReason, Message, Transport, TransportRx, TransportTx};
use server_kit::{AccessToken, Open, Probe, Tokens};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use webterm_proto::{Envelope, Reply, Request};

use crate::command::{self, Spec, Started};

/// What every connection of one server shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// The full token and the view token; a viewer's every command,
    /// input and signal is refused (webterm has no terminal to watch).
    pub(crate) tokens: Tokens,
    pub(crate) shell: Arc<str>,
    pub(crate) max_commands: usize,
    pub(crate) max_pending_input: usize,
    pub(crate) shutdown: CancellationToken,
    pub(crate) probe: Probe,
}

/// Failed `authentication` attempts before the connection is closed.
const MAX_AUTH_FAILURES: u32 = 5;

/// Bytes of replies and updates waiting for a slow client; beyond this,
/// commands wait (and so do their processes). Counted in bytes, as an
/// update is anything from a few bytes to some hundreds of KiB once its
/// output is escaped (one larger than this goes alone).
const OUT_BYTES: usize = 8 << 20;

/// Completed commands remembered (to answer "has completed" rather than
/// "no such command") before they are forgotten.
const MAX_REMEMBERED: usize = 4096;

/// Runs one connection until the client leaves or the server stops.
pub(crate) async fn run<T: Transport>(transport: T, shared: Shared, html: bool) {
    let (mut tx, mut rx) = transport.split();
    let (out, mut out_rx) = exec_core::byte_queue::<String>(OUT_BYTES);
    let (close_tx, close_rx) = oneshot::channel::<(CloseReason, String)>();
    let stop = shared.shutdown.child_token();
    // One writer: replies and every command's updates in the order queued,
    // then the close frame once every command has stopped sending.
    let writer_stop = stop.clone();
    let writer = tokio::spawn(async move {
        while let Some(text) = out_rx.recv().await {
            if tx.send(Message::text(text)).await.is_err() {
                writer_stop.cancel();
                return;
            }
        }
        if let Ok((reason, text)) = close_rx.await {
            let _ = tx.close(reason, &text).await;
        }
    });
    let shutdown = shared.shutdown.clone();
    // Without a token every connection is a session from the start.
    let session = shared.tokens.full.is_none().then(|| shared.probe.session());
    let mut conn = Connection {
        shared,
        html,
        out,
        stop: stop.clone(),
        session_token: None,
        viewer: false,
        session,
        auth_failures: 0,
        commands: HashMap::new(),
        next_id: 1,
    };
    let close = loop {
        let msg = tokio::select! {
            msg = rx.recv() => msg,
            () = stop.cancelled() => {
                break if shutdown.is_cancelled() {
                    (CloseReason::GoingAway, "server shutting down".to_owned())
                } else {
                    (CloseReason::Normal, String::new())
                };
            }
        };
        let frame = match msg {
            Ok(Some(Message::Text(data) | Message::Binary(data))) => data,
            Ok(None) => break (CloseReason::Normal, String::new()),
            Err(e) => break (CloseReason::Policy, format!("bad frame: {e}")),
        };
        if !conn.handle(&frame).await {
            break (
                CloseReason::Policy,
                "too many failed authentication attempts".to_owned(),
            );
        }
    };
    // Commands end with the connection; the writer sends what they queued,
    // then the close.
    stop.cancel();
    drop(conn);
    let _ = close_tx.send(close);
    let _ = writer.await;
}

struct Connection {
    shared: Shared,
    html: bool,
    out: exec_core::ByteSender<String>,
    stop: CancellationToken,
    session_token: Option<AccessToken>,
    /// Authenticated with the view token: refused everything but
    /// authentication.
    viewer: bool,
    /// Counted as a session once authenticated.
    session: Option<Open>,
    auth_failures: u32,
    commands: HashMap<u64, Started>,
    next_id: u64,
}

impl Connection {
    fn authenticated(&self) -> bool {
        self.shared.tokens.full.is_none() || self.session_token.is_some()
    }

    async fn reply(&self, reply: Reply) -> bool {
        self.out.send(reply.encode()).await.is_ok()
    }

    /// Handles one frame; false ends the connection.
    async fn handle(&mut self, frame: &Bytes) -> bool {
        let envelope = match std::str::from_utf8(frame) {
            Ok(text) => webterm_proto::decode(text),
            Err(_) => webterm_proto::decode("\u{0}"),
        };
        let Envelope {
            session_token,
            request,
        } = match envelope {
            Ok(e) => e,
            Err(e) => {
                self.shared.probe.protocol_error();
                return self.reply(e.into()).await;
            }
        };
        let (kind, client_id, server_id) = describe(&request);
        let error = |message: String| Reply::Error {
            kind,
            message,
            client_id: client_id.clone(),
            server_id,
        };
        if let Request::Authentication { token } = &request {
            return self.authenticate(token).await;
        }
        if !self.authenticated() {
            self.shared.probe.protocol_error();
            return self
                .reply(error(
                    "not authenticated: send an authentication message first".into(),
                ))
                .await;
        }
        if let (Some(given), Some(ours)) = (&session_token, &self.session_token)
            && !ours.matches(given)
        {
            self.shared.probe.auth_failed();
            return self.reply(error("invalid sessionToken".into())).await;
        }
        if self.viewer {
            self.shared.probe.viewer_refused();
            tracing::info!(request = kind, "viewer refused");
            let what = match kind {
                "command" => "starting a command",
                _ => "input and signals",
            };
            return self
                .reply(error(format!(
                    "read-only (view token): {what} is not allowed"
                )))
                .await;
        }
        let result = match request {
            Request::Authentication { .. } => Ok(None),
            Request::Command {
                command,
                client_id,
                breakpoints,
            } => self.command(command, client_id, breakpoints).map(Some),
            Request::Stdin {
                server_id,
                input,
                eof,
            } => self.stdin(server_id, input, eof).map(|()| None),
            Request::Signal { server_id, signal } => self.signal(server_id, signal).map(|()| None),
        };
        match result {
            Ok(Some(reply)) => self.reply(reply).await,
            Ok(None) => true,
            Err(message) => {
                self.shared.probe.protocol_error();
                self.reply(error(message)).await
            }
        }
    }

    async fn authenticate(&mut self, token: &str) -> bool {
        if let Some(access) = self.shared.tokens.access(token) {
            self.viewer = access.is_view();
            let session_token = match &self.session_token {
                Some(t) => t.clone(),
                None => match AccessToken::generate() {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %e, "generating a session token");
                        return false;
                    }
                },
            };
            self.session_token = Some(session_token.clone());
            if self.session.is_none() {
                self.session = Some(self.shared.probe.session());
            }
            return self
                .reply(Reply::Authenticated {
                    session_token: session_token.expose().to_owned(),
                })
                .await;
        }
        self.auth_failures += 1;
        self.shared.probe.auth_failed();
        let sent = self
            .reply(Reply::Error {
                kind: "authentication",
                message: "wrong token".into(),
                client_id: None,
                server_id: None,
            })
            .await;
        sent && self.auth_failures < MAX_AUTH_FAILURES
    }

    fn command(
        &mut self,
        line: String,
        client_id: serde_json::Value,
        breakpoints: Vec<usize>,
    ) -> Result<Reply, String> {
        if self.commands.len() >= MAX_REMEMBERED {
            self.commands.retain(|_, c| !c.finished.is_cancelled());
        }
        let running = self
            .commands
            .values()
            .filter(|c| !c.finished.is_cancelled())
            .count();
        if running >= self.shared.max_commands {
            return Err(format!(
                "too many commands running on this connection (at most {})",
                self.shared.max_commands
            ));
        }
        let server_id = self.next_id;
        let spec = Spec {
            shell: self.shared.shell.to_string(),
            line: line.clone(),
            breakpoints,
            client_id: client_id.clone(),
            server_id,
            html: self.html,
            max_pending_input: self.shared.max_pending_input,
        };
        let started = command::start(
            spec,
            self.out.clone(),
            self.stop.clone(),
            &self.shared.probe,
        )
        .map_err(|e| e.to_string())?;
        self.next_id += 1;
        self.commands.insert(server_id, started);
        Ok(Reply::Started {
            command: line,
            client_id,
            server_id,
        })
    }

    fn entry(&self, server_id: u64) -> Result<&Started, String> {
        let command = self
            .commands
            .get(&server_id)
            .ok_or_else(|| format!("no command with serverId {server_id}"))?;
        if command.finished.is_cancelled() {
            return Err(format!("command {server_id} has completed"));
        }
        Ok(command)
    }

    /// Queues input without waiting: a command that does not read must not
    /// stop the connection from reading the next message (its signal).
    fn stdin(&mut self, server_id: u64, input: String, eof: bool) -> Result<(), String> {
        let entry = self.entry(server_id)?;
        if !input.is_empty() {
            entry
                .input
                .try_send(Bytes::from(input))
                .map_err(|e| match e {
                    exec_core::Error::StdinFull => {
                        format!("command {server_id} is not reading its input fast enough")
                    }
                    _ => format!("the input of command {server_id} is closed"),
                })?;
        }
        if eof {
            entry.input.close();
        }
        Ok(())
    }

    fn signal(&mut self, server_id: u64, number: i32) -> Result<(), String> {
        let entry = self.entry(server_id)?;
        let signal = exec_core::Signal::from_number(number)
            .ok_or_else(|| format!("signal {number} to command {server_id}: unknown signal"))?;
        entry
            .control
            .signal(signal)
            .map_err(|e| format!("signal {signal} to command {server_id}: {e}"))
    }
}

/// The reply type and ids of a request, for its error replies.
fn describe(request: &Request) -> (&'static str, Option<serde_json::Value>, Option<u64>) {
    match request {
        Request::Authentication { .. } => ("authentication", None, None),
        Request::Command { client_id, .. } => ("command", Some(client_id.clone()), None),
        Request::Stdin { server_id, .. } | Request::Signal { server_id, .. } => {
            ("update", None, Some(*server_id))
        }
    }
}
