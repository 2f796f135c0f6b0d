//! What an exec service printed: its last lines, kept in memory per service (bounded), for
//! `vigil logs` (`-n`, and `-f` to follow) and for hang evidence.
//!
//! One ring per service, shared by its stdout and stderr and kept across restarts of its
//! process (a crash's last words stay readable after the restart). Lines are numbered, so
//! a follower reads from where it was and learns how many it missed when it fell more
//! than a ring behind. An idle service costs one empty ring.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use vigil_core::{ServiceName, Timestamp};

use super::pipes::Stream;

/// How many bytes of text a service's ring keeps (at least [`MIN_LINES`] lines).
pub const RING_BYTES: usize = 256 * 1024;
/// A ring never keeps fewer lines than this, however long they are.
pub const MIN_LINES: usize = 64;

/// One line of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Its number in the service's output since Vigil started (from 1).
    pub seq: u64,
    pub at: Timestamp,
    pub stream: &'static str,
    pub text: String,
}

/// A service's ring.
#[derive(Default)]
pub struct OutputLog {
    ring: Mutex<Ring>,
    /// Wakes followers when a line arrives.
    arrived: Notify,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<Line>,
    bytes: usize,
    next: u64,
}

/// Lines after a point, and how many were lost before them (the ring moved on).
#[derive(Debug, Default)]
pub struct Since {
    pub lines: Vec<Line>,
    pub missed: u64,
}

impl OutputLog {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a line (the oldest go when the ring is full) and wakes followers.
    pub fn push(&self, stream: Stream, at: Timestamp, text: &str) {
        {
            let mut ring = self.ring();
            ring.next += 1;
            let seq = ring.next;
            ring.bytes += text.len();
            ring.lines.push_back(Line {
                seq,
                at,
                stream: stream.as_str(),
                text: text.to_owned(),
            });
            while ring.bytes > RING_BYTES && ring.lines.len() > MIN_LINES {
                if let Some(old) = ring.lines.pop_front() {
                    ring.bytes -= old.text.len();
                }
            }
        }
        self.arrived.notify_waiters();
    }

    /// The last `n` lines, oldest first.
    pub fn last(&self, n: usize) -> Vec<Line> {
        let ring = self.ring();
        let skip = ring.lines.len().saturating_sub(n);
        ring.lines.iter().skip(skip).cloned().collect()
    }

    /// The number of the newest line (0: none yet).
    pub fn newest(&self) -> u64 {
        self.ring().next
    }

    /// The lines after line `seq`.
    pub fn since(&self, seq: u64) -> Since {
        let ring = self.ring();
        let first = ring.lines.front().map_or(ring.next + 1, |l| l.seq);
        Since {
            missed: first.saturating_sub(seq + 1),
            lines: ring.lines.iter().filter(|l| l.seq > seq).cloned().collect(),
        }
    }

    /// Waits for lines after `seq` (returns at once if there are some).
    pub async fn wait_after(&self, seq: u64) {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if self.newest() > seq {
                return;
            }
            arrived.await;
        }
    }
}

/// Every exec service's ring, by name: the exec driver writes, the control socket reads.
#[derive(Clone, Default)]
pub struct Outputs(Arc<Mutex<HashMap<ServiceName, Arc<OutputLog>>>>);

impl Outputs {
    /// The service's ring, made on first use.
    pub fn of(&self, service: &ServiceName) -> Arc<OutputLog> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(service.clone()).or_default().clone()
    }

    /// The service's ring, if it has one.
    pub fn get(&self, service: &ServiceName) -> Option<Arc<OutputLog>> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(service).cloned()
    }

    /// Forgets a service removed from the configuration.
    pub fn remove(&self, service: &ServiceName) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(service);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> Timestamp {
        Timestamp::from_secs(1)
    }

    #[test]
    fn keeps_the_newest_lines_within_its_bytes() {
        let log = OutputLog::default();
        let text = "x".repeat(1024);
        for _ in 0..1000 {
            log.push(Stream::Stdout, at(), &text);
        }
        let kept = log.last(usize::MAX);
        assert_eq!(kept.len(), RING_BYTES / 1024);
        assert_eq!(kept.last().map(|l| l.seq), Some(1000));
        assert_eq!(log.last(3).len(), 3);
        assert_eq!(log.last(3)[0].seq, 998);
    }

    #[test]
    fn a_follower_learns_what_it_missed() {
        let log = OutputLog::default();
        let text = "y".repeat(RING_BYTES / 8);
        for _ in 0..(MIN_LINES + 10) {
            log.push(Stream::Stderr, at(), &text);
        }
        let since = log.since(0);
        assert_eq!(since.missed, 10);
        assert_eq!(since.lines.len(), MIN_LINES);
        assert_eq!(since.lines[0].stream, "stderr");
        let none = log.since(log.newest());
        assert_eq!((none.missed, none.lines.len()), (0, 0));
    }

    #[tokio::test]
    async fn a_waiting_follower_wakes_on_a_new_line() {
        let log = Arc::new(OutputLog::default());
        let waiter = tokio::spawn({
            let log = log.clone();
            async move {
                log.wait_after(0).await;
                log.since(0).lines
            }
        });
        tokio::task::yield_now().await;
        log.push(Stream::Stdout, at(), "hello");
        let lines = waiter.await.unwrap();
        assert_eq!(lines[0].text, "hello");
    }
}
