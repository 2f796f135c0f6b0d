//! What Vigil tells the world: the event bus every fact about a service is published on
//! (`bus`), the log line formats (`log`) and journal entries under journald (`journal`),
//! alert delivery (`alerting`), Prometheus metrics (`metrics`), and Vigil as a systemd
//! service (`sdnotify`).

pub mod alerting;
pub mod bus;
pub mod journal;
pub mod log;
pub mod metrics;
pub mod sdnotify;
