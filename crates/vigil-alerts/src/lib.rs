//! Vigil's alerting: routing, deduplication and grouping, payloads, and delivery.
//!
//! The pure parts decide and format from values: [`throttle`] (per-channel `repeat`
//! deduplication, `recovered` closing `failing`, `group_wait` grouping), [`payload`] (the
//! versioned webhook document, Slack blocks, the plain-text email), [`retry`] (backoff with
//! jitter) and [`sign`] (HMAC-SHA256). The I/O lives in a thin layer on top: [`send`]
//! (one attempt through one channel: reqwest, lettre, the single spawn site) and
//! [`alerter`] (routing on the hot path, per-channel group and send tasks, retries, the
//! delivery log), joined by bounded drop-oldest [`queue`]s.
//!
//! Architecture Invariant: nothing here reads the clock; time comes in as a value (or, in
//! the delivery layer, from the clock function the daemon injects).

pub mod alert;
pub mod alerter;
pub mod payload;
pub mod queue;
pub mod retry;
pub mod send;
pub mod sign;
pub mod throttle;

pub use alert::{Alert, Message, Numbers, Outcome};
pub use alerter::{Alerter, Clock, Delivery, DeliveryLog, Deps, NoLog, host_name, test_message};
pub use send::{SendError, Sender, http_client};
