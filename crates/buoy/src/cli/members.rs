//! `buoy members` and `buoy keygen`.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

/// Flags of `buoy members`.
#[derive(Args, Debug)]
pub struct MembersArgs {
    /// HTTP address of any agent.
    #[arg(
        long,
        env = "BUOY_HTTP_ADDR",
        default_value = "127.0.0.1:7070",
        value_parser = super::crud::parse_http_addr
    )]
    pub http: SocketAddr,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The credential file of the agent's host (its `--credential`): signs the call, for an
    /// agent that has no tokens file (a host answers its own routes only to signed calls).
    #[arg(long, env = "BUOY_CREDENTIAL")]
    pub credential: Option<std::path::PathBuf>,
}

pub fn members(args: MembersArgs) -> Result<()> {
    let path = "/v1/members";
    let key = match &args.credential {
        Some(file) => Some(
            node::identity::HostKey::load_any(file)
                .with_context(|| format!("--credential {}", file.display()))?,
        ),
        None => None,
    };
    let v = client::call_json_with(args.http, "GET", path, None, |body| match &key {
        Some(k) => k
            .sign_call_now("operator", "GET", path, body)
            .headers()
            .into_iter()
            .collect(),
        None => Vec::new(),
    })?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = v["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            [
                &m["name"],
                &m["address"],
                &m["state"],
                &m["incarnation"],
                &m["segment"],
                &m["role"],
                &m["capacity"]["cpus"],
                &m["capacity"]["memory_mb"],
            ]
            .into_iter()
            .map(super::output::text)
            .collect()
        })
        .collect();
    super::output::print_rows(
        &[
            "NAME",
            "ADDRESS",
            "STATE",
            "INCARNATION",
            "SEGMENT",
            "ROLE",
            "CPUS",
            "MEMORY_MB",
        ],
        &rows,
    );
    println!(
        "(view of {}, local health {})",
        v["self"].as_str().unwrap_or("?"),
        v["local_health"]
    );
    Ok(())
}

/// `buoy keygen`: prints a new random 256-bit key, as hex.
pub fn keygen() -> Result<()> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
    println!("{}", swim::keyring::Key::from_bytes(k).to_hex());
    Ok(())
}
