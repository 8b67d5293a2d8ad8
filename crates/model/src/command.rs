//! The changes the cluster state accepts, as they travel through the Raft log, and what each
//! one produced. Commands carry complete objects and the proposer's wall-clock time, so that
//! applying them is deterministic on every server.

use serde::{Deserialize, Serialize};

use crate::attribute::AttributeKey;
use crate::error::StateError;
use crate::host::Host;
use crate::instance::Instance;
use crate::notification::Notification;
use crate::object::{Kind, ObjectMeta};
use crate::placement::Placement;
use crate::segment::Segment;
use crate::timestamp::Timestamp;

/// Any stored object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", content = "object", rename_all = "snake_case")]
pub enum Object {
    Segment(Segment),
    Host(Host),
    Instance(Instance),
    Notification(Notification),
    Placement(Placement),
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Segment(_) => Kind::Segment,
            Object::Host(_) => Kind::Host,
            Object::Instance(_) => Kind::Instance,
            Object::Notification(_) => Kind::Notification,
            Object::Placement(_) => Kind::Placement,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::Segment(o) => &o.meta,
            Object::Host(o) => &o.meta,
            Object::Instance(o) => &o.meta,
            Object::Notification(o) => &o.meta,
            Object::Placement(o) => &o.meta,
        }
    }

    pub(crate) fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::Segment(o) => &mut o.meta,
            Object::Host(o) => &mut o.meta,
            Object::Instance(o) => &mut o.meta,
            Object::Notification(o) => &mut o.meta,
            Object::Placement(o) => &mut o.meta,
        }
    }

    /// The unique name, for the kinds that have one.
    pub fn name(&self) -> Option<&str> {
        match self {
            Object::Segment(o) => Some(&o.name),
            Object::Host(o) => Some(&o.name),
            Object::Instance(o) => Some(&o.name),
            Object::Notification(_) | Object::Placement(_) => None,
        }
    }

    pub(crate) fn validate(&self) -> Result<(), StateError> {
        match self {
            Object::Segment(o) => o.validate(),
            Object::Host(o) => o.validate(),
            Object::Instance(o) => o.validate(),
            Object::Notification(o) => o.validate(),
            Object::Placement(o) => o.validate(),
        }
    }
}

/// What a put expects to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// A create: the id must be new.
    Absent,
    /// An update of exactly this version.
    Version(u64),
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// Creates or replaces an object (the state machine sets its version and timestamps).
    Put { object: Box<Object>, expect: Expect },
    /// Deletes an object, optionally only at a given version.
    Delete {
        kind: Kind,
        id: String,
        version: Option<u64>,
    },
    /// Changes nothing: a new leader commits one to learn its commit point.
    Noop,
    /// Sets the cluster's lease timing ([`crate::LeaseSettings`]); the stop grace only when
    /// given.
    SetLease {
        ttl_ms: u64,
        drift_margin_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_grace_ms: Option<u64>,
    },
    /// Sets an attribute of the attribute store, or deletes it (`value: None`).
    SetAttribute {
        key: AttributeKey,
        value: Option<String>,
    },
    /// Forgets the attributes node `node` keeps until it restarts (scope `status`): it
    /// restarted, left or was fenced.
    ClearNodeAttributes { node: String },
    /// Changes the promotion grants of instance `instance` (id).
    Promotion {
        instance: String,
        step: crate::promotion::PromotionStep,
    },
}

/// A change with the proposer's time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Command {
    pub at: Timestamp,
    pub op: Op,
}

/// What applying a command produced: the object as stored (none for deletes and no-ops), or
/// why it was refused. Refusals are results, not failures: the log entry is still applied.
pub type Outcome = Result<Option<Object>, StateError>;

/// What happened to an object, for the event stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

/// One entry of the change feed (`GET /v1/events`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Change {
    /// Position in the change feed (1, 2, 3... on every server alike): the `since` cursor.
    pub index: u64,
    pub at: Timestamp,
    pub kind: Kind,
    pub id: String,
    pub action: Action,
    /// The object after the change (absent for deletes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<Object>,
}
