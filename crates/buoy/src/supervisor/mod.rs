//! Runs the instances placed on this host. So far: the `process` driver and the capped
//! instance log; the reconcile loop, health checks, restart policy and the other drivers
//! (QEMU, OCF) build on these.

// Used by the supervisor loop that comes next; exercised by the tests until then.
#![allow(dead_code)]

pub mod log_file;
pub mod process;
