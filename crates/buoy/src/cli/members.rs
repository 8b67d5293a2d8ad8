//! `buoy members` and `buoy keygen`.

use std::net::SocketAddr;

use anyhow::Result;
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
}

pub fn members(args: MembersArgs) -> Result<()> {
    let v = client::get_json(args.http, "/v1/members")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<22} {:<8} {:>11} {:<12} {:<7} {:>5} {:>9}",
        "NAME", "ADDRESS", "STATE", "INCARNATION", "SEGMENT", "ROLE", "CPUS", "MEMORY_MB"
    );
    for m in v["members"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {:<22} {:<8} {:>11} {:<12} {:<7} {:>5} {:>9}",
            m["name"].as_str().unwrap_or("?"),
            m["address"].as_str().unwrap_or("?"),
            m["state"].as_str().unwrap_or("?"),
            m["incarnation"],
            m["segment"].as_str().unwrap_or(""),
            m["role"].as_str().unwrap_or(""),
            m["capacity"]["cpus"],
            m["capacity"]["memory_mb"],
        );
    }
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
