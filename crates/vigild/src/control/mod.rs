//! The control socket: the daemon's HTTP+JSON server (`server`) and the CLI's client
//! (`client`).

pub mod client;
pub mod server;
