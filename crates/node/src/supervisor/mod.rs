//! Runs the instances placed on this host: the reconcile loop (`reconciler`), the restart
//! policy (`restart`) and health checks (`health`). The drivers that start and stop each kind
//! of instance are in `crate::drivers`.

pub mod health;
pub mod reconciler;
pub mod restart;
