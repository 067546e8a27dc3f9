//! The headless terminal screen of a pane, kept cheap on the output path.
//!
//! Emulating every byte of bulk output costs far more than moving it (a
//! terminal emulator parses text an order of magnitude slower than a PTY
//! delivers it). Two things keep the screen off the hot path:
//! - output is queued and parsed in batches, or when a redraw is asked for;
//! - in a batch, a long run of plain text (printable characters and line
//!   breaks, no escape sequences) is skipped except for its last screenful:
//!   those lines determine every visible row, as everything earlier has
//!   scrolled off the top.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};

/// Output queued before it is parsed.
const BATCH: usize = 256 * 1024;

pub(crate) struct Screen {
    parser: vt100::Parser,
    backlog: Vec<Bytes>,
    backlog_len: usize,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Screen")
            .field("size", &self.parser.screen().size())
            .field("backlog_len", &self.backlog_len)
            .finish_non_exhaustive()
    }
}

fn nonzero(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    pub(crate) fn new(rows: u16, cols: u16) -> Self {
        Screen {
            parser: vt100::Parser::new(nonzero(rows), nonzero(cols), 0),
            backlog: Vec::new(),
            backlog_len: 0,
        }
    }

    /// Queues output; parses once enough is queued.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        self.backlog_len += chunk.len();
        self.backlog.push(chunk);
        if self.backlog_len >= BATCH {
            self.catch_up();
        }
    }

    fn catch_up(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        let data = if self.backlog.len() == 1 {
            self.backlog.pop().unwrap_or_default()
        } else {
            let mut joined = BytesMut::with_capacity(self.backlog_len);
            for chunk in self.backlog.drain(..) {
                joined.extend_from_slice(&chunk);
            }
            joined.freeze()
        };
        self.backlog.clear();
        self.backlog_len = 0;
        let rows = self.parser.screen().size().0.get();
        match skippable(&data, rows) {
            Some((lo, hi)) => {
                self.parser.process(data.get(..lo).unwrap_or_default());
                self.parser.process(data.get(hi..).unwrap_or_default());
            }
            None => self.parser.process(&data),
        }
    }

    /// Bytes that bring any terminal to this screen, from whatever state.
    pub(crate) fn redraw(&mut self) -> Bytes {
        self.catch_up();
        let screen = self.parser.screen();
        let mut out = String::new();
        // Leave or enter the alternate screen first: the contents below
        // draw onto whichever screen the client is on.
        out.push_str(if screen.alternate_screen() {
            "\x1b[?1049h"
        } else {
            "\x1b[?1049l"
        });
        out.push_str(&screen.state_formatted());
        Bytes::from(out)
    }

    pub(crate) fn resize(&mut self, rows: u16, cols: u16) {
        // Output so far was written for the old size.
        self.catch_up();
        self.parser
            .screen_mut()
            .set_size(nonzero(rows), nonzero(cols));
    }

    #[cfg(test)]
    fn contents(&mut self) -> String {
        self.catch_up();
        self.parser.screen().contents_formatted()
    }
}

/// Bytes whose effect on a screen is only to put text on it and move the
/// cursor along or down: no escape sequences, no character-set switches.
fn plain(b: u8) -> bool {
    matches!(b, 0x20..=0x7e | 0x80..=0xff | b'\r' | b'\n' | b'\t' | 0x08 | 0x07)
}

