//! pow-1 REST status buffer ([`LineBuffer`]): a process's output, as the
//! kernel happened to cut it, turned into the `buffer` of
//! `GET /status/{id}`.
//!
//! The first two bytes pick the bounds (up to 8 lines, up to 64 bytes), the
//! third how the rest is cut into reads.
//!
//! - it never panics and stays within both bounds;
//! - it is whole lines: empty or ending in `\n`;
//! - the answer does not depend on how the output was cut into reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pow_proto::LineBuffer;

fuzz_target!(|data: &[u8]| {
    let [lines, bytes, cut, output @ ..] = data else {
        return;
    };
    let max_lines = usize::from(lines % 8) + 1;
    let max_bytes = usize::from(bytes % 64) + 1;
    let mut whole = LineBuffer::new(max_lines, max_bytes);
    whole.push(output);
    let mut pieces = LineBuffer::new(max_lines, max_bytes);
    for chunk in output.chunks(usize::from(cut % 16) + 1) {
        pieces.push(chunk);
    }
    let text = whole.text();
    assert!(text.len() <= max_bytes, "{text:?} over {max_bytes} bytes");
    assert!(text.lines().count() <= max_lines);
    assert!(text.is_empty() || text.ends_with('\n'));
    assert_eq!(
        pieces.text(),
        text,
        "reads cut every {} bytes",
        cut % 16 + 1
    );
});
