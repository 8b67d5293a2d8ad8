//! The watchdog: `buoy watchdog` is the small process that stands for a hardware watchdog timer (rule S1).
//! The agent arms it with its lease's end and tells it what runs on the host; if the deadline
//! passes without the agent moving it (the agent is hung, killed, or lost its lease), the
//! watchdog kills everything it tracks. It runs beside the agent and is never frozen with it.
//! In production the same role belongs to `/dev/watchdog`, which resets the whole machine.
//!
//! - [`daemon`]: the `buoy watchdog` process; [`protocol`]: what the agent tells it.
//! - [`client`]: the agent's connection to it; [`device`]: `/dev/watchdog`.
//! - [`feed`]: moves either one's deadline with the lease.

pub mod client;
pub mod daemon;
pub mod device;
pub mod feed;
pub mod protocol;
