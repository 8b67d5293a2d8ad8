//! Lease renewals and what the leader answers with them.

use model::instance::Instance;
use model::placement::Placement;
use serde::{Deserialize, Serialize};

use crate::report::Report;

/// Where a host sends its renewals (any agent relays them to the leader).
pub const RENEW_PATH: &str = "/internal/lease";

/// Body of a renewal: who renews, what it knows, and (when changed) what it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalRequest {
    pub host: String,
    /// The change index of the assignments the host holds (none after a start).
    #[serde(default)]
    pub known: Option<u64>,
    /// The host's instances, when they changed since its last report to this leader.
    #[serde(default)]
    pub report: Option<Report>,
}

/// A granted renewal: the lease length and, when the state changed since the host's last
/// answer, everything placed on the host.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Grant {
    pub ttl_ms: u64,
    /// The term of the leader that granted it (a host reports its instances again to a new
    /// leader, which starts with none).
    #[serde(default)]
    pub term: u64,
    /// The state's change index these assignments reflect.
    pub index: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignments: Option<Vec<Assignment>>,
    /// How long past this lease's end the host may still be stopping OCF resources: then it
    /// kills what is left of them (their cgroups). None from a leader that predates it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_ms: Option<u64>,
}

/// An instance placed on a host, as the host needs it to run it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub placement: Placement,
    pub instance: Instance,
    /// A promotable copy's promotion grant (its epoch): the host promotes the copy only
    /// while its assignment carries one, and demotes it when it no longer does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion: Option<u64>,
    /// `notify` actions the copy's agent must run (a clone with `notify`), in order: each
    /// once, by id; the host reports the highest id run ([`crate::Observed::notified`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<NotifyCall>,
    /// A copy of a load balancer (`load_balancer`): the backends it serves, each with the
    /// copies that run now (the host keeps HAProxy's servers equal to them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<Backend>,
}

/// One HAProxy backend and the servers it should have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub name: String,
    pub servers: Vec<BackendServer>,
}

/// A copy serving a backend: `INSTANCE-REPLICA` at its host's address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendServer {
    pub name: String,
    pub addr: String,
    pub port: u16,
}

/// One `notify` action: its id (grows with every round the leader starts) and the variables
/// Pacemaker would set (`OCF_RESKEY_CRM_meta_notify_*`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyCall {
    pub id: u64,
    pub env: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_renewal_reads_back_what_it_wrote_and_refuses_unknown_fields() {
        let r = RenewalRequest {
            host: "h1".into(),
            known: Some(12),
            report: Some(Report::default()),
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"host":"h1","known":12,"report":{"applied":null,"instances":[]}}"#
        );
        assert_eq!(serde_json::from_str::<RenewalRequest>(&text).unwrap(), r);
        // An agent that only names itself (after a start) still renews.
        let bare: RenewalRequest = serde_json::from_str(r#"{"host":"h1"}"#).unwrap();
        assert_eq!((bare.known, bare.report), (None, None));
        assert!(serde_json::from_str::<RenewalRequest>(r#"{"host":"h1","hots":1}"#).is_err());
    }
}
