//! Pure codec for pow-1, "Process Over Websocket" (FAU-CDI/process_over_websocket).
//!
//! A client names a server-defined process and passes string parameters; it
//! never sends a command line. Over a WebSocket (subprotocol `pow-1`),
//! binary frames carry JSON control messages and text frames carry the
//! process's input and output. The same processes are reachable over REST.
//!
//! This crate holds the wire shapes of both and nothing else: no IO, no
//! runtime, so it is tested with byte vectors and fuzzed.
//!
//! WebSocket exchange:
//! - client, first binary frame: [`Call`] `{"call":"echo","params":["a"]}`;
//! - client, later binary frames: [`Signal`] `{"signal":"close"}` (end input)
//!   or `{"signal":"cancel"}`;
//! - server, once, when the process ends: [`Outcome`]
//!   `{"status":"fulfilled","value":..}` or `{"status":"rejected","reason":".."}`,
//!   then a close frame 1000 with an empty reason.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The WebSocket subprotocol a client must offer.
pub const SUBPROTOCOL: &str = "pow-1";

/// Rejection reasons the reference server uses, which clients may match on.
pub mod reason {
    /// No call arrived within the call timeout.
    pub const TIMEOUT: &str = "timeout expired";
    /// The call (or a later control frame) could not be decoded.
    pub const PROTOCOL_ERROR: &str = "protocol error occurred";
    /// The name is not a process the server knows.
    pub const UNKNOWN_PROCESS: &str = "failed to get process: unknown process";
}

/// Why a control message could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON, or not of the expected shape.
    #[error("malformed message: {0}")]
    Json(#[from] serde_json::Error),
    /// A parameter that is not a string.
    #[error("parameter {0} is not a string")]
    NonStringParam(usize),
    /// A signal this protocol does not define.
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    /// JSON, but not an object.
    #[error("a message must be a JSON object")]
    NotAnObject,
}

/// Only a JSON object is a message: serde's derived decoders also take an
/// array of the fields in order (`["echo",["a"]]`, `["close"]`), which no
/// client sends and the reference (Go's `encoding/json`) refuses.
fn object<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    match bytes.trim_ascii_start().first() {
        Some(b'{') | None => Ok(serde_json::from_slice(bytes)?),
        Some(_) => Err(DecodeError::NotAnObject),
    }
}

/// A request to run a named process: the first binary frame of a WebSocket
/// session, and the body of REST `POST /new`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"call": "echo", "params": ["hello", "world"]})))]
pub struct Call {
    /// The process's name.
    pub call: String,
    /// Its parameters; absent or `null` on the wire means none (Go clients
    /// send `null` for an empty slice).
    #[cfg_attr(feature = "openapi", schema(required = false, nullable))]
    pub params: Vec<String>,
}

#[derive(Deserialize)]
struct RawCall {
    call: String,
    #[serde(default)]
    params: Option<Vec<Value>>,
}

impl Call {
    /// Decodes a call; parameters must all be strings.
    pub fn decode(bytes: &[u8]) -> Result<Call, DecodeError> {
        let raw: RawCall = object(bytes)?;
        let params = raw
            .params
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                _ => Err(DecodeError::NonStringParam(i)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Call {
            call: raw.call,
            params,
        })
    }

    /// Encodes the call as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// A control frame after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Close the process's input; later input is dropped.
    Close,
    /// Cancel the process.
    Cancel,
}

#[derive(Deserialize, Serialize)]
struct RawSignal {
    signal: String,
}

impl Signal {
    /// Decodes `{"signal":"close"}` or `{"signal":"cancel"}`.
    pub fn decode(bytes: &[u8]) -> Result<Signal, DecodeError> {
        let raw: RawSignal = object(bytes)?;
        match raw.signal.as_str() {
            "close" => Ok(Signal::Close),
            "cancel" => Ok(Signal::Cancel),
            _ => Err(DecodeError::UnknownSignal(raw.signal)),
        }
    }

    /// Encodes the signal as JSON.
    pub fn encode(self) -> Vec<u8> {
        let signal = match self {
            Signal::Close => "close",
            Signal::Cancel => "cancel",
        };
        serde_json::to_vec(&RawSignal {
            signal: signal.into(),
        })
        .unwrap_or_default()
    }
}

/// How a process ended: the result frame over WebSocket, and `result` in a
/// REST status once the process is done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Success, with the process's JSON value (`null` when it has none).
    Fulfilled {
        /// The result value.
        #[serde(default)]
        value: Value,
    },
    /// Failure, with a message for the user.
    Rejected {
        /// Why it failed.
        #[serde(default)]
        reason: String,
    },
}

impl Outcome {
    /// Decodes a result frame.
    pub fn decode(bytes: &[u8]) -> Result<Outcome, DecodeError> {
        object(bytes)
    }

