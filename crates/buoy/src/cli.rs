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
        Command::Sim { what: SimCommand::Membership(args) } => crate::cmd_sim::membership(args)?,
    }
    Ok(ExitCode::SUCCESS)
}
