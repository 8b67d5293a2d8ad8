//! The operator's overrides of a gossip timing profile (`[timing]` in the agent's config
//! file, `--timing KEY=VALUE` in `buoy sim membership`): one field per `swim::Config` setting,
//! durations as text such as `250ms` or `3s`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

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
    pub gossip_fresh_below: Option<u32>,
    /// Gossip refutations without metadata (false while upgrading from an older build).
    pub short_refutations: Option<bool>,
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
        if let Some(v) = self.gossip_fresh_below {
            c.gossip_fresh_below = v;
        }
        if let Some(v) = self.short_refutations {
            c.short_refutations = v;
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

/// Overrides from `KEY=VALUE` pairs (`probe_interval=200ms`, `gossip_nodes=3`), as the
/// simulator's `--timing` flag gives them. Unknown keys and values of the wrong type are
/// refused, naming the key.
pub fn from_pairs<S: AsRef<str>>(pairs: &[S]) -> Result<TimingOverrides> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let pair = pair.as_ref();
        let Some((key, value)) = pair.split_once('=') else {
            bail!("timing `{pair}`: expected KEY=VALUE, e.g. probe_interval=200ms");
        };
        let (key, value) = (key.trim(), value.trim());
        let value = if let Ok(n) = value.parse::<u64>() {
            serde_json::Value::from(n)
        } else if let Ok(b) = value.parse::<bool>() {
            serde_json::Value::from(b)
        } else {
            serde_json::Value::from(value)
        };
        map.insert(key.to_string(), value);
    }
    serde_json::from_value(serde_json::Value::Object(map))
        .map_err(|e| anyhow::anyhow!("timing: {e}"))
}

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
    fn pairs_override_a_profile_and_bad_ones_are_named() {
        let o = from_pairs(&[
            "probe_interval=200ms",
            "gossip_nodes=3",
            "tcp_fallback=false",
        ])
        .unwrap();
        let mut c = swim::Config::lan();
        o.apply(&mut c).unwrap();
        assert_eq!(c.probe_interval, Duration::from_millis(200));
        assert_eq!(c.gossip_nodes, 3);
        assert!(!c.tcp_fallback);
        let e = from_pairs(&["probe_intreval=200ms"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("probe_intreval"), "{e}");
        let e = from_pairs(&["gossip_nodes=many"]).unwrap_err().to_string();
        assert!(
            e.contains("gossip_nodes") || e.contains("invalid type"),
            "{e}"
        );
        assert!(from_pairs(&["probe_interval"]).is_err());
    }
}
