//! A netlink socket and its receive buffer kept per thread between check runs, and the
//! native-endian field readers the probes that use one (`sockets`, `listening` through it,
//! `interface`) parse answers with.
//!
//! Why kept: opening a socket, setting it up and zeroing a buffer on every run was most of
//! a cheap netlink probe's CPU (a LISTEN count went from 40-52 to 17-18 µs per run once
//! they were kept). A socket a run failed on is dropped, not kept: it may still hold the
//! rest of an answer that the next run would misread.

use std::cell::RefCell;
use std::io;
use std::thread::LocalKey;

use rustix::fd::OwnedFd;

/// One thread's socket, its receive buffer, and the last sequence number sent on it.
pub(super) struct Kept {
    pub fd: OwnedFd,
    pub buf: Vec<u8>,
    pub seq: u32,
}

/// This thread's slot for one kind of kept socket (declare it with `thread_local!` and
/// `const { RefCell::new(None) }`).
pub(super) type Slot = LocalKey<RefCell<Option<Kept>>>;

/// Runs `run` on the socket kept in `slot`, opening one with `open` when there is none;
/// the socket is kept again only when `run` succeeded.
pub(super) fn with_kept<T>(
    slot: &'static Slot,
    open: impl FnOnce() -> io::Result<Kept>,
    run: impl FnOnce(&mut Kept) -> io::Result<T>,
) -> io::Result<T> {
    let mut kept = match slot.with(|c| c.borrow_mut().take()) {
        Some(kept) => kept,
        None => open()?,
    };
    let out = run(&mut kept);
    if out.is_ok() {
        slot.with(|c| *c.borrow_mut() = Some(kept));
    }
    out
}

/// A native-endian `u32` at `at` of a netlink message (0 past the end).
pub(super) fn read_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_ne_bytes)
}

/// A native-endian `u16` at `at` (0 past the end).
pub(super) fn read_u16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_ne_bytes)
}
