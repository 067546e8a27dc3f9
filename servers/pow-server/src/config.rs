//! Operator-defined processes: a TOML file mapping names to argv templates.
//!
//! ```toml
//! [process.ls]
//! argv = ["ls", "-la", "{0}"]   # "{N}" is replaced by parameter N, as a whole argument
//! params = 1                    # exactly this many parameters
//! patterns = ["^/[^\\0]*$"]     # optional: a regex each parameter must match
//! result = "none"               # "none" (null), "last-line" (string) or "json" (last line parsed)
//!
//! [process.echo]
//! builtin = "echo"              # the reference example server's echo
//! ```
//!
//! Parameters never pass through a shell: each fills exactly one argument.
//! The process's stdout is streamed to the client; its exit status decides
//! fulfilled or rejected (with the end of stderr as the reason).

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use exec_core::{Command, Event, Events, Process, StdinWriter};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;

use crate::process::{Echo, GetError, Io, PowProcess, Registry};

/// The configuration shipped with the server: works out of the box.
pub const DEFAULT_CONFIG: &str = include_str!("../default.toml");

/// Errors in a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not valid TOML or not the expected shape.
    #[error("config: {0}")]
    Toml(#[from] toml::de::Error),
    /// A process definition that cannot work.
    #[error("process {name:?}: {why}")]
    Process {
        /// The process's name.
        name: String,
        /// What is wrong.
        why: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    process: Processes,
}

/// The `[process.NAME]` tables of a configuration file, read but not yet
/// checked: a type of its own so that a larger file (the `execwire`
/// daemon's, where pow is one protocol of several) can hold them as its
/// `process` key and build the [`Registry`] with the same rules as
/// [`registry_from_toml`].
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Processes(BTreeMap<String, Definition>);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Definition {
    #[serde(default)]
    builtin: Option<String>,
    #[serde(default)]
    argv: Vec<String>,
    #[serde(default)]
    params: usize,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    result: ResultMode,
}

/// What a command's fulfilled value is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum ResultMode {
    /// `null`.
    #[default]
    None,
    /// The last line of stdout, as a string.
    LastLine,
    /// The last line of stdout, parsed as JSON.
    Json,
}

/// One argv element: literal text or a parameter.
#[derive(Debug, Clone)]
enum Arg {
    Literal(String),
    Param(usize),
}

#[derive(Debug)]
struct Template {
    argv: Vec<Arg>,
    params: usize,
    patterns: Vec<Regex>,
    result: ResultMode,
}

/// Builds a [`Registry`] from TOML text.
pub fn registry_from_toml(text: &str) -> Result<Registry, ConfigError> {
    let file: File = toml::from_str(text)?;
    file.process.registry()
}

impl Processes {
    /// The processes defined, by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Checks every definition and builds the [`Registry`] of them.
    pub fn registry(self) -> Result<Registry, ConfigError> {
        build(self.0)
    }
}

