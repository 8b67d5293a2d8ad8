//! Buoy on one machine, to try it, test it and measure it. Nothing here runs in a production
//! cluster: these are the `buoy` subcommands that start their own agents (as child processes
//! of the same binary) or simulations.
//!
//! - [`local_cluster`]: starts N agents (and their watchdogs) on loopback or, with
//!   [`netns`], each in its own network namespace; reads their state back.
//! - [`sandbox`]: `buoy sandbox`, a whole cluster with demo instances, the clock app behind a
//!   load balancer, a scripted crash and the dashboard; [`demo_app`] is its instance.
//! - [`chaos`]: `buoy chaos`, seeded faults against a local cluster and the checker of rules
//!   S1-S3.
//! - [`identity_files`]: the cluster secret and host credentials of those clusters.
//! - [`interrupt`]: Ctrl-C and SIGTERM end what those commands started.
//! - [`acks`]: what the database labs' clients record, and the checks read from it.
//! - [`bench`]: `buoy bench control-plane|planner|failover`.
//! - [`galera_lab`]: MariaDB with Galera under the galera agent, three hosts in namespaces.
//! - [`postgres_lab`]: PostgreSQL under pgsql with its virtual IP, hosts in namespaces (the
//!   PostgreSQL test and `buoy bench failover --workload postgres`).
//! - [`zone_lab`]: zones of hosts in namespaces, the clock behind HAProxy (a Buoy clone) and
//!   its virtual IP, and a client through it (the zones test and `buoy bench zone-failure`).
//! - [`sim`]: `buoy sim membership|control-plane`, the front end of the `sim` crate. With the
//!   `huge-pages` feature the process allocator serves the simulator's large tables from
//!   huge pages (`huge_arena`); the agent is built without it.
//! - [`sim_cluster`]: `buoy sim cluster`, the whole system under faults on the virtual clock.

pub mod acks;
pub mod bench;
pub mod chaos;
pub mod demo_app;
pub mod galera_lab;
#[cfg(feature = "huge-pages")]
mod huge_arena;
pub mod identity_files;
#[cfg(unix)]
pub mod interrupt;
pub mod local_cluster;
pub mod netns;
pub mod ns_lab;
pub mod postgres_lab;
pub mod sandbox;
pub mod sim;
pub mod sim_cluster;
pub mod zone_lab;

/// The process allocator, with the huge-page arena that only `buoy sim` switches on.
#[cfg(feature = "huge-pages")]
#[global_allocator]
static ALLOCATOR: huge_arena::Allocator = huge_arena::Allocator::new();

/// Serves the simulator's large allocations from huge pages from now on (a no-op unless
/// built with the `huge-pages` feature).
pub fn use_huge_pages() {
    #[cfg(feature = "huge-pages")]
    ALLOCATOR.use_huge_pages();
}
