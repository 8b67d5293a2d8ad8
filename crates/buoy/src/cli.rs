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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Buoy agent on this host.
    Agent(Box<crate::agent::AgentArgs>),
    /// List the cluster's members as one agent sees them.
    Members(crate::cmd_members::MembersArgs),
    /// Print a new random encryption key (hex) for a keyring file.
    Keygen,
    /// Start a whole local cluster on this machine and show it working.
    Sandbox(crate::sandbox::SandboxArgs),
    /// Deterministic simulations.
    Sim {
        #[command(subcommand)]
        what: SimCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum SimCommand {
    /// Membership under loss, crashes and stalls: detection time, false positives, bandwidth.
    Membership(MembershipArgs),
}

pub fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Agent(args) => crate::agent::run(*args)?,
        Command::Members(args) => crate::cmd_members::members(args)?,
        Command::Keygen => crate::cmd_members::keygen()?,
        Command::Sandbox(args) => crate::sandbox::run(args)?,
        Command::Sim {
            what: SimCommand::Membership(args),
        } => crate::cmd_sim::membership(args)?,
    }
    Ok(ExitCode::SUCCESS)
}