fn build(definitions: BTreeMap<String, Definition>) -> Result<Registry, ConfigError> {
    let mut registry = Registry::new();
    for (name, def) in definitions {
        let bad = |why: String| ConfigError::Process {
            name: name.clone(),
            why,
        };
        if let Some(builtin) = &def.builtin {
            match builtin.as_str() {
                "echo" => {
                    registry.register(name.clone(), |params| Ok(Box::new(Echo::new(params))));
                }
                other => return Err(bad(format!("unknown builtin {other:?}"))),
            }
            continue;
        }
        if def.argv.is_empty() {
            return Err(bad("needs `argv` or `builtin`".into()));
        }
        let argv: Vec<Arg> = def.argv.iter().map(|a| parse_arg(a)).collect();
        for arg in &argv {
            if let Arg::Param(i) = arg
                && *i >= def.params
            {
                return Err(bad(format!(
                    "argv uses {{{i}}} but params = {}",
                    def.params
                )));
            }
        }
        if !def.patterns.is_empty() && def.patterns.len() != def.params {
            return Err(bad("give one pattern per parameter, or none".into()));
        }
        let patterns = def
            .patterns
            .iter()
            .map(|p| Regex::new(p).map_err(|e| bad(format!("pattern {p:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let template = std::sync::Arc::new(Template {
            argv,
            params: def.params,
            patterns,
            result: def.result,
        });
        registry.register(name.clone(), move |params| template.instantiate(params));
    }
    Ok(registry)
}

fn parse_arg(text: &str) -> Arg {
    text.strip_prefix('{')
        .and_then(|rest| rest.strip_suffix('}'))
        .and_then(|n| n.parse().ok())
        .map_or_else(|| Arg::Literal(text.to_owned()), Arg::Param)
}

impl Template {
    fn instantiate(&self, params: &[String]) -> Result<Box<dyn PowProcess>, GetError> {
        if params.len() != self.params {
            return Err(GetError::InvalidParams(format!(
                "expected {} parameters, got {}",
                self.params,
                params.len()
            )));
        }
        for (i, (param, pattern)) in params.iter().zip(&self.patterns).enumerate() {
            if !pattern.is_match(param) {
                return Err(GetError::InvalidParams(format!(
                    "parameter {i} does not match {}",
                    pattern.as_str()
                )));
            }
        }
        let argv = self.argv.iter().map(|a| match a {
            Arg::Literal(s) => s.clone(),
            Arg::Param(i) => params.get(*i).cloned().unwrap_or_default(),
        });
        let cmd = Command::from_argv(argv).map_err(|e| GetError::InvalidParams(e.to_string()))?;
        Ok(Box::new(CommandProcess {
            cmd,
            result: self.result,
        }))
    }
}

/// A configured command: stdin from the client's input, stdout streamed.
struct CommandProcess {
    cmd: Command,
    result: ResultMode,
}

/// The end of stderr kept for a rejection's reason.
const STDERR_TAIL: usize = 1024;

/// Input queued for a command beyond its stdin pipe.
const STDIN_QUEUE: usize = 256 * 1024;

#[async_trait]
impl PowProcess for CommandProcess {
    /// One loop drains stdout and stderr, watches for the cancel and feeds
    /// stdin, without ever waiting for the command to read: its input is
    /// written by a [`StdinWriter`], and a chunk waits here for room in that
    /// writer's queue as a branch of the loop, not inside one. A filter
    /// whose stdin is full because its stdout is full thus always gets its
    /// stdout read, and a cancel always ends the command at once.
    async fn run(self: Box<Self>, mut io: Io) -> Result<Value, String> {
        let mut process = Process::spawn(&self.cmd).map_err(|e| e.to_string())?;
        let stdin = process
            .take_stdin()
            .map(|s| StdinWriter::new(s, STDIN_QUEUE));
        let mut events = Events::new(process);
        let mut last_line = LastLine::default();
        let mut stderr_tail: Vec<u8> = Vec::new();
        let mut input_open = true;
        // Input taken from the client, waiting for room in the writer.
        let mut held: Option<Bytes> = None;
        let status = loop {
            tokio::select! {
                chunk = io.input.recv(), if input_open && held.is_none() => match chunk {
                    Some(data) => held = Some(data),
                    None => {
                        input_open = false;
                        if let Some(stdin) = &stdin {
                            stdin.close();
                        }
                    }
                },
                // Cancel-safe: a chunk is queued whole or stays held.
                sent = feed(stdin.as_ref(), held.clone()), if held.is_some() => {
                    held = None;
                    if let Err(e) = sent {
                        // The command stopped reading: later input is dropped.
                        tracing::debug!(error = %e, "input to a command dropped");
                    }
                }
                event = events.next() => match event {
                    Some(Ok(Event::Stdout(data))) => {
                        if self.result != ResultMode::None {
                            last_line.push(&data);
                        }
                        tokio::select! {
                            sent = io.output.write(data) => sent.map_err(|e| e.to_string())?,
                            () = io.cancel.cancelled() => return Err(cancelled(&io)),
                        }
                    }
                    Some(Ok(Event::Stderr(data))) => {
                        stderr_tail.extend_from_slice(&data);
                        let excess = stderr_tail.len().saturating_sub(STDERR_TAIL);
                        stderr_tail.drain(..excess);
                    }
                    Some(Ok(Event::Exit(status))) => break status,
                    Some(Err(e)) => return Err(e.to_string()),
                    None => return Err("process output ended without an exit status".into()),
                },
                () = io.cancel.cancelled() => {
                    // Dropping `events` kills the process group.
                    return Err(cancelled(&io));
                }
            }
        };
        if !status.success() {
            let stderr = String::from_utf8_lossy(&stderr_tail);
            let stderr = stderr.trim();
            let status = server_kit::go_exit_text(&status);
            return Err(if stderr.is_empty() {
                status
            } else {
                format!("{status}: {stderr}")
            });
        }
        match self.result {
            ResultMode::None => Ok(Value::Null),
            ResultMode::LastLine => Ok(Value::String(last_line.text())),
            ResultMode::Json => serde_json::from_str(&last_line.text())
                .map_err(|e| format!("result is not JSON: {e}")),
        }
    }
}

/// Queues `data` for the command's input; nothing to do without input.
async fn feed(stdin: Option<&StdinWriter>, data: Option<Bytes>) -> Result<(), exec_core::Error> {
    match (stdin, data) {
        (Some(stdin), Some(data)) => stdin.send(data).await,
        _ => Ok(()),
    }
}

/// The rejection of a cancelled command, naming the cause.
fn cancelled(io: &Io) -> String {
    crate::process::cancelled_reason(io.cancel.cause())
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// The last non-empty line of a stream, bounded in size.
#[derive(Debug, Default)]
struct LastLine {
    current: Vec<u8>,
    last: Vec<u8>,
}

impl LastLine {
    const MAX: usize = 1 << 20;

    /// Takes a chunk of output. Works from the chunk's last newline
    /// backwards, so bulk output costs one scan and no per-line allocation.
    fn push(&mut self, data: &[u8]) {
        let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
            self.extend(data);
            return;
        };
        let (complete, rest) = data.split_at(end);
        let mut lines = complete.rsplit(|&b| b == b'\n').peekable();
        while let Some(line) = lines.next() {
            if lines.peek().is_none() {
                // The chunk's first line completes the one held.
                self.extend(line);
                if !is_blank(&self.current) {
                    self.last = std::mem::take(&mut self.current);
                }
                break;
            }
            if !is_blank(line) {
                self.last.clear();
                self.last
                    .extend_from_slice(line.get(..Self::MAX).unwrap_or(line));
                break;
            }
        }
        self.current.clear();
        self.extend(rest.get(1..).unwrap_or_default());
    }

    fn extend(&mut self, data: &[u8]) {
        let room = Self::MAX.saturating_sub(self.current.len());
        self.current
            .extend_from_slice(data.get(..room).unwrap_or(data));
    }

    fn text(&self) -> String {
        let line = if !is_blank(&self.current) {
            &self.current
        } else {
            &self.last
        };
        String::from_utf8_lossy(line).trim_end().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_loads() {
        let registry = registry_from_toml(DEFAULT_CONFIG).unwrap();
        let names: Vec<&str> = registry.names().collect();
        assert!(
            names.contains(&"echo") && names.contains(&"date"),
            "{names:?}"
        );
    }

    #[test]
    fn mistakes_are_reported() {
        for (text, expected) in [
            ("[process.x]\nargv = []", "needs `argv`"),
            (
                "[process.x]\nargv = [\"ls\", \"{1}\"]\nparams = 1",
                "uses {1}",
            ),
            ("[process.x]\nbuiltin = \"nope\"", "unknown builtin"),
            (
                "[process.x]\nargv = [\"ls\"]\nparams = 1\npatterns = [\"(\"]",
                "pattern",
            ),
            (
                "[process.x]\nargv = [\"ls\"]\nwhatever = 1",
                "unknown field",
            ),
        ] {
            let err = registry_from_toml(text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn params_fill_whole_arguments_and_are_checked() {
        let t = Template {
            argv: vec![parse_arg("ls"), parse_arg("{0}"), parse_arg("{x}")],
            params: 1,
            patterns: vec![Regex::new("^/").unwrap()],
            result: ResultMode::None,
        };
        assert!(matches!(t.argv[2], Arg::Literal(_)));
        assert!(
            t.instantiate(&["/tmp; rm -rf /".into()]).is_ok(),
            "one argument, no shell"
        );
        assert!(matches!(
            t.instantiate(&["relative".into()]),
            Err(GetError::InvalidParams(_))
        ));
        assert!(matches!(
            t.instantiate(&[]),
            Err(GetError::InvalidParams(_))
        ));
    }

    #[test]
    fn last_line_skips_blank_lines() {
        let mut l = LastLine::default();
        l.push(b"one\n{\"a\":");
        l.push(b"1}\n\n");
        assert_eq!(l.text(), "{\"a\":1}");
    }

    /// However the stream is cut, the answer is the last non-blank line.
    #[test]
    fn last_line_is_independent_of_chunking() {
        let stream: &[u8] = b"first\n \nsecond line\n\n\nthird\n  \n\t\nlast one\n\n";
        for cut1 in 0..stream.len() {
            for cut2 in cut1..stream.len() {
                let mut l = LastLine::default();
                l.push(&stream[..cut1]);
                l.push(&stream[cut1..cut2]);
                l.push(&stream[cut2..]);
                assert_eq!(l.text(), "last one", "cuts at {cut1}, {cut2}");
            }
        }
        let mut l = LastLine::default();
        l.push(b"done\npartial");
        assert_eq!(l.text(), "partial");
    }
}
