//! Where an instance runs: instance (and replica) -> host, with an epoch that grows with every
//! move. A host runs an instance only under its current epoch (rule S1's fencing token).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The fencing token of a placement: raised at every move, never reused.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One copy of an instance on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Placement {
    /// Instance id.
    pub instance: String,
    /// 0 for `single`; 0..replicas for `clone`.
    pub replica: u32,
    /// Host id.
    pub host: String,
    pub epoch: Epoch,
}
