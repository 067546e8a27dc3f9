//! webexec channel labels ([`webexec_proto::parse_label`]), in both
//! grammars: the current comma-separated one (`24x80,bash,-c,echo hi`) and
//! the seed's space-separated one (`24x80 zsh`), for any label a peer
//! gives a data channel.
//!
//! - parsing never panics;
//! - a command has a non-empty program; in the seed grammar no argument is
//!   empty or holds white space, in the current one the arguments are the
//!   label's comma-separated fields as given;
//! - written back in the current grammar, a label parses to the same
//!   thing (but for the program `%`, whose label would be the control
//!   channel's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use webexec_proto::{Label, Size, parse_label};

fuzz_target!(|data: &[u8]| {
    let Ok(label) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse_label(label) else {
        return;
    };
    let written = match &parsed {
        Label::Control => {
            assert_eq!(label, "%");
            return;
        }
        Label::Command { size, argv } => {
            let program = argv.first().expect("a command has a program");
            assert!(!program.is_empty());
            if label.contains(',') {
                assert!(label.ends_with(&argv.join(",")), "{label:?}: {argv:?}");
            } else {
                for arg in argv {
                    assert!(!arg.is_empty() && !arg.contains(char::is_whitespace));
                }
            }
            with_size(*size, &argv.join(","))
        }
        Label::Reconnect { size, pane } => with_size(*size, &format!(">{pane}")),
    };
    if written == "%" {
        return;
    }
    assert_eq!(
        parse_label(&written).expect("a written label parses"),
        parsed,
        "{label:?} written as {written:?}"
    );
});

fn with_size(size: Option<Size>, rest: &str) -> String {
    match size {
        Some(Size { rows, cols }) => format!("{rows}x{cols},{rest}"),
        None => rest.to_owned(),
    }
}
