//! One wsep connection, over any [`Transport`].
//!
//! The connection's life: wait for `start`; spawn (or re-attach); send `pid`;
//! then two loops run at once — output (process events to messages, ending
//! with `exit_code` and a normal close) and input (messages to stdin/resize).
//! Input goes through a queue bounded in bytes that a task of its own
//! writes to the process ([`StdinWriter`]; a pane has one too): the input
//! loop waits only while that queue is full, which is the backpressure a
//! fast client feels, and never holds up the output loop. Output waits for
//! the client to read, which is the backpressure the process feels.

use std::time::Duration;

use exec_core::{
    Claim, CloseReason, Command, ExitStatus, Framing, Lease, Message, Outgoing, OutputPump, Pane,
    PaneConfig, PaneId, Process, ProcessControl, PtySize, Replay, Session, StdinWriter, Transport,
    TransportError, TransportRx, TransportTx,
};
use server_kit::{Access, Open, Probe};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use wsep_proto::{ClientMsg, ServerMsg, StartCommand};

use crate::{Error, PROTOCOL};

/// What every session of one server shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Terminal sessions with an `id`, ended once nobody was attached for
    /// the session timeout. In the `execwire` daemon, the table of every
    /// protocol's panes.
    pub(crate) registry: Session,
    /// An `id` that is a number attaches the pane of that number (the
    /// registry is shared with protocols that know panes by number).
    pub(crate) by_number: bool,
    /// How long a terminal session started here lives with nobody
    /// attached.
    pub(crate) session_timeout: Duration,
    pub(crate) start_timeout: Duration,
    pub(crate) replay_bytes: usize,
    pub(crate) record: Option<exec_core::RecordConfig>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) probe: Probe,
}

/// How long to wait for the client's half of the closing handshake.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(5);

/// Input queued for a plain command beyond its pipe: a few of the largest
/// `stdin` messages, so the connection reads on (a resize, a close) while
/// the command catches up.
const STDIN_QUEUE: usize = 256 * 1024;

/// Output messages: a header naming the stream, then at most
/// [`wsep_proto::MAX_OUTPUT_BODY`] bytes. A terminal's output is `stdout`.
const FRAMING: Framing = Framing {
    max_message: wsep_proto::MAX_MESSAGE_SIZE,
    stdout: wsep_proto::STDOUT_HEADER,
    stderr: wsep_proto::STDERR_HEADER,
    terminal: wsep_proto::STDOUT_HEADER,
};

/// Serves one connection to its end; a viewer ([`Access::View`]) only
/// attaches and watches.
pub(crate) async fn run<T: Transport>(transport: T, shared: Shared, access: Access) {
    let (mut tx, mut rx) = transport.split();
    let start = tokio::select! {
        s = first_start(&mut rx) => s,
        () = tokio::time::sleep(shared.start_timeout) => Err(Refusal::policy("no start message received in time")),
        () = shared.shutdown.cancelled() => Err(Refusal { reason: CloseReason::GoingAway, text: "server shutting down".into() }),
    };
    let start = match start {
        Ok(start) => start,
        Err(refusal) => return refuse(tx, rx, refusal, &shared.probe).await,
    };
    let launched = match access {
        Access::Full => launch(&start, &shared).await.map_err(|e| e.to_string()),
        Access::View => attach_viewer(&start, &shared),
    };
    let running = match launched {
        Ok(r) => r,
        Err(e) if access.is_view() => {
            tracing::info!(command = %start.command, id = %start.id, why = %e, "viewer refused");
            shared.probe.viewer_refused();
            let refusal = Refusal::policy(e);
            // Counted as a viewer refusal, not as a protocol error.
            let _ = tx.close(refusal.reason, &refusal.text).await;
            return drain_until_closed(&mut rx).await;
        }
        Err(e) => {
            tracing::info!(command = %start.command, error = %e, "start failed");
            let refusal = Refusal {
                reason: CloseReason::Internal,
                text: e,
            };
            return refuse(tx, rx, refusal, &shared.probe).await;
        }
    };
    tracing::debug!(pid = running.pid, command = %start.command, tty = start.tty, id = %start.id, "started");
    if tx
        .send(encode(&ServerMsg::Pid(i64::from(running.pid))))
        .await
        .is_err()
    {
        return; // client gone; dropping `running` ends or detaches the process
    }

    let (refuse_tx, refuse_rx) = mpsc::channel::<Refusal>(1);
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let Running {
        output,
        input,
        control,
        counted,
        lease,
        ..
    } = running;
    let out_task = tokio::spawn(
        output_loop(tx, output, refuse_rx, shared.shutdown.clone(), done_tx)
            .instrument(tracing::Span::current()),
    );
    let input = match access {
        Access::Full => input,
        Access::View => InputSink::Viewer,
    };
    input_loop(&mut rx, input, control, refuse_tx, done_rx, &shared.probe).await;
    // The output loop has closed the connection (or is about to): let it finish.
    let _ = out_task.await;
    drop(counted);
    // The named session's idle timeout starts once its last client is gone.
    drop(lease);
}

