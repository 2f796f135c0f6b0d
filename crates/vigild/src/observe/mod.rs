//! What Vigil tells the world: every logged fact (`events`), the log line formats (`log`),
//! alert delivery (`alerting`), and Vigil as a systemd service (`sdnotify`).

pub mod alerting;
pub mod events;
pub mod log;
pub mod sdnotify;
