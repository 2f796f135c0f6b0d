//! The long-lived owners of a service's (and a restart group's) lifecycle: their
//! messages (`protocol`), the service actor that drives the lifecycle machine (`actor`),
//! the restart group's driver with its stop/start sequence (`group`), and how one-shot
//! commands run actors for the services they act on (`oneshot`), and an actor's inbox
//! (`inbox`).

pub mod actor;
pub mod group;
pub mod inbox;
pub mod oneshot;
pub mod operator;
pub mod protocol;

/// How long in-flight restarts may run on after a shutdown request.
pub const RESTART_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
