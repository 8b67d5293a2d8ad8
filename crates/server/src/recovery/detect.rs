//! Finding failed hosts (down in gossip, `engine::member_down`, with their lease over, or fenced), marking them
//! failed with their recovery record, and returning hosts that came back.

use std::collections::BTreeMap;

use engine::member_down;
use model::host::Host;
use model::notification::{NotificationStatus, NotificationType};
use model::{Expect, Object, Op, Timestamp};
use swim::MemberState;
use tracing::{info, warn};

use super::Recovery;
use super::records::{self, DETECTED, FENCED, LAST_RENEWAL, LEASE_EXPIRED};

impl Recovery {
    /// Marks failed every host that is dead (or left) in gossip and whose lease is over, or
    /// that a fence agent confirmed off.
    pub(super) async fn detect(&mut self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let hosts: Vec<Host> = self
            .replica
            .shared()
            .read(|st| st.hosts().filter(|h| !h.failed).cloned().collect());
        for h in hosts {
            let down = member_down::counts_down(states.get(&h.name).copied(), || {
                self.replica
                    .shared()
                    .read(|st| member_down::has_work(st, &h.meta.id))
            });
            let fenced = self.fencer.confirmed_off(&h.name);
            if !down && fenced.is_none() {
                self.first_dead.remove(&h.name);
                self.isolated.remove(&h.name);
                continue;
            }
            let detected = *self
                .first_dead
                .entry(h.name.clone())
                .or_insert_with(Timestamp::now);
            // Fence only what no longer renews: a host cut from gossip alone is isolated.
            if down && fenced.is_none() && !self.grants.renews(&h.name, now) {
                self.fencer.host_down(&h);
            }
            // Read before the lease table's lock is taken: renewals read the state and then
            // take that lock, so taking them the other way round could deadlock behind a
            // writer waiting for the state.
            let slow_stops = self
                .replica
                .shared()
                .read(|st| crate::lease::grants::has_slow_stops(st, &h.meta.id));
            let how = match fenced {
                Some(at) => (FENCED, at, "the fence agent confirmed it off".to_string()),
                None if self.grants.lease_over(&h.name, now, || slow_stops) => {
                    (
                    LEASE_EXPIRED,
                    Timestamp::now(),
                        "its lease, the drift margin and (for OCF copies) the stop grace are over: it has fenced itself".to_string(),
                    )
                }
                None => {
                    if states.get(&h.name) == Some(&MemberState::Dead)
                        && self.grants.renews(&h.name, now)
                        && self.isolated.insert(h.name.clone())
                    {
                        warn!(host = %h.name, "host isolated: gossip cannot reach it, but it renews its lease; nothing moves");
                    }
                    continue;
                }
            };
            self.fail_host(h, detected, how).await;
        }
    }

    /// Writes the host's failed mark and opens (or adopts) its recovery record.
    pub(super) async fn fail_host(
        &mut self,
        h: Host,
        detected: Timestamp,
        how: (&str, Timestamp, String),
    ) {
        let (step, at, detail) = how;
        info!(host = %h.name, %detail, "host failed");
        let version = h.meta.version;
        let mut marked = h.clone();
        marked.failed = true;
        marked.failed_at = Some(at);
        marked.fenced = step == FENCED;
        let op = Op::Put {
            object: Box::new(Object::Host(marked)),
            expect: Expect::Version(version),
        };
        if records::write(&self.replica, op).await.is_none() {
            return;
        }
        // Its transient attributes (`-l reboot`: promotion scores, replication states) go
        // with it, as when Pacemaker fences a node: they described copies that no longer run.
        let clear = Op::ClearNodeAttributes {
            node: h.name.clone(),
        };
        records::write(&self.replica, clear).await;
        self.first_dead.remove(&h.name);
        self.fencer.forget(&h.name);
        let open = self.replica.shared().read(|st| {
            st.notifications()
                .filter(|n| {
                    n.notification_type == NotificationType::ComputeHost
                        && n.source_host.as_deref() == Some(h.meta.id.as_str())
                        && records::is_open(n)
                })
                .map(|n| n.meta.id.clone())
                .next()
        });
        let detected_detail = "gossip: dead (or left)".to_string();
        // The first evidence: the last renewal this leader received (the host stopped at most
        // a renewal interval later). Wall-clock time, read off the leader's boot clock.
        let last = self
            .grants
            .last_renewal_ago(&h.name, self.gossip.now())
            .map(|ago| Timestamp::now().minus(ago));
        let last_detail = "the last lease renewal this leader received from it";
        match open {
            Some(id) => {
                records::update(&self.replica, &id, |n| {
                    n.status = NotificationStatus::Running;
                    if let Some(t) = last {
                        records::add_step(n, LAST_RENEWAL, t, last_detail);
                    }
                    records::add_step(n, DETECTED, detected, detected_detail.clone());
                    records::add_step(n, step, at, detail.clone());
                    n.steps.sort_by_key(|s| s.at);
                    true
                })
                .await;
            }
            None => {
                let mut steps: Vec<model::notification::RecoveryStep> = last
                    .map(|t| model::notification::RecoveryStep {
                        name: LAST_RENEWAL.into(),
                        at: t,
                        detail: last_detail.into(),
                    })
                    .into_iter()
                    .collect();
                steps.extend([
                    model::notification::RecoveryStep {
                        name: DETECTED.into(),
                        at: detected,
                        detail: detected_detail,
                    },
                    model::notification::RecoveryStep {
                        name: step.into(),
                        at,
                        detail,
                    },
                ]);
                records::open(
                    &self.replica,
                    NotificationType::ComputeHost,
                    &h.name,
                    records::host_payload(step),
                    steps,
                )
                .await;
            }
        }
    }

    /// A failed host that is back (alive in gossip and renewing its lease with this leader)
    /// takes work again when its segment says `auto_rejoin`; otherwise it waits for an
    /// operator's `buoy host enable`.
    pub(super) async fn rejoin(&mut self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let back: Vec<(Host, bool)> = self.replica.shared().read(|st| {
            st.hosts()
                .filter(|h| h.failed)
                .filter(|h| states.get(&h.name) == Some(&MemberState::Alive))
                .filter(|h| self.grants.holds_lease(&h.name, now))
                .map(|h| {
                    let auto = st.segment(&h.segment).is_some_and(|s| s.auto_rejoin);
                    (h.clone(), auto)
                })
                .collect()
        });
        for (h, auto) in back {
            if !auto {
                if self.waiting_enable.insert(h.name.clone()) {
                    info!(host = %h.name, "failed host is back: it takes work again after `buoy host enable`");
                }
                continue;
            }
            let version = h.meta.version;
            let mut enabled = h.clone();
            enabled.failed = false;
            enabled.failed_at = None;
            enabled.fenced = false;
            let op = Op::Put {
                object: Box::new(Object::Host(enabled)),
                expect: Expect::Version(version),
            };
            if records::write(&self.replica, op).await.is_some() {
                info!(host = %h.name, "failed host is back and rejoined (auto_rejoin)");
                self.waiting_enable.remove(&h.name);
            }
        }
    }
}
