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
        self.push_exact(chunk).text
    }

    /// Like [`TextDecoder::push`], also giving the exact bytes the text
    /// stands for, for protocols that carry those beside a lossy text.
    pub fn push_exact(&mut self, chunk: &Bytes) -> Decoded {
        let data = if self.held.is_empty() {
            chunk.clone()
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(chunk);
            Bytes::from(joined)
        };
        match std::str::from_utf8(&data) {
            Ok(_) => Decoded::exact(data),
            Err(e) if e.error_len().is_none() => {
                let cut = e.valid_up_to();
                self.held = data.get(cut..).unwrap_or_default().to_vec();
                Decoded::exact(data.slice(..cut))
            }
            Err(_) => {
                let text = self.lossy(&data);
                let covered = data.len() - self.held.len();
                Decoded {
                    text,
                    bytes: data.slice(..covered),
                    lossy: true,
                }
            }
        }
    }

    /// The end of the stream: anything held back, as U+FFFD.
    pub fn finish(&mut self) -> Bytes {
        self.finish_exact().text
    }

    /// Like [`TextDecoder::finish`], with the exact bytes held back.
    pub fn finish_exact(&mut self) -> Decoded {
        if self.held.is_empty() {
            return Decoded::exact(Bytes::new());
        }
        let held = Bytes::from(std::mem::take(&mut self.held));
        Decoded {
            text: Bytes::from(String::from_utf8_lossy(&held).into_owned()),
            bytes: held,
            lossy: true,
        }
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

/// Text decoded from output, with the bytes it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Valid UTF-8.
    pub text: Bytes,
    /// The process's bytes this text stands for.
    pub bytes: Bytes,
    /// Whether some bytes were not UTF-8 (the text has U+FFFD for them and
    /// differs from `bytes`).
    pub lossy: bool,
}

impl Decoded {
    fn exact(text: Bytes) -> Decoded {
        Decoded {
            bytes: text.clone(),
            text,
            lossy: false,
        }
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
    fn exact_bytes_cover_the_stream_once() {
        let stream: &[u8] = b"ok \xc3\xa9 bad \xff\xfe then \xf0\x9f\xa6\x80 end \xe2\x9c";
        for cut in 0..stream.len() {
            let mut decoder = TextDecoder::new();
            let mut bytes = Vec::new();
            let mut lossy = false;
            for part in [&stream[..cut], &stream[cut..]] {
                let d = decoder.push_exact(&Bytes::copy_from_slice(part));
                if !d.lossy {
                    assert_eq!(d.text, d.bytes);
                }
                lossy |= d.lossy;
                bytes.extend_from_slice(&d.bytes);
            }
            let end = decoder.finish_exact();
            assert!(end.lossy);
            bytes.extend_from_slice(&end.bytes);
            assert_eq!(bytes, stream, "cut at {cut}");
            assert!(lossy);
        }
    }

    #[test]
    fn valid_chunks_are_not_copied() {
        let chunk = Bytes::from_static(b"plain ascii");
        let out = TextDecoder::new().push(&chunk);
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }
}
