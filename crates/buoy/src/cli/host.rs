//! `buoy host`: the generic commands plus `enable`.

use anyhow::Result;
use clap::Subcommand;

use super::crud::*;

/// `buoy host ...`: the common operations, plus enable.
#[derive(Subcommand, Debug)]
pub enum HostCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Return a failed host to service once it is back (alive and renewing its lease).
    Enable { name: String },
}

pub fn host(common: &Common, op: HostCommand) -> Result<()> {
    match op {
        HostCommand::Crud(op) => crud(common, "hosts", op),
        HostCommand::Enable { name } => {
            let path = format!("/v1/hosts/{}/enable", encode(&name));
            let v = client::call_json(common.http, "POST", &path, Some(&serde_json::json!({})))?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!("host {name} enabled: it takes work again");
            }
            Ok(())
        }
    }
}
