//! `driver = "exec"`'s edge: spawning a supervised process (`spawn`), watching it through
//! a pidfd and signalling its group (`proc`), its output (`pipes`), and the sd_notify
//! socket it reports on (`notify`).

pub mod notify;
pub mod pipes;
pub mod proc;
pub mod spawn;
