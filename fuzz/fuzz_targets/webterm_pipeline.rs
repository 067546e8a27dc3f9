//! Web-Terminal v3 breakpoints: the pipeline parser ([`webterm_proto::pipes`])
//! on any command line a client sends; the server splits the line at the
//! pipes it returns to insert its taps.
//!
//! - it never panics or hangs;
//! - every pipe it reports is a `|` (a `|&` exactly when `&` follows), in
//!   order, not overlapping, and a place where the line may be cut;
//! - what came before does not matter: after `true; ` the same pipes are
//!   found, shifted;
//! - what comes after does not matter: a line that parses, followed by a
//!   newline and `a | b`, has the same pipes and then one more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webterm_proto::{Pipe, pipes};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let found = pipes(line);
    let prefixed = pipes(&format!("true; {line}"));
    match &found {
        Ok(found) => {
            let shifted: Vec<Pipe> = found
                .iter()
                .map(|p| Pipe {
                    offset: p.offset + 6,
                    ..*p
                })
                .collect();
            assert_eq!(prefixed.as_ref(), Ok(&shifted), "prefixed {line:?}");
        }
        Err(e) => assert_eq!(prefixed.as_ref(), Err(e), "prefixed {line:?}"),
    }
    let Ok(found) = found else { return };
    let bytes = line.as_bytes();
    let mut end = 0;
    for pipe in &found {
        assert!(pipe.offset >= end, "{line:?}: {found:?}");
        assert_eq!(bytes.get(pipe.offset), Some(&b'|'));
        assert_eq!(
            pipe.with_stderr,
            bytes.get(pipe.offset + 1) == Some(&b'&'),
            "{line:?}: {pipe:?}"
        );
        end = pipe.offset + pipe.len();
        assert!(line.is_char_boundary(pipe.offset) && line.is_char_boundary(end));
    }
    let extended = format!("{line}\na | b");
    let mut expected = found.clone();
    expected.push(Pipe {
        offset: line.len() + 3,
        with_stderr: false,
    });
    assert_eq!(pipes(&extended), Ok(expected), "extended {line:?}");
});
