//! Recovery records: every recovery is a notification (Masakari's word) with timed steps and
//! one vmove per copy moved. These helpers write them through Raft; the loop decides when.

use std::sync::Arc;

use model::notification::{
    Notification, NotificationSpec, NotificationStatus, NotificationType, RecoveryStep, VMove,
    VMoveStatus,
};
use model::object::ObjectMeta;
use model::{Expect, Object, Op, StateError, Timestamp};
use serde_json::json;
use state::replica::Replica;
use tracing::warn;

use crate::ids::new_id;

/// Step names, in the order a host recovery passes them. `last_renewal` is the fault's first
/// evidence (the host stopped renewing its lease): the times of the later steps count from it.
pub const LAST_RENEWAL: &str = "last_renewal";
pub const DETECTED: &str = "detected";
pub const LEASE_EXPIRED: &str = "lease_expired";
pub const FENCED: &str = "fenced";
pub const PLANNED: &str = "planned";
pub const STARTED: &str = "started";
pub const HEALTHY: &str = "healthy";
/// A failed copy with nowhere left to go: the record ends `failed`.
pub const BLOCKED: &str = "blocked";

/// Writes `op`; a refusal or a lost leadership is logged and reported as `None`.
pub async fn write(replica: &Replica, op: Op) -> Option<Object> {
    match replica.write(op, Timestamp::now()).await {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => {
            warn!(error = %e, "recovery write refused");
            None
        }
        Err(e) => {
            warn!(error = %e, "recovery write not committed");
            None
        }
    }
}

/// Creates a notification written by the recovery engine itself, in state `running`.
pub async fn open(
    replica: &Replica,
    kind: NotificationType,
    hostname: &str,
    payload: serde_json::Value,
    steps: Vec<RecoveryStep>,
) -> Option<String> {
    let serde_json::Value::Object(payload) = payload else {
        return None;
    };
    let spec = NotificationSpec {
        notification_type: kind,
        hostname: hostname.to_string(),
        generated_time: Timestamp::now(),
        payload,
    };
    let meta = ObjectMeta {
        id: new_id(),
        ..Default::default()
    };
    let mut n = match Notification::create(meta, 0, &spec) {
        Ok(n) => n,
        Err(e) => {
            warn!(error = %e, "cannot record a recovery");
            return None;
        }
    };
    n.status = NotificationStatus::Running;
    n.steps = steps;
    let id = n.meta.id.clone();
    write(
        replica,
        Op::Put {
            object: Box::new(Object::Notification(n)),
            expect: Expect::Absent,
        },
    )
    .await
    .map(|_| id)
}

/// The payload of a host failure found by Buoy (Masakari's COMPUTE_HOST fields, and ours).
pub fn host_payload(how: &str) -> serde_json::Value {
    json!({
        "event": "STOPPED",
        "host_status": "UNKNOWN",
        "cluster_status": "OFFLINE",
        "source": "buoy",
        "detected_by": how,
        "at": Timestamp::now(),
    })
}

/// The payload of an instance that failed where it ran (Masakari's VM fields, and ours).
pub fn instance_payload(instance: &str, reason: &str) -> serde_json::Value {
    json!({
        "instance_uuid": instance,
        "event": "LIFECYCLE",
        "vir_domain_event": "STOPPED_FAILED",
        "source": "buoy",
        "reason": reason,
        "at": Timestamp::now(),
    })
}

/// Applies `change` to the stored notification `id` and writes it (retrying once when another
/// write got there first). Does nothing when `change` returns false.
pub async fn update(
    replica: &Arc<Replica>,
    id: &str,
    mut change: impl FnMut(&mut Notification) -> bool,
) -> bool {
    for _ in 0..2 {
        let Some(mut n) = replica.shared().read(|st| st.notification(id).cloned()) else {
            return false;
        };
        let version = n.meta.version;
        if !change(&mut n) {
            return true;
        }
        match replica
            .write(
                Op::Put {
                    object: Box::new(Object::Notification(n)),
                    expect: Expect::Version(version),
                },
                Timestamp::now(),
            )
            .await
        {
            Ok(Ok(_)) => return true,
            Ok(Err(StateError::VersionMismatch { .. })) => continue,
            Ok(Err(e)) => {
                warn!(error = %e, notification = id, "recovery record refused");
                return false;
            }
            Err(e) => {
                warn!(error = %e, notification = id, "recovery record not committed");
                return false;
            }
        }
    }
    false
}

/// Adds step `name` at `at` unless the notification has it already.
pub fn add_step(n: &mut Notification, name: &str, at: Timestamp, detail: impl Into<String>) {
    if !n.steps.iter().any(|s| s.name == name) {
        n.steps.push(RecoveryStep {
            name: name.to_string(),
            at,
            detail: detail.into(),
        });
    }
}

/// A vmove for a copy leaving `source_host` (a host name).
pub fn vmove(
    instance: &str,
    instance_name: &str,
    source_host: &str,
    dest_host: Option<&str>,
    message: String,
) -> VMove {
    let now = Timestamp::now();
    VMove {
        id: new_id(),
        instance: instance.to_string(),
        instance_name: instance_name.to_string(),
        source_host: source_host.to_string(),
        dest_host: dest_host.map(String::from),
        status: if dest_host.is_some() {
            VMoveStatus::Ongoing
        } else {
            VMoveStatus::Pending
        },
        start_time: dest_host.map(|_| now),
        end_time: None,
        message,
    }
}

/// Whether the notification is still being worked on.
pub fn is_open(n: &Notification) -> bool {
    matches!(
        n.status,
        NotificationStatus::New | NotificationStatus::Running
    )
}
