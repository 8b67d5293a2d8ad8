//! The recovery loop on the leader: turns failures into moves, and records each recovery as a
//! notification with its steps and vmoves.
//!
//! - A host is failed once gossip says it is dead (or it left) *and* its lease (plus the drift
//!   margin) has run out, or a fence agent confirmed it off: by then it runs nothing. A host
//!   that gossip cannot reach but whose lease holds is isolated, not failed, and nothing moves
//!   (rule S3). A failed host is marked so in the state and takes no work until it is back and
//!   enabled again (`buoy host enable`, or its segment's `auto_rejoin`).
//! - Copies reported failed past their restart budget, and copies named by a VM notification,
//!   move off their host.
//! - The planner (`engine::planner`) decides where, and also places started instances that
//!   have no placement yet. Each move is a placement update, which gives the copy a new epoch;
//!   a copy leaving a live host starts on the new one only after the old one stopped it
//!   (`engine::handoff`), and the loop clears those handoffs once confirmed.
//! - Promotable instances: the copies with the best promotion scores are promoted, each
//!   under a grant, and a new grant only once the old copy is confirmed demoted or its host
//!   is down (`promotion`, `engine::promotion`). With `notify`, copies about to start or
//!   stop, and copies that started or stopped, are announced to the others
//!   (`notify_lifecycle`).
//! - With the segment's `failback`, copies return to the host a recovery moved them from once
//!   it takes work again.
//! - A spread instance whose zones drifted apart (a zone came back) gets one copy at a time
//!   moved to the zone holding the fewest (`respread`, `engine::respread`).
//! - A scaled instance comes back down once its alerts resolved and the cool-down passed
//!   (`scaling`, `engine::scaling`; alerts arrive through `POST /v1/alertmanager/webhook`).
//!
//! Files: `detect` (failed and returning hosts), `external` (outside notifications), `fence`
//! (STONITH), `engine::plan_input` (the planner's view), `placing` (moves and new placements), `failback`,
//! `progress` (records moving forward), `records` (writing notifications).

mod detect;
mod external;
mod failback;
pub mod fence;
mod notify_lifecycle;
mod placing;
mod progress;
mod promotion;
mod records;
mod respread;
mod scaling;
pub mod unplaced;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use model::placement::Epoch;
use model::{Op, Timestamp};
use state::replica::Replica;
use swim::MemberState;

use crate::lease::grants::LeaseGrants;
use fence::Fencer;
use node::gossip::runtime::Shared;

/// How often the leader looks for failures.
const INTERVAL: Duration = Duration::from_millis(200);

/// How often a plan is retried while something could not be placed and nothing changed.
const RETRY_PLAN: Duration = Duration::from_secs(2);

/// Writes issued at once when a plan moves many copies (the Raft log commits them in groups).
const PARALLEL_WRITES: usize = 64;

/// The leader's recovery engine and its soft state (rebuilt by the next leader).
pub struct Recovery {
    replica: Arc<Replica>,
    /// Why the last plan left copies without a host (read by the API).
    unplaced: Arc<unplaced::Unplaced>,
    grants: Arc<LeaseGrants>,
    gossip: Arc<Shared>,
    fencer: Arc<Fencer>,
    /// When this leader first saw each host dead in gossip (the `detected` step).
    first_dead: BTreeMap<String, Timestamp>,
    /// Hosts logged as isolated (dead in gossip, renewing their lease).
    isolated: BTreeSet<String>,
    /// Hosts already logged as back but waiting for `buoy host enable`.
    waiting_enable: BTreeSet<String>,
    /// What the last plan was made from: the change index and the failed copies.
    planned: Option<(u64, BTreeSet<(String, Epoch)>)>,
    last_plan: Option<tokio::time::Instant>,
    /// Copies named failed by VM notifications (placement id, epoch).
    external_failed: BTreeSet<(String, Epoch)>,
    /// The open notification recording each failed copy's recovery, by placement id: one per
    /// streak of failures, however many hosts it tries.
    copy_records: BTreeMap<String, String>,
}

/// Runs on every server; acts only while this server leads.
pub async fn run(
    replica: Arc<Replica>,
    grants: Arc<LeaseGrants>,
    gossip: Arc<Shared>,
    fencer: Arc<Fencer>,
    unplaced: Arc<unplaced::Unplaced>,
) {
    let mut r = Recovery {
        replica,
        unplaced,
        grants,
        gossip,
        fencer,
        first_dead: BTreeMap::new(),
        isolated: BTreeSet::new(),
        waiting_enable: BTreeSet::new(),
        planned: None,
        last_plan: None,
        external_failed: BTreeSet::new(),
        copy_records: BTreeMap::new(),
    };
    loop {
        tokio::time::sleep(INTERVAL).await;
        if !r.replica.is_leader() {
            r.forget();
            continue;
        }
        r.tick().await;
    }
}

impl Recovery {
    /// Drops the soft state when leadership is lost.
    fn forget(&mut self) {
        self.first_dead.clear();
        self.waiting_enable.clear();
        self.planned = None;
        self.external_failed.clear();
        self.copy_records.clear();
        self.unplaced.set(Default::default());
        self.grants.rounds.forget();
    }

    async fn tick(&mut self) {
        self.write_lease_settings().await;
        let states: BTreeMap<String, MemberState> = self.gossip.read(|sw| {
            sw.members()
                .iter()
                .map(|m| (m.name().to_string(), m.state))
                .collect()
        });
        self.detect(&states).await;
        self.rejoin(&states).await;
        external::process(self, &states).await;
        self.clear_handoffs().await;
        self.promote().await;
        self.announce_starts_and_stops();
        self.prune().await;
        self.expire_failures().await;
        self.scale().await;
        self.replan().await;
        self.failback(&states).await;
        self.respread().await;
        self.progress().await;
    }

    /// The first leader writes its own lease timing as the cluster's (rule S1: from then on
    /// every leader grants the same TTL, and a new leader's floor covers the longest).
    async fn write_lease_settings(&self) {
        if self.replica.shared().read(|st| st.lease().is_some()) {
            return;
        }
        let own = self.grants.own_settings();
        let op = Op::SetLease {
            ttl_ms: own.ttl_ms,
            drift_margin_ms: own.drift_margin_ms,
            stop_grace_ms: None,
        };
        match self.replica.write(op, Timestamp::now()).await {
            Ok(Ok(_)) => tracing::info!(
                ttl_ms = own.ttl_ms,
                "the cluster's lease timing is set from this server's"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "lease timing refused"),
            Err(e) => tracing::warn!(error = %e, "lease timing not committed"),
        }
    }

    /// Writes `ops` with up to [`PARALLEL_WRITES`] in flight.
    async fn write_all(&self, ops: Vec<Op>) -> usize {
        use futures_util::StreamExt;
        futures_util::stream::iter(ops)
            .map(|op| records::write(&self.replica, op))
            .buffer_unordered(PARALLEL_WRITES)
            .filter(|r| std::future::ready(r.is_some()))
            .count()
            .await
    }
}
