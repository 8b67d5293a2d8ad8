//! Scale policies on the leader: an instance whose alerts resolved comes back down once its
//! cool-down passed, and a change of its `replicas` or bounds takes effect
//! (`engine::scaling::on_tick`; alerts themselves arrive through the webhook route).

use model::{Expect, Object, Op, Timestamp};
use tracing::info;

use super::Recovery;

impl Recovery {
    pub(super) async fn scale(&self) {
        let now = Timestamp::now();
        let ops: Vec<Op> = self.replica.shared().read(|st| {
            st.instances()
                .filter(|i| i.scale.is_some())
                .filter_map(|i| {
                    let (next, d) = engine::scaling::on_tick(i, now)?;
                    info!(instance = %i.name, from = d.from, to = d.to, why = %d.why, "scale policy: copy count changes");
                    Some(Op::Put {
                        object: Box::new(Object::Instance(next)),
                        expect: Expect::Version(i.meta.version),
                    })
                })
                .collect()
        });
        self.write_all(ops).await;
    }
}