/// A reason to end a connection with an error close.
#[derive(Debug)]
struct Refusal {
    reason: CloseReason,
    text: String,
}

impl Refusal {
    fn policy(text: impl Into<String>) -> Self {
        Refusal {
            reason: CloseReason::Policy,
            text: text.into(),
        }
    }

    /// Counts a refusal of what the client sent (a policy or size close)
    /// as a protocol error.
    fn count(&self, probe: &Probe) {
        if matches!(self.reason, CloseReason::Policy | CloseReason::TooBig) {
            probe.protocol_error();
        }
    }
}

fn decode_refusal(e: &wsep_proto::DecodeError) -> Refusal {
    match e {
        wsep_proto::DecodeError::TooLarge(_) => Refusal {
            reason: CloseReason::TooBig,
            text: e.to_string(),
        },
        _ => Refusal::policy(format!("malformed message: {e}")),
    }
}

fn transport_refusal(e: &TransportError) -> Refusal {
    match e {
        TransportError::MessageTooLarge => Refusal {
            reason: CloseReason::TooBig,
            text: format!("message exceeds {} bytes", wsep_proto::MAX_MESSAGE_SIZE),
        },
        other => Refusal::policy(other.to_string()),
    }
}

/// Waits for the `start`, ignoring unknown types as the reference does.
async fn first_start<R: TransportRx>(rx: &mut R) -> Result<StartCommand, Refusal> {
    loop {
        let msg = match rx.recv().await {
            Ok(Some(m)) => m,
            Ok(None) => return Err(Refusal::policy("closed before start")),
            Err(e) => return Err(transport_refusal(&e)),
        };
        match ClientMsg::decode(msg.payload()) {
            Ok(ClientMsg::Start(s)) => return Ok(s),
            Ok(ClientMsg::Unknown(kind)) => {
                tracing::debug!(%kind, "ignoring unknown message type");
            }
            Ok(_) => return Err(Refusal::policy("the first message must be start")),
            Err(e) => return Err(decode_refusal(&e)),
        }
    }
}

/// Closes with an error and waits briefly for the client's close.
async fn refuse<Tx: TransportTx, Rx: TransportRx>(
    mut tx: Tx,
    mut rx: Rx,
    refusal: Refusal,
    probe: &Probe,
) {
    refusal.count(probe);
    let _ = tx.close(refusal.reason, &refusal.text).await;
    drain_until_closed(&mut rx).await;
}

async fn drain_until_closed<Rx: TransportRx>(rx: &mut Rx) {
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, async {
        while let Ok(Some(_)) = rx.recv().await {}
    })
    .await;
}

/// A started command, split into what the two loops need.
struct Running {
    pid: u32,
    /// A terminal of the connection's own ends with it (`owned_pane`).
    output: OutputPump,
    input: InputSink,
    control: ProcessControl,
    /// A plain command counts as running while its output is read (it is
    /// killed when that ends); a terminal's count goes with its pane.
    counted: Option<Open>,
    /// The claim on a named session that keeps its idle timeout off.
    lease: Option<Lease>,
}

enum InputSink {
    /// A plain command's input; `None` after `close_stdin`.
    Stdin(Option<StdinWriter>),
    Pane(Pane),
    Disabled,
    /// A viewer's: what it sends is dropped, logged and counted.
    Viewer,
}

fn build_command(start: &StartCommand) -> Result<Command, Error> {
    let mut cmd = Command::new(&start.command).args(&start.args);
    if start.tty {
        // Programs need a terminal type; the client's env may override it.
        cmd = cmd.env("TERM", "xterm-256color").env("WSEP_TTY", "true");
    }
    for entry in &start.env {
        let (key, value) = entry
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| Error::BadEnv(entry.clone()))?;
        cmd = cmd.env(key, value);
    }
    if !start.working_dir.is_empty() {
        cmd = cmd.current_dir(&start.working_dir);
    }
    if start.uid != 0 {
        cmd = cmd.uid(start.uid);
    }
    if start.gid != 0 {
        cmd = cmd.gid(start.gid);
    }
    if start.tty {
        cmd = cmd.pty(PtySize::or_default(start.rows, start.cols));
    } else {
        cmd = cmd.stdin(start.stdin_enabled());
    }
    Ok(cmd)
}

