//! A queue between tasks bounded in bytes, for a server's own queues
//! (replies waiting for a slow client, a process's output on its way to
//! one): counted in messages, a queue of 64 holds anything from 64 bytes
//! to 64 of the largest message; counted in bytes it holds what it says.

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc;

use crate::budget::ByteBudget;

/// A queue of at most `max_bytes` bytes of `T`s (at least one byte). An
/// item larger than the whole queue goes alone, when the queue is empty.
pub fn byte_queue<T: AsRef<[u8]>>(max_bytes: usize) -> (ByteSender<T>, ByteReceiver<T>) {
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
