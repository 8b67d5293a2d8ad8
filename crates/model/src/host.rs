//! A host: a machine running `buoy agent`, registered in one segment. Its liveness comes from
//! gossip and its lease; this record is what operators declare about it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::object::{ObjectMeta, check_dns_like_name, check_name};
use crate::resources::{Capacity, CapacityPatch};
use crate::segment::set;

/// A STONITH device: a fence-agent command and the `key=value` parameters it reads on stdin.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FenceDevice {
    /// The agent's command, e.g. `/usr/sbin/fence_ipmilan`.
    #[schemars(extend("pattern" = crate::object::NOT_BLANK_PATTERN))]
    pub agent: String,
    /// `key=value` lines: keys without `=` or newlines, values without newlines.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": "^[^=\\n]+$"}, "additionalProperties" = {"type": "string", "pattern": "^[^\\n]*$"}))]
    pub params: BTreeMap<String, String>,
}

/// A stored host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Host {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    /// The agent's name (its gossip name): the two are joined on it.
    pub name: String,
    /// Id of the segment it belongs to.
    pub segment: String,
    /// Free text kept for Masakari clients (`COMPUTE`, `VM`...).
    #[serde(rename = "type")]
    pub host_type: String,
    /// Kept empty as failover capacity until a recovery needs it.
    pub reserved: bool,
    /// Takes no new work and is not recovered.
    pub on_maintenance: bool,
    pub capacity: Capacity,
    pub labels: BTreeMap<String, String>,
    /// Free text kept for Masakari clients.
    pub control_attributes: String,
    pub fence: Option<FenceDevice>,
    /// Set by the recovery engine when the host failed (or was fenced): it takes no work until
    /// it is back and enabled again (`buoy host enable`, or the segment's `auto_rejoin`).
    #[serde(default)]
    pub failed: bool,
    /// When it was marked failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_at: Option<crate::timestamp::Timestamp>,
    /// It was failed by its fence device (STONITH) rather than by its lease running out.
    #[serde(default)]
    pub fenced: bool,
}

/// The fields a client may set on a host (create: `name` and `segment` required).
/// Read-only fields (`id`, `version`, timestamps) are taken out by the API before decoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub name: Option<String>,
    /// The segment's name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::object::NAME_PATTERN))]
    pub host_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_maintenance: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"pattern": crate::object::LABEL_KEY_PATTERN}, "additionalProperties" = {"type": "string", "pattern": crate::object::LABEL_VALUE_PATTERN}))]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 4096))]
    pub control_attributes: Option<String>,
    /// `null` removes the fence device.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<FenceDevice>")]
    pub fence: Option<Option<FenceDevice>>,
}

