//! Signals, as a type: a number the engine checked it can deliver, so a
//! protocol's integer or name is validated once, where it is decoded.

use std::fmt;

/// A POSIX signal the engine can send to a process group, or one that
/// ended a process ([`ExitStatus::signal`](crate::ExitStatus::signal)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signal(i32);

/// Names (without `SIG`) and numbers of the signals Linux defines on every
/// architecture this engine builds for.
const NAMED: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
];

impl Signal {
    /// Hangup: the terminal went away.
    pub const HUP: Signal = Signal(1);
    /// Interrupt (Ctrl-C).
    pub const INT: Signal = Signal(2);
    /// Kill, which cannot be caught.
    pub const KILL: Signal = Signal(9);
    /// Terminate, politely.
    pub const TERM: Signal = Signal(15);
    /// Continue a stopped process.
    pub const CONT: Signal = Signal(18);

    /// The signal with Linux number `number`, if it is one of the standard
    /// signals (1 to 31).
    pub fn from_number(number: i32) -> Option<Signal> {
        NAMED
            .iter()
            .any(|(_, n)| *n == number)
            .then_some(Signal(number))
    }

    /// The signal called `name`, with or without the `SIG` prefix, in any
    /// case (`"TERM"`, `"SIGterm"`).
    pub fn from_name(name: &str) -> Option<Signal> {
        let upper = name.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        NAMED
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(_, number)| Signal(*number))
    }

    /// A signal the kernel reported as having ended a process; real-time
    /// signals have no name but are kept as they are.
    pub(crate) fn reported(number: i32) -> Signal {
        Signal(number)
    }

    /// The Linux signal number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// The name without `SIG` (`"TERM"`), `None` for a real-time signal.
    pub fn name(self) -> Option<&'static str> {
        NAMED
            .iter()
            .find(|(_, n)| *n == self.0)
            .map(|(name, _)| *name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "SIG{name}"),
            None => write!(f, "signal {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_agree() {
        assert_eq!(Signal::from_number(15), Some(Signal::TERM));
        assert_eq!(Signal::from_name("term"), Some(Signal::TERM));
        assert_eq!(Signal::from_name("SIGKILL"), Some(Signal::KILL));
        assert_eq!(Signal::from_number(0), None);
        assert_eq!(Signal::from_number(32), None);
        assert_eq!(Signal::from_number(-9), None);
        assert_eq!(Signal::from_name("SIG"), None);
        assert_eq!(Signal::INT.to_string(), "SIGINT");
        assert_eq!(Signal::reported(40).to_string(), "signal 40");
        for (name, number) in NAMED {
            assert!(
                rustix::process::Signal::from_named_raw(*number).is_some(),
                "{name}"
            );
        }
    }
}
