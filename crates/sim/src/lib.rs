//! Deterministic simulation of a Buoy cluster.
//!
//! A virtual clock and a virtual network drive many copies of the sans-IO membership core:
//! per-link latency, loss, one-way and symmetric partitions, crashes, restarts and stalls.
//! Everything random comes from one seed, so a run replays bit for bit.
//!
//! - `network`: the link model (latency distribution, loss, partitions);
//! - `protocol`: what a simulated node must offer (Buoy's `Swim`; foca behind the `foca` feature);
//! - `simulation`: the event loop that owns the nodes and delivers their traffic;
//! - `due`: the entry of an event queue (time, then scheduling order);
//! - `wake_queue`: one timer wake-up per node, moved in place as deadlines change;
//! - `scenario`: the membership scenario behind `buoy sim membership` and its report;
//! - `stats`: percentiles;
//! - `heartbeats`: rule S1 judged from heartbeat files the demo app writes;
//! - `run_log`: rule S1 checked exactly from the start and end of every simulated process;
//! - `cluster`: the whole system (`buoy sim cluster`): hosts, leases, the control plane and
//!   faults, checking rules S1, S3 and L1;
//! - `raft_network` and `control_plane`: the control-plane scenario (real openraft + redb
//!   replicas on an in-memory faulty network under a paused tokio clock).

pub mod cluster;
pub mod control_plane;
mod due;
#[cfg(feature = "foca")]
mod foca_node;
pub mod heartbeats;
pub mod network;
pub mod protocol;
pub mod raft_network;
pub mod run_log;
pub mod scenario;
pub mod simulation;
pub mod stats;
pub mod wake_queue;

pub use network::NetworkConfig;
pub use protocol::Protocol;
pub use scenario::{Implementation, MembershipReport, MembershipScenario};
pub use simulation::{NodeId, Simulation};
