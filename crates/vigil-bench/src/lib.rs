//! Benchmark helpers for Vigil (not published).
//!
//! - [`sys`]: the only place this crate reads the clock or touches signals (libc).
//! - [`procfs`]: CPU time and memory of another process from `/proc`.
//! - [`stats`]: percentiles and a tiny JSON writer (no serde: std + libc only).
//! - [`args`]: a minimal `--flag value` parser for the binaries.

pub mod args;
pub mod procfs;
pub mod stats;
pub mod sys;
