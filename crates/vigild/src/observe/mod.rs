//! What Vigil tells the world: the event bus every fact about a service is published on
//! (`bus`), the log line formats (`log`), alert delivery (`alerting`), Prometheus metrics
//! (`metrics`), and Vigil as a systemd service (`sdnotify`).

pub mod alerting;
pub mod bus;
pub mod log;
pub mod metrics;
pub mod sdnotify;
