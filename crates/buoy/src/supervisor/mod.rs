//! Runs the instances placed on this host: the reconcile loop (`reconciler`), the restart
//! policy (`restart`), the `process` driver and the capped instance log (`log_file`). The
//! QEMU and OCF drivers and health checks build on these.

pub mod log_file;
pub mod process;
pub mod reconciler;
pub mod restart;
