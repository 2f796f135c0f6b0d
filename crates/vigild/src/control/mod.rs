//! The control socket: the daemon's HTTP+JSON server (`server`, with the operator's
//! endpoints in `operate`) and the CLI's client (`client`).

pub mod client;
mod operate;
pub mod server;
