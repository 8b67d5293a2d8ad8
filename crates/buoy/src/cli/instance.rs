//! `buoy instance`: the generic commands plus the instance's own (logs, reset, promote).

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
    /// Forget where it failed (like Pacemaker's cleanup) and try again: a copy blocked
    /// because it failed on every usable host starts again where it is.
    Reset { name: String },
    /// Switch a promotable instance's primary over on purpose: the copy on HOST is promoted
    /// once it is ready (unpromoted, with a promotion score), after the promoted copy is
    /// demoted. `--clear` lets the agents' scores decide again.
    Promote {
        name: String,
        /// The host whose copy to promote.
        #[arg(long, required_unless_present = "clear", conflicts_with = "clear")]
        host: Option<String>,
        /// Forget the preferred host.
        #[arg(long)]
        clear: bool,
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
            let mut printed = false;
            client::stream_lines(common.http, &path, |line| {
                printed = true;
                println!("{line}");
                true
            })?;
            if !printed {
                // Never silent: say that the log is empty, and how the instance stands.
                let status = client::call_json(
                    common.http,
                    "GET",
                    &format!("/v1/instances/{}", encode(&name)),
                    None,
                )
                .ok();
                let state = status.map_or(String::new(), |v| match v["reason"].as_str() {
                    Some(r) => format!(" (status {}: {r})", super::output::text(&v["status"])),
                    None => format!(" (status {})", super::output::text(&v["status"])),
                });
                eprintln!("instance {name} has written nothing to its log yet{state}");
            }
            Ok(())
        }
        InstanceCommand::Promote { name, host, clear } => {
            let path = format!("/v1/instances/{}", encode(&name));
            let body = serde_json::json!({ "preferred_promoted": if clear { None } else { host.clone() } });
            let v = client::call_json(common.http, "PATCH", &path, Some(&body))?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if let Some(h) = host {
                println!(
                    "instance {name}: the copy on {h} is promoted once it is ready, after the promoted copy is demoted; `buoy instance show {name}` shows each copy's role"
                );
            } else {
                println!("instance {name}: no preferred host; the agents' promotion scores decide");
            }
            Ok(())
        }
        InstanceCommand::Reset { name } => {
            let path = format!("/v1/instances/{}/reset", encode(&name));
            let v = client::call_json(common.http, "POST", &path, Some(&serde_json::json!({})))?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "instance {name}: {} failure record(s) cleared, {} blocked cop(ies) started again",
                    v["failures_cleared"], v["copies_restarted"]
                );
            }
            Ok(())
        }
    }
}
