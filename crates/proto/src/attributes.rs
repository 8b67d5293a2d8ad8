//! A host's calls on the cluster's attribute store: what the Pacemaker tool shims on a host
//! ask (`crm_attribute`, `crm_master`, `attrd_updater`), sent by the host's agent, signed
//! with its credential, and answered by the leader after the write is committed (so a read
//! that follows sees it: read-your-write).

use model::attribute::AttributeKey;
use serde::{Deserialize, Serialize};

/// Where a host sends its attribute calls (relayed to the leader by any agent).
pub const ATTRIBUTES_PATH: &str = "/internal/attributes";

/// What to do with one attribute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeOp {
    Query,
    Set(String),
    Delete,
}

/// One call: the host that makes it (its signature must match), the attribute and the op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttributeCall {
    pub host: String,
    pub key: AttributeKey,
    pub op: AttributeOp,
}

/// The leader's answer: the attribute's value after the call (none: there is none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttributeAnswer {
    pub value: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::attribute::AttributeScope;

    #[test]
    fn a_call_reads_back_what_it_wrote() {
        let call = AttributeCall {
            host: "h1".into(),
            key: AttributeKey {
                scope: AttributeScope::Status,
                node: Some("h2".into()),
                set: None,
                name: "master-db".into(),
            },
            op: AttributeOp::Set("100".into()),
        };
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(
            text,
            r#"{"host":"h1","key":{"scope":"status","node":"h2","name":"master-db"},"op":{"set":"100"}}"#
        );
        assert_eq!(serde_json::from_str::<AttributeCall>(&text).unwrap(), call);
    }
}
