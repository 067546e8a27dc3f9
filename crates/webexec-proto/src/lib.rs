//! Pure codec for webexec: the control channel (`%`) envelope and
//! messages, the grammar of pane channel labels, and the HTTP signaling
//! bodies — in both the seed form and the form today's Terminal7 client
//! speaks. No IO, no WebRTC.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Why a message or body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not the JSON expected.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// A field is missing or has the wrong type.
    #[error("{0}")]
    Field(String),
    /// A channel label that is neither form.
    #[error("invalid channel label {0:?}: {1}")]
    Label(String, &'static str),
    /// An offer that is neither base64 JSON nor SDP.
    #[error("invalid offer: {0}")]
    Offer(String),
}

fn json_err(e: serde_json::Error) -> DecodeError {
    DecodeError::Json(e.to_string())
}

/// Reads a JSON object. Only an object is a message or a body: serde's
/// derived decoders also take an array of the fields in order
/// (`[0,1,"mark",{}]`), which no client sends and the reference (Go's
/// `encoding/json`) refuses.
fn object<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, DecodeError> {
    match bytes.trim_ascii_start().first() {
        Some(b'{') | None => serde_json::from_slice(bytes).map_err(json_err),
        Some(_) => Err(DecodeError::Json("expected a JSON object".into())),
    }
}

/// `{"time":..,"message_id":..,"type":..,"args":{..}}`, both ways.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Milliseconds since the Unix epoch, when sent.
    #[serde(default)]
    pub time: i64,
    /// The sender's id for the message; replies name it in `ref`.
    #[serde(default)]
    pub message_id: i64,
    /// The message type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Value,
}

/// What a client asks on the control channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Seed: authenticate with a token.
    Auth {
        /// The token.
        token: String,
    },
    /// Resize a PTY pane: seed `{sx, sy}` (the pane of the channel the
    /// client means: the server decides), current `{pane_id, sx, sy}`.
    Resize {
        /// The pane, when the client names it.
        pane_id: Option<u64>,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// The stored payload.
    GetPayload,
    /// Store a payload (`payload`, or Terminal7's `Payload`).
    SetPayload {
        /// Any JSON.
        payload: Value,
    },
    /// Start a pane; the server opens its channel.
    AddPane {
        /// argv; `["*"]` (or empty) means the user's login shell.
        command: Vec<String>,
        /// Rows (0 = no PTY when cols is 0 too).
        rows: u16,
        /// Columns.
        cols: u16,
        /// The pane it was split from, if any.
        parent: Option<u64>,
    },
    /// Open a new channel to an existing pane.
    ReconnectPane {
        /// The pane.
        id: u64,
    },
    /// A position in every pane's output.
    Mark,
    /// Next reconnects replay from this marker.
    Restore {
        /// A marker from `mark`.
        marker: u64,
    },
    /// A client's ack (of `get_clipboard`).
    Ack {
        /// The message acknowledged.
        reference: i64,
        /// Its answer.
        body: Value,
    },
    /// A client's nack.
    Nack {
        /// The message refused.
        reference: i64,
        /// Why: `desc` (the reference), `description` (the seed), or
        /// `body` (Terminal7's nack of `get_clipboard`); empty when none.
        description: String,
    },
}

/// A decoded control message: its envelope fields and the request, or why
/// the request is refused (to be nacked with `message_id`).
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    /// The client's id for the message.
    pub message_id: i64,
    /// The request, or a description for the nack.
    pub request: Result<Request, String>,
}

/// Decodes a control-channel message. Only a frame that is not an
/// envelope at all is an error; a bad or unknown request inside one
/// decodes to `Err(description)` so the server can nack it by id.
pub fn decode_control(bytes: &[u8]) -> Result<Incoming, DecodeError> {
    let envelope: Envelope = object(bytes)?;
    let args = match envelope.args {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        _ => {
            return Ok(Incoming {
                message_id: envelope.message_id,
                request: Err("args must be an object".into()),
            });
        }
    };
    Ok(Incoming {
        message_id: envelope.message_id,
        request: request(&envelope.kind, &args),
    })
}

fn request(kind: &str, args: &Map<String, Value>) -> Result<Request, String> {
    Ok(match kind {
        "auth" => Request::Auth {
            token: string(args, "token")?,
        },
        "resize" => Request::Resize {
            pane_id: optional_id(args, "pane_id")?,
            cols: dimension(args, "sx")?,
            rows: dimension(args, "sy")?,
        },
        "get_payload" => Request::GetPayload,
        "set_payload" => Request::SetPayload {
            payload: args
                .get("payload")
                .or_else(|| args.get("Payload"))
                .cloned()
                .ok_or("set_payload without a payload")?,
        },
        "add_pane" => Request::AddPane {
            command: match args.get("command") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or("add_pane: command must be an array of strings")?,
                Some(Value::String(s)) => vec![s.clone()],
                Some(_) => return Err("add_pane: command must be an array of strings".into()),
            },
            rows: optional_dimension(args, "rows")?,
            cols: optional_dimension(args, "cols")?,
            parent: optional_id(args, "parent")?.filter(|&p| p != 0),
        },
        "reconnect_pane" => Request::ReconnectPane {
            id: optional_id(args, "id")?.ok_or("reconnect_pane without an id")?,
        },
        "mark" => Request::Mark,
        "restore" => Request::Restore {
            marker: optional_id(args, "marker")?.ok_or("restore without a marker")?,
        },
        "ack" => Request::Ack {
            reference: args.get("ref").and_then(Value::as_i64).unwrap_or(0),
            body: args.get("body").cloned().unwrap_or(Value::Null),
        },
        "nack" => Request::Nack {
            reference: args.get("ref").and_then(Value::as_i64).unwrap_or(0),
            description: ["desc", "description", "body"]
                .iter()
                .find_map(|key| args.get(*key).and_then(Value::as_str))
                .unwrap_or_default()
                .to_owned(),
        },
        other => return Err(format!("unknown message type {other:?}")),
    })
}

