//! A queue between tasks bounded in bytes, for a server's own queues
//! (replies waiting for a slow client, a process's output on its way to
//! one): counted in messages, a queue of 64 holds anything from 64 bytes
//! to 64 of the largest message; counted in bytes it holds what it says.

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;

use crate::budget::ByteBudget;

/// A queue of at most `max_bytes` bytes of `T`s (at least one byte). An
/// item larger than the whole queue goes alone, when the queue is empty.
/// Items that are bytes weigh their length; others are weighed by the
/// sender ([`ByteSender::reserve`]).
pub fn byte_queue<T>(max_bytes: usize) -> (ByteSender<T>, ByteReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let budget = ByteBudget::new(max_bytes);
    (
        ByteSender {
            tx,
            budget: budget.clone(),
        },
        ByteReceiver { rx, budget },
    )
}

/// The sending end of a [`byte_queue`]; clones send to the same queue.
#[derive(Debug)]
pub struct ByteSender<T> {
    tx: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    budget: ByteBudget,
}

impl<T> Clone for ByteSender<T> {
    fn clone(&self) -> Self {
        ByteSender {
            tx: self.tx.clone(),
            budget: self.budget.clone(),
        }
    }
}

impl<T: AsRef<[u8]>> ByteSender<T> {
    /// Queues `item`, waiting while the queue holds too many bytes for it.
    /// Gives `item` back once the receiver is gone.
    pub async fn send(&self, item: T) -> Result<(), T> {
        let Some(permit) = self.budget.reserve(item.as_ref().len()).await else {
            return Err(item);
        };
        self.tx.send((item, permit)).map_err(|e| e.0.0)
    }
}

impl<T> ByteSender<T> {
    /// Waits for room for an item of `len` bytes without giving it up
    /// yet: a loop that must keep serving other events while the queue is
    /// full selects on this, which took nothing when it is dropped
    /// (cancel-safe), where a `send` dropped half-way would lose its item.
    /// It also queues items that are not bytes, weighed by the caller.
    /// `None` once the receiver is gone.
    pub async fn reserve(&self, len: usize) -> Option<BytePermit<T>> {
        let permit = self.budget.reserve(len).await?;
        Some(self.permit(permit))
    }

    /// Room for an item of `len` bytes if there is some now; `None` when
    /// the queue is full or its receiver gone. For a sender that must
    /// never wait (a broadcast to many clients drops what one of them
    /// does not read).
    pub fn try_reserve(&self, len: usize) -> Option<BytePermit<T>> {
        let permit = self.budget.try_reserve(len).ok()?;
        Some(self.permit(permit))
    }

    fn permit(&self, permit: OwnedSemaphorePermit) -> BytePermit<T> {
        BytePermit {
            tx: self.tx.clone(),
            permit,
        }
    }
}

/// Room in a [`byte_queue`] for one item, from [`ByteSender::reserve`].
/// Dropped unused, the room goes back to the queue.
#[derive(Debug)]
pub struct BytePermit<T> {
    tx: mpsc::UnboundedSender<(T, OwnedSemaphorePermit)>,
    permit: OwnedSemaphorePermit,
}

impl<T> BytePermit<T> {
    /// Queues `item` in the room reserved, whatever its length (the
    /// caller reserved for it). Gives it back once the receiver is gone.
    pub fn send(self, item: T) -> Result<(), T> {
        self.tx.send((item, self.permit)).map_err(|e| e.0.0)
    }
}

/// The receiving end of a [`byte_queue`]. Dropping it fails every waiting
/// and later send.
#[derive(Debug)]
pub struct ByteReceiver<T> {
    rx: mpsc::UnboundedReceiver<(T, OwnedSemaphorePermit)>,
    budget: ByteBudget,
}

impl<T> ByteReceiver<T> {
    /// The next item; `None` once every sender is gone and the queue is
    /// empty. Its bytes leave the queue's count as it is taken.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await.map(|(item, _permit)| item)
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        self.rx.try_recv().ok().map(|(item, _permit)| item)
    }
}

impl<T> Drop for ByteReceiver<T> {
    fn drop(&mut self) {
        self.budget.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    #[tokio::test]
    async fn holds_bytes_not_items() {
        let (tx, mut rx) = byte_queue::<Vec<u8>>(10);
        tx.send(vec![0; 4]).await.unwrap();
        tx.send(vec![1; 6]).await.unwrap();
        // Full: an item of one byte waits until bytes leave.
        let mut waiting = Box::pin(tx.send(vec![2]));
        assert!((&mut waiting).now_or_never().is_none());
        assert_eq!(rx.recv().await.unwrap(), vec![0; 4]);
        waiting.await.unwrap();
        assert_eq!(rx.try_recv().unwrap(), vec![1; 6]);
        assert_eq!(rx.try_recv().unwrap(), vec![2]);
        assert!(rx.try_recv().is_none());
    }

    #[tokio::test]
    async fn an_item_larger_than_the_queue_goes_alone() {
        let (tx, mut rx) = byte_queue::<Vec<u8>>(8);
        tx.send(vec![0; 100]).await.unwrap();
        let mut next = Box::pin(tx.send(vec![1]));
        assert!((&mut next).now_or_never().is_none());
        assert_eq!(rx.recv().await.unwrap().len(), 100);
        next.await.unwrap();
        assert_eq!(rx.recv().await.unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn a_reservation_holds_room_until_used_or_dropped() {
        let (tx, mut rx) = byte_queue::<Vec<u8>>(4);
        let permit = tx.reserve(3).await.unwrap();
        let mut waiting = Box::pin(tx.send(vec![1, 2]));
        assert!((&mut waiting).now_or_never().is_none());
        drop(permit);
        waiting.await.unwrap();
        let permit = tx.reserve(2).await.unwrap();
        permit.send(vec![3, 4]).unwrap();
        assert_eq!(rx.recv().await.unwrap(), vec![1, 2]);
        assert_eq!(rx.recv().await.unwrap(), vec![3, 4]);
        drop(rx);
        assert!(tx.reserve(1).await.is_none());
    }

    #[tokio::test]
    async fn senders_fail_once_the_receiver_is_gone() {
        let (tx, rx) = byte_queue::<Vec<u8>>(4);
        tx.send(vec![0; 4]).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(vec![1]).await }
        });
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(vec![1]));
        assert_eq!(tx.send(vec![2]).await, Err(vec![2]));
    }

    #[tokio::test]
    async fn the_receiver_ends_after_the_last_sender() {
        let (tx, mut rx) = byte_queue::<Vec<u8>>(4);
        tx.send(vec![7]).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(vec![7]));
        assert_eq!(rx.recv().await, None);
    }
}
