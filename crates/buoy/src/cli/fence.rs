//! `buoy fence`: runs a host's fence device (STONITH).

use anyhow::{Result, bail};
use clap::Args;

use super::crud::*;

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

pub fn fence(args: FenceArgs) -> Result<()> {
    let path = format!("/v1/hosts/{}/fence", encode(&args.host));
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
        (_, Some(0)) if args.action == "reboot" => println!(
            "fence agent: reboot succeeded; host {} may be up again, so it counts as down only once its lease is over",
            args.host
        ),
        (_, Some(0)) => println!("fence agent: {} succeeded", args.action),
        (_, Some(2)) if args.action == "status" => println!("host {} is off", args.host),
        (_, code) => bail!("fence agent: {} ended with exit code {code:?}", args.action),
    }
    Ok(())
}
