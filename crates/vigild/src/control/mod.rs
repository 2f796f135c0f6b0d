//! The daemon's HTTP+JSON API and the CLI's client: the routes (`server`, with the
//! operator's endpoints in `operate`), served on the control socket and, when
//! `http_listen` is set, on a TCP listener (`http`), both through the same connection
//! machinery and limits (`conn`); the live dashboard at `/` and its feed (`dashboard`);
//! and the CLI's side (`client`).

pub mod client;
mod conn;
pub mod dashboard;
pub mod http;
mod operate;
pub mod server;
