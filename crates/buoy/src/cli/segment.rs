//! `buoy segment`: the generic commands plus `capacity`.

use anyhow::Result;
use clap::Subcommand;

use super::crud::*;

/// `buoy segment ...`: the common operations, plus capacity.
#[derive(Subcommand, Debug)]
pub enum SegmentCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Failover headroom: capacity left after losing the `tolerate_host_failures` largest hosts.
    Capacity { name: String },
}

pub fn segment(common: &Common, op: SegmentCommand) -> Result<()> {
    match op {
        SegmentCommand::Crud(op) => crud(common, "segments", op),
        SegmentCommand::Capacity { name } => {
            let path = format!("/v1/segments/{}/capacity", encode(&name));
            let v = client::call_json(common.http, "GET", &path, None)?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let amount = |a: &serde_json::Value| {
                format!(
                    "{:>8} cpu {:>10} MB",
                    a["cpu_millis"].as_f64().unwrap_or(0.0) / 1000.0,
                    a["memory_mb"].as_i64().unwrap_or(0)
                )
            };
            println!(
                "segment {}: {} usable host(s), tolerates {} host failure(s)",
                v["segment"].as_str().unwrap_or(&name),
                v["usable_hosts"],
                v["tolerate_host_failures"]
            );
            println!("  capacity  {}", amount(&v["capacity"]));
            println!(
                "  reserve   {}  (the largest hosts' share)",
                amount(&v["reserve"])
            );
            println!("  used      {}", amount(&v["used"]));
            println!("  headroom  {}", amount(&v["headroom"]));
            let h = &v["headroom"];
            if h["cpu_millis"].as_i64().unwrap_or(0) < 0 || h["memory_mb"].as_i64().unwrap_or(0) < 0
            {
                println!("  short: losing the largest hosts now would leave instances unplaced");
            }
            Ok(())
        }
    }
}
