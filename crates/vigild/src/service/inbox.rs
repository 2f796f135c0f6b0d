//! A service actor's inbox: a bounded queue from many senders (check loops, schedules, the
//! control socket, a group's actor) to the one actor.
//!
//! Why not `tokio::sync::mpsc`, which this replaced: its channel state is 512 bytes (its
//! fields are padded to cache lines) and it allocates a block of 32 message slots when it
//! is created, about 1 KB per service that an idle service never touches. With 500 exec
//! services that was 0.5 MiB of the daemon's memory (heaptrack, issue 11's memory
//! regression). Here the queue is a `VecDeque` behind a mutex that allocates on the first
//! message and gives its buffer back when drained, a semaphore bounds it (senders wait
//! while it is full, as with a bounded tokio channel), and the actor's waker is kept
//! beside the queue: about 150 bytes. Messages are rare (a failing check, a schedule, an
//! operator), so one lock per message costs nothing measurable.
//!
//! Semantics as tokio's: `send` waits for room and fails (giving the message back) once
//! the receiver is gone; the receiver gets every message sent before the last sender was
//! dropped, then `None`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::{Semaphore, TryAcquireError};

/// A bounded inbox of `capacity` messages.
pub fn channel<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            senders: 1,
            receiving: true,
            waker: None,
        }),
        space: Semaphore::new(capacity),
    });
    (Sender(shared.clone()), Receiver(shared))
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// One permit per free place in the queue; closed when the receiver is gone.
    space: Semaphore,
}

struct State<T> {
    queue: VecDeque<T>,
    senders: usize,
    receiving: bool,
    /// The receiver waiting for a message (or for the last sender to go).
    waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The receiver is gone: the message was not delivered.
pub struct Closed<T>(pub T);

impl<T> std::fmt::Debug for Closed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the inbox is closed")
    }
}

/// Why [`Sender::try_send`] did not deliver.
pub enum TrySendError<T> {
    Full(T),
    Closed(T),
}

impl<T> std::fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrySendError::Full(_) => "the inbox is full",
            TrySendError::Closed(_) => "the inbox is closed",
        })
    }
}

/// A sending side; clones share the inbox.
pub struct Sender<T>(Arc<Shared<T>>);

impl<T> Sender<T> {
    /// Queues `value`, waiting while the inbox is full.
    pub async fn send(&self, value: T) -> Result<(), Closed<T>> {
        match self.0.space.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(Closed(value)),
        }
        self.push(value)
    }

    /// Queues `value` if there is room now.
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.0.space.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => return Err(TrySendError::Full(value)),
            Err(TryAcquireError::Closed) => return Err(TrySendError::Closed(value)),
        }
        self.push(value)
            .map_err(|Closed(v)| TrySendError::Closed(v))
    }

    /// Queues `value` under a permit already taken, and wakes the receiver.
    fn push(&self, value: T) -> Result<(), Closed<T>> {
        let mut state = self.0.lock();
        if !state.receiving {
            return Err(Closed(value));
        }
        state.queue.push_back(value);
        let waker = state.waker.take();
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        let waker = if state.senders == 0 {
            state.waker.take()
        } else {
            None
        };
        drop(state);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Sender")
    }
}

/// The actor's side.
pub struct Receiver<T>(Arc<Shared<T>>);

impl<T> Receiver<T> {
    /// The next message; `None` once every sender is gone and the queue is empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.0.lock();
        if let Some(value) = state.queue.pop_front() {
            if state.queue.is_empty() {
                // Give the buffer back: an idle service keeps none.
                state.queue = VecDeque::new();
            }
            drop(state);
            self.0.space.add_permits(1);
            return Poll::Ready(Some(value));
        }
        if state.senders == 0 {
            return Poll::Ready(None);
        }
        match &state.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits for the next message (see [`Receiver::poll_recv`]).
    pub async fn recv(&mut self) -> Option<T> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiving = false;
        state.waker = None;
        let queued = std::mem::take(&mut state.queue);
        drop(state);
        // Waiting senders get their message back.
        self.0.space.close();
        drop(queued);
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inbox::Receiver")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_arrive_in_order_then_none_when_every_sender_is_gone() {
        let (tx, mut rx) = channel(4);
        let tx2 = tx.clone();
        tx.send(1).await.unwrap();
        tx2.send(2).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        drop(tx2);
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_full_inbox_makes_senders_wait_and_a_gone_receiver_fails_them() {
        let (tx, mut rx) = channel(2);
        tx.send(1).await.unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        let waiting = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(3).await.map_err(|Closed(v)| v) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the send waits for room");
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));

        tx.send(4).await.unwrap();
        tx.send(5).await.unwrap();
        let blocked = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.send(6).await.map_err(|Closed(v)| v) })
        };
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(blocked.await.unwrap(), Err(6), "the message comes back");
        assert!(matches!(tx.send(7).await, Err(Closed(7))));
        assert!(matches!(tx.try_send(8), Err(TrySendError::Closed(8))));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_and_by_the_last_sender_leaving() {
        let (tx, mut rx) = channel::<u32>(1);
        let receiver = tokio::spawn(async move {
            let first = rx.recv().await;
            let second = rx.recv().await;
            (first, second)
        });
        tokio::task::yield_now().await;
        tx.send(7).await.unwrap();
        tokio::task::yield_now().await;
        drop(tx);
        assert_eq!(receiver.await.unwrap(), (Some(7), None));
    }

    #[test]
    fn an_idle_inbox_is_small() {
        let (tx, _rx) = channel::<crate::service::protocol::ServiceMsg>(64);
        let size = std::mem::size_of::<Shared<crate::service::protocol::ServiceMsg>>();
        assert!(size <= 160, "inbox state is {size} bytes");
        drop(tx);
    }
}
