//! `buoy servers`: list, add and remove control-plane servers.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::crud::*;
use super::output::*;

/// `buoy servers ...`
#[derive(Subcommand, Debug)]
pub enum ServersCommand {
    /// The voters and learners, and who leads.
    List,
    /// Add a running `--server` agent to the voters.
    Add { name: String },
    /// Remove a server from the voters.
    Remove { name: String },
}

pub fn servers(common: &Common, cmd: ServersCommand) -> Result<()> {
    let addr = common.http;
    let v = match cmd {
        ServersCommand::List => client::call_json(addr, "GET", "/v1/servers", None)?,
        ServersCommand::Add { name } => {
            client::call_json(addr, "POST", "/v1/servers", Some(&json!({"name": name})))?
        }
        ServersCommand::Remove { name } => client::call_json(
            addr,
            "DELETE",
            &format!("/v1/servers/{}", encode(&name)),
            None,
        )?,
    };
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let leader = v["leader"]["name"].as_str().unwrap_or("");
    let mut rows = Vec::new();
    for (list, role) in [("voters", "voter"), ("learners", "learner")] {
        for s in v[list].as_array().into_iter().flatten() {
            let name = text(&s["name"]);
            let role = if name == leader { "leader" } else { role };
            rows.push(vec![name, text(&s["http"]), role.to_string()]);
        }
    }
    print_rows(&["NAME", "HTTP", "ROLE"], &rows);
    println!("(term {})", text(&v["term"]));
    Ok(())
}
