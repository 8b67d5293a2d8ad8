//! Failback: with the segment's `failback`, copies return to the host a recovery moved them
//! from once it takes work again.

use std::collections::BTreeMap;

use model::{Expect, Object, Op};
use swim::MemberState;
use tracing::info;

use super::Recovery;

impl Recovery {
    /// With the segment's `failback`, moves copies back to the host a recovery took them from
    /// once that host takes work again and has room.
    pub(super) async fn failback(&self, states: &BTreeMap<String, MemberState>) {
        let now = self.gossip.now();
        let ops: Vec<Op> = self.replica.shared().read(|st| {
            let mut used: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
            for p in st.placements() {
                if let Some(i) = st.instance(&p.instance) {
                    let u = used.entry(p.host.as_str()).or_default();
                    u.0 += u64::from(i.cpu.millicores());
                    u.1 += i.memory_mb;
                }
            }
            let mut ops = Vec::new();
            for p in st.placements().filter(|p| p.handoffs.is_empty()) {
                let Some(home) = p.home.as_deref().and_then(|h| st.host(h)) else {
                    continue;
                };
                let (Some(i), Some(seg)) = (st.instance(&p.instance), st.segment(&home.segment))
                else {
                    continue;
                };
                let usable = seg.failback
                    && seg.enabled
                    && !home.failed
                    && !home.on_maintenance
                    && states.get(&home.name) == Some(&MemberState::Alive)
                    && self.grants.holds_lease(&home.name, now);
                if !usable
                    || st
                        .placements()
                        .any(|o| o.instance == p.instance && o.host == home.meta.id)
                {
                    continue;
                }
                let u = used.entry(home.meta.id.as_str()).or_default();
                let (cpu, mem) = (u64::from(i.cpu.millicores()), i.memory_mb);
                if u.0 + cpu > u64::from(home.capacity.cpu.millicores())
                    || u.1 + mem > home.capacity.memory_mb
                {
                    continue;
                }
                u.0 += cpu;
                u.1 += mem;
                info!(instance = %i.name, to = %home.name, "failback");
                let mut back = p.clone();
                back.host = home.meta.id.clone();
                back.home = None;
                ops.push(Op::Put {
                    object: Box::new(Object::Placement(back)),
                    expect: Expect::Version(p.meta.version),
                });
            }
            ops
        });
        self.write_all(ops).await;
    }
}
