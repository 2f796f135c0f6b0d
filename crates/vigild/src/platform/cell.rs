//! A value several tasks share, read when they need it and replaced by one of them, with
//! no waiting for a change: a named `Arc<Mutex<T>>`.
//!
//! Why not `tokio::sync::watch`, which did this before: a watch channel's shared state
//! carries its change notification (eight `Notify`s), about 400 bytes, and every service
//! had two (its start time and its driver's reader) that nobody ever awaited. With 500
//! services that was 400 KiB of the idle daemon's memory (heap profile with massif, issue
//! 11's memory regression); a `Cell` of a start time is 40 bytes.

use std::sync::{Arc, Mutex, PoisonError};

/// See the module documentation. Cloning shares the value. Each replacement counts a
/// version, so a reader can tell that the value was replaced since it looked, even by an
/// equal value (a service restarted twice within a clock tick).
#[derive(Debug, Default)]
pub struct Cell<T>(Arc<Mutex<(T, u64)>>);

impl<T> Clone for Cell<T> {
    fn clone(&self) -> Self {
        Cell(self.0.clone())
    }
}

impl<T: Clone> Cell<T> {
    pub fn new(value: T) -> Cell<T> {
        Cell(Arc::new(Mutex::new((value, 0))))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (T, u64)> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the current value.
    pub fn get(&self) -> T {
        self.lock().0.clone()
    }

    /// How many times the value was replaced.
    pub fn version(&self) -> u64 {
        self.lock().1
    }

    /// Replaces the value when it differs; `true` when it did.
    pub fn set(&self, value: T) -> bool
    where
        T: PartialEq,
    {
        let mut v = self.lock();
        if v.0 == value {
            return false;
        }
        *v = (value, v.1 + 1);
        true
    }

    /// Replaces the value, equal or not.
    pub fn replace(&self, value: T) {
        let mut v = self.lock();
        *v = (value, v.1 + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::Cell;

    #[test]
    fn clones_share_the_value() {
        let a = Cell::new(Some(1));
        let b = a.clone();
        assert!(b.set(Some(2)));
        assert!(!b.set(Some(2)));
        assert_eq!((a.get(), a.version()), (Some(2), 1));
        a.replace(Some(2));
        assert_eq!((b.get(), b.version()), (Some(2), 2));
    }
}
