//! Benchmarks that start what they measure and print figures (JSON with `--json`):
//! the replicated [`control_plane`], the recovery [`planner`], and [`failover`] of real hosts.

pub mod control_plane;
pub mod failover;
pub mod planner;
pub mod postgres_failover;