async fn launch(start: &StartCommand, shared: &Shared) -> Result<Running, Error> {
    let cmd = build_command(start)?;
    if !start.tty {
        let mut process = Process::spawn(&cmd)?;
        let counted = Some(shared.probe.process());
        let pid = process.pid();
        let control = process.control();
        let input = match process.take_stdin() {
            Some(stdin) => InputSink::Stdin(Some(StdinWriter::new(stdin, STDIN_QUEUE))),
            None => InputSink::Disabled,
        };
        return Ok(Running {
            pid,
            // Output chunks arrive as ready-made wsep messages.
            output: OutputPump::process(process, FRAMING),
            input,
            control,
            counted,
            lease: None,
        });
    }
    let config = PaneConfig {
        replay_bytes: shared.replay_bytes,
        // Each output event fits one message behind its header.
        chunk: wsep_proto::MAX_OUTPUT_BODY,
        record: shared.record.clone(),
    };
    let claim = Claim {
        client: PROTOCOL,
        idle_timeout: Some(shared.session_timeout),
    };
    let numbered = numbered_pane(start, shared);
    let (pane, owned, lease) = if start.id.is_empty() {
        let pane = Pane::spawn(&cmd, config)?;
        count_pane(&pane, &shared.probe);
        (pane, true, None)
    } else if let Some((id, pane)) = numbered {
        // Another protocol's pane (or one of ours, by its number): only a
        // terminal can be attached as one.
        if pane.size().is_none() {
            return Err(exec_core::Error::NoTerminal.into());
        }
        let lease = shared
            .registry
            .lease(id, PROTOCOL)
            .ok_or(exec_core::Error::SessionEnded)?;
        if start.rows != 0 || start.cols != 0 {
            pane.resize(PtySize::or_default(start.rows, start.cols), PROTOCOL)?;
        }
        (pane, false, Some(lease))
    } else {
        let (_, pane, lease, created) = shared
            .registry
            .get_or_spawn(&start.id, &cmd, config, claim)
            .await?;
        if created {
            count_pane(&pane, &shared.probe);
        }
        if !created && (start.rows != 0 || start.cols != 0) {
            // The newest client's window decides the size, as with screen -x.
            pane.resize(PtySize::or_default(start.rows, start.cols), PROTOCOL)?;
        }
        (pane, false, Some(lease))
    };
    let attachment = pane.attach(Replay::Screen);
    let output = match owned {
        true => OutputPump::owned_pane(attachment, FRAMING),
        false => OutputPump::pane(attachment, FRAMING),
    };
    Ok(Running {
        pid: pane.pid(),
        control: pane.control().clone(),
        output,
        input: InputSink::Pane(pane),
        lease,
        counted: None,
    })
}

/// The pane whose number a `start`'s id is, when the pane table is shared
/// with other protocols (there a number means a pane before a name).
fn numbered_pane(start: &StartCommand, shared: &Shared) -> Option<(PaneId, Pane)> {
    let number = start.id.parse::<u64>().ok().filter(|_| shared.by_number)?;
    shared.registry.find(number)
}

/// A viewer's `start`: it names a live terminal session (`tty` and its
/// `id`), which the viewer attaches with a redraw and leases like any
/// client, without starting anything or resizing it. Anything else is
/// refused, with the reason the close carries.
fn attach_viewer(start: &StartCommand, shared: &Shared) -> Result<Running, String> {
    const READ_ONLY: &str = "read-only (view token)";
    if !start.tty || start.id.is_empty() {
        return Err(format!(
            "{READ_ONLY}: cannot start a command; attach a terminal session by its id"
        ));
    }
    let live = numbered_pane(start, shared)
        .or_else(|| shared.registry.by_name(&start.id))
        .filter(|(_, pane)| pane.exit_status().is_none() && pane.size().is_some())
        .and_then(|(key, pane)| Some((pane, shared.registry.lease(key, PROTOCOL)?)));
    let Some((pane, lease)) = live else {
        return Err(format!(
            "{READ_ONLY}: no live terminal session {:?}",
            start.id
        ));
    };
    let attachment = pane.attach(Replay::Screen);
    Ok(Running {
        pid: pane.pid(),
        control: pane.control().clone(),
        output: OutputPump::pane(attachment, FRAMING),
        input: InputSink::Viewer,
        lease: Some(lease),
        counted: None,
    })
}

