//! Leases on the control plane: the leader's [`grants`], its HTTP [`routes`], and the
//! [`renewals`] channel a server uses for its own lease.

pub mod grants;
pub mod renewals;
pub mod routes;
