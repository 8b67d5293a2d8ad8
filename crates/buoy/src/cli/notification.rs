//! `buoy notification`: failure reports and the recoveries they caused.

use anyhow::{Context, Result};
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::crud::*;
use super::output::*;

/// `buoy notification ...`
#[derive(Subcommand, Debug)]
pub enum NotificationCommand {
    /// Report a failure (Masakari's notification): `--type COMPUTE_HOST --hostname node-1`.
    Create {
        #[arg(long = "type")]
        notification_type: String,
        #[arg(long)]
        hostname: String,
        /// Payload as JSON, e.g. '{"event":"STOPPED"}'.
        #[arg(long, default_value = "{\"event\":\"STOPPED\"}")]
        payload: String,
    },
    List,
    Show {
        id: String,
    },
}

pub fn notification(common: &Common, cmd: NotificationCommand) -> Result<()> {
    let addr = common.http;
    let v = match cmd {
        NotificationCommand::Create {
            notification_type,
            hostname,
            payload,
        } => {
            let payload: Value = serde_json::from_str(&payload).context("--payload is not JSON")?;
            let body = json!({
                "type": notification_type,
                "hostname": hostname,
                "generated_time": model::Timestamp::now().to_string(),
                "payload": payload,
            });
            client::call_json(addr, "POST", "/v1/notifications", Some(&body))?
        }
        NotificationCommand::List => {
            let v = client::call_json(addr, "GET", "/v1/notifications", None)?;
            if !common.json {
                print_table(
                    "notifications",
                    v["notifications"].as_array().map_or(&[][..], |a| a),
                    &Map::new(),
                );
                return Ok(());
            }
            v
        }
        NotificationCommand::Show { id } => {
            let v = client::call_json(
                addr,
                "GET",
                &format!("/v1/notifications/{}", encode(&id)),
                None,
            )?;
            if common.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print_notification(&v);
            }
            return Ok(());
        }
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print_object(&v);
    }
    Ok(())
}
