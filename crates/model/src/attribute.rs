//! The cluster's attribute store: what Pacemaker keeps as node attributes (kept until the node
//! restarts, or for good) and as cluster properties, which unmodified OCF resource agents write
//! and read through Buoy's shims of Pacemaker's tools: promotion scores (`master-RESOURCE`),
//! replication positions, start times. Values are strings, as in Pacemaker.

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::timestamp::Timestamp;

/// Attributes kept at most: an agent that writes a new name in a loop fills the store, then
/// gets a clear error, and the replicated state stays bounded.
pub const MAX_ATTRIBUTES: usize = 65_536;
/// The longest attribute, node or set name.
pub const MAX_NAME_BYTES: usize = 256;
/// The longest value.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Where an attribute lives, in Pacemaker's words.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AttributeScope {
    /// A node attribute kept until the node restarts, leaves or is fenced (`-l reboot`).
    Status,
    /// A node attribute kept across restarts (`-l forever`).
    Nodes,
    /// A cluster-wide property (`--type crm_config`), in an optional named set.
    CrmConfig,
}

/// What names an attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeKey {
    pub scope: AttributeScope,
    /// The node it belongs to: required for node attributes, absent for cluster properties.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The property set of a cluster property (`mysql_replication`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<String>,
    pub name: String,
}

impl AttributeKey {
    /// Refuses keys that break the store's shape or limits, naming the field.
    pub fn validate(&self) -> Result<(), StateError> {
        let name_ok = |field: &str, v: &str| {
            if v.is_empty() || v.len() > MAX_NAME_BYTES || v.chars().any(char::is_control) {
                Err(StateError::invalid(
                    field,
                    format!("must be 1 to {MAX_NAME_BYTES} bytes without control characters"),
                ))
            } else {
                Ok(())
            }
        };
        name_ok("name", &self.name)?;
        match (self.scope, &self.node) {
            (AttributeScope::CrmConfig, Some(_)) => {
                return Err(StateError::invalid(
                    "node",
                    "a cluster property (scope crm_config) belongs to no node",
                ));
            }
            (AttributeScope::Status | AttributeScope::Nodes, None) => {
                return Err(StateError::invalid(
                    "node",
                    "a node attribute (scope status or nodes) needs its node",
                ));
            }
            (_, Some(n)) => name_ok("node", n)?,
            _ => {}
        }
        if let Some(s) = &self.set {
            if self.scope != AttributeScope::CrmConfig {
                return Err(StateError::invalid(
                    "set",
                    "only cluster properties (scope crm_config) are kept in named sets",
                ));
            }
            name_ok("set", s)?;
        }
        Ok(())
    }

    /// The key the store files it under: one string, ordered by scope, node, set and name.
    pub(crate) fn storage_key(&self) -> String {
        let scope = match self.scope {
            AttributeScope::Status => "status",
            AttributeScope::Nodes => "nodes",
            AttributeScope::CrmConfig => "crm_config",
        };
        format!(
            "{scope}\u{1}{}\u{1}{}\u{1}{}",
            self.node.as_deref().unwrap_or(""),
            self.set.as_deref().unwrap_or(""),
            self.name
        )
    }
}

/// One attribute and its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Attribute {
    #[serde(flatten)]
    pub key: AttributeKey,
    pub value: String,
    pub updated_at: Timestamp,
}

/// Checks a value before it is stored.
pub fn validate_value(value: &str) -> Result<(), StateError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StateError::invalid(
            "value",
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Pacemaker's infinite score, as a number (`INFINITY` in a score stands for it).
pub const INFINITY_SCORE: i64 = 1_000_000;

/// A promotion score as agents write it: an integer, `INFINITY`, `+INFINITY` or `-INFINITY`,
/// clamped to +-[`INFINITY_SCORE`]. `None` for anything else (such a score promotes nothing).
pub fn parse_score(s: &str) -> Option<i64> {
    let t = s.trim();
    match t {
        "INFINITY" | "+INFINITY" => Some(INFINITY_SCORE),
        "-INFINITY" => Some(-INFINITY_SCORE),
        _ => t
            .parse::<i64>()
            .ok()
            .map(|v| v.clamp(-INFINITY_SCORE, INFINITY_SCORE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(
        scope: AttributeScope,
        node: Option<&str>,
        set: Option<&str>,
        name: &str,
    ) -> AttributeKey {
        AttributeKey {
            scope,
            node: node.map(str::to_string),
            set: set.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn keys_have_the_shape_of_their_scope() {
        use AttributeScope::*;
        assert!(
            key(Status, Some("h1"), None, "master-db")
                .validate()
                .is_ok()
        );
        assert!(
            key(CrmConfig, None, Some("mysql_replication"), "x")
                .validate()
                .is_ok()
        );
        for (bad, field) in [
            (key(Status, None, None, "a"), "node"),
            (key(CrmConfig, Some("h1"), None, "a"), "node"),
            (key(Nodes, Some("h1"), Some("s"), "a"), "set"),
            (key(Nodes, Some("h1"), None, ""), "name"),
            (key(Nodes, Some("h\n1"), None, "a"), "node"),
        ] {
            let e = bad.validate().unwrap_err().to_string();
            assert!(e.starts_with(field), "{bad:?}: {e}");
        }
        assert!(validate_value(&"x".repeat(MAX_VALUE_BYTES + 1)).is_err());
    }

    #[test]
    fn scores_read_as_agents_write_them() {
        assert_eq!(parse_score("1000"), Some(1000));
        assert_eq!(parse_score("-INFINITY"), Some(-INFINITY_SCORE));
        assert_eq!(parse_score("INFINITY"), Some(INFINITY_SCORE));
        assert_eq!(parse_score("99999999"), Some(INFINITY_SCORE));
        assert_eq!(parse_score("high"), None);
    }
}
