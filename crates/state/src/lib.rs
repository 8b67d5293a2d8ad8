//! Buoy's replicated cluster state: the data model's state machine (`model`) replicated
//! with Raft (openraft 0.9), stored on disk with redb.
//!
//! - [`types`]: the openraft type configuration: commands in, outcomes out, servers by name.
//! - [`log_store`]: the Raft log and vote in redb; `log_writer` commits log writes in groups;
//!   [`recent_entries`] keeps the newest entries in memory for replication.
//! - [`state_machine`]: applies committed commands to [`ClusterState`](model::ClusterState),
//!   keeps the change feed, and stores snapshots in redb (`snapshot_store`).
//! - [`network`]: openraft's RPCs over any [`Transport`](network::Transport) (HTTP in the
//!   agent, an in-memory faulty network in the simulator).
//! - [`replica`]: one server's handle: write, read, status, membership changes;
//!   [`batcher`] groups concurrent writes into one entry.
//! - [`data_dir`]: the versioned data directory; [`disk_io`]: where blocking disk work runs.

// openraft's storage traits return its `StorageError` (224 bytes); our helpers return it too.
#![allow(clippy::result_large_err)]

pub mod batcher;
pub mod data_dir;
pub mod disk_io;
pub mod log_store;
mod log_writer;
pub mod network;
pub mod recent_entries;
pub mod replica;
mod snapshot_store;
pub mod state_machine;
pub mod types;
mod zero_filled_file;
