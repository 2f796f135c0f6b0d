//! Facts about other processes from `/proc`, for telling a process from a later one that
//! got the same pid.

/// A process's start time (clock ticks since boot, `/proc/PID/stat` field 22): with the
/// pid, it names one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: count from its end.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); field 22 is the 20th from there.
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether `pid` is still the process that started at `start`.
pub fn is_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// Whether a process with this pid runs a `vigil` (a recycled pid runs something else).
pub fn is_vigil(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "vigil")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_made_up_start_is_not() {
        let me = std::process::id();
        let start = start_time(me).unwrap();
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert_eq!(start_time(u32::MAX), None);
    }
}
