//! Moving recovery records forward from what the destination hosts report.

use model::Timestamp;
use model::notification::{Notification, NotificationStatus, NotificationType, VMoveStatus};
use tracing::info;

use super::Recovery;
use super::records::{self, HEALTHY, PLANNED, STARTED};
use engine::plan_input as input;
use proto::Phase;

/// How long copies of a failed host may find no host before its recovery ends `failed`, in
/// lease TTLs (a minute at the default 3 s).
const GIVE_UP_TTLS: u32 = 20;

impl Recovery {
    /// Moves the open records forward from what the destination hosts report: a vmove
    /// succeeds when its copy runs at its new epoch; the record finishes when every vmove has.
    pub(super) async fn progress(&self) {
        // Running records, with whether copies still sit on their failed host (a host
        // recovery ends only when none is left there).
        let open: Vec<(Notification, bool)> = self.replica.shared().read(|st| {
            st.notifications()
                .filter(|n| n.status == NotificationStatus::Running)
                .filter_map(|n| {
                    let failed_host =
                        n.source_host
                            .as_deref()
                            .and_then(|h| st.host(h))
                            .filter(|h| {
                                h.failed && n.notification_type == NotificationType::ComputeHost
                            });
                    let left = failed_host.is_some_and(|h| {
                        st.placements()
                            .any(|p| p.host == h.meta.id && input::started(st, &p.instance))
                    });
                    let planned = n.steps.iter().any(|s| s.name == PLANNED);
                    (planned || failed_host.is_some()).then(|| (n.clone(), left))
                })
                .collect()
        });
        let give_up =
            std::time::Duration::from_millis(self.grants.settings().ttl_ms) * GIVE_UP_TTLS;
        for (n, left) in open {
            let phases: Vec<Option<Phase>> = self.replica.shared().read(|st| {
                n.vmoves
                    .iter()
                    .map(|v| {
                        let dest = v.dest_host.as_deref()?;
                        let host = st.host_by_name(dest)?;
                        let p = st
                            .placements()
                            .find(|p| p.instance == v.instance && p.host == host.meta.id)?;
                        self.grants.phase_of(dest, &p.meta.id, p.epoch)
                    })
                    .collect()
            });
            let now = Timestamp::now();
            let all_started = n.vmoves.iter().zip(&phases).all(|(v, ph)| {
                v.status == VMoveStatus::Succeeded
                    || matches!(ph, Some(Phase::Starting | Phase::Running))
            });
            let all_done = !left
                && n.vmoves.iter().zip(&phases).all(|(v, ph)| {
                    v.status == VMoveStatus::Succeeded || *ph == Some(Phase::Running)
                });
            let newly_done = n
                .vmoves
                .iter()
                .zip(&phases)
                .any(|(v, ph)| v.status == VMoveStatus::Ongoing && *ph == Some(Phase::Running));
            let need_started = all_started && !n.steps.iter().any(|s| s.name == STARTED);
            // A recovery always ends: copies that found no host for a while end it `failed`,
            // saying why (they are placed later, under a record of their own).
            let planned_at = n.steps.iter().find(|s| s.name == PLANNED).map(|s| s.at);
            let stuck = left
                && !n.vmoves.is_empty()
                && n.vmoves
                    .iter()
                    .all(|v| matches!(v.status, VMoveStatus::Succeeded | VMoveStatus::Pending))
                && n.vmoves.iter().any(|v| v.status == VMoveStatus::Pending)
                && planned_at.is_some_and(|p| now.since(p) >= give_up);
            if stuck {
                let why: Vec<String> = n
                    .vmoves
                    .iter()
                    .filter(|v| v.status == VMoveStatus::Pending)
                    .map(|v| format!("{}: {}", v.instance_name, v.message))
                    .collect();
                let detail = format!(
                    "no host for {} cop(ies) after {} s ({}); they are placed as soon as there is room",
                    why.len(),
                    give_up.as_secs(),
                    why.join("; ")
                );
                records::update(&self.replica, &n.meta.id, |rec| {
                    records::add_step(rec, records::BLOCKED, now, detail.clone());
                    rec.status = NotificationStatus::Failed;
                    true
                })
                .await;
                info!(notification = %n.meta.id, host = %n.hostname, "recovery failed: {detail}");
                continue;
            }
            if !newly_done && !need_started && !all_done {
                continue;
            }
            records::update(&self.replica, &n.meta.id, |rec| {
                for (v, ph) in rec.vmoves.iter_mut().zip(&phases) {
                    if v.status == VMoveStatus::Ongoing && *ph == Some(Phase::Running) {
                        v.status = VMoveStatus::Succeeded;
                        v.end_time = Some(now);
                    }
                }
                if all_started && !rec.vmoves.is_empty() {
                    records::add_step(rec, STARTED, now, "every copy started on its destination");
                }
                if all_done {
                    if rec.vmoves.is_empty() {
                        records::add_step(rec, PLANNED, now, "nothing to move");
                    }
                    records::add_step(rec, HEALTHY, now, "every copy runs on its destination");
                    rec.status = NotificationStatus::Finished;
                    info!(notification = %rec.meta.id, host = %rec.hostname, moved = rec.vmoves.len(), "recovery finished");
                }
                true
            })
            .await;
        }
    }
}
