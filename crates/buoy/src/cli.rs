//! The command line: every `buoy` subcommand and its flags.

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::cmd_sim::MembershipArgs;

/// Buoy keeps virtual machines and services running when the hosts under them fail.
#[derive(Parser, Debug)]
#[command(name = "buoy", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// API token for agents that require one (see `buoy agent --tokens`).
    #[arg(long, env = "BUOY_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// CA bundle (PEM) to check agents' certificates against: talk HTTPS to agents started
    /// with --tls-cert.
    #[arg(long, env = "BUOY_TLS_CA", global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Buoy agent on this host.
    Agent(Box<crate::agent::AgentArgs>),
    /// List the cluster's members as one agent sees them.
    Members(crate::cmd_members::MembersArgs),
    /// Stand-in for a hardware watchdog: kills this host's instances when the agent stops
    /// moving its deadline (run one beside each agent; give the agent `--watchdog SOCKET`).
    Watchdog(crate::watchdog::WatchdogArgs),
    /// Print a new random encryption key (hex) for a keyring file.
    Keygen,
    /// The demo instance: says who and where it is over HTTP, and appends heartbeats
    /// (`instance epoch host unix_millis`) to a file while it runs.
    DemoApp(crate::demo_app::DemoAppArgs),
    /// Start a whole local cluster on this machine and show it working.
    Sandbox(crate::sandbox::SandboxArgs),
    /// Failover domains: `buoy segment create|list|show|update|delete`.
    Segment {
        #[command(subcommand)]
        op: crate::cmd_host::SegmentCommand,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// Hosts registered in segments.
    Host {
        #[command(subcommand)]
        op: crate::cmd_host::HostCommand,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// Run a host's fence device (STONITH): `buoy fence node-3` powers it off, and its
    /// instances move at once; `--action status|metadata|...` for the other actions.
    Fence(crate::cmd_host::FenceArgs),
    /// Instances (processes, VMs, OCF resources) Buoy keeps running.
    Instance {
        #[command(subcommand)]
        op: crate::cmd_state::InstanceCommand,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// Where instances run (instance -> host, with an epoch raised at every move):
    /// `buoy placement create --set instance=web --set host=node-2`, `update ID --set host=...`.
    Placement {
        #[command(subcommand)]
        op: crate::cmd_state::Crud,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// Failure reports and the recoveries they caused.
    Notification {
        #[command(subcommand)]
        op: crate::cmd_state::NotificationCommand,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// The control-plane servers (Raft voters).
    Servers {
        #[command(subcommand)]
        op: crate::cmd_state::ServersCommand,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// The control plane and membership at a glance.
    Status {
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// Changes to the cluster state, from log index `--since` (default: the start).
    Events {
        #[arg(long)]
        since: Option<u64>,
        /// Keep printing new changes as they happen.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        common: crate::cmd_state::Common,
    },
    /// A seeded random schedule of faults against a local cluster, then a check of the safety
    /// rules (S1 one copy at a time, S2 no acknowledged write lost, S3 isolated hosts keep
    /// their work) and availability; exits non-zero on any violation.
    Chaos(crate::cmd_chaos::ChaosArgs),
    /// Benchmarks that start their own cluster and print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
    /// Deterministic simulations.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Write throughput, latency and leader failover of the replicated control plane.
    ControlPlane(crate::cmd_bench::ControlPlaneBenchArgs),
    /// The recovery planner on a synthetic cluster: plan time, moves, unplaced, overcommit.
    Planner(crate::cmd_bench_planner::PlannerBenchArgs),
    /// Real agents on loopback: kill -9 hosts and time until their instances run elsewhere.
    Failover(crate::cmd_bench_failover::FailoverBenchArgs),
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Membership under loss, crashes and stalls: detection time, false positives, bandwidth.
    Membership(MembershipArgs),
    /// The replicated control plane under crashes, restarts and partitions: lost writes, split brain.
    ControlPlane(crate::cmd_sim::ControlPlaneSimArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(t) = cli.token {
        crate::client::set_token(t);
    }
    if let Some(ca) = &cli.tls_ca {
        crate::client::set_tls(crate::tls::client_config(ca)?);
    }
    match cli.command {
        Command::Agent(args) => crate::agent::run(*args)?,
        Command::Members(args) => crate::cmd_members::members(args)?,
        Command::Keygen => crate::cmd_members::keygen()?,
        Command::Chaos(args) => crate::cmd_chaos::chaos(args)?,
        Command::DemoApp(args) => crate::demo_app::run(args)?,
        Command::Watchdog(args) => crate::watchdog::run(args)?,
        Command::Sandbox(args) => crate::sandbox::run(args)?,
        Command::Sim {
            what: SimCommand::Membership(args),
        } => crate::cmd_sim::membership(args)?,
        Command::Sim {
            what: SimCommand::ControlPlane(args),
        } => crate::cmd_sim::control_plane(args)?,
        Command::Bench {
            what: BenchCommand::ControlPlane(args),
        } => crate::cmd_bench::control_plane(args)?,
        Command::Bench {
            what: BenchCommand::Planner(args),
        } => crate::cmd_bench_planner::planner(args)?,
        Command::Bench {
            what: BenchCommand::Failover(args),
        } => crate::cmd_bench_failover::failover(args)?,
        Command::Segment { op, common } => crate::cmd_host::segment(&common, op)?,
        Command::Host { op, common } => crate::cmd_host::host(&common, op)?,
        Command::Fence(args) => crate::cmd_host::fence(args)?,
        Command::Instance { op, common } => crate::cmd_state::instance(&common, op)?,
        Command::Placement { op, common } => crate::cmd_state::crud(&common, "placements", op)?,
        Command::Notification { op, common } => crate::cmd_state::notification(&common, op)?,
        Command::Servers { op, common } => crate::cmd_state::servers(&common, op)?,
        Command::Status { common } => crate::cmd_state::status(&common)?,
        Command::Events {
            since,
            watch,
            common,
        } => crate::cmd_state::events(&common, since, watch)?,
    }
    Ok(ExitCode::SUCCESS)
}
