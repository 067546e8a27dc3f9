//! Pure codec for the Web-Terminal WebSocket Protocol v3: JSON text frames
//! `{"type": ..., "payload": {...}}`, and the pipeline parser that numbers
//! the pipes `breakpoints` refer to. No IO.
//!
//! Decoding is lenient where real clients differ (`clientId` of any JSON
//! type is echoed back as sent; `serverId` and `signal` as numbers or
//! strings) and strict where a mistake would run the wrong thing.

use serde::Serialize;
use serde_json::{Map, Value};

pub mod pipeline;

pub use pipeline::{Pipe, PipelineError, pipes};

/// Why a client message was refused. Carries what the reply needs to say
/// which request failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// The message type to answer with: the request's own type when it was
    /// known, else `"error"`.
    pub kind: &'static str,
    /// What was wrong, for the user.
    pub message: String,
    /// The request's `clientId`, when it had one.
    pub client_id: Option<Value>,
    /// The request's `serverId`, when it had a valid one.
    pub server_id: Option<u64>,
}

/// A message from the client, with the `sessionToken` it carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The session token, when the message carried one.
    pub session_token: Option<String>,
    /// The request.
    pub request: Request,
}

/// What a client asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `authentication {token}`.
    Authentication {
        /// The token the user gave.
        token: String,
    },
    /// `command {command, clientId, breakpoints?}`.
    Command {
        /// The command line, run by the user's shell.
        command: String,
        /// The client's id for it, echoed on every reply.
        client_id: Value,
        /// Indexes of pipes to tee.
        breakpoints: Vec<usize>,
    },
    /// `update {type:"stdin", serverId, input, eof?}`; `eof` (an extension)
    /// closes the command's input after `input`.
    Stdin {
        /// The command.
        server_id: u64,
        /// Text to write to its stdin.
        input: String,
        /// Close stdin afterwards.
        eof: bool,
    },
    /// `update {type:"signal", serverId, signal}`.
    Signal {
        /// The command.
        server_id: u64,
        /// The signal number (names such as `"SIGTERM"` are accepted).
        signal: i32,
    },
}

/// Decodes one text frame.
pub fn decode(text: &str) -> Result<Envelope, DecodeError> {
    let fail = |kind, message: String| DecodeError {
        kind,
        message,
        client_id: None,
        server_id: None,
    };
    let value: Value =
        serde_json::from_str(text).map_err(|e| fail("error", format!("invalid JSON: {e}")))?;
    let Value::Object(mut top) = value else {
        return Err(fail("error", "a message must be a JSON object".into()));
    };
    let kind = match top.get("type") {
        Some(Value::String(t)) => match t.as_str() {
            "authentication" => "authentication",
            "command" => "command",
            "update" => "update",
            other => {
                return Err(fail("error", format!("unknown message type {other:?}")));
            }
        },
        Some(_) => return Err(fail("error", "`type` must be a string".into())),
        None => return Err(fail("error", "missing `type`".into())),
    };
    let session_token = match top.remove("sessionToken") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(fail(kind, "`sessionToken` must be a string".into())),
    };
    let mut payload = match top.remove("payload") {
        Some(Value::Object(p)) => p,
        _ => return Err(fail(kind, "`payload` must be an object".into())),
    };
    let client_id = payload.get("clientId").cloned();
    let server_id = payload.get("serverId").and_then(as_id);
    let fail = |message: String| DecodeError {
        kind,
        message,
        client_id: client_id.clone(),
        server_id,
    };
    let request = match kind {
        "authentication" => Request::Authentication {
            token: string(&mut payload, "token").map_err(fail)?,
        },
        "command" => Request::Command {
            command: string(&mut payload, "command").map_err(&fail)?,
            client_id: client_id.clone().unwrap_or(Value::Null),
            breakpoints: breakpoints(payload.get("breakpoints")).map_err(&fail)?,
        },
        _ => {
            let server_id = match payload.get("serverId") {
                None => return Err(fail("missing `serverId`".into())),
                Some(v) => as_id(v).ok_or_else(|| fail(format!("invalid serverId {v}")))?,
            };
            match payload.get("type") {
                Some(Value::String(t)) if t == "stdin" => Request::Stdin {
                    server_id,
                    input: match payload.remove("input") {
                        None | Some(Value::Null) => String::new(),
                        Some(Value::String(s)) => s,
                        Some(_) => return Err(fail("`input` must be a string".into())),
                    },
                    eof: matches!(payload.get("eof"), Some(Value::Bool(true))),
                },
                Some(Value::String(t)) if t == "signal" => Request::Signal {
                    server_id,
                    signal: payload
                        .get("signal")
                        .and_then(signal_number)
                        .ok_or_else(|| {
                            fail(format!(
                                "invalid signal {}",
                                payload.get("signal").unwrap_or(&Value::Null)
                            ))
                        })?,
                },
                Some(Value::String(t)) => {
                    return Err(fail(format!("unknown update type {t:?}")));
                }
                _ => return Err(fail("update without a `type`".into())),
            }
        }
    };
    Ok(Envelope {
        session_token,
        request,
    })
}

fn string(payload: &mut Map<String, Value>, key: &str) -> Result<String, String> {
    match payload.remove(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("`{key}` must be a string")),
        None => Err(format!("missing `{key}`")),
    }
}

/// A server id as a JSON number or a string of digits.
fn as_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn breakpoints(v: Option<&Value>) -> Result<Vec<usize>, String> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| format!("breakpoint {i} is not a pipe index"))
            })
            .collect(),
        Some(other) => Err(format!("`breakpoints` must be an array, not {other}")),
    }
}

