//! The long-lived owners of a service's (and a restart group's) restarts: their messages
//! (`protocol`), the service actor (`actor`), an exec service's supervisor
//! (`exec_supervisor`) and the group actor with its stop/start sequence (`group`).

pub mod actor;
pub mod exec_supervisor;
pub mod group;
pub mod protocol;

/// How long in-flight restarts may run on after a shutdown request.
pub const RESTART_SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
