use std::ffi::OsString;
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;

use crate::signal::Signal;

/// The size of a terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PtySize {
    /// Rows (lines).
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl PtySize {
    /// The classic 24x80 terminal, used when a client asks for a zero size.
    pub const DEFAULT: PtySize = PtySize { rows: 24, cols: 80 };

    /// A size with zero rows or columns replaced by the default for that axis.
    pub fn or_default(rows: u16, cols: u16) -> PtySize {
        PtySize {
            rows: if rows == 0 { Self::DEFAULT.rows } else { rows },
            cols: if cols == 0 { Self::DEFAULT.cols } else { cols },
        }
    }
}

impl Default for PtySize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a process ended.
///
/// Exactly one of `code` and `signal` is set for a process that ended on its
/// own or was killed; neither when the engine could not learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code, when the process called `exit`.
    pub code: Option<i32>,
    /// The signal, when a signal ended the process.
    pub signal: Option<Signal>,
}

impl ExitStatus {
    /// True when the process exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitStatus {
            code: status.code(),
            signal: status.signal().map(Signal::reported),
        }
    }
}

/// What to run: argv, environment, working directory, and whether it gets a
/// terminal.
///
/// The environment starts as the server's own; [`Command::env`] adds to it.
#[derive(Debug, Clone)]
pub struct Command {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) cwd: Option<PathBuf>,
    pub(crate) pty: Option<PtySize>,
    pub(crate) stdin: bool,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    /// Descriptors the child gets at the given numbers (shared so that the
    /// command stays `Clone`; each spawn duplicates them).
    pub(crate) fds: Vec<(RawFd, Arc<OwnedFd>)>,
}

impl Command {
    /// A command that runs `program` (looked up in `PATH`) with no arguments,
    /// pipes for stdio and stdin enabled.
    pub fn new(program: impl Into<OsString>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            pty: None,
            stdin: true,
            uid: None,
            gid: None,
            fds: Vec::new(),
        }
    }

    /// Builds a command from an argv; fails on an empty one.
    pub fn from_argv<I, S>(argv: I) -> Result<Self, crate::Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut it = argv.into_iter();
        let program = it.next().ok_or(crate::Error::EmptyCommand)?;
        Ok(Command::new(program).args(it))
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable on top of the inherited environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Sets the working directory.
    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Runs the process under a pseudo terminal of this size. stdout and
    /// stderr are then one stream, as on any terminal.
    pub fn pty(mut self, size: PtySize) -> Self {
        self.pty = Some(size);
        self
    }

    /// Whether the process gets input. Without it, stdin is `/dev/null`.
    pub fn stdin(mut self, enabled: bool) -> Self {
        self.stdin = enabled;
        self
    }

    /// Runs the process as this user id (needs privilege).
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = Some(uid);
        self
    }

    /// Runs the process with this group id (needs privilege).
    pub fn gid(mut self, gid: u32) -> Self {
        self.gid = Some(gid);
        self
    }

    /// Gives the child `fd` as descriptor number `child_fd` (for example
    /// the write end of a pipe the caller reads, which a shell then names as
    /// `/dev/fd/N`). Pipes only: a terminal command with descriptors fails
    /// to spawn.
    ///
    /// The command keeps its own copy: drop the command after spawning, or
    /// the caller's reading end never sees the end of the data.
    pub fn inherit_fd(mut self, child_fd: RawFd, fd: OwnedFd) -> Self {
        self.fds.push((child_fd, Arc::new(fd)));
        self
    }

    /// The program, as given.
    pub fn program(&self) -> &std::ffi::OsStr {
        &self.program
    }

    /// The program and its arguments, as text (invalid UTF-8 replaced),
    /// for people: listings and recording headers.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// The terminal size, when the command runs under a terminal.
    pub fn pty_size(&self) -> Option<PtySize> {
        self.pty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_sizes_become_defaults_per_axis() {
        assert_eq!(PtySize::or_default(0, 0), PtySize { rows: 24, cols: 80 });
        assert_eq!(PtySize::or_default(50, 0), PtySize { rows: 50, cols: 80 });
    }

    #[test]
    fn empty_argv_is_an_error() {
        assert!(Command::from_argv(Vec::<String>::new()).is_err());
    }
}
