//! A notification: a failure report (Masakari's term) and the record of the recovery it caused,
//! with its steps and one vmove per instance moved.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::object::{ObjectMeta, check_name};
use crate::timestamp::Timestamp;

/// Two notifications of the same type, host and payload this close together are one failure.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(180);

/// What failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum NotificationType {
    #[serde(rename = "COMPUTE_HOST")]
    ComputeHost,
    #[serde(rename = "VM")]
    Vm,
    #[serde(rename = "PROCESS")]
    Process,
}

/// Where the recovery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NotificationStatus {
    New,
    Running,
    Finished,
    Error,
    Ignored,
    Failed,
}

/// One timed step of a recovery (detected, fenced, planned, started, healthy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RecoveryStep {
    pub name: String,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// How one instance's move went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VMoveStatus {
    Pending,
    Ongoing,
    Succeeded,
    Failed,
    Ignored,
}

/// One instance moved (or not) by a recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct VMove {
    pub id: String,
    pub instance: String,
    pub instance_name: String,
    pub source_host: String,
    pub dest_host: Option<String>,
    pub status: VMoveStatus,
    pub start_time: Option<Timestamp>,
    pub end_time: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A stored notification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Notification {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    /// A number that grows with each notification (Masakari clients show an integer id).
    pub serial: u64,
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    /// The host the failure is about.
    pub hostname: String,
    /// When the reporter saw the failure.
    pub generated_time: Timestamp,
    pub payload: serde_json::Map<String, serde_json::Value>,
    pub status: NotificationStatus,
    /// Id of the host named by `hostname`, when it is registered.
    pub source_host: Option<String>,
    /// Id of that host's segment.
    pub segment: Option<String>,
    pub steps: Vec<RecoveryStep>,
    pub vmoves: Vec<VMove>,
}

/// A failure report as a client sends it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSpec {
    #[serde(rename = "type")]
    pub notification_type: NotificationType,
    #[schemars(extend("pattern" = crate::object::NAME_PATTERN))]
    pub hostname: String,
    pub generated_time: Timestamp,
    #[serde(default)]
    pub payload: serde_json::Map<String, serde_json::Value>,
}

impl Notification {
    /// A new notification in state `new`.
    pub fn create(
        meta: ObjectMeta,
        serial: u64,
        spec: &NotificationSpec,
    ) -> Result<Self, StateError> {
        let n = Notification {
            meta,
            serial,
            notification_type: spec.notification_type,
            hostname: spec.hostname.clone(),
            generated_time: spec.generated_time,
            payload: spec.payload.clone(),
            status: NotificationStatus::New,
            source_host: None,
            segment: None,
            steps: Vec::new(),
            vmoves: Vec::new(),
        };
        n.validate()?;
        Ok(n)
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), StateError> {
        check_name("hostname", &self.hostname)?;
        let text = |k: &str| self.payload.get(k).and_then(|v| v.as_str());
        let need = |k: &str, what: &str| {
            text(k).map(|_| ()).ok_or_else(|| {
                StateError::unprocessable(format!("payload.{k}"), format!("is required for {what}"))
            })
        };
        match self.notification_type {
            NotificationType::ComputeHost => need("event", "COMPUTE_HOST (STARTED or STOPPED)")?,
            NotificationType::Vm => {
                need("instance_uuid", "VM notifications")?;
                need("event", "VM notifications")?;
            }
            NotificationType::Process => {
                need("process_name", "PROCESS notifications")?;
                need("event", "PROCESS notifications")?;
            }
        }
        if serde_json::to_vec(&self.payload).map_or(0, |v| v.len()) > 16 * 1024 {
            return Err(StateError::unprocessable(
                "payload",
                "must be at most 16 KiB of JSON",
            ));
        }
        Ok(())
    }

    /// True when `other` reports the same failure within [`DUPLICATE_WINDOW`].
    pub fn duplicates(&self, other: &Notification) -> bool {
        self.notification_type == other.notification_type
            && self.hostname == other.hostname
            && self.payload == other.payload
            && self
                .generated_time
                .since(other.generated_time)
                .max(other.generated_time.since(self.generated_time))
                < DUPLICATE_WINDOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> NotificationSpec {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn masakari_bodies_decode_and_validate() {
        let s = spec(
            r#"{"type":"COMPUTE_HOST","hostname":"node-1","generated_time":"2026-11-21T10:00:00.000000","payload":{"event":"STOPPED","host_status":"NORMAL","cluster_status":"OFFLINE"}}"#,
        );
        let n = Notification::create(ObjectMeta::default(), 1, &s).unwrap();
        assert_eq!(n.status, NotificationStatus::New);
        let bad = spec(
            r#"{"type":"VM","hostname":"node-1","generated_time":"2026-11-21T10:00:00Z","payload":{"event":"x"}}"#,
        );
        let e = Notification::create(ObjectMeta::default(), 1, &bad).unwrap_err();
        assert_eq!(e.field(), Some("payload.instance_uuid"));
        assert!(
            serde_json::from_str::<NotificationSpec>(
                r#"{"type":"DISK","hostname":"a","generated_time":"2026-11-21T10:00:00Z"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn duplicates_are_the_same_report_within_the_window() {
        let mk = |t: &str, host: &str| {
            let s = spec(&format!(
                r#"{{"type":"COMPUTE_HOST","hostname":"{host}","generated_time":"{t}","payload":{{"event":"STOPPED"}}}}"#
            ));
            Notification::create(ObjectMeta::default(), 1, &s).unwrap()
        };
        let a = mk("2026-11-21T10:00:00Z", "node-1");
        assert!(a.duplicates(&mk("2026-11-21T10:02:59Z", "node-1")));
        assert!(mk("2026-11-21T10:02:59Z", "node-1").duplicates(&a));
        assert!(!a.duplicates(&mk("2026-11-21T10:03:00Z", "node-1")));
        assert!(!a.duplicates(&mk("2026-11-21T10:00:00Z", "node-2")));
    }
}
