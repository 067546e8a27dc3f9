use std::io;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The command could not be started (no such executable, bad working
    /// directory, permission denied, ...).
    #[error("failed to start {program:?}: {error}")]
    Spawn {
        /// The program that was asked for.
        program: String,
        /// What the operating system said: part of the message, so not
        /// also its `source` (printed with its causes, `{:#}`, it would
        /// come twice).
        error: io::Error,
    },
    /// The command has no program (an empty argv).
    #[error("empty command")]
    EmptyCommand,
    /// A pseudo terminal could not be allocated or configured.
    #[error("pty: {0}")]
    Pty(#[from] pty_process::Error),
    /// Resize was asked of a process that runs without a terminal.
    #[error("process has no terminal")]
    NoTerminal,
    /// Input was sent after stdin was closed, or to a process started without stdin.
    #[error("stdin is closed")]
    StdinClosed,
    /// Input was refused because the process's input queue is full: it is
    /// not reading as fast as input arrives.
    #[error("stdin is full: the process is not reading its input fast enough")]
    StdinFull,
    /// Delivering a signal failed.
    #[error("signal: {0}")]
    Signal(#[source] io::Error),
    /// A session already holds an entry of this name.
    #[error("the name {0:?} is taken")]
    NameTaken(String),
    /// The session ended all its entries ([`Session::end_all`](crate::Session::end_all))
    /// while this one was starting; it was ended too.
    #[error("the session was shut down while the process started")]
    SessionEnded,
    /// An I/O error on the process's pipes or terminal.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Errors of a [`Transport`](crate::Transport).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The peer closed the transport normally; nothing more will arrive.
    #[error("transport closed")]
    Closed,
    /// The transport was used after it was closed.
    #[error("transport already closed")]
    AlreadyClosed,
    /// The peer sent a message larger than the configured limit.
    #[error("message too large")]
    MessageTooLarge,
    /// The peer broke the transport's own rules (text that is not UTF-8,
    /// a broken frame). Nothing more can be read, but the peer can still
    /// be told why before the connection ends.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// The underlying connection failed.
    #[error("transport: {0}")]
    Other(String),
}