fn string(args: &Map<String, Value>, key: &str) -> Result<String, String> {
    args.get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("{key} must be a string"))
}

/// An id as a number or a string of digits (the reference's JSON numbers
/// arrive as floats from JavaScript clients).
fn optional_id(args: &Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| format!("{key} must be a non-negative integer")),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("{key} must be a non-negative integer")),
        Some(_) => Err(format!("{key} must be a non-negative integer")),
    }
}

fn optional_dimension(args: &Map<String, Value>, key: &str) -> Result<u16, String> {
    match optional_id(args, key)? {
        None => Ok(0),
        Some(n) => u16::try_from(n).map_err(|_| format!("{key} is too large")),
    }
}

fn dimension(args: &Map<String, Value>, key: &str) -> Result<u16, String> {
    match optional_id(args, key)? {
        None => Err(format!("missing {key}")),
        Some(n) => u16::try_from(n).map_err(|_| format!("{key} is too large")),
    }
}

/// A message from the server on the control channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// `ack {ref, body}`: `body` is a JSON string, omitted when empty (the
    /// current reference); the seed's auth ack carried the payload.
    Ack {
        /// The message acknowledged.
        reference: i64,
        /// Its answer.
        body: Option<String>,
    },
    /// `nack {ref, desc, description}`: both spellings, for both clients.
    Nack {
        /// The message refused.
        reference: i64,
        /// Why.
        description: String,
    },
    /// Broadcast of a new payload.
    SetPayload {
        /// The payload.
        payload: Value,
    },
    /// Broadcast of a pane's new size.
    Resize {
        /// The pane.
        pane_id: u64,
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// Put data on the client's clipboard (`webexec-server copy` in a pane).
    SetClipboard {
        /// The text.
        data: String,
        /// Its type, e.g. `text/plain`.
        mimetype: String,
    },
    /// Ask for the client's clipboard; the client acks with the text.
    GetClipboard,
}

impl Notice {
    /// The envelope, with the server's `message_id` and the time in ms.
    pub fn encode(&self, message_id: i64, time_ms: i64) -> String {
        let (kind, args) = match self {
            Notice::Ack { reference, body } => {
                let mut args = json!({"ref": reference});
                if let (Some(body), Some(map)) = (body, args.as_object_mut())
                    && !body.is_empty()
                {
                    map.insert("body".into(), Value::String(body.clone()));
                }
                ("ack", args)
            }
            Notice::Nack {
                reference,
                description,
            } => (
                "nack",
                json!({"ref": reference, "desc": description, "description": description}),
            ),
            Notice::SetPayload { payload } => ("set_payload", json!({"payload": payload})),
            Notice::Resize {
                pane_id,
                cols,
                rows,
            } => (
                "resize",
                json!({"pane_id": pane_id, "sx": cols, "sy": rows}),
            ),
            Notice::SetClipboard { data, mimetype } => {
                ("set_clipboard", json!({"data": data, "mimetype": mimetype}))
            }
            Notice::GetClipboard => ("get_clipboard", json!({})),
        };
        serde_json::to_string(&Envelope {
            time: time_ms,
            message_id,
            kind: kind.into(),
            args,
        })
        .unwrap_or_default()
    }
}

/// A terminal size in a label: `ROWSxCOLS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// What a data channel's label asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Label {
    /// `%`: the control channel.
    Control,
    /// Run argv, under a PTY of `size` when given.
    Command {
        /// The PTY size, if any.
        size: Option<Size>,
        /// The program and its arguments, as given (no shell parsing).
        argv: Vec<String>,
    },
    /// `>ID`: attach to pane ID (resizing it when a size is given).
    Reconnect {
        /// The new size, if any.
        size: Option<Size>,
        /// The pane.
        pane: u64,
    },
}

