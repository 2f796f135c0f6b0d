//! Vigil's daemon and command line: everything with I/O around the pure core
//! (`vigil_core`). The binary (`main.rs`) only dispatches to [`cli::main`].
//!
//! Each part lives in a folder named for it (see ARCHITECTURE.md for the map):
//! - [`cli`]: argument parsing and the one-shot commands (cron mode);
//! - [`daemon`]: `vigil run`'s task tree, signals, reload, check loops and schedules;
//! - [`service`]: the per-service and per-group actors and their messages;
//! - [`drivers`]: how a service is restarted (command, systemd, docker, exec);
//! - [`guard`]: the one gate every restart passes (lock, decision, intent, outcome);
//! - [`ledger`]: the SQLite ledger and its thread;
//! - [`checks`]: check runs that are not probes (heartbeats, from the ledger);
//! - [`control`]: the control socket's server and the CLI's client;
//! - [`render`]: the tables and JSON documents the CLI prints;
//! - [`observe`]: logs, alerts, and Vigil as a systemd service;
//! - [`platform`]: the clock and the memory tuning.
//!
//! Architecture Invariant: no import cycle between these modules (a test in
//! `tests/module_graph.rs` fails on one).

pub mod checks;
pub mod cli;
pub mod control;
pub mod daemon;
pub mod drivers;
pub mod exit;
pub mod fleet;
pub mod guard;
pub mod ledger;
pub mod observe;
pub mod platform;
pub mod render;
pub mod service;
