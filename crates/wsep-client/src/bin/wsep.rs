//! `wsep`: run a command on a wsep server, piping stdin, stdout and stderr.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use std::os::fd::{AsFd as _, BorrowedFd};

use bytes::{Bytes, BytesMut};
use wsep_client::{Input, Output};
use wsep_proto::StartCommand;

/// Run CMD on the wsep server at URL and exit with its exit code.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server URL, e.g. ws://127.0.0.1:8080/ (or wss:// for a server with TLS)
    url: String,
    /// Trust a wss:// server whose certificate is in (or issued by one in)
    /// this PEM file, instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "fingerprint")]
    ca: Option<std::path::PathBuf>,
    /// Trust a wss:// server by its certificate's SHA-256 fingerprint (as
    /// wsep-server prints it), whatever its name or issuer.
    #[arg(long, value_name = "SHA256")]
    fingerprint: Option<String>,
    /// Token the server expects.
    #[arg(long, env = "WSEP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Run under a terminal: local terminal in raw mode, window size forwarded.
    #[arg(long)]
    tty: bool,
    /// Name a terminal session to create or re-attach to (needs --tty).
    #[arg(long, requires = "tty")]
    id: Option<String>,
    /// Extra environment for the command, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Working directory on the server.
    #[arg(long, short = 'w')]
    workdir: Option<String>,
    /// Command and arguments (after `--`).
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// The size of the terminal this command runs in, or 24x80 when it runs in
/// none (piped, under a test): then the remote terminal gets the classic
/// size on every server, not the size of some other terminal the process
/// happens to control.
fn local_size() -> (u16, u16) {
    let in_terminal = std::io::stdin().is_terminal() || std::io::stdout().is_terminal();
    match crossterm::terminal::size() {
        Ok((cols, rows)) if in_terminal => (rows, cols),
        _ => (wsep_client::DEFAULT_ROWS, wsep_client::DEFAULT_COLS),
    }
}

/// The command's environment: for a terminal, the local `TERM` first (the
/// remote program draws for the terminal we display on; servers differ in
/// what they set), then the user's entries, which win.
fn remote_env(tty: bool, user: Vec<String>) -> Vec<String> {
    let term = std::env::var("TERM").ok().filter(|t| tty && !t.is_empty());
    term.map(|t| format!("TERM={t}"))
        .into_iter()
        .chain(user)
        .collect()
}

/// Puts the local terminal back the way it was, however we leave.
struct RawMode;

impl RawMode {
    fn enable() -> anyhow::Result<RawMode> {
        crossterm::terminal::enable_raw_mode().context("putting the terminal in raw mode")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "wsep: {e:#}");
            ExitCode::from(255)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<u8> {
    let mut parts = args.command.into_iter();
    let command = parts.next().context("no command given")?;
    let (rows, cols) = if args.tty { local_size() } else { (0, 0) };
    let start = StartCommand {
        id: args.id.unwrap_or_default(),
        command: command.clone(),
        args: parts.collect(),
        tty: args.tty,
        // Said outright: the reference server reads a missing flag as "no
        // input" and fails the session on the first byte.
        stdin: Some(true),
        rows,
        cols,
        env: remote_env(args.tty, args.env),
        working_dir: args.workdir.unwrap_or_default(),
        ..StartCommand::default()
    };
    let trust = match (args.ca, args.fingerprint) {
        (Some(file), _) => wsep_client::Trust::Ca(file),
        (None, Some(fingerprint)) => wsep_client::Trust::Fingerprint(fingerprint),
        (None, None) => wsep_client::Trust::System,
    };
    let (input, mut outputs) =
        wsep_client::start_trusting(&args.url, args.token.as_deref(), start, &trust)
            .await
            .with_context(|| format!("running {command:?}"))?;
    // Raw mode only where there is a terminal to put in it (not when piped).
    let _raw = if args.tty && std::io::stdin().is_terminal() {
        Some(RawMode::enable()?)
    } else {
        None
    };
    let pump = tokio::spawn(pump_input(input, args.tty));

    let (stdout, stdout_thread) = writer(std::io::stdout().as_fd())?;
    let (stderr, stderr_thread) = writer(std::io::stderr().as_fd())?;
    // Runs to the exit code: the library then closes the connection itself,
    // whether or not the server would have.
    let outcome: anyhow::Result<Option<i32>> = async {
        let mut code = None;
        while let Some(event) = outputs.next().await? {
            match event {
                Output::Stdout(b) => stdout.send(b).await?,
                Output::Stderr(b) => stderr.send(b).await?,
                Output::Exit { code: c, .. } => code = Some(c),
            }
        }
        Ok(code)
    }
    .await;
    // Everything received is written before we exit, even after an error.
    drop((stdout, stderr));
    for thread in [stdout_thread, stderr_thread] {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("output writer panicked"))??;
    }
    let code = outcome?;
    pump.abort();
    // -1 (killed by a signal) and anything out of range become 255, as with ssh.
    Ok(code.and_then(|c| u8::try_from(c).ok()).unwrap_or(255))
}

/// A thread that writes what it is sent to `fd`, unbuffered: one write per
/// message, no copy, and no line buffering of binary output.
fn writer(
    fd: BorrowedFd<'_>,
) -> anyhow::Result<(
    tokio::sync::mpsc::Sender<Bytes>,
    std::thread::JoinHandle<std::io::Result<()>>,
)> {
    let mut file = std::fs::File::from(fd.try_clone_to_owned()?);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let thread = std::thread::spawn(move || {
        while let Some(chunk) = rx.blocking_recv() {
            match file.write_all(&chunk) {
                // The reader went away (`wsep ... | head`): stop writing quietly.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                other => other?,
            }
        }
        Ok(())
    });
    Ok((tx, thread))
}

/// A thread that reads local stdin straight into ready-made `stdin`
/// messages. Reading stdin blocks, so it gets a thread of its own rather
/// than a trip through tokio's blocking pool for every read. An empty message
/// body means end of input.
fn reader() -> anyhow::Result<tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>> {
    let mut file = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let header = wsep_proto::STDIN_HEADER.len();
    std::thread::spawn(move || {
        loop {
            let mut msg = BytesMut::with_capacity(wsep_proto::MAX_MESSAGE_SIZE);
            msg.extend_from_slice(wsep_proto::STDIN_HEADER);
            msg.resize(wsep_proto::MAX_MESSAGE_SIZE, 0);
            let read = std::io::Read::read(&mut file, msg.get_mut(header..).unwrap_or_default());
            let done = !matches!(read, Ok(n) if n > 0);
            let item = read.map(|n| {
                msg.truncate(header + n);
                msg.freeze()
            });
            if tx.blocking_send(item).is_err() || done {
                return;
            }
        }
    });
    Ok(rx)
}

/// Local stdin (and, with a terminal, window resizes) to the server.
async fn pump_input(mut input: Input, tty: bool) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut winch = if tty {
        Some(signal(SignalKind::window_change())?)
    } else {
        None
    };
    let mut stdin = reader()?;
    loop {
        tokio::select! {
            message = stdin.recv() => {
                let message = match message {
                    Some(m) => m?,
                    None => Bytes::new(),
                };
                if message.len() <= wsep_proto::STDIN_HEADER.len() {
                    if !tty {
                        input.close_stdin().await?;
                    }
                    return Ok(());
                }
                input.write_encoded(message).await?;
            }
            Some(()) = async { match winch.as_mut() { Some(w) => w.recv().await, None => std::future::pending().await } } => {
                if let Ok((cols, rows)) = crossterm::terminal::size() {
                    input.resize(rows, cols).await?;
                }
            }
        }
    }
}
