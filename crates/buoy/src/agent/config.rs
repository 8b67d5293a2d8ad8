//! The agent's configuration: a TOML file, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use node::gossip::timing::TimingOverrides;
use serde::Deserialize;

/// The config file, as written by the operator. Every field is optional; unknown fields are
/// rejected so typos do not pass silently.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub bind: Option<SocketAddr>,
    pub advertise: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    #[serde(default)]
    pub join: Vec<SocketAddr>,
    pub profile: Option<String>,
    pub keyring: Option<PathBuf>,
    pub label: Option<String>,
    pub enable_fault_injection: Option<bool>,
    pub udp_payload: Option<usize>,
    /// Control-plane server settings (`--server`, `--bootstrap-expect`, `--data-dir`).
    pub server: Option<bool>,
    pub bootstrap_expect: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub snapshot_every: Option<u64>,
    pub masakari_http: Option<SocketAddr>,
    pub tokens: Option<PathBuf>,
    pub cluster_secret: Option<PathBuf>,
    pub credential: Option<PathBuf>,
    pub unsafe_no_host_identity: Option<bool>,
    pub unsafe_no_gossip_encryption: Option<bool>,
    /// TLS for the API and agent-to-agent calls (`--tls-cert`, `--tls-key`, `--tls-ca`).
    /// Lease timing (`--lease-ttl`, `--lease-renew`), as duration text.
    pub lease_ttl: Option<String>,
    pub lease_renew: Option<String>,
    /// Socket of this host's `buoy watchdog`.
    pub watchdog: Option<PathBuf>,
    /// A hardware watchdog device (/dev/watchdog).
    pub watchdog_device: Option<PathBuf>,
    /// Run instances without any watchdog (`--unsafe-no-watchdog`).
    pub unsafe_no_watchdog: Option<bool>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub metadata: MetadataConfig,
    #[serde(default)]
    pub timing: TimingOverrides,
}

/// What the host announces about itself.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataConfig {
    pub segment: Option<String>,
    pub role: Option<String>,
    pub cpus: Option<u32>,
    pub memory_mb: Option<u64>,
    #[serde(default)]
    pub addresses: Vec<AddressConfig>,
}

/// One extra network of the host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressConfig {
    pub label: String,
    pub address: SocketAddr,
}

/// Reads and parses a config file, naming the file and the problem on failure.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn unknown_fields_in_the_config_file_are_rejected() {
        let e = toml::from_str::<FileConfig>("nmae = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("nmae"), "{e}");
        let ok: FileConfig =
            toml::from_str("name = \"h1\"\n[timing]\nprobe_interval = \"300ms\"\n").unwrap();
        let mut c = swim::Config::lan();
        ok.timing.apply(&mut c).unwrap();
        assert_eq!(c.probe_interval, Duration::from_millis(300));
    }

    #[test]
    fn the_readme_config_file_example_is_valid() {
        let readme = include_str!("../../../../README.md");
        let start = readme
            .find("A config file holds the same settings")
            .expect("the README's config section");
        let block = readme[start..]
            .split("```toml\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .expect("its toml block");
        let c: FileConfig = toml::from_str(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert_eq!(c.name.as_deref(), Some("host-1"));
        let mut t = swim::Config::lan();
        c.timing.apply(&mut t).unwrap();
        assert_eq!(t.probe_interval, Duration::from_millis(150));
    }
}
