//! HTTP plumbing every agent shares: the [`error`] body, API tokens ([`auth`]), the
//! [`client`] agents use to talk to each other, body caps ([`limits`]), the gate of a host's
//! own routes ([`host_gate`]), and [`tls`].

pub mod auth;
pub mod client;
pub mod error;
pub mod host_gate;
pub mod limits;
pub mod tls;
