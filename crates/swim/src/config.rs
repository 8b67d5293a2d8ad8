//! Protocol timings and limits, with the `lan`, `wan` and `local` profiles.

use std::time::Duration;

use thiserror::Error;

/// Every timing and limit of the protocol. Start from a profile and override fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Time between two probes of this member (scaled up by the local health score).
    pub probe_interval: Duration,
    /// How long to wait for a direct ack before asking others to probe (also scaled).
    pub probe_timeout: Duration,
    /// Members asked to probe indirectly when the direct probe times out.
    pub indirect_checks: usize,
    /// Also try a stream (TCP) probe when the UDP probe times out, so one-way UDP loss is survived.
    pub tcp_fallback: bool,
    /// Suspicion timeout multiplier: the minimum timeout is `mult * log10(N) * probe_interval`.
    pub suspicion_mult: u32,
    /// Floor of the minimum suspicion timeout: must exceed the longest stall a healthy member
    /// may have (it needs that long to wake up and refute).
    pub suspicion_min: Duration,
    /// The maximum suspicion timeout (no confirmations yet) is this times the minimum.
    pub suspicion_max_mult: u32,
    /// Independent confirmations that bring a suspicion down to its minimum timeout.
    pub suspicion_confirmations: u32,
    /// Added to the suspicion timeout of a member that only heard of the suspicion: the
    /// suspect answers its accusers directly, others must wait for the gossiped refutation.
    pub second_hand_margin: Duration,
    /// Largest local health score (Lifeguard); probe timings stretch up to `(max + 1)` times.
    pub awareness_max: u32,
    /// Each broadcast is sent `retransmit_mult * ceil(log10(N + 1))` times (at least
    /// [`MIN_RETRANSMITS`]).
    pub retransmit_mult: u32,
    /// Time between dedicated gossip rounds.
    pub gossip_interval: Duration,
    /// Members each gossip round sends to.
    pub gossip_nodes: usize,
    /// A gossip round goes out only while some broadcast has been sent fewer times than this:
    /// fresh news spreads at once, older news rides the probes and acks (and the rounds fresh
    /// news makes). `u32::MAX` sends a round whenever anything is queued.
    pub gossip_fresh_below: u32,
    /// Gossip a refutation as name and incarnation only (the accuser and a few others still
    /// get the full alive with the metadata). Agents built before this form existed skip it,
    /// so during a rolling upgrade from such a build set it to false until every agent runs
    /// the new one.
    pub short_refutations: bool,
    /// Keep gossiping to a member this long after it died, so a falsely dead member learns and refutes.
    pub gossip_to_the_dead: Duration,
    /// Base interval of full-state push-pull; it grows with log2 of the cluster size past 32 members.
    pub push_pull_interval: Duration,
    /// Interval between push-pull attempts to a random dead member (heals partitions).
    pub reconnect_interval: Duration,
    /// How long a stream exchange (push-pull, fallback probe) may take.
    pub stream_timeout: Duration,
    /// Forget dead and left members this long after they went.
    pub reap_after: Duration,
    /// Wait between two rounds of join attempts while no seed answers.
    pub join_retry_interval: Duration,
    /// Largest UDP payload the core produces (the runtime subtracts encryption overhead first).
    pub max_packet_bytes: usize,
    /// Broadcasts queued at most; past it the least urgent, most sent ones are dropped.
    pub max_broadcast_queue: usize,
    /// Members known at most (this one included): past it, a new name is refused and counted
    /// (`Counters::members_refused`), so a flood of invented members cannot grow the table.
    pub max_members: usize,
}

/// Each member sends a broadcast at least this many times, whatever the cluster size. With a
/// few members, `retransmit_mult` alone allows 3 or 4 sends, and a round's targets may include
/// the member just declared dead (gossip to the dead): in a simulated 5-member cluster with 3
/// sends, one death in 100 reached the last member only after 5-9 s (its own suspicion timed
/// out), against at most 2.8 s with 6 (BENCHMARKS.md).
pub const MIN_RETRANSMITS: u32 = 6;

/// A config that would make the protocol misbehave.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("unknown profile `{0}`: expected lan, wan or local")]
    UnknownProfile(String),
}

