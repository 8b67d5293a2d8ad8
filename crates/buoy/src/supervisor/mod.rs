//! Runs the instances placed on this host: the reconcile loop (`reconciler`), the restart
//! policy (`restart`), the drivers (`process`, `ocf`, `qemu` with its `qmp` client, behind
//! `running`), health checks (`health`) and the capped instance log (`log_file`).

pub mod health;
pub mod log_file;
pub mod ocf;
pub mod params;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod reconciler;
pub mod restart;
pub mod running;
