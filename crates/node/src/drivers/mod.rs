//! How each kind of instance is started, watched and stopped: `process`, `ocf` (resource
//! agents), `qemu` (with its `qmp` client), behind one [`running::Running`] handle; their
//! parameters (`params`) and capped log files (`log_file`). Containment is `crate::cgroup`.

pub mod log_file;
pub mod ocf;
pub mod params;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod running;
