//! Thin, audited wrappers over the few libc calls the benchmark tools need:
//! `CLOCK_MONOTONIC`, `sysconf(_SC_CLK_TCK)`, and synchronous signal waiting.
//!
//! This module is the single place in the crate that reads the clock; the
//! workspace bans `Instant::now`/`SystemTime::now` elsewhere, and we want the
//! raw `CLOCK_MONOTONIC` value anyway (comparable across processes).
#![expect(
    unsafe_code,
    reason = "libc FFI for clock_gettime, sysconf and sigtimedwait; each call is wrapped and documented"
)]

use std::io;
use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds. The one clock read of the crate.
#[must_use]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) failed");
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs * 1_000_000_000 + nanos
}

/// Clock ticks per second used by `/proc/PID/stat` (`utime`, `stime`).
#[must_use]
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// Signals the tools wait for synchronously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop and report.
    Stop,
    /// SIGUSR1: reset the measurement window (end of warm-up).
    Reset,
    /// SIGUSR2: end the measurement window (keep serving, stop recording).
    Freeze,
}

fn term_set() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data; sigemptyset initialises it before use,
    // and sigaddset is given valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&raw mut set);
        libc::sigaddset(&raw mut set, libc::SIGTERM);
        libc::sigaddset(&raw mut set, libc::SIGINT);
        libc::sigaddset(&raw mut set, libc::SIGUSR1);
        libc::sigaddset(&raw mut set, libc::SIGUSR2);
        set
    }
}

/// Block SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 in the calling thread. Call it first in
/// `main`, before spawning threads, so every thread inherits the mask and the
/// signals stay pending until [`wait_signal`] takes them.
///
/// # Errors
/// When `pthread_sigmask` fails.
pub fn block_signals() -> io::Result<()> {
    let set = term_set();
    // SAFETY: `set` is initialised; a null old-set pointer is allowed.
    let rc =
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Wait for one of the blocked signals, at most `timeout` (forever if `None`).
/// Returns `None` on timeout.
#[must_use]
pub fn wait_signal(timeout: Option<Duration>) -> Option<Signal> {
    let set = term_set();
    loop {
        let ts = timeout.map(|d| libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
            tv_nsec: libc::c_long::from(d.subsec_nanos().min(999_999_999).cast_signed()),
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), std::ptr::from_ref);
        // SAFETY: `set` is initialised, the siginfo pointer may be null, and
        // `ts_ptr` is either null or points to a live timespec.
        let rc = unsafe { libc::sigtimedwait(&raw const set, std::ptr::null_mut(), ts_ptr) };
        if rc == libc::SIGUSR1 {
            return Some(Signal::Reset);
        }
        if rc == libc::SIGUSR2 {
            return Some(Signal::Freeze);
        }
        if rc == libc::SIGTERM || rc == libc::SIGINT {
            return Some(Signal::Stop);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return None,
            // Interrupted by an unrelated signal: retry with the full timeout;
            // callers recompute deadlines anyway.
            Some(libc::EINTR) => {}
            _ => return Some(Signal::Stop),
        }
    }
}
