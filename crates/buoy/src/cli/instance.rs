//! `buoy instance`: the generic commands plus the instance's own (logs).

use anyhow::Result;
use clap::Subcommand;

use super::crud::*;

/// `buoy instance ...`: the common operations, plus its logs.
#[derive(Subcommand, Debug)]
pub enum InstanceCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Show an instance's output, from the host that runs it: `buoy instance logs web -f`.
    Logs {
        name: String,
        /// Keep printing what it writes.
        #[arg(short, long)]
        follow: bool,
        /// Lines from the end to show first.
        #[arg(long, default_value_t = 100)]
        tail: usize,
        /// Which copy of a clone instance.
        #[arg(long, default_value_t = 0)]
        replica: u32,
    },
}

pub fn instance(common: &Common, op: InstanceCommand) -> Result<()> {
    match op {
        InstanceCommand::Crud(op) => crud(common, "instances", op),
        InstanceCommand::Logs {
            name,
            follow,
            tail,
            replica,
        } => {
            let path = format!(
                "/v1/instances/{}/logs?tail={tail}&replica={replica}&follow={follow}",
                encode(&name)
            );
            client::stream_lines(common.http, &path, |line| {
                println!("{line}");
                true
            })
        }
    }
}