/// Tells a field set to `null` (`Some(None)`) from a missing one (`None`).
pub(crate) fn some_or_null<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl Host {
    /// A new host from a create request; `segment` is the id the request's segment resolved to.
    pub fn create(meta: ObjectMeta, spec: &HostSpec, segment: String) -> Result<Host, StateError> {
        let Some(name) = spec.name.clone() else {
            return Err(StateError::invalid("name", "is required"));
        };
        let mut h = Host {
            meta,
            name,
            segment,
            host_type: "COMPUTE".into(),
            reserved: false,
            on_maintenance: false,
            capacity: Capacity::default(),
            labels: BTreeMap::new(),
            control_attributes: String::new(),
            fence: None,
            failed: false,
            failed_at: None,
            fenced: false,
        };
        h.update(spec, None)?;
        Ok(h)
    }

    /// Applies the fields `spec` sets (with `segment` already resolved to an id), then checks.
    pub fn update(&mut self, spec: &HostSpec, segment: Option<String>) -> Result<(), StateError> {
        let mut next = self.clone();
        set(&mut next.name, &spec.name);
        set(&mut next.segment, &segment);
        set(&mut next.host_type, &spec.host_type);
        set(&mut next.reserved, &spec.reserved);
        set(&mut next.on_maintenance, &spec.on_maintenance);
        if let Some(patch) = &spec.capacity {
            next.capacity = patch.apply(next.capacity);
        }
        set(&mut next.labels, &spec.labels);
        set(&mut next.control_attributes, &spec.control_attributes);
        set(&mut next.fence, &spec.fence);
        next.validate()?;
        // Checked where a client sets it (a rule added to `validate` could refuse entries
        // already committed): a capacity with one side at zero takes no instance that needs it.
        if spec.capacity.is_some() {
            let (cpu, mem) = (next.capacity.cpu.millicores(), next.capacity.memory_mb);
            if cpu > 0 && mem == 0 {
                return Err(StateError::unprocessable(
                    "capacity.memory_mb",
                    "0 MB leaves no room for an instance that needs memory: give at least 1 (e.g. capacity.memory_mb=8192), or leave both at 0 for a host whose capacity is not counted",
                ));
            }
            if mem > 0 && cpu == 0 {
                return Err(StateError::unprocessable(
                    "capacity.cpu",
                    "0 CPUs leaves no room for an instance that needs CPU: give at least 0.001 (e.g. capacity.cpu=8), or leave both at 0 for a host whose capacity is not counted",
                ));
            }
        }
        *self = next;
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), StateError> {
        check_dns_like_name("name", &self.name)?;
        check_name("type", &self.host_type)?;
        check_labels("labels", &self.labels)?;
        if self.control_attributes.chars().count() > 4096 {
            return Err(StateError::invalid(
                "control_attributes",
                "must be at most 4096 characters",
            ));
        }
        if let Some(f) = &self.fence {
            if f.agent.trim().is_empty() {
                return Err(StateError::invalid(
                    "fence.agent",
                    "must name the fence agent's command, e.g. /usr/sbin/fence_ipmilan",
                ));
            }
            for (k, v) in &f.params {
                if k.is_empty() || k.contains(['=', '\n']) || v.contains('\n') {
                    return Err(StateError::invalid(
                        format!("fence.params.{k}"),
                        "keys must be non-empty without '=' or newlines; values without newlines",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Checks label keys and values: short, printable, keys without spaces.
pub(crate) fn check_labels(
    field: &str,
    labels: &BTreeMap<String, String>,
) -> Result<(), StateError> {
    for (k, v) in labels {
        let key_ok = !k.is_empty()
            && k.len() <= 63
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
        if !key_ok {
            return Err(StateError::invalid(
                format!("{field}.{k}"),
                "label keys are 1 to 63 letters, digits, '.', '_', '-' or '/'",
            ));
        }
        if v.chars().count() > 255 || v.chars().any(char::is_control) {
            return Err(StateError::invalid(
                format!("{field}.{k}"),
                "label values are at most 255 printable characters",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> HostSpec {
        HostSpec {
            name: Some(name.into()),
            ..Default::default()
        }
    }

    /// Issue 16: a capacity with one side at zero is refused with the minimum; one side given
    /// alone no longer fails with `missing field`.
    #[test]
    fn a_capacity_with_one_side_at_zero_is_refused_with_the_minimum() {
        let with = |json: &str| {
            let mut s = spec("h");
            s.capacity = Some(serde_json::from_str(json).unwrap());
            Host::create(ObjectMeta::default(), &s, "seg".into())
        };
        let e = with(r#"{"cpu": 2, "memory_mb": 0}"#).unwrap_err();
        assert_eq!(e.field(), Some("capacity.memory_mb"));
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = with(r#"{"memory_mb": 1024}"#).unwrap_err();
        assert_eq!(e.field(), Some("capacity.cpu"));
        assert!(with(r#"{"cpu": 2, "memory_mb": 1024}"#).is_ok());
        assert!(with(r#"{}"#).is_ok(), "not counted");
    }

    /// Issue 16: changing one side of a host's capacity keeps the other.
    #[test]
    fn a_capacity_update_keeps_the_side_it_does_not_name() {
        let mut s = spec("h");
        s.capacity = Some(serde_json::from_str(r#"{"cpu": 8, "memory_mb": 16384}"#).unwrap());
        let mut h = Host::create(ObjectMeta::default(), &s, "seg".into()).unwrap();
        let patch: HostSpec = serde_json::from_str(r#"{"capacity": {"memory_mb": 2048}}"#).unwrap();
        h.update(&patch, None).unwrap();
        assert_eq!(h.capacity.cpu.millicores(), 8000);
        assert_eq!(h.capacity.memory_mb, 2048);
        let zero: HostSpec = serde_json::from_str(r#"{"capacity": {"cpu": 0}}"#).unwrap();
        let e = h.update(&zero, None).unwrap_err();
        assert_eq!(e.field(), Some("capacity.cpu"), "{e}");
    }

    #[test]
    fn hosts_get_masakari_defaults() {
        let h = Host::create(ObjectMeta::default(), &spec("node-1"), "seg".into()).unwrap();
        assert_eq!(h.host_type, "COMPUTE");
        assert!(!h.reserved && !h.on_maintenance && h.fence.is_none());
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["type"], "COMPUTE");
    }

    #[test]
    fn fence_can_be_set_and_removed_with_null() {
        let mut h = Host::create(ObjectMeta::default(), &spec("node-1"), "seg".into()).unwrap();
        let set: HostSpec = serde_json::from_str(
            r#"{"fence":{"agent":"/usr/sbin/fence_dummy","params":{"port":"1"}}}"#,
        )
        .unwrap();
        h.update(&set, None).unwrap();
        assert_eq!(h.fence.as_ref().unwrap().params["port"], "1");
        let keep: HostSpec = serde_json::from_str(r#"{"reserved":true}"#).unwrap();
        h.update(&keep, None).unwrap();
        assert!(h.fence.is_some() && h.reserved);
        let clear: HostSpec = serde_json::from_str(r#"{"fence":null}"#).unwrap();
        h.update(&clear, None).unwrap();
        assert!(h.fence.is_none());
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut s = spec("node 1");
        let e = Host::create(ObjectMeta::default(), &s, "seg".into()).unwrap_err();
        assert_eq!(e.field(), Some("name"));
        s.name = Some("node-1".into());
        s.labels = Some([("bad key".to_string(), "v".to_string())].into());
        let e = Host::create(ObjectMeta::default(), &s, "seg".into()).unwrap_err();
        assert_eq!(e.field(), Some("labels.bad key"));
        s.labels = None;
        s.fence = Some(Some(FenceDevice::default()));
        let e = Host::create(ObjectMeta::default(), &s, "seg".into()).unwrap_err();
        assert_eq!(e.field(), Some("fence.agent"));
    }
}
