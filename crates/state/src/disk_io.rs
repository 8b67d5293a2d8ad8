//! Where a replica's blocking disk work runs: log commits (each with an fsync) and snapshots.

/// Where a replica's blocking disk work runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskIo {
    /// Off the runtime: log commits on a dedicated OS thread, snapshots on tokio's blocking
    /// pool. The disk never holds up a runtime worker, so an agent's runtime workers keep
    /// serving gossip, leases and the API while an fsync or a large snapshot runs.
    #[default]
    Threads,
    /// On tasks of the current runtime. For the simulator: its paused clock jumps ahead
    /// whenever no task can run, so disk work must not happen on another thread, and a crashed
    /// replica's writes must stop with it rather than land after its restart.
    Runtime,
}
