//! What Vigil needs from the machine it runs on, kept apart from the logic: the clock (the
//! only place time is read), facts about other processes, the memory tuning of a
//! long-running daemon, a shared value without change notification, and a lock-free histogram for timings on hot paths.

pub mod cell;
pub mod clock;
pub mod histogram;
pub mod memory;
pub mod process;

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core), and an
/// arena keeps its high-water mark resident; for a daemon that mostly waits, two arenas cut
/// the idle RSS by several MiB at no measurable CPU cost. A one-shot command gets one: a
/// thread it starts (the runtime's blocking pool, for a DNS lookup) allocates little, and a
/// second arena costs a 64 MiB reservation, its trims and fresh pages. (musl, the static
/// build's libc, has no arenas and no such tunable.)
#[allow(unsafe_code)]
pub fn limit_malloc_arenas(max: u8) {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator tunable; it is called before any other thread
    // exists, with a documented parameter and a valid value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, i32::from(max.max(1)));
    }
    #[cfg(not(target_env = "gnu"))]
    let _ = max;
}
