//! Leases on the control plane: the leader's [`grants`], its HTTP [`routes`], the
//! [`renewals`] channel a server uses for its own lease, and the [`notify_rounds`] that
//! travel with the grants; [`cluster_status`] answers the hosts' `crm_mon`.

pub mod cluster_status;
pub mod grants;
pub mod notify_rounds;
pub mod renewals;
pub mod routes;
