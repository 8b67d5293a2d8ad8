//! Lease timing for the whole cluster (rule S1). Every leader grants the same TTL and waits the
//! same drift margin, whatever its own configuration says; and because a leader elected after
//! another knows nothing of its grants, it must assume every host holds the longest lease any
//! leader may ever have granted: `ceiling`, which only grows.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// The shortest lease the cluster accepts.
pub const MIN_TTL: Duration = Duration::from_millis(200);
/// The longest lease the cluster accepts.
pub const MAX_TTL: Duration = Duration::from_secs(600);

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

    /// The settings after setting `ttl` and `drift_margin` over `old` (the ceiling keeps the
    /// longest TTL ever set).
    pub fn set(old: Option<LeaseSettings>, ttl: Duration, drift_margin: Duration) -> Self {
        let ttl_ms = ttl.as_millis() as u64;
        LeaseSettings {
            ttl_ms,
            drift_margin_ms: drift_margin.as_millis() as u64,
            ceiling_ms: old.map_or(ttl_ms, |o| o.ceiling_ms.max(ttl_ms)),
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
}
