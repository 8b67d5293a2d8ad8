//! Lease timing for the whole cluster (rule S1). Every leader grants the same TTL and waits the
//! same drift margin, whatever its own configuration says; and because a leader elected after
//! another knows nothing of its grants, it must assume every host holds the longest lease any
//! leader may ever have granted: `ceiling`, which only grows.
//!
//! The stop grace bounds how long past its lease's end a host may still be stopping what it
//! ran (an OCF resource's `stop`): at the lease's end plus the grace, whatever is left of its
//! copies is killed (their cgroups). A leader waits lease end + drift margin + grace before a
//! copy of such a host runs elsewhere; like the TTL, a new leader assumes the longest grace
//! ever set (`stop_grace_ceiling`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// The shortest lease the cluster accepts.
pub const MIN_TTL: Duration = Duration::from_millis(200);
/// The longest lease the cluster accepts.
pub const MAX_TTL: Duration = Duration::from_secs(600);
/// The stop grace a cluster starts with: time enough for a database's fast shutdown, short
/// enough to keep a failover within seconds.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(3);
/// The longest stop grace the cluster accepts.
pub const MAX_STOP_GRACE: Duration = Duration::from_secs(600);

fn default_stop_grace_ms() -> u64 {
    DEFAULT_STOP_GRACE.as_millis() as u64
}

/// The cluster's lease timing, as stored in the replicated state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LeaseSettings {
    /// How long a granted renewal lasts.
    pub ttl_ms: u64,
    /// How long past a lease's end a leader still waits before it counts the host as holding
    /// nothing (covers a host clock slower than the leader's).
    pub drift_margin_ms: u64,
    /// The longest TTL this cluster ever granted: a new leader's floor (it treats every lease
    /// as renewed at its election for this long). Raised with the TTL, never lowered.
    pub ceiling_ms: u64,
    /// How long past its lease's end a host may still be stopping OCF resources before what
    /// is left of them is killed.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// The longest stop grace ever set: a new leader's assumption for every host.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ceiling_ms: u64,
}

impl LeaseSettings {
    /// Checks a requested TTL and drift margin, naming the field and the accepted range.
    pub fn validate(ttl: Duration, drift_margin: Duration) -> Result<(), StateError> {
        if ttl < MIN_TTL || ttl > MAX_TTL {
            return Err(StateError::unprocessable(
                "ttl",
                format!(
                    "must be between {} ms and {} s, got {} ms",
                    MIN_TTL.as_millis(),
                    MAX_TTL.as_secs(),
                    ttl.as_millis()
                ),
            ));
        }
        if drift_margin > ttl {
            return Err(StateError::unprocessable(
                "drift_margin",
                format!(
                    "must be at most the TTL ({} ms), got {} ms",
                    ttl.as_millis(),
                    drift_margin.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// Checks a requested stop grace, naming the accepted range.
    pub fn validate_stop_grace(grace: Duration) -> Result<(), StateError> {
        if grace > MAX_STOP_GRACE {
            return Err(StateError::unprocessable(
                "stop_grace",
                format!(
                    "must be at most {} s, got {} ms",
                    MAX_STOP_GRACE.as_secs(),
                    grace.as_millis()
                ),
            ));
        }
        Ok(())
    }

    /// The settings after setting `ttl` and `drift_margin` over `old` (the ceiling keeps the
    /// longest TTL ever set); the stop grace stays as it was (the default at first).
    pub fn set(old: Option<LeaseSettings>, ttl: Duration, drift_margin: Duration) -> Self {
        let ttl_ms = ttl.as_millis() as u64;
        let grace = old.map_or(default_stop_grace_ms(), |o| o.stop_grace_ms);
        LeaseSettings {
            ttl_ms,
            drift_margin_ms: drift_margin.as_millis() as u64,
            ceiling_ms: old.map_or(ttl_ms, |o| o.ceiling_ms.max(ttl_ms)),
            stop_grace_ms: grace,
            stop_grace_ceiling_ms: old.map_or(grace, |o| o.stop_grace_ceiling_ms.max(grace)),
        }
    }

    /// These settings with the stop grace `grace` (its ceiling keeps the longest ever set).
    pub fn with_stop_grace(self, grace: Duration) -> Self {
        let ms = grace.as_millis() as u64;
        LeaseSettings {
            stop_grace_ms: ms,
            stop_grace_ceiling_ms: self.stop_grace_ceiling_ms.max(ms),
            ..self
        }
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    pub fn drift_margin(&self) -> Duration {
        Duration::from_millis(self.drift_margin_ms)
    }

    pub fn ceiling(&self) -> Duration {
        Duration::from_millis(self.ceiling_ms)
    }

    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms)
    }

    pub fn stop_grace_ceiling(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ceiling_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_only_grows() {
        let s = LeaseSettings::set(None, Duration::from_secs(8), Duration::from_millis(800));
        assert_eq!(s.ceiling(), Duration::from_secs(8));
        let s = LeaseSettings::set(Some(s), Duration::from_secs(2), Duration::from_millis(200));
        assert_eq!(
            (s.ttl(), s.ceiling()),
            (Duration::from_secs(2), Duration::from_secs(8))
        );
        let s = LeaseSettings::set(Some(s), Duration::from_secs(12), Duration::ZERO);
        assert_eq!(s.ceiling(), Duration::from_secs(12));
        assert!(LeaseSettings::validate(Duration::from_millis(100), Duration::ZERO).is_err());
        assert!(LeaseSettings::validate(Duration::from_secs(1), Duration::from_secs(2)).is_err());
        assert!(
            LeaseSettings::validate(Duration::from_secs(3), Duration::from_millis(300)).is_ok()
        );
    }

    #[test]
    fn the_stop_grace_survives_a_ttl_change_and_its_ceiling_only_grows() {
        let s = LeaseSettings::set(None, Duration::from_secs(3), Duration::from_millis(300));
        assert_eq!(s.stop_grace(), DEFAULT_STOP_GRACE);
        let s = s.with_stop_grace(Duration::from_secs(10));
        let s = LeaseSettings::set(Some(s), Duration::from_secs(2), Duration::ZERO);
        assert_eq!(s.stop_grace(), Duration::from_secs(10));
        let s = s.with_stop_grace(Duration::from_secs(1));
        assert_eq!(
            (s.stop_grace(), s.stop_grace_ceiling()),
            (Duration::from_secs(1), Duration::from_secs(10))
        );
        assert!(LeaseSettings::validate_stop_grace(Duration::from_secs(601)).is_err());
        // A state written before the grace existed reads with the default.
        let old: LeaseSettings =
            serde_json::from_str(r#"{"ttl_ms": 3000, "drift_margin_ms": 300, "ceiling_ms": 3000}"#)
                .unwrap();
        assert_eq!(old.stop_grace_ceiling(), DEFAULT_STOP_GRACE);
    }
}