    /// Encodes the result frame.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// `result` of a REST status: pending while the process runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ResultState {
    /// The process ended.
    Done(Outcome),
    /// Still running: `{"status":"pending"}`.
    Pending(Pending),
}

/// The `{"status":"pending"}` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Pending {
    /// Always `"pending"`.
    pub status: PendingTag,
}

/// The literal `"pending"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PendingTag {
    /// `"pending"`
    Pending,
}

impl ResultState {
    /// The pending state.
    pub fn pending() -> Self {
        ResultState::Pending(Pending {
            status: PendingTag::Pending,
        })
    }
}

/// Body of REST `GET /status/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// The last complete lines of output; omitted when there are none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub buffer: String,
    /// Pending, or how the process ended.
    pub result: ResultState,
}

impl Status {
    /// Encodes the status as JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The last complete lines of a stream of output, for REST status.
///
/// Bounded twice: at most `max_lines` lines and `max_bytes` bytes (a line
/// longer than that is cut into pieces), so a process printing one endless
/// line cannot grow it without limit. Bytes that are not UTF-8 are replaced
/// (U+FFFD), as the result is a JSON string.
#[derive(Debug, Clone)]
pub struct LineBuffer {
    lines: VecDeque<String>,
    bytes: usize,
    partial: Vec<u8>,
    max_lines: usize,
    max_bytes: usize,
}

impl LineBuffer {
    /// A buffer of at most `max_lines` complete lines and `max_bytes` bytes.
    pub fn new(max_lines: usize, max_bytes: usize) -> Self {
        LineBuffer {
            lines: VecDeque::new(),
            bytes: 0,
            partial: Vec::new(),
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    /// Adds output.
    ///
    /// Where a long line is cut depends only on the output, never on how
    /// it was split into reads: a line of exactly the longest length whose
    /// newline comes in the next read is one line, not that line and an
    /// empty one.
    pub fn push(&mut self, mut data: &[u8]) {
        // A kept line plus its newline must still fit the byte bound.
        let longest = self.max_bytes.saturating_sub(1).max(1);
        while !data.is_empty() {
            let room = longest.saturating_sub(self.partial.len());
            // A newline right after `room` bytes still ends the line whole.
            match data.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(nl) => {
                    self.partial
                        .extend_from_slice(data.get(..nl).unwrap_or_default());
                    self.complete_line();
                    data = data.get(nl + 1..).unwrap_or_default();
                }
                None if data.len() <= room => {
                    self.partial.extend_from_slice(data);
                    data = &[];
                }
                None => {
                    // A line longer than the bound: cut it here. `partial`
                    // is then `longest` bytes, never empty, so this makes
                    // progress even when `room` is 0.
                    self.partial
                        .extend_from_slice(data.get(..room).unwrap_or_default());
                    self.complete_line();
                    data = data.get(room..).unwrap_or_default();
                }
            }
        }
    }

    fn complete_line(&mut self) {
        let mut line = String::from_utf8_lossy(&self.partial).into_owned();
        self.partial.clear();
        if line.ends_with('\r') {
            line.pop();
        }
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len() + 1,
                None => break,
            }
        }
    }