/// A span `lo..hi` of `data` that can be left out without changing the
/// screen of `rows` rows, if there is one worth skipping.
///
/// - Everything from `hi` on holds at least `rows + 1` CRLF line ends, so
///   after it every visible row is text written from `hi` on, wherever the
///   cursor was: the skipped lines have scrolled off.
/// - `lo` follows a CRLF that ends a whole plain line holding a byte in
///   `0x40..=0x7e`; any escape sequence cut by the previous `data` has ended
///   by then (such a byte is a final byte), so the parser is at rest at `lo`.
/// - `lo..hi` is plain, so skipping it changes no mode or attribute.
///
/// A string sequence left open (an OSC or DCS without its terminator) would
/// swallow the text; programs do not leave those open across lines.
fn skippable(data: &[u8], rows: u16) -> Option<(usize, usize)> {
    const WORTH_IT: usize = 4096;
    if data.len() < WORTH_IT {
        return None;
    }
    // hi: just after the (rows + 2)-th CRLF counted from the end.
    let mut crlfs = 0usize;
    let mut hi = None;
    let mut i = data.len();
    while i >= 2 {
        i -= 1;
        if data.get(i) == Some(&b'\n') && data.get(i - 1) == Some(&b'\r') {
            crlfs += 1;
            if crlfs == usize::from(rows) + 2 {
                hi = Some(i + 1);
                break;
            }
        }
    }
    let hi = hi?;
    // The plain run that ends at hi.
    let start = data
        .get(..hi)?
        .iter()
        .rposition(|&b| !plain(b))
        .map_or(0, |p| p + 1);
    // A line break inside the run, then a whole line with a final byte.
    let first_nl = start + data.get(start..hi)?.iter().position(|&b| b == b'\n')?;
    let mut line_start = first_nl + 1;
    let mut final_byte = false;
    let mut j = line_start;
    while j < hi {
        let b = *data.get(j)?;
        if b == b'\n' {
            if final_byte && j > line_start && data.get(j - 1) == Some(&b'\r') {
                let lo = j + 1;
                return (hi > lo + WORTH_IT).then_some((lo, hi));
            }
            line_start = j + 1;
            final_byte = false;
        } else if (0x40..=0x7e).contains(&b) {
            final_byte = true;
        }
        j += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, prefix: &str) -> String {
        (0..n)
            .map(|i| format!("{prefix} line {i:05}\r\n"))
            .collect()
    }

    /// Feeding with skips must give the same screen as feeding everything.
    fn assert_same_screen(chunks: &[&[u8]], rows: u16, cols: u16) {
        let mut fast = Screen::new(rows, cols);
        let mut full = vt100::Parser::new(nonzero(rows), nonzero(cols), 0);
        for c in chunks {
            fast.push(Bytes::copy_from_slice(c));
            full.process(c);
        }
        let expected: String = full.screen().contents_formatted();
        assert_eq!(fast.contents(), expected);
        assert_eq!(
            fast.parser.screen().cursor_position(),
            full.screen().cursor_position()
        );
    }

    #[test]
    fn plain_text_is_skipped_but_the_screen_is_the_same() {
        let text = lines(20_000, "plain");
        let (lo, hi) = skippable(text.as_bytes(), 24).unwrap();
        assert!(hi - lo > text.len() * 9 / 10, "most of it is skipped");
        assert_same_screen(&[text.as_bytes()], 24, 80);
    }

    #[test]
    fn escapes_before_and_after_the_run_still_apply() {
        let mut data = String::from("\x1b[31mred\x1b[0m\r\n\x1b[?25l");
        data += &lines(5000, "mid");
        data += "\x1b[1mbold tail\r\n\x1b[2;5H";
        assert_same_screen(&[data.as_bytes()], 24, 80);
    }

    #[test]
    fn a_sequence_cut_between_chunks_is_not_broken() {
        // The first chunk ends inside a CSI sequence; the next starts with its rest.
        let head = b"abc\x1b[3".to_vec();
        let mut tail = b"1mstill red\r\nmore red text\r\n".to_vec();
        tail.extend_from_slice(lines(5000, "x").as_bytes());
        assert_same_screen(&[&head, &tail], 24, 80);
    }

    #[test]
    fn long_wrapping_lines_and_small_screens() {
        let long: String = (0..3000)
            .map(|i| format!("{}\r\n", "w".repeat(i % 200)))
            .collect();
        assert_same_screen(&[long.as_bytes()], 5, 20);
        assert_same_screen(&[long.as_bytes()], 50, 200);
    }

    #[test]
    fn nothing_is_skipped_without_enough_lines() {
        assert_eq!(skippable(lines(10, "few").as_bytes(), 24), None);
        assert_eq!(skippable(&[0x1b; 10000], 24), None);
    }
}
