//! Room in a queue bounded in bytes, not in messages.
//!
//! A queue of chunks counted by number holds anything from a few bytes to
//! that many times the largest chunk; counted in bytes it holds what it
//! says. Every queue of the engine between a process and a client is
//! counted this way ([`StdinWriter`](crate::StdinWriter), [`memory_pair`](crate::memory_pair)),
//! and so are the servers' own ([`byte_queue`](crate::byte_queue)).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// At most `capacity` bytes in a queue: a semaphore permit per byte, held
/// by each queued chunk until it leaves the queue. A chunk larger than the
/// whole queue takes all of it, so it goes alone, when the queue is empty.
/// Clones count the same queue.
#[derive(Debug, Clone)]
pub(crate) struct ByteBudget {
    room: Arc<Semaphore>,
    capacity: u32,
}

impl ByteBudget {
    /// Room for `max_bytes` (at least one).
    pub(crate) fn new(max_bytes: usize) -> Self {
        let capacity =
            u32::try_from(max_bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        ByteBudget {
            room: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
        }
    }

    /// The permits a chunk of `len` bytes takes.
    /// An empty chunk still takes one, so a flood of empty messages is
    /// bounded too.
    fn share(&self, len: usize) -> u32 {
        u32::try_from(len.max(1)).map_or(self.capacity, |n| n.min(self.capacity))
    }

    /// Waits for room for `len` bytes; `None` once the budget is closed.
    /// Cancel-safe: dropped while waiting, it took nothing.
    pub(crate) async fn reserve(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        self.room
            .clone()
            .acquire_many_owned(self.share(len))
            .await
            .ok()
    }

    /// Room for `len` bytes if there is some now.
    pub(crate) fn try_reserve(&self, len: usize) -> Result<OwnedSemaphorePermit, TryAcquireError> {
        self.room.clone().try_acquire_many_owned(self.share(len))
    }

    /// Fails every waiting and later reservation: the queue's reader is gone.
    pub(crate) fn close(&self) {
        self.room.close();
    }

    /// True once closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.room.is_closed()
    }
}
