//! The operator-managed kinds (segments, hosts, instances, placements) behind one generic set
//! of API handlers: how each is created and updated from a client's spec.

use model::host::{Host, HostSpec};
use model::instance::{Instance, InstanceSpec};
use model::placement::{Placement, PlacementSpec};
use model::segment::{Segment, SegmentSpec};
use model::{ClusterState, Kind, Object, ObjectMeta, StateError};
use serde::de::DeserializeOwned;

/// A kind the API manages with create/list/show/update/delete.
pub trait Resource: Send + Sync + 'static {
    const KIND: Kind;
    /// The path segment and list key: `segments`.
    const PLURAL: &'static str;
    /// Fields a list may be filtered on (`?segment=zone-a`).
    const FILTERS: &'static [&'static str];
    type Spec: DeserializeOwned + Send;

    fn create(meta: ObjectMeta, spec: &Self::Spec, st: &ClusterState)
    -> Result<Object, StateError>;
    fn update(current: Object, spec: &Self::Spec, st: &ClusterState) -> Result<Object, StateError>;
}

/// The id of the segment a spec names (by name or id).
fn segment_id(st: &ClusterState, named: &str) -> Result<String, StateError> {
    st.resolve(Kind::Segment, named).ok_or_else(|| {
        StateError::unprocessable(
            "segment",
            format!("segment `{named}` does not exist: create it first (`buoy segment create`)"),
        )
    })
}

fn required_segment(st: &ClusterState, named: &Option<String>) -> Result<String, StateError> {
    match named {
        Some(s) => segment_id(st, s),
        None => Err(StateError::invalid(
            "segment",
            "is required (a segment name or id)",
        )),
    }
}

fn optional_segment(
    st: &ClusterState,
    named: &Option<String>,
) -> Result<Option<String>, StateError> {
    named.as_deref().map(|s| segment_id(st, s)).transpose()
}

fn wrong_kind(kind: Kind) -> StateError {
    StateError::Conflict {
        message: format!("stored object is not a {kind}"),
    }
}

pub struct Segments;
pub struct Hosts;
pub struct Instances;
pub struct Placements;

impl Resource for Segments {
    const KIND: Kind = Kind::Segment;
    const PLURAL: &'static str = "segments";
    const FILTERS: &'static [&'static str] =
        &["name", "recovery_method", "service_type", "enabled"];
    type Spec = SegmentSpec;

    fn create(
        meta: ObjectMeta,
        spec: &SegmentSpec,
        _: &ClusterState,
    ) -> Result<Object, StateError> {
        Segment::create(meta, spec).map(Object::Segment)
    }

    fn update(current: Object, spec: &SegmentSpec, _: &ClusterState) -> Result<Object, StateError> {
        let Object::Segment(mut s) = current else {
            return Err(wrong_kind(Kind::Segment));
        };
        s.update(spec)?;
        Ok(Object::Segment(s))
    }
}

impl Resource for Hosts {
    const KIND: Kind = Kind::Host;
    const PLURAL: &'static str = "hosts";
    const FILTERS: &'static [&'static str] =
        &["name", "segment", "type", "reserved", "on_maintenance"];
    type Spec = HostSpec;

    fn create(meta: ObjectMeta, spec: &HostSpec, st: &ClusterState) -> Result<Object, StateError> {
        let segment = required_segment(st, &spec.segment)?;
        Host::create(meta, spec, segment).map(Object::Host)
    }

    fn update(current: Object, spec: &HostSpec, st: &ClusterState) -> Result<Object, StateError> {
        let Object::Host(mut h) = current else {
            return Err(wrong_kind(Kind::Host));
        };
        h.update(spec, optional_segment(st, &spec.segment)?)?;
        Ok(Object::Host(h))
    }
}

impl Resource for Instances {
    const KIND: Kind = Kind::Instance;
    const PLURAL: &'static str = "instances";
    const FILTERS: &'static [&'static str] = &[
        "name",
        "segment",
        "driver",
        "mode",
        "desired_state",
        "anti_affinity",
        "priority",
    ];
    type Spec = InstanceSpec;

    fn create(
        meta: ObjectMeta,
        spec: &InstanceSpec,
        st: &ClusterState,
    ) -> Result<Object, StateError> {
        let segment = required_segment(st, &spec.segment)?;
        Instance::create(meta, spec, segment).map(Object::Instance)
    }

    fn update(
        current: Object,
        spec: &InstanceSpec,
        st: &ClusterState,
    ) -> Result<Object, StateError> {
        let Object::Instance(mut i) = current else {
            return Err(wrong_kind(Kind::Instance));
        };
        i.update(spec, optional_segment(st, &spec.segment)?)?;
        Ok(Object::Instance(i))
    }
}

/// The id of the `kind` object a spec names (by name or id), or an error naming `field`.
fn resolve(
    st: &ClusterState,
    kind: Kind,
    field: &str,
    named: &Option<String>,
) -> Result<Option<String>, StateError> {
    named
        .as_deref()
        .map(|n| {
            st.resolve(kind, n).ok_or_else(|| {
                StateError::unprocessable(field, format!("{kind} `{n}` does not exist"))
            })
        })
        .transpose()
}

impl Resource for Placements {
    const KIND: Kind = Kind::Placement;
    const PLURAL: &'static str = "placements";
    const FILTERS: &'static [&'static str] = &["instance", "host", "replica", "epoch"];
    type Spec = PlacementSpec;

    fn create(
        meta: ObjectMeta,
        spec: &PlacementSpec,
        st: &ClusterState,
    ) -> Result<Object, StateError> {
        let required = |field: &str, v: Option<String>| {
            v.ok_or_else(|| StateError::invalid(field, "is required (a name or id)"))
        };
        let instance = required(
            "instance",
            resolve(st, Kind::Instance, "instance", &spec.instance)?,
        )?;
        let host = required("host", resolve(st, Kind::Host, "host", &spec.host)?)?;
        Placement::create(meta, spec, instance, host).map(Object::Placement)
    }

    fn update(
        current: Object,
        spec: &PlacementSpec,
        st: &ClusterState,
    ) -> Result<Object, StateError> {
        let Object::Placement(mut p) = current else {
            return Err(wrong_kind(Kind::Placement));
        };
        p.update(spec, resolve(st, Kind::Host, "host", &spec.host)?)?;
        Ok(Object::Placement(p))
    }
}
