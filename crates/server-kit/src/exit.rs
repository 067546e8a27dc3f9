//! How a process ended, in the words of Go's `os/exec`: the wsep and pow-1
//! references are Go programs, and their clients show users the text of an
//! `exec.ExitError` ("exit status 2", "signal: killed") as it is.

use exec_core::ExitStatus;

/// Go's `exec.ExitError` text for `status` ("exit status 0" for success:
/// callers that send no text on success check [`ExitStatus::success`]).
pub fn go_exit_text(status: &ExitStatus) -> String {
    match (status.code, status.signal) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal: {}", go_signal_name(signal.number())),
        (None, None) => "exit status unknown".to_owned(),
    }
}

/// Go's exit code of `status` (`ProcessState.ExitCode`): -1 when a signal
/// ended the process.
pub fn go_exit_code(status: &ExitStatus) -> i32 {
    status.code.unwrap_or(-1)
}

/// Go's names for the common signals (`syscall.Signal.String`).
fn go_signal_name(number: i32) -> String {
    let name = match number {
        1 => "hangup",
        2 => "interrupt",
        3 => "quit",
        4 => "illegal instruction",
        6 => "aborted",
        9 => "killed",
        11 => "segmentation fault",
        13 => "broken pipe",
        14 => "alarm clock",
        15 => "terminated",
        _ => return format!("signal {number}"),
    };
    name.to_owned()
}

#[cfg(test)]
mod tests {
    use exec_core::Signal;

    use super::*;

    #[test]
    fn reads_as_go_prints_it() {
        let exited = ExitStatus {
            code: Some(2),
            signal: None,
        };
        assert_eq!(go_exit_text(&exited), "exit status 2");
        assert_eq!(go_exit_code(&exited), 2);
        let killed = ExitStatus {
            code: None,
            signal: Some(Signal::KILL),
        };
        assert_eq!(go_exit_text(&killed), "signal: killed");
        assert_eq!(go_exit_code(&killed), -1);
    }
}
