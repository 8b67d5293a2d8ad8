//! The command line: every `buoy` subcommand and its flags, one file per command group
//! (`crud` and `output` serve them all). The lab's commands (sandbox, chaos, bench, sim,
//! demo-app) are defined in the `lab` crate.

mod credential;
mod crud;
mod fence;
mod host;
mod instance;
mod members;
mod notification;
mod output;
#[cfg(test)]
mod readme_commands;
mod segment;
mod servers;
mod settings;
mod status;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use lab::sim::MembershipArgs;

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
    Members(members::MembersArgs),
    /// Stand-in for a hardware watchdog: kills this host's instances when the agent stops
    /// moving its deadline (run one beside each agent; give the agent `--watchdog SOCKET`).
    Watchdog(WatchdogArgs),
    /// The systemd-sleep hook: `pre` freezes every agent's instances before the machine
    /// sleeps; after the resume each agent thaws its own only while it still holds its lease.
    /// Install as /usr/lib/systemd/system-sleep/buoy (see the README's `buoy agent`).
    SleepHook(SleepHookArgs),
    /// Print a new random encryption key (hex) for a keyring file.
    Keygen,
    /// Host identity: `buoy credential secret FILE` (the servers' cluster secret) and
    /// `buoy credential issue HOST --cluster-secret FILE --out HOST.cred` (a host's credential).
    Credential {
        #[command(subcommand)]
        op: credential::CredentialCommand,
    },
    /// The demo instance: says who and where it is over HTTP, and appends heartbeats
    /// (`instance epoch host unix_millis`) to a file while it runs.
    DemoApp(lab::demo_app::DemoAppArgs),
    /// Start a whole local cluster on this machine and show it working.
    Sandbox(lab::sandbox::SandboxArgs),
    /// Failover domains: `buoy segment create|list|show|update|delete`.
    Segment {
        #[command(subcommand)]
        op: segment::SegmentCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// Hosts registered in segments.
    Host {
        #[command(subcommand)]
        op: host::HostCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// Run a host's fence device (STONITH): `buoy fence node-3` powers it off, and its
    /// instances move at once; `--action status|metadata|...` for the other actions.
    Fence(fence::FenceArgs),
    /// Instances (processes, VMs, OCF resources) Buoy keeps running.
    Instance {
        #[command(subcommand)]
        op: instance::InstanceCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// Where instances run (instance -> host, with an epoch raised at every move):
    /// `buoy placement create --set instance=web --set host=node-2`, `update ID --set host=...`.
    Placement {
        #[command(subcommand)]
        op: crud::Crud,
        #[command(flatten)]
        common: crud::Common,
    },
    /// Failure reports and the recoveries they caused.
    Notification {
        #[command(subcommand)]
        op: notification::NotificationCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// The control-plane servers (Raft voters).
    Servers {
        #[command(subcommand)]
        op: servers::ServersCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// Cluster-wide settings (the lease timing every leader grants).
    Settings {
        #[command(subcommand)]
        op: settings::SettingsCommand,
        #[command(flatten)]
        common: crud::Common,
    },
    /// The control plane and membership at a glance.
    Status {
        #[command(flatten)]
        common: crud::Common,
    },
    /// Changes to the cluster state, from log index `--since` (default: the start).
    Events {
        #[arg(long)]
        since: Option<u64>,
        /// Keep printing new changes as they happen.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        common: crud::Common,
    },
    /// A seeded random schedule of faults against a local cluster, then a check of the safety
    /// rules (S1 one copy at a time, S2 no acknowledged write lost, S3 isolated hosts keep
    /// their work) and availability; exits non-zero on any violation.
    Chaos(lab::chaos::ChaosArgs),
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

/// Flags of `buoy watchdog`.
#[derive(Args, Debug)]
pub struct WatchdogArgs {
    /// Unix socket the agent connects to (give the agent the same path with --watchdog).
    #[arg(long)]
    pub socket: std::path::PathBuf,
}

/// Flags of `buoy sleep-hook`.
#[derive(Args, Debug)]
pub struct SleepHookArgs {
    /// `pre` (before the sleep) or `post` (after the resume), as systemd-sleep passes it.
    pub phase: String,
    /// What sleep it is (suspend, hibernate...), as systemd-sleep passes it; not used.
    pub kind: Option<String>,
    /// The agents' run directory (their --run-dir).
    #[arg(long, default_value = node::sleep::DEFAULT_RUN_DIR)]
    pub run_dir: std::path::PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Write throughput, latency and leader failover of the replicated control plane.
    ControlPlane(lab::bench::control_plane::ControlPlaneBenchArgs),
    /// The recovery planner on a synthetic cluster: plan time, moves, unplaced, overcommit.
    Planner(lab::bench::planner::PlannerBenchArgs),
    /// Real agents on loopback: kill -9 hosts and time until their instances run elsewhere.
    Failover(lab::bench::failover::FailoverBenchArgs),
    /// Zones in network namespaces: crash a whole zone under a client requesting through
    /// HAProxy's VIP; failed requests, recovery and HAProxy's backend sync times.
    ZoneFailure(lab::bench::zone_failure::ZoneFailureBenchArgs),
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Membership under loss, crashes and stalls: detection time, false positives, bandwidth.
    Membership(MembershipArgs),
    /// The replicated control plane under crashes, restarts and partitions: lost writes, split brain.
    ControlPlane(lab::sim::ControlPlaneSimArgs),
    /// The whole system under faults (hosts, leases, control plane, recovery): rules S1, S3, L1.
    Cluster(lab::sim_cluster::ClusterSimArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(t) = cli.token {
        client::set_token(t);
    }
    if let Some(ca) = &cli.tls_ca {
        client::set_tls(node::http::tls::client_config(ca)?);
    }
    match cli.command {
        Command::Agent(args) => crate::agent::run(*args)?,
        Command::Members(args) => members::members(args)?,
        Command::Keygen => members::keygen()?,
        Command::Credential { op } => credential::run(op)?,
        Command::SleepHook(args) => sleep_hook(args)?,
        Command::Chaos(args) => lab::chaos::chaos(args)?,
        Command::DemoApp(args) => lab::demo_app::run(args)?,
        Command::Watchdog(args) => node::watchdog::daemon::run(&args.socket)?,
        Command::Sandbox(args) => lab::sandbox::run(args)?,
        Command::Sim {
            what: SimCommand::Membership(args),
        } => lab::sim::membership(args)?,
        Command::Sim {
            what: SimCommand::ControlPlane(args),
        } => lab::sim::control_plane(args)?,
        Command::Sim {
            what: SimCommand::Cluster(args),
        } => lab::sim_cluster::cluster(args)?,
        Command::Bench {
            what: BenchCommand::ControlPlane(args),
        } => lab::bench::control_plane::control_plane(args)?,
        Command::Bench {
            what: BenchCommand::Planner(args),
        } => lab::bench::planner::planner(args)?,
        Command::Bench {
            what: BenchCommand::Failover(args),
        } => lab::bench::failover::failover(args)?,
        Command::Bench {
            what: BenchCommand::ZoneFailure(args),
        } => lab::bench::zone_failure::zone_failure(args)?,
        Command::Segment { op, common } => segment::segment(&common, op)?,
        Command::Host { op, common } => host::host(&common, op)?,
        Command::Fence(args) => fence::fence(args)?,
        Command::Instance { op, common } => instance::instance(&common, op)?,
        Command::Placement { op, common } => crud::crud(&common, "placements", op)?,
        Command::Notification { op, common } => notification::notification(&common, op)?,
        Command::Servers { op, common } => servers::servers(&common, op)?,
        Command::Settings { op, common } => settings::settings(&common, op)?,
        Command::Status { common } => status::status(&common)?,
        Command::Events {
            since,
            watch,
            common,
        } => status::events(&common, since, watch)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `buoy sleep-hook pre|post`: never fails a sleep; says what it froze and what went wrong.
fn sleep_hook(args: SleepHookArgs) -> anyhow::Result<()> {
    use node::sleep::{Phase, hook};
    let phase = match args.phase.as_str() {
        "pre" => Phase::Pre,
        "post" => Phase::Post,
        other => {
            anyhow::bail!("sleep-hook {other}: expected pre or post (as systemd-sleep calls it)")
        }
    };
    match hook(&args.run_dir, phase, std::time::Duration::from_secs(5)) {
        Ok(lines) => {
            for l in lines {
                println!("buoy sleep-hook {}: {l}", args.phase);
            }
        }
        Err(e) => eprintln!(
            "buoy sleep-hook {}: {}: {e} (instances are not frozen; a suspend may let them run twice)",
            args.phase,
            args.run_dir.display()
        ),
    }
    Ok(())
}
