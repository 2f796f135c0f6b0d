//! Vigil's alerting: routing, deduplication and grouping, payloads, and delivery.
//!
//! The pure parts decide and format from values: [`throttle`] (per-channel `repeat`
//! deduplication, `recovered` closing `failing`, `group_wait` grouping), [`payload`] (the
//! versioned webhook document, Slack blocks, the plain-text email), [`retry`] (backoff with
//! jitter) and [`sign`] (HMAC-SHA256). The I/O lives in a thin layer on top.
//!
//! Architecture Invariant: nothing here reads the clock; time comes in as a value (or, in
//! the delivery layer, from the clock function the daemon injects).

pub mod alert;
pub mod payload;
pub mod retry;
pub mod sign;
pub mod throttle;

pub use alert::{Alert, Message, Numbers, Outcome};
