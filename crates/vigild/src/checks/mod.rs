//! Check runs that are not network or process probes: `heartbeat` checks are evaluated
//! from pushes recorded in the ledger.

pub mod heartbeat;
