//! The agent's configuration: a TOML file, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
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

/// Per-field overrides of the timing profile. Durations are strings such as `250ms` or `3s`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimingOverrides {
    pub probe_interval: Option<String>,
    pub probe_timeout: Option<String>,
    pub indirect_checks: Option<usize>,
    pub tcp_fallback: Option<bool>,
    pub suspicion_mult: Option<u32>,
    pub suspicion_min: Option<String>,
    pub suspicion_max_mult: Option<u32>,
    pub suspicion_confirmations: Option<u32>,
    pub second_hand_margin: Option<String>,
    pub awareness_max: Option<u32>,
    pub retransmit_mult: Option<u32>,
    pub gossip_interval: Option<String>,
    pub gossip_nodes: Option<usize>,
    pub gossip_to_the_dead: Option<String>,
    pub push_pull_interval: Option<String>,
    pub reconnect_interval: Option<String>,
    pub stream_timeout: Option<String>,
    pub reap_after: Option<String>,
    pub join_retry_interval: Option<String>,
    pub max_broadcast_queue: Option<usize>,
    /// Members known at most (default 16384): past it, new names are refused and counted.
    pub max_members: Option<usize>,
}

/// Reads and parses a config file, naming the file and the problem on failure.
pub fn load(path: &Path) -> Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is not valid", path.display()))
}

/// Parses `250ms`, `3s`, `2m` or `1h`.
pub fn parse_duration(field: &str, s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .with_context(|| {
            format!("timing.{field} = `{s}`: expected a duration such as 250ms, 3s or 2m")
        })?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => bail!("timing.{field} = `{s}`: unknown unit `{unit}`, use ms, s, m or h"),
    };
    Ok(Duration::from_secs_f64(secs))
}

impl TimingOverrides {
    /// Applies the overrides to a profile; the result is validated by the caller.
    pub fn apply(&self, c: &mut swim::Config) -> Result<()> {
        let d = |field: &str, v: &Option<String>, slot: &mut Duration| -> Result<()> {
            if let Some(s) = v {
                *slot = parse_duration(field, s)?;
            }
            Ok(())
        };
        d(
            "probe_interval",
            &self.probe_interval,
            &mut c.probe_interval,
        )?;
        d("probe_timeout", &self.probe_timeout, &mut c.probe_timeout)?;
        d("suspicion_min", &self.suspicion_min, &mut c.suspicion_min)?;
        d(
            "second_hand_margin",
            &self.second_hand_margin,
            &mut c.second_hand_margin,
        )?;
        d(
            "gossip_interval",
            &self.gossip_interval,
            &mut c.gossip_interval,
        )?;
        d(
            "gossip_to_the_dead",
            &self.gossip_to_the_dead,
            &mut c.gossip_to_the_dead,
        )?;
        d(
            "push_pull_interval",
            &self.push_pull_interval,
            &mut c.push_pull_interval,
        )?;
        d(
            "reconnect_interval",
            &self.reconnect_interval,
            &mut c.reconnect_interval,
        )?;
        d(
            "stream_timeout",
            &self.stream_timeout,
            &mut c.stream_timeout,
        )?;
        d("reap_after", &self.reap_after, &mut c.reap_after)?;
        d(
            "join_retry_interval",
            &self.join_retry_interval,
            &mut c.join_retry_interval,
        )?;
        if let Some(v) = self.indirect_checks {
            c.indirect_checks = v;
        }
        if let Some(v) = self.tcp_fallback {
            c.tcp_fallback = v;
        }
        if let Some(v) = self.suspicion_mult {
            c.suspicion_mult = v;
        }
        if let Some(v) = self.suspicion_max_mult {
            c.suspicion_max_mult = v;
        }
        if let Some(v) = self.suspicion_confirmations {
            c.suspicion_confirmations = v;
        }
        if let Some(v) = self.awareness_max {
            c.awareness_max = v;
        }
        if let Some(v) = self.retransmit_mult {
            c.retransmit_mult = v;
        }
        if let Some(v) = self.gossip_nodes {
            c.gossip_nodes = v;
        }
        if let Some(v) = self.max_broadcast_queue {
            c.max_broadcast_queue = v;
        }
        if let Some(v) = self.max_members {
            c.max_members = v;
        }
        Ok(())
    }
}

/// The keyring file: hex keys, the first one primary.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bad_ones_name_the_field() {
        assert_eq!(
            parse_duration("x", "250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration("x", "1.5s").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("x", "2m").unwrap(), Duration::from_secs(120));
        let e = parse_duration("probe_interval", "fast")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timing.probe_interval"), "{e}");
        assert!(parse_duration("x", "5 parsecs").is_err());
    }

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
        assert_eq!(t.probe_interval, Duration::from_millis(100));
    }
}
