//! Where an instance runs: instance (and replica) -> host, with an epoch that grows with every
//! move. A host runs an instance only under its current epoch (rule S1's fencing token).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::object::ObjectMeta;

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

/// One copy of an instance on one host. The state machine sets the epoch: a new one, higher
/// than every epoch before, whenever the placement is created or moves to another host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Placement {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    /// Instance id.
    pub instance: String,
    /// 0 for `single`; 0..replicas for `clone`.
    pub replica: u32,
    /// Host id.
    pub host: String,
    pub epoch: Epoch,
    /// The hosts this copy left while they were still up, newest last. The new host gets the
    /// copy only once each of them confirmed it stopped or lost its lease; the leader then
    /// empties the list. Set by the state machine at every move.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    /// The host a recovery moved this copy away from: where failback returns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// Where this copy failed (restart budget spent, or it could not start), one entry per
    /// host: it is not placed on those hosts again until the failure expires (the instance's
    /// `failure_timeout`) or an operator resets it (`buoy instance reset`). Written by the
    /// leader when it moves a failed copy (`engine::failures`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<HostFailure>,
    /// Raised to start the copy again in place (a reset of a blocked copy): like a move, it
    /// gives the copy a new epoch, and the old one must be confirmed stopped first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempt: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A copy's failures on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostFailure {
    /// Host id.
    pub host: String,
    /// How many times it failed there.
    pub count: u32,
    /// The epoch of the last failure counted (each failed epoch counts once).
    pub epoch: Epoch,
    /// Why, the last time (from the host's report).
    pub reason: String,
    /// When the leader recorded the last one.
    pub at: crate::timestamp::Timestamp,
}

/// A host a copy moved away from, and the epoch it ran there: that copy must be confirmed
/// stopped before the copy starts on its new host (rule S1 for moves between live hosts).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Handoff {
    /// Host id.
    pub host: String,
    pub epoch: Epoch,
    /// The change-feed index of the move: a report from `host` counts only once it has
    /// applied assignments at least this new.
    pub change: u64,
    /// The placement the old copy ran under, when it was another one (a placement deleted
    /// and then made again): the host reports the copy under that id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<String>,
}

/// What a client sends to place an instance (or move it: `host` only). Instance and host may
/// be given by name or id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementSpec {
    pub instance: Option<String>,
    pub replica: Option<u32>,
    pub host: Option<String>,
}

impl Placement {
    /// A new placement; `instance` and `host` are ids the spec resolved to. The epoch is set
    /// when the state machine applies it.
    pub fn create(
        meta: ObjectMeta,
        spec: &PlacementSpec,
        instance: String,
        host: String,
    ) -> Result<Placement, StateError> {
        Ok(Placement {
            meta,
            instance,
            replica: spec.replica.unwrap_or(0),
            host,
            epoch: Epoch(0),
            handoffs: Vec::new(),
            home: None,
            failures: Vec::new(),
            attempt: 0,
        })
    }

    /// Moves the placement to `host` (an id); the instance and replica never change.
    pub fn update(&mut self, spec: &PlacementSpec, host: Option<String>) -> Result<(), StateError> {
        if spec.instance.is_some() || spec.replica.is_some() {
            return Err(StateError::invalid(
                if spec.instance.is_some() {
                    "instance"
                } else {
                    "replica"
                },
                "cannot change: delete the placement and create another",
            ));
        }
        if let Some(h) = host {
            self.host = h;
        }
        Ok(())
    }

    /// Checks the fields a placement carries by itself (references are checked by the state).
    pub fn validate(&self) -> Result<(), StateError> {
        if self.instance.is_empty() {
            return Err(StateError::invalid("instance", "is required"));
        }
        if self.host.is_empty() {
            return Err(StateError::invalid("host", "is required"));
        }
        Ok(())
    }
}