/// Parses a channel label. A label with a comma is the current form (comma
/// separated argv: `24x80,bash,-c,echo hi`); otherwise the seed's space
/// separated form (`24x80 zsh`, `echo hello world`, `24x80 >12`).
pub fn parse_label(label: &str) -> Result<Label, DecodeError> {
    let bad = |why| DecodeError::Label(label.to_owned(), why);
    if label == "%" {
        return Ok(Label::Control);
    }
    let mut parts: Vec<&str> = if label.contains(',') {
        label.split(',').collect()
    } else {
        label.split_whitespace().collect()
    };
    let size = match parts.first().and_then(|p| parse_size(p)) {
        Some(size) => {
            parts.remove(0);
            Some(size)
        }
        None => None,
    };
    if let [one] = parts.as_slice()
        && let Some(id) = one.strip_prefix('>')
    {
        let pane = id.parse().map_err(|_| bad("pane id is not a number"))?;
        return Ok(Label::Reconnect { size, pane });
    }
    match parts.first() {
        None => Err(bad("no command")),
        Some(&"") => Err(bad("empty program name")),
        Some(_) => Ok(Label::Command {
            size,
            argv: parts.into_iter().map(str::to_owned).collect(),
        }),
    }
}

/// `24x80` → 24 rows, 80 columns.
fn parse_size(s: &str) -> Option<Size> {
    let (rows, cols) = s.split_once('x')?;
    Some(Size {
        rows: rows.parse().ok()?,
        cols: cols.parse().ok()?,
    })
}

/// The first message on a pane channel: the pane id, with its size for a
/// PTY pane (`"12"`, `"12,24x80"`).
pub fn pane_hello(pane: u64, size: Option<Size>) -> String {
    match size {
        Some(s) => format!("{pane},{}x{}", s.rows, s.cols),
        None => pane.to_string(),
    }
}

/// The label of a channel the server opens in answer to `add_pane` or
/// `reconnect_pane` message `reference`: `"<ref>:<pane id>"`.
pub fn server_label(reference: i64, pane: u64) -> String {
    format!("{reference}:{pane}")
}

/// A session description as browsers write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP.
    pub sdp: String,
}

/// The body of seed signaling `POST /connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The offer's SDP.
    pub sdp: String,
    /// The client's fingerprint, when the JSON form gave one.
    pub fingerprint: Option<String>,
    /// The client's API version, when given.
    pub api_version: Option<i64>,
}

#[derive(Deserialize)]
struct RawConnect {
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    api_version: Option<i64>,
    offer: String,
}

/// Decodes a `/connect` body: JSON `{"offer": base64(JSON offer), ...}`,
/// or the offer alone as text: base64 of the JSON offer, the JSON offer,
/// or raw SDP.
pub fn decode_connect(body: &[u8]) -> Result<ConnectRequest, DecodeError> {
    // Trim the start only: SDP ends with a line break it needs.
    let text = std::str::from_utf8(body)
        .map_err(|_| DecodeError::Offer("not UTF-8".into()))?
        .trim_start();
    if let Ok(raw) = object::<RawConnect>(text.as_bytes()) {
        return Ok(ConnectRequest {
            sdp: decode_offer(&raw.offer)?,
            fingerprint: raw.fingerprint,
            api_version: raw.api_version,
        });
    }
    Ok(ConnectRequest {
        sdp: decode_offer(text)?,
        fingerprint: None,
        api_version: None,
    })
}

/// An offer as base64 of `{"type":"offer","sdp":..}`, that JSON itself, or
/// raw SDP.
fn decode_offer(text: &str) -> Result<String, DecodeError> {
    let text = text.trim_start();
    if text.starts_with("v=0") {
        return Ok(text.to_owned());
    }
    let text = text.trim_end();
    let json = if text.starts_with('{') {
        text.as_bytes().to_vec()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|e| DecodeError::Offer(format!("neither SDP, JSON nor base64: {e}")))?
    };
    let desc: SessionDescription = object(&json)?;
    if desc.kind != "offer" {
        return Err(DecodeError::Offer(format!(
            "type is {:?}, not offer",
            desc.kind
        )));
    }
    Ok(desc.sdp)
}

/// The `/connect` reply: base64 of `{"type":"answer","sdp":..}`.
pub fn encode_connect_answer(sdp: &str) -> String {
    let json = serde_json::to_vec(&SessionDescription {
        kind: "answer".into(),
        sdp: sdp.to_owned(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(json)
}

/// A trickled ICE candidate (`PATCH /candidates/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    /// The candidate line.
    pub candidate: String,
    /// The media section's id.
    #[serde(default)]
    pub sdp_mid: Option<String>,
    /// The media section's index.
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    /// The ICE username fragment.
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// Decodes a candidate body.
pub fn decode_candidate(body: &[u8]) -> Result<Candidate, DecodeError> {
    object(body)
}

/// The client's certificate fingerprint in an SDP (`a=fingerprint:sha-256
/// AA:BB:..`), as the authorized file lists it: colons removed, upper case.
pub fn sdp_fingerprint(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("a=fingerprint:")?;
        let (algorithm, value) = rest.split_once(' ')?;
        algorithm
            .eq_ignore_ascii_case("sha-256")
            .then(|| value.trim().replace(':', "").to_ascii_uppercase())
    })
}

/// The entries of an authorized file: the first word of each line, blank
/// lines and `#` comments skipped (text after the first space is a label).
pub fn authorized_entries(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests;