impl Config {
    /// Hosts on one data-center network: sub-millisecond RTT, detection in a few seconds.
    pub fn lan() -> Config {
        Config {
            // 120 ms rather than 100: 17% fewer probe datagrams (each carries 41 bytes of
            // encryption), 0.1-0.2 s later detection at N = 1,000 (BENCHMARKS.md).
            probe_interval: Duration::from_millis(120),
            probe_timeout: Duration::from_millis(60),
            indirect_checks: 3,
            tcp_fallback: true,
            suspicion_mult: 4,
            suspicion_min: Duration::from_millis(2100),
            suspicion_max_mult: 4,
            suspicion_confirmations: 2,
            second_hand_margin: Duration::from_millis(500),
            awareness_max: 8,
            // Every broadcast rides 3 * ceil(log10(N + 1)) packets; a dedicated round (to 2
            // members) goes out only for news not sent yet, older news rides the probes and
            // acks. Measured at N = 1,000 under stalls and loss: half the datagrams of rounds
            // to 4 whenever anything is queued, the same detection (BENCHMARKS.md).
            retransmit_mult: 3,
            gossip_interval: Duration::from_millis(100),
            gossip_nodes: 2,
            gossip_fresh_below: 1,
            short_refutations: true,
            gossip_to_the_dead: Duration::from_secs(15),
            push_pull_interval: Duration::from_secs(60),
            reconnect_interval: Duration::from_secs(5),
            stream_timeout: Duration::from_secs(2),
            reap_after: Duration::from_secs(300),
            join_retry_interval: Duration::from_secs(1),
            max_packet_bytes: 1400,
            max_broadcast_queue: 4096,
            max_members: 16_384,
        }
    }

    /// Hosts across sites: longer timings to ride out WAN latency and loss.
    pub fn wan() -> Config {
        Config {
            probe_interval: Duration::from_secs(3),
            probe_timeout: Duration::from_secs(2),
            suspicion_mult: 6,
            suspicion_min: Duration::from_secs(15),
            second_hand_margin: Duration::from_secs(3),
            gossip_interval: Duration::from_millis(500),
            gossip_to_the_dead: Duration::from_secs(60),
            push_pull_interval: Duration::from_secs(120),
            reconnect_interval: Duration::from_secs(30),
            stream_timeout: Duration::from_secs(10),
            join_retry_interval: Duration::from_secs(5),
            ..Config::lan().with_eager_gossip()
        }
    }

    /// Every agent on one machine (sandbox, tests): fast, as loopback never drops.
    pub fn local() -> Config {
        Config {
            probe_interval: Duration::from_millis(100),
            probe_timeout: Duration::from_millis(50),
            suspicion_mult: 3,
            suspicion_min: Duration::from_millis(1000),
            second_hand_margin: Duration::from_millis(300),
            gossip_interval: Duration::from_millis(50),
            push_pull_interval: Duration::from_secs(15),
            reconnect_interval: Duration::from_secs(2),
            stream_timeout: Duration::from_secs(1),
            join_retry_interval: Duration::from_millis(500),
            ..Config::lan().with_eager_gossip()
        }
    }

    /// Gossip as the profiles did before `lan` was tuned for bytes on the wire: rounds to 4
    /// members whenever anything is queued, each broadcast sent `4 * ceil(log10(N + 1))`
    /// times. Kept by `wan` (not measured with the new settings) and `local` (a handful of
    /// agents on one machine, where bytes do not matter and the tests' timings were set).
    pub fn with_eager_gossip(self) -> Config {
        Config {
            retransmit_mult: 4,
            gossip_nodes: 4,
            gossip_fresh_below: u32::MAX,
            ..self
        }
    }

    /// The profile called `name`.
    pub fn profile(name: &str) -> Result<Config, ConfigError> {
        match name {
            "lan" => Ok(Config::lan()),
            "wan" => Ok(Config::wan()),
            "local" => Ok(Config::local()),
            other => Err(ConfigError::UnknownProfile(other.to_string())),
        }
    }

