//! `buoy settings`: the cluster-wide settings kept in the replicated state.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use super::crud::*;

/// `buoy settings ...`
#[derive(Subcommand, Debug)]
pub enum SettingsCommand {
    /// Show the cluster's settings.
    Show,
    /// Set the lease timing every leader grants. A shorter TTL detects failures sooner but
    /// needs every host to renew well within it (`--lease-renew` on the agents).
    Lease {
        /// How long a granted lease lasts (e.g. 3s; default: as set).
        #[arg(long)]
        ttl: Option<String>,
        /// How long past a lease's end a leader still waits (default: a tenth of the TTL).
        #[arg(long)]
        drift_margin: Option<String>,
        /// How long past its lease's end a host may still run OCF `stop`s before it kills
        /// what is left of those resources (default: as set, 3s at first). A failover of a
        /// host with OCF copies takes at least TTL + drift margin + this.
        #[arg(long)]
        stop_grace: Option<String>,
    },
}

pub fn settings(common: &Common, cmd: SettingsCommand) -> Result<()> {
    let addr = common.http;
    let v = match cmd {
        SettingsCommand::Show => client::call_json(addr, "GET", "/v1/settings", None)?,
        SettingsCommand::Lease {
            ttl,
            drift_margin,
            stop_grace,
        } => {
            let mut body = json!({});
            for (field, v) in [
                ("ttl", ttl),
                ("drift_margin", drift_margin),
                ("stop_grace", stop_grace),
            ] {
                if let Some(v) = v {
                    body[field] = Value::String(v);
                }
            }
            client::call_json(addr, "PUT", "/v1/settings/lease", Some(&body))?
        }
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let l = &v["lease"];
    if l.is_null() {
        println!("lease: not set yet (the first leader writes its own --lease-ttl)");
    } else {
        println!(
            "lease: ttl {} ms, drift margin {} ms, ceiling {} ms (a new leader waits out the ceiling)\nstop grace: {} ms, ceiling {} ms (OCF stops past a lease's end are cut off then)",
            l["ttl_ms"],
            l["drift_margin_ms"],
            l["ceiling_ms"],
            l["stop_grace_ms"],
            l["stop_grace_ceiling_ms"]
        );
    }
    Ok(())
}
