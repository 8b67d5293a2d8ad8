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

/// Which kind of traffic a rule drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Gossip and HTTP between agents (lease renewals, relays).
    #[default]
    All,
    /// Gossip only: the peer looks dead to membership, yet it can still renew its lease (an
    /// isolated host, rule S3).
    Gossip,
}

/// Drop traffic exchanged with `peer` in `direction`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    pub peer: String,
    pub direction: Direction,
    #[serde(default)]
    pub scope: Scope,
}

/// The rules in force (`POST /v1/debug/faults` replaces them; an empty list heals).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFilter {
    #[serde(default)]
    pub drop: Vec<FaultRule>,
}

impl FaultFilter {
    /// True when traffic from us to `peer` must be dropped (`gossip`: membership traffic).
    pub fn drops_out(&self, peer: &str, gossip: bool) -> bool {
        self.drop.iter().any(|r| {
            r.peer == peer
                && (gossip || r.scope == Scope::All)
                && matches!(r.direction, Direction::Out | Direction::Both)
        })
    }

    /// True when traffic from `peer` to us must be dropped (`gossip`: membership traffic).
    pub fn drops_in(&self, peer: &str, gossip: bool) -> bool {
        self.drop.iter().any(|r| {
            r.peer == peer
                && (gossip || r.scope == Scope::All)
                && matches!(r.direction, Direction::In | Direction::Both)
        })
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
        assert!(f.drops_in("a", true) && !f.drops_out("a", true));
        assert!(f.drops_in("b", false) && f.drops_out("b", false));
        assert!(!f.drops_in("c", true));
        let g: FaultFilter =
            serde_json::from_str(r#"{"drop":[{"peer":"a","direction":"both","scope":"gossip"}]}"#)
                .unwrap();
        assert!(g.drops_in("a", true) && g.drops_out("a", true));
        assert!(!g.drops_in("a", false) && !g.drops_out("a", false));
        assert!(
            serde_json::from_str::<FaultFilter>(
                r#"{"drop":[{"peer":"a","direction":"sideways"}]}"#
            )
            .is_err()
        );
    }
}
