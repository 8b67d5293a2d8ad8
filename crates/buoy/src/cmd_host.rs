//! Operator commands beyond create/list/show/update/delete: `buoy host enable`,
//! `buoy segment capacity`, `buoy fence`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use crate::client;
use crate::cmd_state::{Common, Crud, crud};

/// `buoy host ...`: the common operations, plus enable.
#[derive(Subcommand, Debug)]
pub enum HostCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Return a failed host to service once it is back (alive and renewing its lease).
    Enable { name: String },
}

/// `buoy segment ...`: the common operations, plus capacity.
#[derive(Subcommand, Debug)]
pub enum SegmentCommand {
    #[command(flatten)]
    Crud(Crud),
    /// Failover headroom: capacity left after losing the `tolerate_host_failures` largest hosts.
    Capacity { name: String },
}

/// `buoy fence HOST`: run a host's fence device (STONITH).
#[derive(Args, Debug)]
pub struct FenceArgs {
    /// The host's name or id.
    pub host: String,
    /// The fence-agents action: off (the default), on, reboot, status, monitor, metadata, list.
    #[arg(long, default_value = "off")]
    pub action: String,
    #[command(flatten)]
    pub common: Common,
}

fn path_part(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn host(common: &Common, op: HostCommand) -> Result<()> {
    match op {
        HostCommand::Crud(op) => crud(common, "hosts", op),
        HostCommand::Enable { name } => {
            let path = format!("/v1/hosts/{}/enable", path_part(&name));
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

pub fn segment(common: &Common, op: SegmentCommand) -> Result<()> {
    match op {
        SegmentCommand::Crud(op) => crud(common, "segments", op),
        SegmentCommand::Capacity { name } => {
            let path = format!("/v1/segments/{}/capacity", path_part(&name));
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

pub fn fence(args: FenceArgs) -> Result<()> {
    let path = format!("/v1/hosts/{}/fence", path_part(&args.host));
    let v = client::call_json(
        args.common.http,
        "POST",
        &path,
        Some(&serde_json::json!({"action": args.action})),
    )?;
    if args.common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let run = &v["run"];
    let out = run["stdout"].as_str().unwrap_or("");
    if !out.is_empty() {
        print!("{out}");
        if !out.ends_with('\n') {
            println!();
        }
    }
    match (v["fenced"].as_bool(), run["exit_code"].as_i64()) {
        (Some(true), _) => println!(
            "host {} fenced ({}): its instances move now",
            args.host, args.action
        ),
        (_, Some(0)) => println!("fence agent: {} succeeded", args.action),
        (_, Some(2)) if args.action == "status" => println!("host {} is off", args.host),
        (_, code) => bail!("fence agent: {} ended with exit code {code:?}", args.action),
    }
    Ok(())
}
