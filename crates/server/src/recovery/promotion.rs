//! Promotion on the leader: for every promotable instance, the steps `engine::promotion`
//! decides from the hosts' reports and leases (grant, revoke, release), written one by one.
//! The state machine refuses a grant beyond `promoted_max`, so a step planned on a stale view
//! is refused, never applied twice.

use std::collections::BTreeSet;

use model::instance::Mode;
use model::{Op, Timestamp};
use tracing::{info, warn};

use super::Recovery;
use crate::lease::grants::stop_budget;

impl Recovery {
    pub(super) async fn promote(&self) {
        let now = self.gossip.now();
        let ops: Vec<(String, Op)> = self.replica.shared().read(|st| {
            let promotable: Vec<&model::instance::Instance> = st
                .instances()
                .filter(|i| i.mode == Mode::Promotable)
                .collect();
            if promotable.is_empty() {
                return Vec::new();
            }
            // Which hosts provably run nothing, decided before the reports' lock is taken
            // (the lease table's lock is never taken under it).
            let down: BTreeSet<String> = st
                .hosts()
                .filter(|h| {
                    h.fenced
                        || self
                            .grants
                            .lease_over(&h.name, now, || stop_budget(st, &h.meta.id))
                })
                .map(|h| h.meta.id.clone())
                .collect();
            self.grants.with_reports(|reports| {
                promotable
                    .iter()
                    .flat_map(|inst| {
                        engine::promotion::plan(
                            st,
                            inst,
                            |name| reports.get(name).map(|r| &r.report),
                            |h| down.contains(&h.meta.id),
                        )
                        .into_iter()
                        .map(|step| {
                            (
                                inst.name.clone(),
                                Op::Promotion {
                                    instance: inst.meta.id.clone(),
                                    step,
                                },
                            )
                        })
                    })
                    .collect()
            })
        });
        for (name, op) in ops {
            let what = format!("{op:?}");
            match self.replica.write(op, Timestamp::now()).await {
                Ok(Ok(_)) => info!(instance = %name, step = %what, "promotion"),
                Ok(Err(e)) => {
                    warn!(instance = %name, step = %what, error = %e, "promotion step refused")
                }
                Err(e) => warn!(instance = %name, error = %e, "promotion step not committed"),
            }
        }
    }
}