    /// The complete lines, each ended by `\n`; empty when there are none.
    pub fn text(&self) -> String {
        let mut out = String::with_capacity(self.bytes);
        for line in &self.lines {
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_vectors() {
        let c = Call::decode(br#"{"call":"echo","params":["a","b"]}"#).unwrap();
        assert_eq!(
            c,
            Call {
                call: "echo".into(),
                params: vec!["a".into(), "b".into()]
            }
        );
        let bare = Call::decode(br#"{"call":"date"}"#).unwrap();
        assert!(bare.params.is_empty());
        let null = Call::decode(br#"{"call":"date","params":null}"#).unwrap();
        assert!(null.params.is_empty());
        assert_eq!(Call::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn bad_calls() {
        assert!(matches!(
            Call::decode(br#"{"call":"echo","params":["a",1]}"#),
            Err(DecodeError::NonStringParam(1))
        ));
        for bad in [&b"nope"[..], b"{}", b"{\"call\":5}", b"[]", b""] {
            assert!(Call::decode(bad).is_err(), "{bad:?}");
        }
    }

    /// Seen while writing the fuzz targets: serde reads an array as a struct's
    /// fields in order, so these decoded.
    #[test]
    fn arrays_are_not_messages() {
        assert!(matches!(
            Call::decode(br#"["echo",["a"]]"#),
            Err(DecodeError::NotAnObject)
        ));
        assert!(matches!(
            Signal::decode(br#" ["cancel"]"#),
            Err(DecodeError::NotAnObject)
        ));
        assert!(matches!(
            Outcome::decode(br#"["rejected","x"]"#),
            Err(DecodeError::NotAnObject)
        ));
    }

    #[test]
    fn signal_vectors() {
        assert_eq!(
            Signal::decode(br#"{"signal":"close"}"#).unwrap(),
            Signal::Close
        );
        assert_eq!(
            Signal::decode(br#"{"signal":"cancel"}"#).unwrap(),
            Signal::Cancel
        );
        assert!(matches!(
            Signal::decode(br#"{"signal":"explode"}"#),
            Err(DecodeError::UnknownSignal(_))
        ));
        assert!(Signal::decode(b"{").is_err());
        for s in [Signal::Close, Signal::Cancel] {
            assert_eq!(Signal::decode(&s.encode()).unwrap(), s);
        }
    }

    #[test]
    fn outcome_vectors() {
        let ok = Outcome::Fulfilled {
            value: json!(["a", "b"]),
        };
        assert_eq!(
            serde_json::from_slice::<Value>(&ok.encode()).unwrap(),
            json!({"status":"fulfilled","value":["a","b"]})
        );
        let none = Outcome::Fulfilled { value: Value::Null };
        assert_eq!(none.encode(), br#"{"status":"fulfilled","value":null}"#);
        let err = Outcome::Rejected {
            reason: reason::TIMEOUT.into(),
        };
        assert_eq!(
            err.encode(),
            br#"{"status":"rejected","reason":"timeout expired"}"#
        );
        assert_eq!(
            Outcome::decode(br#"{"status":"fulfilled"}"#).unwrap(),
            Outcome::Fulfilled { value: Value::Null }
        );
        assert!(Outcome::decode(br#"{"status":"maybe"}"#).is_err());
    }

    /// Found by the `pow_rest_bodies` fuzz target: serde_json's default,
    /// faster float parsing read `1.03e50` one unit off, so a result value
    /// changed on its way through the server.
    #[test]
    fn numbers_in_values_arrive_exactly() {
        let outcome = Outcome::decode(br#"{"status":"fulfilled","value":1.03e50}"#).unwrap();
        let Outcome::Fulfilled { value } = &outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(value.as_f64(), Some(1.03e50));
        assert_eq!(Outcome::decode(&outcome.encode()).unwrap(), outcome);
    }

    #[test]
    fn status_vectors() {
        let pending = Status {
            buffer: String::new(),
            result: ResultState::pending(),
        };
        assert_eq!(pending.encode(), br#"{"result":{"status":"pending"}}"#);
        let done = Status {
            buffer: "a\nb\n".into(),
            result: ResultState::Done(Outcome::Rejected { reason: "x".into() }),
        };
        let v: Value = serde_json::from_slice(&done.encode()).unwrap();
        assert_eq!(
            v,
            json!({"buffer":"a\nb\n","result":{"status":"rejected","reason":"x"}})
        );
        let back: Status = serde_json::from_value(v).unwrap();
        assert_eq!(back, done);
        let back: Status = serde_json::from_slice(br#"{"result":{"status":"pending"}}"#).unwrap();
        assert_eq!(back.result, ResultState::pending());
    }

    #[test]
    fn line_buffer_keeps_the_last_complete_lines() {
        let mut b = LineBuffer::new(3, 1 << 20);
        b.push(b"one\ntwo\nthr");
        assert_eq!(b.text(), "one\ntwo\n");
        b.push(b"ee\r\nfour\nfive");
        assert_eq!(b.text(), "two\nthree\nfour\n");
    }

    /// Found by the `pow_line_buffer` fuzz target: a line of exactly the
    /// longest kept length, whose newline came in the next read, was kept as
    /// that line and an extra empty one.
    #[test]
    fn line_buffer_does_not_depend_on_how_reads_are_cut() {
        for (output, kept) in [(&b"abc\n"[..], "abc\n"), (b"abcdef\n", "def\n")] {
            for cut in 1..=output.len() {
                let mut b = LineBuffer::new(10, 4);
                for chunk in output.chunks(cut) {
                    b.push(chunk);
                }
                assert_eq!(b.text(), kept, "{output:?} in reads of {cut} bytes");
            }
        }
    }

    #[test]
    fn line_buffer_is_bounded_in_bytes() {
        let mut b = LineBuffer::new(1000, 100);
        b.push(&[b'x'; 1000]);
        b.push(b"\nend\n");
        assert!(b.text().len() <= 100, "{}", b.text().len());
        assert!(b.text().ends_with("end\n"));
        assert!(
            b.text().starts_with("xxx"),
            "the tail of the long line is kept"
        );
        b.push(&[0xff, b'\n']);
        assert!(b.text().ends_with("\u{fffd}\n"));
    }
}
