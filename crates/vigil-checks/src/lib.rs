//! Vigil's checks: probes that look at a service and report a typed [`ProbeOutcome`], the
//! per-run retry loop ([`run_check`]), and the single process-spawn site ([`process`]).
//!
//! Owns: how a service is probed (HTTP, TCP connect, listening sockets, commands) and how
//! child processes are spawned, timed out and killed. Must not: decide restarts, keep
//! health state across runs, or read the wall clock; the core (`vigil_core`) decides and
//! the daemon schedules. Probes never panic and never return errors: every failure is a
//! failed outcome with a one-line reason saying what was expected and what was seen.
//!
//! Architecture Invariant: `process::run` is the only place in Vigil that spawns a
//! process (clippy's `disallowed-methods` enforces it).

/// The validated check types this crate consumes.
pub use vigil_config::model;

mod context;
pub mod probe;
pub mod process;
pub mod runner;
pub mod systemd;

pub use context::{ProbeContext, install_crypto_provider};
pub use probe::{ProbeOutcome, probe};
pub use runner::{CheckRun, run_check};