/// Counts a new pane, and its process, until it exits.
fn count_pane(pane: &Pane, probe: &Probe) {
    let counted = (probe.pane(), probe.process());
    pane.on_exit(move || drop(counted));
}

fn encode(msg: &ServerMsg) -> Message {
    Message::Binary(msg.encode())
}

fn exit_message(status: ExitStatus) -> Message {
    let error = match status.success() {
        true => String::new(),
        false => server_kit::go_exit_text(&status),
    };
    encode(&ServerMsg::ExitCode {
        code: server_kit::go_exit_code(&status),
        error,
    })
}

/// Process output to the client, then `exit_code` and a normal close.
async fn output_loop<Tx: TransportTx>(
    mut tx: Tx,
    mut source: OutputPump,
    mut refusals: mpsc::Receiver<Refusal>,
    shutdown: CancellationToken,
    done: oneshot::Sender<()>,
) {
    let outcome: Result<Option<Refusal>, TransportError> = async {
        loop {
            tokio::select! {
                event = source.next() => match event {
                    Some(Ok(Outgoing::Output(_, message))) => tx.send(Message::Binary(message)).await?,
                    Some(Ok(Outgoing::Exit(status))) => {
                        tx.send(exit_message(status)).await?;
                        return Ok(None);
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "waiting for the process failed");
                        return Ok(Some(Refusal { reason: CloseReason::Internal, text: "process output failed".into() }));
                    }
                    None => return Ok(Some(Refusal { reason: CloseReason::Internal, text: "process output failed".into() })),
                },
                Some(refusal) = refusals.recv() => return Ok(Some(refusal)),
                () = shutdown.cancelled() => {
                    return Ok(Some(Refusal { reason: CloseReason::GoingAway, text: "server shutting down".into() }));
                }
            }
        }
    }
    .await;
    // The process ends before the client hears the close (dropping the pump
    // kills a plain command's group and ends a connection's own terminal);
    // a named terminal session lives on for its idle timeout.
    drop(source);
    let result = match outcome {
        Ok(None) => tx.close(CloseReason::Normal, "").await,
        Ok(Some(refusal)) => tx.close(refusal.reason, &refusal.text).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "client stopped receiving");
    }
    let _ = done.send(());
}

/// Client messages to the process until the connection ends.
async fn input_loop<Rx: TransportRx>(
    rx: &mut Rx,
    mut input: InputSink,
    control: ProcessControl,
    refuse: mpsc::Sender<Refusal>,
    mut done: oneshot::Receiver<()>,
    probe: &Probe,
) {
    loop {
        let step = tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(msg)) => {
                    // Writing may wait for the process; the output side may
                    // finish meanwhile, and then the write is moot.
                    tokio::select! {
                        r = handle(&mut input, &control, msg, probe) => r,
                        _ = &mut done => return drain_until_closed(rx).await,
                    }
                }
                Ok(None) => {
                    // The client left (or answered our close). A plain
                    // command goes with it; a named session stays.
                    let _ = refuse.try_send(Refusal { reason: CloseReason::Normal, text: String::new() });
                    return;
                }
                Err(e) => Err(transport_refusal(&e)),
            },
            _ = &mut done => return drain_until_closed(rx).await,
        };
        if let Err(refusal) = step {
            tracing::debug!(reason = %refusal.text, "closing with an error");
            refusal.count(probe);
            let _ = refuse.send(refusal).await;
            let _ = (&mut done).await;
            return drain_until_closed(rx).await;
        }
    }
}

