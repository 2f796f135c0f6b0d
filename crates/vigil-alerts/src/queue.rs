//! A bounded queue that never blocks its producer: when full, the oldest entry is dropped
//! and counted.
//!
//! The hot path (a check task or a service actor raising an alert) only ever calls
//! [`DropOldest::push`]: a short lock, a `VecDeque` push, a wake-up. The one consumer (the
//! channel's task) awaits [`DropOldest::pop`].

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

#[derive(Debug)]
pub struct DropOldest<T> {
    items: Mutex<VecDeque<T>>,
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
    closed: AtomicBool,
}

/// What [`DropOldest::push`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed<T> {
    Queued,
    /// The queue was full: this (oldest) entry made room.
    DroppedOldest(T),
    /// The queue is closed; the entry was not taken.
    Closed(T),
}

impl<T> DropOldest<T> {
    pub fn new(capacity: usize) -> DropOldest<T> {
        DropOldest {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(64))),
            capacity: capacity.max(1),
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<T>> {
        // A panic while holding this lock cannot leave the deque inconsistent.
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, item: T) -> Pushed<T> {
        if self.closed.load(Ordering::Acquire) {
            return Pushed::Closed(item);
        }
        let evicted = {
            let mut items = self.lock();
            let evicted = if items.len() >= self.capacity {
                items.pop_front()
            } else {
                None
            };
            items.push_back(item);
            evicted
        };
        self.ready.notify_one();
        match evicted {
            Some(old) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                Pushed::DroppedOldest(old)
            }
            None => Pushed::Queued,
        }
    }

    /// The oldest entry without waiting.
    pub fn try_pop(&self) -> Option<T> {
        self.lock().pop_front()
    }

    /// The oldest entry; `None` once the queue is closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            notified.await;
        }
    }

    /// No more pushes; the consumer drains what is left, then sees `None`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.ready.notify_one();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped to make room, ever.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_drops_the_oldest_and_counts() {
        let q = DropOldest::new(3);
        for i in 0..3 {
            assert_eq!(q.push(i), Pushed::Queued);
        }
        assert_eq!(q.push(3), Pushed::DroppedOldest(0));
        assert_eq!(q.push(4), Pushed::DroppedOldest(1));
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.len(), 3);
        assert_eq!(
            (q.try_pop(), q.try_pop(), q.try_pop(), q.try_pop()),
            (Some(2), Some(3), Some(4), None)
        );
    }

    #[tokio::test]
    async fn pop_waits_for_a_push_and_ends_after_close() {
        let q = std::sync::Arc::new(DropOldest::new(8));
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while let Some(x) = q.pop().await {
                    seen.push(x);
                }
                seen
            })
        };
        tokio::task::yield_now().await;
        q.push(1);
        q.push(2);
        q.close();
        assert_eq!(q.push(3), Pushed::Closed(3));
        assert_eq!(consumer.await.unwrap(), vec![1, 2]);
    }
}
