//! Server-defined processes: what a pow-1 call runs.
//!
//! A [`Handler`] turns a call (a name and string parameters) into a
//! [`PowProcess`], or refuses. The process then runs with its input, its
//! output and a [`Cancel`] whose cause it can read. [`Registry`] is the
//! handler most servers want: a map from names to constructors.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// Why a call was refused before anything ran.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// No process of that name.
    #[error("unknown process")]
    UnknownProcess,
    /// The parameters do not fit the process.
    #[error("invalid parameters: {0}")]
    InvalidParams(String),
    /// The caller may not run it.
    #[error("not authorized")]
    NotAuthorized,
}

/// Why a process was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CancelCause {
    /// The client disconnected.
    ClientGone,
    /// The client sent a cancel signal (or REST cancel).
    ClientCancel,
    /// The client broke the protocol.
    ProtocolError,
    /// A time limit ran out.
    Timeout,
    /// The server is shutting down.
    Shutdown,
}

/// What a client reads in a rejection ("cancelled: the client cancelled").
impl std::fmt::Display for CancelCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CancelCause::ClientGone => "the client disconnected",
            CancelCause::ClientCancel => "the client cancelled",
            CancelCause::ProtocolError => "the client broke the protocol",
            CancelCause::Timeout => "the time limit ran out",
            CancelCause::Shutdown => "the server is shutting down",
        })
    }
}

/// The rejection reason of a process stopped by `cause`.
pub(crate) fn cancelled_reason(cause: Option<CancelCause>) -> String {
    match cause {
        Some(cause) => format!("cancelled: {cause}"),
        None => "cancelled".to_owned(),
    }
}

/// Cancellation of one process, with its first cause.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    token: CancellationToken,
    cause: Arc<OnceLock<CancelCause>>,
}

impl Cancel {
    /// A cancellation that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires with `cause`; later causes are ignored.
    pub fn cancel(&self, cause: CancelCause) {
        let _ = self.cause.set(cause);
        self.token.cancel();
    }

    /// Waits until fired.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// The first cause, once fired.
    pub fn cause(&self) -> Option<CancelCause> {
        self.cause.get().copied()
    }
}

/// Where a process writes its output. Each write reaches the client as one
/// text frame; bytes that are not UTF-8 are replaced (U+FFFD).
#[derive(Debug, Clone)]
pub struct OutputSink {
    tx: exec_core::ByteSender<Bytes>,
}

impl OutputSink {
    /// Sends output; waits while the client is not reading. Fails once the
    /// client is gone.
    pub async fn write(&self, data: impl Into<Bytes>) -> Result<(), GoneError> {
        self.tx.send(data.into()).await.map_err(|_| GoneError)
    }
}

/// The client is gone: output has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("client gone")]
pub struct GoneError;

/// Everything a running process talks through.
#[derive(Debug)]
pub struct Io {
    /// Input, in the order it was sent; ends (`None`) when the client closes
    /// input, cancels or leaves.
    pub input: exec_core::ByteReceiver<Bytes>,
    /// Output to the client.
    pub output: OutputSink,
    /// Fires when the process should stop; says why.
    pub cancel: Cancel,
}

/// A process's input and output: queues of `input_bytes` and
/// `output_bytes` (chunks of any size on either side).
pub(crate) fn io_pair(
    input_bytes: usize,
    output_bytes: usize,
) -> (
    Io,
    exec_core::ByteSender<Bytes>,
    exec_core::ByteReceiver<Bytes>,
) {
    let (in_tx, in_rx) = exec_core::byte_queue(input_bytes);
    let (out_tx, out_rx) = exec_core::byte_queue(output_bytes);
    let io = Io {
        input: in_rx,
        output: OutputSink { tx: out_tx },
        cancel: Cancel::new(),
    };
    (io, in_tx, out_rx)
}

/// A runnable, server-defined process.
#[async_trait]
pub trait PowProcess: Send + 'static {
    /// Runs to the end. `Ok` fulfils the call with the value (`Null` for
    /// none); `Err` rejects it with the message.
    async fn run(self: Box<Self>, io: Io) -> Result<Value, String>;
}

/// Turns calls into processes.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The process for `name` with `params`. The default refuses every call,
    /// so a handler that forgets to say otherwise runs nothing.
    async fn get(&self, name: &str, params: &[String]) -> Result<Box<dyn PowProcess>, GetError> {
        let _ = (name, params);
        Err(GetError::UnknownProcess)
    }
}

type Constructor = dyn Fn(&[String]) -> Result<Box<dyn PowProcess>, GetError> + Send + Sync;

/// A [`Handler`] from names to constructors.
#[derive(Clone, Default)]
pub struct Registry {
    processes: HashMap<String, Arc<Constructor>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.processes.keys().collect();
        names.sort();
        f.debug_struct("Registry")
            .field("processes", &names)
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `name`; `make` checks the parameters and builds the process.
    pub fn register<F>(&mut self, name: impl Into<String>, make: F) -> &mut Self
    where
        F: Fn(&[String]) -> Result<Box<dyn PowProcess>, GetError> + Send + Sync + 'static,
    {
        self.processes.insert(name.into(), Arc::new(make));
        self
    }

    /// The names registered.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.processes.keys().map(String::as_str)
    }
}

#[async_trait]
impl Handler for Registry {
    async fn get(&self, name: &str, params: &[String]) -> Result<Box<dyn PowProcess>, GetError> {
        let make = self.processes.get(name).ok_or(GetError::UnknownProcess)?;
        make(params)
    }
}

/// The reference example server's `echo`: copies input to output until input
/// is closed, then fulfils with its parameters.
#[derive(Debug, Clone)]
pub struct Echo {
    params: Vec<String>,
}

impl Echo {
    /// An echo that will answer with `params`.
    pub fn new(params: &[String]) -> Self {
        Echo {
            params: params.to_vec(),
        }
    }
}

#[async_trait]
impl PowProcess for Echo {
    async fn run(self: Box<Self>, mut io: Io) -> Result<Value, String> {
        loop {
            tokio::select! {
                chunk = io.input.recv() => match chunk {
                    Some(data) => io.output.write(data).await.map_err(|e| e.to_string())?,
                    None => break,
                },
                () = io.cancel.cancelled() => break,
            }
        }
        if let Some(cause) = io.cancel.cause() {
            return Err(cancelled_reason(Some(cause)));
        }
        Ok(Value::from(self.params))
    }
}
