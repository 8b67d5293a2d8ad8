//! Notifications posted by outside monitors through the Masakari-compatible API (state `new`).
//! Each one is taken (`running`), acted on, or set `ignored` with the reason as a step:
//!
//! - `COMPUTE_HOST` `STOPPED`: a host Buoy also sees dead is recovered under this record; a
//!   host with a fence device is fenced, then recovered; a host that is alive in gossip with
//!   no fence device is left alone (rule S3: Buoy moves nothing from a host that may run).
//! - `VM`: the copy of the named instance (`instance_uuid`: id or name) on that host counts as
//!   failed and moves elsewhere; the old host stops it before the new one starts it.
//! - `PROCESS` `STOPPED`: the host takes no new work (it goes on maintenance), as Masakari
//!   disables a compute service whose process died.

use std::collections::BTreeMap;

use model::notification::{Notification, NotificationStatus, NotificationType};
use model::{Expect, Object, Op, Timestamp};
use swim::MemberState;
use tracing::info;

use super::Recovery;
use super::records::{self, DETECTED};

/// What to do with one new notification.
enum Decision {
    Ignore(String),
    /// Take it; fence the host first when it has a device (by name).
    Recover {
        fence: bool,
        detail: String,
    },
    FailCopy {
        key: (String, model::placement::Epoch),
        detail: String,
    },
    Maintenance {
        host: Box<model::host::Host>,
        detail: String,
    },
}

/// Acts on every notification in state `new`.
pub async fn process(r: &mut Recovery, states: &BTreeMap<String, MemberState>) {
    let new: Vec<(Notification, Decision)> = r.replica.shared().read(|st| {
        st.notifications()
            .filter(|n| n.status == NotificationStatus::New)
            .map(|n| (n.clone(), decide(st, n, states)))
            .collect()
    });
    for (n, decision) in new {
        let now = Timestamp::now();
        let (status, detail) = match decision {
            Decision::Ignore(why) => (NotificationStatus::Ignored, why),
            Decision::Recover { fence, detail } => {
                if fence
                    && let Some(h) = r
                        .replica
                        .shared()
                        .read(|st| st.host_by_name(&n.hostname).cloned())
                {
                    r.fencer.host_down(&h);
                }
                (NotificationStatus::Running, detail)
            }
            Decision::FailCopy { key, detail } => {
                r.external_failed.insert(key.clone());
                r.copy_records.insert(key.0.clone(), n.meta.id.clone());
                (NotificationStatus::Running, detail)
            }
            Decision::Maintenance { host, detail } => {
                let version = host.meta.version;
                let mut h = *host;
                h.on_maintenance = true;
                let op = Op::Put {
                    object: Box::new(Object::Host(h)),
                    expect: Expect::Version(version),
                };
                if records::write(&r.replica, op).await.is_none() {
                    continue;
                }
                (NotificationStatus::Finished, detail)
            }
        };
        info!(notification = %n.meta.id, host = %n.hostname, ?status, %detail, "notification taken");
        records::update(&r.replica, &n.meta.id, |rec| {
            if rec.status != NotificationStatus::New {
                return false;
            }
            rec.status = status;
            records::add_step(rec, DETECTED, now, detail.clone());
            true
        })
        .await;
    }
}

fn decide(
    st: &model::ClusterState,
    n: &Notification,
    states: &BTreeMap<String, MemberState>,
) -> Decision {
    let event = n
        .payload
        .get("event")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_ascii_uppercase();
    let Some(host) = st.host_by_name(&n.hostname) else {
        return Decision::Ignore(format!("host `{}` is not registered in Buoy", n.hostname));
    };
    match n.notification_type {
        NotificationType::ComputeHost => {
            if event != "STOPPED" {
                return Decision::Ignore(format!(
                    "event `{event}`: only STOPPED starts a host recovery"
                ));
            }
            if host.failed {
                return Decision::Ignore(format!(
                    "host `{}` is already marked failed and recovered",
                    host.name
                ));
            }
            match states.get(&host.name) {
                Some(MemberState::Dead | MemberState::Left) => Decision::Recover {
                    fence: host.fence.is_some(),
                    detail: "reported stopped; gossip agrees: recovering once it is fenced or its lease is over".into(),
                },
                _ if host.fence.is_some() => Decision::Recover {
                    fence: true,
                    detail: "reported stopped: fencing it with its fence device, then recovering"
                        .into(),
                },
                None => Decision::Ignore(format!(
                    "host `{}` has never joined the cluster (no agent runs there): nothing to recover",
                    host.name
                )),
                _ => Decision::Ignore(format!(
                    "host `{}` is alive in gossip and has no fence device: nothing moves from a host that may still run its instances (rule S3)",
                    host.name
                )),
            }
        }
        NotificationType::Vm => {
            let named = n
                .payload
                .get("instance_uuid")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            let Some(instance) = st
                .resolve(model::Kind::Instance, named)
                .and_then(|id| st.instance(&id).cloned())
            else {
                return Decision::Ignore(format!("instance `{named}` does not exist"));
            };
            match st
                .placements()
                .find(|p| p.instance == instance.meta.id && p.host == host.meta.id)
            {
                Some(p) => Decision::FailCopy {
                    key: (p.meta.id.clone(), p.epoch),
                    detail: format!(
                        "instance `{}` reported failed on `{}` ({event}): moving it",
                        instance.name, host.name
                    ),
                },
                None => Decision::Ignore(format!(
                    "instance `{}` has no copy on host `{}`",
                    instance.name, host.name
                )),
            }
        }
        NotificationType::Process => {
            if event != "STOPPED" {
                return Decision::Ignore(format!("event `{event}`: nothing to do"));
            }
            let process = n
                .payload
                .get("process_name")
                .and_then(|v| v.as_str())
                .unwrap_or("");
            Decision::Maintenance {
                host: Box::new(host.clone()),
                detail: format!(
                    "process `{process}` stopped on `{}`: the host takes no new work (on maintenance)",
                    host.name
                ),
            }
        }
    }
}
