//! The fault filter: drops traffic to or from named members, one way or both, so tests can
//! partition real agents. Off unless the agent runs with `--enable-fault-injection`.

use serde::{Deserialize, Serialize};

/// Which traffic a rule drops, seen from this agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic from the peer to us.
    In,
    /// Traffic from us to the peer.
    Out,
    /// Both ways.
    Both,
}

/// Drop traffic exchanged with `peer` in `direction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub peer: String,
    pub direction: Direction,
}

/// The rules in force (`POST /v1/debug/faults` replaces them; an empty list heals).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFilter {
    #[serde(default)]
    pub drop: Vec<FaultRule>,
}

impl FaultFilter {
    /// True when traffic from us to `peer` must be dropped.
    pub fn drops_out(&self, peer: &str) -> bool {
        self.drop
            .iter()
            .any(|r| r.peer == peer && matches!(r.direction, Direction::Out | Direction::Both))
    }

    /// True when traffic from `peer` to us must be dropped.
    pub fn drops_in(&self, peer: &str) -> bool {
        self.drop
            .iter()
            .any(|r| r.peer == peer && matches!(r.direction, Direction::In | Direction::Both))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_apply_in_their_direction_only() {
        let f: FaultFilter = serde_json::from_str(
            r#"{"drop":[{"peer":"a","direction":"in"},{"peer":"b","direction":"both"}]}"#,
        )
        .unwrap();
        assert!(f.drops_in("a") && !f.drops_out("a"));
        assert!(f.drops_in("b") && f.drops_out("b"));
        assert!(!f.drops_in("c"));
        assert!(
            serde_json::from_str::<FaultFilter>(
                r#"{"drop":[{"peer":"a","direction":"sideways"}]}"#
            )
            .is_err()
        );
    }
}
