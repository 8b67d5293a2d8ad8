//! A host's read of the cluster's status, for the Pacemaker tool shims that print it
//! (`crm_mon`, `cibadmin -Q`): the hosts, whether they are online and their node attributes,
//! and every instance's copies with their roles, as the leader sees them. Signed by the host
//! that asks, like its attribute calls.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a host asks for the status (relayed to the leader by any agent).
pub const STATUS_PATH: &str = "/internal/status";

/// The call: the host that asks (its signature must match).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusCall {
    pub host: String,
}

/// The cluster as the leader sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The leader's name.
    pub leader: String,
    /// Whether the leader holds a quorum (it answered, so it does).
    pub quorate: bool,
    pub nodes: Vec<NodeStatus>,
    pub resources: Vec<ResourceStatus>,
}

/// A registered host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    /// It holds its lease and is not marked failed: it is a member, running what it is given.
    pub online: bool,
    /// Marked failed or fenced and not back yet.
    pub unclean: bool,
    /// Its node attributes kept until it restarts (`-l reboot`), by name: the CIB's
    /// `transient_attributes`.
    #[serde(default)]
    pub transient: BTreeMap<String, String>,
    /// Its node attributes kept for good (`-l forever`), by name: the CIB's node
    /// `instance_attributes`.
    #[serde(default)]
    pub permanent: BTreeMap<String, String>,
}

/// One instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    pub name: String,
    /// `ocf:PROVIDER:TYPE` for an OCF agent, else the driver's name.
    pub agent: String,
    pub promotable: bool,
    /// More than one copy (clone or promotable).
    pub clone: bool,
    pub copies: Vec<CopyStatus>,
}

/// One copy of an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyStatus {
    pub replica: u32,
    /// The host it runs on; none when it is not placed.
    pub node: Option<String>,
    pub role: CopyRole,
    /// It failed (past its restart budget, or its stop failed).
    pub failed: bool,
}

/// A copy's role, in Pacemaker's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CopyRole {
    Stopped,
    Started,
    Unpromoted,
    Promoted,
}

impl CopyRole {
    /// Pacemaker's name for the role.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyRole::Stopped => "Stopped",
            CopyRole::Started => "Started",
            CopyRole::Unpromoted => "Unpromoted",
            CopyRole::Promoted => "Promoted",
        }
    }
}
