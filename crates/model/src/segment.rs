//! A segment: a failover domain (availability zone, rack group). Instances recover only onto
//! hosts of their own segment, following the segment's recovery method.

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::object::{ObjectMeta, check_name};

/// How the recovery engine picks destination hosts (Masakari's four methods).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryMethod {
    /// Any host of the segment with room.
    #[default]
    Auto,
    /// Only reserved hosts.
    ReservedHost,
    /// Any host first, reserved hosts when the others are full.
    AutoPriority,
    /// Reserved hosts first, then any host.
    RhPriority,
}

/// A stored segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Segment {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub name: String,
    pub description: String,
    pub recovery_method: RecoveryMethod,
    /// Free text kept for Masakari clients (`compute` for hypervisor segments).
    pub service_type: String,
    /// A disabled segment takes no automatic recovery.
    pub enabled: bool,
    /// Admission control: how many of its largest hosts the segment must be able to lose and
    /// still re-place every instance (0 = no check).
    pub tolerate_host_failures: u32,
    /// A failed host that comes back (alive in gossip, renewing its lease) takes work again by
    /// itself; otherwise it waits for `buoy host enable`.
    #[serde(default)]
    pub auto_rejoin: bool,
    /// Instances a recovery moved away go back to their host once it takes work again.
    #[serde(default)]
    pub failback: bool,
}

/// The fields a client may set on a segment (create: `name` required; update: any subset).
/// Read-only fields (`id`, `version`, timestamps) are taken out by the API before decoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::object::NAME_PATTERN))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_method: Option<RecoveryMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::object::NAME_PATTERN))]
    pub service_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub tolerate_host_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rejoin: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<bool>,
}

impl Segment {
    /// A new segment from a create request.
    pub fn create(meta: ObjectMeta, spec: &SegmentSpec) -> Result<Segment, StateError> {
        let Some(name) = spec.name.clone() else {
            return Err(StateError::invalid("name", "is required"));
        };
        let mut s = Segment {
            meta,
            name,
            description: String::new(),
            recovery_method: RecoveryMethod::default(),
            service_type: "compute".into(),
            enabled: true,
            tolerate_host_failures: 0,
            auto_rejoin: false,
            failback: false,
        };
        s.update(spec)?;
        Ok(s)
    }

    /// Applies the fields `spec` sets, then checks the result.
    pub fn update(&mut self, spec: &SegmentSpec) -> Result<(), StateError> {
        let mut next = self.clone();
        set(&mut next.name, &spec.name);
        set(&mut next.description, &spec.description);
        set(&mut next.recovery_method, &spec.recovery_method);
        set(&mut next.service_type, &spec.service_type);
        set(&mut next.enabled, &spec.enabled);
        set(
            &mut next.tolerate_host_failures,
            &spec.tolerate_host_failures,
        );
        set(&mut next.auto_rejoin, &spec.auto_rejoin);
        set(&mut next.failback, &spec.failback);
        next.validate()?;
        *self = next;
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), StateError> {
        check_name("name", &self.name)?;
        if self.description.chars().count() > 4096 {
            return Err(StateError::invalid(
                "description",
                "must be at most 4096 characters",
            ));
        }
        check_name("service_type", &self.service_type)?;
        if self.tolerate_host_failures > 1000 {
            return Err(StateError::invalid(
                "tolerate_host_failures",
                "must be at most 1000",
            ));
        }
        Ok(())
    }
}

/// Overwrites `field` when the request sets it.
pub(crate) fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *field = v.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_needs_a_name_and_gets_defaults() {
        let e = Segment::create(ObjectMeta::default(), &SegmentSpec::default()).unwrap_err();
        assert_eq!(e.field(), Some("name"));
        let spec = SegmentSpec {
            name: Some("zone-a".into()),
            ..Default::default()
        };
        let s = Segment::create(ObjectMeta::default(), &spec).unwrap();
        assert_eq!(s.recovery_method, RecoveryMethod::Auto);
        assert!(s.enabled);
        assert_eq!(s.service_type, "compute");
    }

    #[test]
    fn a_bad_update_leaves_the_segment_unchanged() {
        let spec = SegmentSpec {
            name: Some("zone-a".into()),
            ..Default::default()
        };
        let mut s = Segment::create(ObjectMeta::default(), &spec).unwrap();
        let bad = SegmentSpec {
            description: Some("new".into()),
            name: Some(String::new()),
            ..Default::default()
        };
        assert!(s.update(&bad).is_err());
        assert_eq!(s.description, "");
        assert_eq!(s.name, "zone-a");
    }

    #[test]
    fn unknown_fields_and_bad_methods_are_refused_by_name() {
        let e = serde_json::from_str::<SegmentSpec>(r#"{"name":"a","colour":"red"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
        let e = serde_json::from_str::<SegmentSpec>(r#"{"recovery_method":"fast"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fast") && e.contains("reserved_host"), "{e}");
    }
}
