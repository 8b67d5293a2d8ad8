//! HTTP plumbing every agent shares: the [`error`] body, API tokens ([`auth`]), the
//! [`client`] agents use to talk to each other, body caps ([`limits`]), and [`tls`].

pub mod auth;
pub mod client;
pub mod error;
pub mod limits;
pub mod tls;
