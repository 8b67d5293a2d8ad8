//! Runs the instances placed on this host: the reconcile loop (`reconciler`), the restart
//! policy (`restart`), the drivers (`process`, `ocf`, behind `running`) and the capped
//! instance log (`log_file`). The QEMU driver and health checks build on these.

pub mod log_file;
pub mod ocf;
pub mod process;
pub mod reconciler;
pub mod restart;
pub mod running;
