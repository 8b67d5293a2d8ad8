//! `buoy status` (the control plane and membership at a glance) and `buoy events` (the
//! change stream).

use anyhow::Result;
use serde_json::Value;

use super::crud::*;
use super::output::*;

pub fn status(common: &Common) -> Result<()> {
    let v = client::call_json(common.http, "GET", "/v1/status", None)?;
    if common.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let r = &v["raft"];
    println!("agent        {}", text(&v["agent"]));
    println!(
        "leader       {}",
        v["leader"]["name"].as_str().unwrap_or("(none yet)")
    );
    println!("role         {}", text(&r["role"]));
    println!("term         {}", text(&r["term"]));
    println!(
        "log index    {} (applied {})",
        text(&r["last_log_index"]),
        text(&r["last_applied"])
    );
    let voters: Vec<String> = r["voters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| text(&s["name"]))
        .collect();
    println!("voters       {}", voters.join(", "));
    let m = &v["members"];
    let by_state: Vec<String> = m["by_state"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{} {k}", text(n)))
        .collect();
    println!(
        "members      {} alive of {} ({})",
        text(&m["alive"]),
        text(&m["total"]),
        by_state.join(", ")
    );
    Ok(())
}

/// `buoy events [--since N] [--watch]`: prints changes as they are applied.
pub fn events(common: &Common, since: Option<u64>, watch: bool) -> Result<()> {
    let path = format!("/v1/events?since={}&follow={watch}", since.unwrap_or(0));
    let mut event = String::new();
    client::stream_lines(common.http, &path, |line| {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(data) = line.strip_prefix("data: ") {
            if common.json {
                println!("{data}");
            } else if let Ok(v) = serde_json::from_str::<Value>(data) {
                if event == "reset" {
                    println!(
                        "(history dropped before {}: re-read the lists)",
                        text(&v["since"])
                    );
                } else {
                    let o = &v["object"]["object"];
                    let name = o["name"].as_str().or(o["hostname"].as_str()).unwrap_or("");
                    println!(
                        "{:>6}  {}  {:<12} {:<8} {} {}",
                        text(&v["index"]),
                        text(&v["at"]),
                        text(&v["kind"]),
                        text(&v["action"]),
                        name,
                        text(&v["id"])
                    );
                }
            }
        }
        true
    })
}
