//! What runs on every Buoy host. A host gossips (SWIM through the [`gossip`] shell), keeps its
//! lease with the control plane ([`lease`]), runs what is placed on it only while it holds
//! that lease ([`supervisor`], with the [`drivers`] for processes, VMs and OCF resource
//! agents), and arms a [`watchdog`] so that a hung agent still leaves nothing running past its
//! lease (rule S1).
//!
//! - [`cgroup`]: each instance in a cgroup v2 of its own (stop and kill through it).
//! - [`clock`]: CLOCK_BOOTTIME, the clock leases are counted on (suspended time counts).
//! - [`identity`]: host credentials and the signatures of host <-> server calls.
//! - [`secret_file`]: secret files, refused when other users can read them.
//! - [`servers`]: where the control-plane servers are, from gossip, proven by
//!   [`server_proof`].
//! - [`sleep`]: instances frozen across a suspend, thawed only with the lease held.
//! - [`local_api`] and [`host_api`]: what a host answers about itself over HTTP.
//! - [`http`]: the error body, tokens, the agent-to-agent client, TLS.
//! - [`pacemaker_tools`]: Pacemaker's command-line tools as OCF agents call them (the shims'
//!   command forms and answers).
//! - [`balancer`]: load balancers kept in sync with placements (HAProxy's Runtime API).
//!
//! Arrows inside: `supervisor` -> `lease`, `drivers`, `watchdog`; `watchdog` -> `lease`,
//! `cgroup`; `drivers` -> `watchdog` (what to kill), `cgroup`; `local_api` -> `supervisor`;
//! `lease` -> `gossip`, `http`, `servers`. Nothing here knows the server side: a server
//! plugs its own grants in through [`lease::channel::RenewalChannel`].

pub mod balancer;
pub mod cgroup;
pub mod clock;
pub mod drivers;
pub mod gossip;
pub mod host_api;
pub mod http;
pub mod identity;
pub mod lease;
pub mod local_api;
pub mod pacemaker_tools;
pub mod secret_file;
pub mod server_proof;
pub mod servers;
pub mod sleep;
pub mod supervisor;
pub mod watchdog;