    /// Rejects settings that cannot work, naming the field and what is expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid {
                field,
                problem: problem.into(),
            })
        }
        if self.max_members < 2 {
            return bad(
                "max_members",
                "must be at least 2 (this member and one other)",
            );
        }
        if self.probe_interval.is_zero() {
            return bad("probe_interval", "must be greater than zero");
        }
        if self.probe_timeout.is_zero() || self.probe_timeout >= self.probe_interval {
            return bad(
                "probe_timeout",
                format!(
                    "{:?} must be above zero and below probe_interval ({:?})",
                    self.probe_timeout, self.probe_interval
                ),
            );
        }
        if self.gossip_interval.is_zero() {
            return bad("gossip_interval", "must be greater than zero");
        }
        if self.push_pull_interval.is_zero()
            || self.reconnect_interval.is_zero()
            || self.join_retry_interval.is_zero()
        {
            return bad(
                "push_pull_interval",
                "push_pull, reconnect and join_retry intervals must be above zero",
            );
        }
        if self.stream_timeout.is_zero() {
            return bad("stream_timeout", "must be greater than zero");
        }
        if self.suspicion_mult == 0 || self.suspicion_max_mult == 0 {
            return bad(
                "suspicion_mult",
                "suspicion_mult and suspicion_max_mult must be at least 1",
            );
        }
        if self.retransmit_mult == 0 {
            return bad("retransmit_mult", "must be at least 1");
        }
        if !(256..=65_000).contains(&self.max_packet_bytes) {
            return bad(
                "max_packet_bytes",
                format!("{} must be within 256..=65000", self.max_packet_bytes),
            );
        }
        if self.max_broadcast_queue < 16 {
            return bad("max_broadcast_queue", "must be at least 16");
        }
        Ok(())
    }

    /// The push-pull interval for a cluster of `n` members: grows past 32 members so the total
    /// anti-entropy traffic stays flat as the cluster grows.
    pub fn push_pull_interval_for(&self, n: usize) -> Duration {
        const BASE: f64 = 32.0;
        if n as f64 <= BASE {
            return self.push_pull_interval;
        }
        let mult = ((n as f64).log2() - BASE.log2()).ceil() + 1.0;
        self.push_pull_interval.mul_f64(mult)
    }

    /// How many times each broadcast is sent in a cluster of `n` members.
    pub fn retransmit_limit(&self, n: usize) -> u32 {
        let scale = ((n as f64) + 1.0).log10().ceil().max(1.0) as u32;
        (self.retransmit_mult * scale).max(MIN_RETRANSMITS)
    }

    /// How many times new metadata is sent in a cluster of `n` members: enough that the
    /// expected number of members missing it, `n * e^-limit` for random gossip, stays below
    /// 1e-5 (and never fewer than other broadcasts).
    pub fn announce_limit(&self, n: usize) -> u32 {
        let needed = ((n as f64) + 1.0).ln() + 1e5f64.ln();
        self.retransmit_limit(n).max(needed.ceil() as u32)
    }

    /// The broadcast limits for a cluster of `n` members.
    pub fn limits(&self, n: usize) -> crate::broadcast::Limits {
        crate::broadcast::Limits {
            normal: self.retransmit_limit(n),
            announce: self.announce_limit(n),
        }
    }

    /// The minimum suspicion timeout for a cluster of `n` members.
    pub fn suspicion_min_for(&self, n: usize) -> Duration {
        let scaled = self
            .probe_interval
            .mul_f64(f64::from(self.suspicion_mult) * (n.max(1) as f64).log10());
        scaled.max(self.suspicion_min)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::lan()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_is_valid() {
        for p in ["lan", "wan", "local"] {
            Config::profile(p).unwrap().validate().unwrap();
        }
        assert!(matches!(
            Config::profile("moon"),
            Err(ConfigError::UnknownProfile(_))
        ));
    }

    #[test]
    fn a_probe_timeout_longer_than_the_interval_is_rejected_with_the_field_name() {
        let c = Config {
            probe_timeout: Duration::from_secs(5),
            ..Config::lan()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("probe_timeout"), "{e}");
    }

    #[test]
    fn retransmit_limit_grows_with_log_n() {
        let c = Config::lan();
        assert_eq!(c.retransmit_limit(1), MIN_RETRANSMITS);
        assert_eq!(c.retransmit_limit(9), MIN_RETRANSMITS);
        assert_eq!(c.retransmit_limit(10), 6);
        assert_eq!(c.retransmit_limit(100), 9);
        assert_eq!(c.retransmit_limit(1000), 12);
        assert_eq!(c.retransmit_limit(10_000), 15);
        assert_eq!(c.clone().with_eager_gossip().retransmit_limit(1000), 16);
        assert_eq!(c.with_eager_gossip().retransmit_limit(5), MIN_RETRANSMITS);
    }

    #[test]
    fn metadata_is_sent_often_enough_that_almost_nobody_misses_it() {
        let c = Config::lan();
        for n in [10usize, 100, 900, 1000, 10_000] {
            let l = c.announce_limit(n);
            assert!(l >= c.retransmit_limit(n));
            assert!((n as f64) * (-(l as f64)).exp() < 1e-5, "n {n}: limit {l}");
        }
        assert_eq!(c.announce_limit(900), 19);
        assert_eq!(c.announce_limit(10_000), 21);
    }

    #[test]
    fn push_pull_slows_down_past_32_members() {
        let c = Config::lan();
        assert_eq!(c.push_pull_interval_for(10), c.push_pull_interval);
        assert_eq!(c.push_pull_interval_for(64), c.push_pull_interval * 2);
        assert_eq!(c.push_pull_interval_for(1000), c.push_pull_interval * 6);
        assert!(c.push_pull_interval_for(10_000) >= c.push_pull_interval * 9);
    }

    #[test]
    fn suspicion_minimum_has_a_floor_and_grows_with_the_cluster() {
        let c = Config::lan();
        assert_eq!(c.suspicion_min_for(5), c.suspicion_min);
        assert!(c.suspicion_min_for(10_000_000) > c.suspicion_min);
    }
}
