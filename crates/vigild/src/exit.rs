//! Named process exit codes (SPEC §6). One place, so every command agrees.

/// Success; for `check`: nothing failing (warnings allowed); for `restart`: restarted.
pub const OK: u8 = 0;
/// `check`: something is failing. `restart`: the guard skipped or denied the restart, or
/// the restart command failed.
pub const FAILED: u8 = 1;
/// Usage or configuration errors.
pub const USAGE: u8 = 2;
/// Exit after a second termination signal (128 + SIGINT), like a shell.
pub const INTERRUPTED: u8 = 130;
