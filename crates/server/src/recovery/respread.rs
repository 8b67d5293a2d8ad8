//! Re-spreading on the leader: a spread instance whose zones drifted more than `max_skew`
//! apart (a zone came back after its copies were placed elsewhere) gets one copy moved
//! (`engine::respread`), and the next only once every copy runs again and none is moving,
//! so the others keep serving throughout.

use std::collections::{BTreeMap, BTreeSet};

use model::{ClusterState, Expect, Object, Op, Timestamp};
use proto::Phase;
use tracing::info;

use super::Recovery;

/// Copies moved at once, cluster-wide.
const MOVE_BUDGET: usize = 1;

impl Recovery {
    pub(super) async fn respread(&self) {
        let ops: Vec<Op> = self.replica.shared().read(|st| {
            if !st.instances().any(|i| i.spread.is_some()) {
                return Vec::new();
            }
            let starting = self.grants.starting();
            let settled = self.settled(st);
            let mut input =
                engine::plan_input::plan_input(st, &BTreeSet::new(), &starting, Timestamp::now());
            self.mark_down(st, &mut input);
            let moves = engine::respread::respread(&input, |id| settled.contains(id), MOVE_BUDGET);
            moves
                .iter()
                .filter_map(|m| {
                    let p = st
                        .placements()
                        .find(|p| p.instance == m.slot.instance && p.replica == m.slot.replica)?;
                    let name = |id: &str| st.host(id).map_or(id.to_string(), |h| h.name.clone());
                    info!(
                        instance = %st.instance(&p.instance).map_or("?", |i| i.name.as_str()),
                        from = %name(&p.host),
                        to = %name(&m.to),
                        "re-spread: a copy moves to the zone holding the fewest"
                    );
                    let mut moved = p.clone();
                    moved.host = m.to.clone();
                    Some(Op::Put {
                        object: Box::new(Object::Placement(moved)),
                        expect: Expect::Version(p.meta.version),
                    })
                })
                .collect()
        });
        self.write_all(ops).await;
    }

    /// The spread instances whose copies are all placed, reported running at their epoch,
    /// and not moving.
    fn settled(&self, st: &ClusterState) -> BTreeSet<String> {
        self.grants.with_reports(|reports| {
            let mut placed: BTreeMap<&str, (u32, bool)> = BTreeMap::new();
            for p in st.placements() {
                let running = st
                    .host(&p.host)
                    .and_then(|h| reports.get(&h.name))
                    .is_some_and(|r| {
                        r.report.instances.iter().any(|o| {
                            o.placement == p.meta.id
                                && o.epoch == p.epoch
                                && o.phase == Phase::Running
                        })
                    });
                let e = placed.entry(p.instance.as_str()).or_insert((0, true));
                e.0 += 1;
                e.1 &= running && p.handoffs.is_empty();
            }
            st.instances()
                .filter(|i| i.spread.is_some())
                .filter(|i| {
                    placed
                        .get(i.meta.id.as_str())
                        .is_some_and(|(n, ok)| *ok && *n == i.copies())
                })
                .map(|i| i.meta.id.clone())
                .collect()
        })
    }
}
