//! webexec authorized file (`authorized_fingerprints`): any text the file
//! holds ([`webexec_proto::authorized_entries`]), re-read on every offer.
//!
//! - reading never panics;
//! - each entry is a whole word of the file: not empty, no white space,
//!   not a `#` comment, and at most one per line;
//! - the entries alone, one per line, read back as the same entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use webexec_proto::authorized_entries;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let entries = authorized_entries(text);
    assert!(entries.len() <= text.lines().count());
    for entry in &entries {
        assert!(!entry.is_empty() && !entry.starts_with('#'));
        assert!(!entry.contains(char::is_whitespace), "{entry:?}");
        assert!(text.contains(entry.as_str()));
    }
    assert_eq!(authorized_entries(&entries.join("\n")), entries);
});
