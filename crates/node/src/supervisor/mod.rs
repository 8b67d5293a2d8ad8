//! Runs the instances placed on this host: the reconcile loop (`reconciler`), the restart
//! policy (`restart`) and health checks (`health`). The drivers that start and stop each kind
//! of instance are in `crate::drivers`. `injected` holds a fault for negative controls.

pub mod health;
pub mod injected;
pub mod reconciler;
pub mod restart;