/// Linux signal numbers by name, with or without `SIG`, any case.
const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("KILL", 9),
    ("USR1", 10),
    ("USR2", 12),
    ("ALRM", 14),
    ("TERM", 15),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("WINCH", 28),
];

/// The highest signal number Linux has (`SIGRTMAX`).
pub const MAX_SIGNAL: i32 = 64;

fn signal_number(v: &Value) -> Option<i32> {
    let n = match v {
        Value::Number(n) => i32::try_from(n.as_i64()?).ok()?,
        Value::String(s) => {
            let upper = s.trim().to_ascii_uppercase();
            let name = upper.strip_prefix("SIG").unwrap_or(&upper);
            match name.parse() {
                Ok(n) => n,
                Err(_) => SIGNALS.iter().find(|(k, _)| *k == name)?.1,
            }
        }
        _ => return None,
    };
    (1..=MAX_SIGNAL).contains(&n).then_some(n)
}

/// A message from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `authentication {result:"ok", sessionToken}`.
    Authenticated {
        /// The token later messages may carry.
        session_token: String,
    },
    /// `command {result:"ok", command, clientId, serverId}`.
    Started {
        /// The command line, as sent.
        command: String,
        /// The client's id, as sent.
        client_id: Value,
        /// The server's id for the command.
        server_id: u64,
    },
    /// `{result:"error", message}` under the request's type.
    Error {
        /// `authentication`, `command`, `update` or `error`.
        kind: &'static str,
        /// For the user.
        message: String,
        /// The request's `clientId`, if any.
        client_id: Option<Value>,
        /// The request's `serverId`, if any.
        server_id: Option<u64>,
    },
    /// New output and the state of a command.
    Update(Box<Update>),
}

impl From<DecodeError> for Reply {
    fn from(e: DecodeError) -> Reply {
        Reply::Error {
            kind: e.kind,
            message: e.message,
            client_id: e.client_id,
            server_id: e.server_id,
        }
    }
}

/// `update`: what a command wrote since the last update.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Update {
    /// The command line.
    pub command: String,
    /// The client's id for the command.
    pub client_id: Value,
    /// The server's id for the command.
    pub server_id: u64,
    /// New output.
    pub output: Output,
    /// When the command started (ISO 8601, UTC).
    pub begin: String,
    /// When it completed; `null` while it runs.
    pub end: Option<String>,
    /// Running or completed.
    pub status: Status,
    /// The exit code once completed: the process's code, or 128 + the
    /// signal that ended it (as a shell reports it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the command, if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

/// Whether a command still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// More updates follow.
    Running,
    /// The last update of the command.
    Completed,
}

/// Output of a command or of a breakpoint since the last update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Streams {
    /// stdout and stderr as they arrived.
    pub combined: String,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Present only when some of the bytes above were not UTF-8: the exact
    /// bytes, base64, of each field that differs from its text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Raw>,
}

/// Exact bytes (standard base64) of fields whose text is lossy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Raw {
    /// Exact `combined`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub combined: Option<String>,
    /// Exact `stdout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Exact `stderr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

/// `output` of an update.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Output {
    /// The command's own output.
    #[serde(flatten)]
    pub streams: Streams,
    /// Data that crossed requested pipes; only those with new data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub breakpoints: Vec<Breakpoint>,
}

/// What crossed one pipe: the writing stage's stdout (the pipe's data) and
/// that stage's stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Breakpoint {
    /// The pipe's index.
    pub location: usize,
    /// The data.
    #[serde(flatten)]
    pub streams: Streams,
}

impl Reply {
    /// The JSON text frame.
    pub fn encode(&self) -> String {
        let (kind, payload) = match self {
            Reply::Authenticated { session_token } => (
                "authentication",
                serde_json::json!({"result": "ok", "sessionToken": session_token}),
            ),
            Reply::Started {
                command,
                client_id,
                server_id,
            } => (
                "command",
                serde_json::json!({
                    "result": "ok",
                    "command": command,
                    "clientId": client_id,
                    "serverId": server_id,
                }),
            ),
            Reply::Error {
                kind,
                message,
                client_id,
                server_id,
            } => {
                let mut payload = serde_json::json!({"result": "error", "message": message});
                if let Some(map) = payload.as_object_mut() {
                    if let Some(c) = client_id {
                        map.insert("clientId".into(), c.clone());
                    }
                    if let Some(s) = server_id {
                        map.insert("serverId".into(), (*s).into());
                    }
                }
                (*kind, payload)
            }
            // The bulk of the traffic: serialized straight into the frame,
            // without an intermediate `Value` copy of the output.
            Reply::Update(update) => {
                return serde_json::to_string(&Frame {
                    kind: "update",
                    payload: update,
                })
                .unwrap_or_default();
            }
        };
        serde_json::to_string(&Frame {
            kind,
            payload: &payload,
        })
        .unwrap_or_default()
    }
}

/// `{"type": ..., "payload": ...}`.
#[derive(Serialize)]
struct Frame<'a, T> {
    #[serde(rename = "type")]
    kind: &'a str,
    payload: &'a T,
}

/// Escapes text for clients that render output as HTML: `& < > " '` as
/// entities, each newline (`\n` or `\r\n`) as `<br>`.
pub fn html_escape(text: &str, out: &mut String) {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => out.push_str("<br>"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
