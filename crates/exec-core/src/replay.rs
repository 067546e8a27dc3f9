//! The bounded replay buffer of a pane, addressed by byte offset.

use std::collections::VecDeque;

use bytes::Bytes;

/// The last `capacity` bytes (give or take one chunk) of a stream, addressed
/// by their offset from the stream's start.
///
/// Chunks are kept as they arrived, so a reader gets a zero-copy slice of the
/// chunk holding its offset. Evicting whole chunks keeps pushes O(1); the
/// ring can hold up to one chunk less than `capacity`.
#[derive(Debug)]
pub(crate) struct ReplayRing {
    chunks: VecDeque<(u64, Bytes)>,
    /// Offset of the first byte still held.
    start: u64,
    /// Offset one past the last byte ever pushed.
    end: u64,
    held: usize,
    capacity: usize,
}

/// The answer to "what comes after offset N".
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadFrom {
    /// The bytes at the offset (a prefix of what is held after it).
    Data(Bytes),
    /// Nothing new yet.
    UpToDate,
    /// The offset was evicted: the reader lost data.
    Evicted,
}

impl ReplayRing {
    pub(crate) fn new(capacity: usize) -> Self {
        ReplayRing {
            chunks: VecDeque::new(),
            start: 0,
            end: 0,
            held: 0,
            capacity,
        }
    }

    /// Offset one past the newest byte.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// Offset of the oldest byte still held.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// How many bytes a push of `len` bytes would evict.
    pub(crate) fn would_evict_to(&self, len: usize) -> u64 {
        let mut start = self.start;
        let mut held = self.held + len;
        for (_, chunk) in &self.chunks {
            if held <= self.capacity {
                break;
            }
            held -= chunk.len();
            start += chunk.len() as u64;
        }
        start
    }

    pub(crate) fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.held += chunk.len();
        self.chunks.push_back((self.end, chunk.clone()));
        self.end += chunk.len() as u64;
        while self.held > self.capacity {
            let Some((_, old)) = self.chunks.pop_front() else {
                break;
            };
            self.held -= old.len();
            self.start += old.len() as u64;
        }
    }

    /// The bytes starting at `offset`, at most `max` of them (at least one
    /// chunk's remainder). Small chunks that are all there already are
    /// joined, so a reader that fell behind catches up in few large pieces
    /// rather than many small ones.
    pub(crate) fn read_from(&self, offset: u64, max: usize) -> ReadFrom {
        let first = match self.read_one(offset) {
            ReadFrom::Data(first) => first,
            other => return other,
        };
        if first.len() >= max / 2 || offset + first.len() as u64 >= self.end {
            return ReadFrom::Data(first);
        }
        let mut joined = bytes::BytesMut::with_capacity(max);
        joined.extend_from_slice(&first);
        let mut next = offset + first.len() as u64;
        while let ReadFrom::Data(chunk) = self.read_one(next) {
            if joined.len() + chunk.len() > max {
                break;
            }
            joined.extend_from_slice(&chunk);
            next += chunk.len() as u64;
        }
        ReadFrom::Data(joined.freeze())
    }

    /// The rest of the one stored chunk that holds `offset`.
    fn read_one(&self, offset: u64) -> ReadFrom {
        if offset >= self.end {
            return ReadFrom::UpToDate;
        }
        if offset < self.start {
            return ReadFrom::Evicted;
        }
        let idx = self
            .chunks
            .partition_point(|(chunk_start, _)| *chunk_start <= offset)
            .saturating_sub(1);
        match self.chunks.get(idx) {
            Some((chunk_start, chunk)) => {
                let skip = usize::try_from(offset - chunk_start).unwrap_or(usize::MAX);
                if skip >= chunk.len() {
                    ReadFrom::Evicted // unreachable by construction; never panic on it
                } else {
                    ReadFrom::Data(chunk.slice(skip..))
                }
            }
            None => ReadFrom::Evicted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_with(chunks: &[&'static [u8]], capacity: usize) -> ReplayRing {
        let mut ring = ReplayRing::new(capacity);
        for c in chunks {
            ring.push(Bytes::from_static(c));
        }
        ring
    }

    #[test]
    fn reads_resume_mid_chunk() {
        let ring = ring_with(&[b"hello", b" world"], 100);
        assert_eq!(
            ring.read_from(0, 4),
            ReadFrom::Data(Bytes::from_static(b"hello"))
        );
        assert_eq!(
            ring.read_from(3, 4),
            ReadFrom::Data(Bytes::from_static(b"lo"))
        );
        assert_eq!(
            ring.read_from(5, 4),
            ReadFrom::Data(Bytes::from_static(b" world"))
        );
        assert_eq!(ring.read_from(11, 4), ReadFrom::UpToDate);
    }

    #[test]
    fn small_chunks_are_joined_up_to_max() {
        let ring = ring_with(&[b"ab", b"cd", b"ef", b"gh"], 100);
        assert_eq!(
            ring.read_from(1, 100),
            ReadFrom::Data(Bytes::from_static(b"bcdefgh"))
        );
        assert_eq!(
            ring.read_from(0, 6),
            ReadFrom::Data(Bytes::from_static(b"abcdef"))
        );
    }

    #[test]
    fn eviction_is_by_bytes_and_reported() {
        let ring = ring_with(&[b"aaaa", b"bbbb", b"cccc"], 8);
        assert_eq!(ring.start(), 4);
        assert_eq!(ring.end(), 12);
        assert_eq!(ring.read_from(2, 4), ReadFrom::Evicted);
        assert_eq!(
            ring.read_from(4, 4),
            ReadFrom::Data(Bytes::from_static(b"bbbb"))
        );
    }

    #[test]
    fn would_evict_predicts_push() {
        let mut ring = ring_with(&[b"aaaa", b"bbbb"], 8);
        assert_eq!(ring.would_evict_to(0), 0);
        assert_eq!(ring.would_evict_to(4), 4);
        ring.push(Bytes::from_static(b"cccc"));
        assert_eq!(ring.start(), 4);
    }
}