async fn handle(
    input: &mut InputSink,
    control: &ProcessControl,
    msg: Message,
    probe: &Probe,
) -> Result<(), Refusal> {
    let msg = ClientMsg::decode(msg.payload()).map_err(|e| decode_refusal(&e))?;
    if let InputSink::Viewer = input
        && matches!(
            msg,
            ClientMsg::Stdin(_) | ClientMsg::CloseStdin | ClientMsg::Resize { .. }
        )
    {
        // wsep has no error message short of closing: the viewer's input
        // goes nowhere and the connection stays.
        tracing::debug!(pid = control.pid(), "dropping a viewer's input");
        probe.viewer_refused();
        return Ok(());
    }
    match msg {
        ClientMsg::Stdin(data) => match input {
            InputSink::Stdin(Some(stdin)) => stdin
                .send(data)
                .await
                .map_err(|e| Refusal::policy(format!("stdin: {e}"))),
            InputSink::Stdin(None) => Err(Refusal::policy("stdin message after close_stdin")),
            InputSink::Pane(pane) => pane
                .write(data)
                .await
                .map_err(|e| Refusal::policy(format!("stdin: {e}"))),
            InputSink::Disabled => Err(Refusal::policy("stdin is not enabled for this command")),
            InputSink::Viewer => Ok(()),
        },
        ClientMsg::CloseStdin => {
            match input {
                InputSink::Stdin(stdin) => {
                    if let Some(s) = stdin.take() {
                        s.close();
                    }
                }
                InputSink::Pane(pane) => {
                    let _ = pane.close_stdin().await;
                }
                InputSink::Disabled | InputSink::Viewer => {}
            }
            Ok(())
        }
        ClientMsg::Resize { rows, cols } => {
            let size = PtySize::or_default(rows, cols);
            match input {
                InputSink::Pane(pane) => pane
                    .resize(size, PROTOCOL)
                    .map_err(|e| Refusal::policy(format!("resize: {e}"))),
                // Only terminals have a size; clients send it regardless.
                _ => {
                    tracing::debug!(
                        pid = control.pid(),
                        "ignoring resize of a command without a terminal"
                    );
                    Ok(())
                }
            }
        }
        ClientMsg::Start(_) => Err(Refusal::policy("start was already received")),
        ClientMsg::Unknown(kind) => {
            tracing::debug!(%kind, "ignoring unknown message type");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use exec_core::memory_pair;

    fn shared() -> Shared {
        Shared {
            registry: Session::default(),
            by_number: false,
            session_timeout: Duration::from_secs(60),
            start_timeout: Duration::from_secs(5),
            replay_bytes: 1 << 16,
            record: None,
            shutdown: CancellationToken::new(),
            probe: server_kit::Metrics::new().probe("wsep"),
        }
    }

    fn bin(msg: &ClientMsg) -> Message {
        Message::Binary(msg.encode().into())
    }

    /// The protocol over an in-memory transport: no sockets involved.
    #[tokio::test]
    async fn cat_session_over_memory_transport() {
        let (server_end, client_end) = memory_pair(64 * 1024);
        let session = tokio::spawn(run(server_end, shared(), Access::Full));
        let (mut tx, mut rx) = client_end.split();
        let start = StartCommand {
            command: "cat".into(),
            ..StartCommand::default()
        };
        tx.send(bin(&ClientMsg::Start(start))).await.unwrap();
        tx.send(bin(&ClientMsg::Stdin(Bytes::from_static(b"a\nb"))))
            .await
            .unwrap();
        tx.send(bin(&ClientMsg::CloseStdin)).await.unwrap();
        let mut got = Vec::new();
        while let Some(msg) = rx.recv().await.unwrap() {
            got.push(ServerMsg::decode(msg.payload()).unwrap());
        }
        assert_eq!(rx.close_frame().unwrap().reason, CloseReason::Normal);
        assert!(matches!(got.first(), Some(ServerMsg::Pid(_))));
        assert_eq!(
            got.get(1),
            Some(&ServerMsg::Stdout(Bytes::from_static(b"a\nb")))
        );
        assert_eq!(
            got.last(),
            Some(&ServerMsg::ExitCode {
                code: 0,
                error: String::new()
            })
        );
        tx.close(CloseReason::Normal, "").await.unwrap();
        session.await.unwrap();
    }

    #[tokio::test]
    async fn no_start_in_time_is_a_policy_close() {
        let (server_end, client_end) = memory_pair(64 * 1024);
        let config = Shared {
            start_timeout: Duration::from_millis(20),
            ..shared()
        };
        let session = tokio::spawn(run(server_end, config, Access::Full));
        let (mut tx, mut rx) = client_end.split();
        assert_eq!(rx.recv().await.unwrap(), None);
        let frame = rx.close_frame().unwrap();
        assert_eq!(frame.reason, CloseReason::Policy);
        assert!(frame.text.contains("start"));
        tx.close(CloseReason::Normal, "").await.unwrap();
        session.await.unwrap();
    }
}
