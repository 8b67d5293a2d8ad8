//! Promotion grants: which copies of a promotable instance may act as promoted (rule S1 for
//! the promoted role). The leader records a grant before a host promotes a copy, and only
//! the state machine numbers them: each gets a new promotion epoch, and an instance never
//! holds more than its `promoted_max` grants, revoked ones included. A revoked grant still
//! counts until the leader releases it: when its host reported the copy demoted or stopped
//! after applying the revocation, or when that host provably runs nothing
//! (`engine::promotion`).

use serde::{Deserialize, Serialize};

/// One copy's grant to act as promoted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PromotionGrant {
    pub replica: u32,
    /// Host id: the host the copy ran on when it was granted.
    pub host: String,
    /// The promotion epoch: grows with every grant, never reused.
    pub epoch: u64,
    /// The leader asked the host to demote the copy.
    pub revoked: bool,
    /// The change-feed index of the grant or of its revocation: a host's report counts for
    /// it only once that host applied assignments at least this new.
    pub change: u64,
}

/// What the leader changes about one instance's grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PromotionStep {
    /// Grant copy `replica` on `host` (id) the promoted role.
    Grant { replica: u32, host: String },
    /// Ask the host of `replica`'s grant to demote it.
    Revoke { replica: u32 },
    /// Forget `replica`'s grant: confirmed demoted or stopped, or its host is down.
    Release { replica: u32 },
}
