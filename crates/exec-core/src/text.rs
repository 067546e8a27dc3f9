//! Process output as text for protocols that carry it in text frames.

use bytes::Bytes;

/// Turns a stream of output chunks into UTF-8 text without breaking a
/// character that straddles two chunks.
///
/// Reads end wherever the kernel cut them, often inside a multi-byte
/// character; converting each chunk on its own would turn both halves into
/// U+FFFD. The decoder holds back an incomplete character (at most three
/// bytes) until the next chunk completes it. Bytes that can never be UTF-8
/// become U+FFFD. Valid chunks pass through without a copy.
#[derive(Debug, Default)]
pub struct TextDecoder {
    held: Vec<u8>,
}

impl TextDecoder {
    /// A decoder with nothing held back.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text that `chunk` completes, always valid UTF-8; may be empty.
    pub fn push(&mut self, chunk: &Bytes) -> Bytes {
        let data = if self.held.is_empty() {
            chunk.clone()
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(chunk);
            Bytes::from(joined)
        };
        match std::str::from_utf8(&data) {
            Ok(_) => data,
            Err(e) if e.error_len().is_none() => {
                let cut = e.valid_up_to();
                self.held = data.get(cut..).unwrap_or_default().to_vec();
                data.slice(..cut)
            }
            Err(_) => self.lossy(&data),
        }
    }

    /// The end of the stream: anything held back, as U+FFFD.
    pub fn finish(&mut self) -> Bytes {
        if self.held.is_empty() {
            return Bytes::new();
        }
        let held = std::mem::take(&mut self.held);
        Bytes::from(String::from_utf8_lossy(&held).into_owned())
    }

    /// `data` has invalid bytes: replace them, hold back an incomplete end.
    fn lossy(&mut self, mut data: &[u8]) -> Bytes {
        let mut out = String::with_capacity(data.len() + 8);
        loop {
            match std::str::from_utf8(data) {
                Ok(valid) => {
                    out.push_str(valid);
                    break;
                }
                Err(e) => {
                    let (valid, rest) = data.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            data = rest.get(bad..).unwrap_or_default();
                        }
                        None => {
                            self.held = rest.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(chunks: &[&[u8]]) -> String {
        let mut decoder = TextDecoder::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let text = decoder.push(&Bytes::copy_from_slice(chunk));
            assert!(std::str::from_utf8(&text).is_ok());
            out.extend_from_slice(&text);
        }
        out.extend_from_slice(&decoder.finish());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn characters_split_across_chunks_survive() {
        let text = "héllo wörld ✓ 🦀 done";
        let bytes = text.as_bytes();
        for cut1 in 0..bytes.len() {
            for cut2 in cut1..bytes.len() {
                let got = feed(&[&bytes[..cut1], &bytes[cut1..cut2], &bytes[cut2..]]);
                assert_eq!(got, text, "cuts at {cut1} and {cut2}");
            }
        }
    }

    #[test]
    fn a_crab_one_byte_at_a_time() {
        let crab = "🦀".as_bytes();
        let chunks: Vec<&[u8]> = crab.chunks(1).collect();
        assert_eq!(feed(&chunks), "🦀");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        assert_eq!(feed(&[b"a\xffb"]), "a\u{FFFD}b");
        // Invalid byte, then a character cut in two.
        assert_eq!(feed(&[b"\xff\xc3", b"\xa9!"]), "\u{FFFD}é!");
        // A lead byte followed by something that is not a continuation.
        assert_eq!(feed(&[b"\xe2\x9c", b"x"]), "\u{FFFD}x");
        // An incomplete character at the very end.
        assert_eq!(feed(&[b"ok\xf0\x9f"]), "ok\u{FFFD}");
    }

    #[test]
    fn valid_chunks_are_not_copied() {
        let chunk = Bytes::from_static(b"plain ascii");
        let out = TextDecoder::new().push(&chunk);
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }
}
