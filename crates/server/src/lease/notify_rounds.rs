//! The leader's notification rounds (soft state, like leases): for a clone with `notify`,
//! the `notify` action every active copy runs before and after a promotion or demotion, and
//! after copies start or stop. A
//! round travels with the lease grants (each target copy's assignment carries it until its
//! host reports it run); the recovery loop starts rounds and waits for them
//! (`recovery::promotion`). Ids come from the wall clock, so a new leader's rounds are newer
//! than an old leader's and hosts run each once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::notify::{Operation, When};
use proto::NotifyCall;

/// How long a round waits for copies that neither run it nor stop: then the operation goes
/// on (Pacemaker ignores failed notifications too).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// One round of one instance.
#[derive(Clone, Debug)]
pub struct Round {
    pub id: u64,
    pub when: When,
    pub op: Operation,
    /// The replicas the operation acts on.
    pub acting: Vec<u32>,
    /// Pacemaker's variables, the same for every copy.
    pub env: BTreeMap<String, String>,
    /// The placements (ids) of the copies that run it.
    pub targets: BTreeSet<String>,
    pub started: Instant,
}

/// Every instance's round in progress, and the post round each one owes.
#[derive(Default)]
pub struct NotifyRounds {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    last_id: u64,
    rounds: BTreeMap<String, Round>,
    /// Per instance: the operation just done, whose post round starts once it shows.
    owed: BTreeMap<String, (Operation, u32)>,
    /// Per instance: its running copies (replica -> node) as last announced by start and
    /// stop rounds.
    running: BTreeMap<String, BTreeMap<u32, String>>,
}

impl NotifyRounds {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether any round is in progress (its targets' hosts then get their assignments at
    /// every renewal).
    pub fn any(&self) -> bool {
        self.with(|i| !i.rounds.is_empty())
    }

    /// The round of instance `instance` in progress.
    pub fn round(&self, instance: &str) -> Option<Round> {
        self.with(|i| i.rounds.get(instance).cloned())
    }

    /// Starts a round for `instance` (replacing none: call when there is none).
    pub fn start(
        &self,
        instance: &str,
        when: When,
        op: Operation,
        acting: Vec<u32>,
        env: BTreeMap<String, String>,
        targets: BTreeSet<String>,
    ) -> u64 {
        self.with(|i| {
            let id = (node::identity::wall_ms() * 1000).max(i.last_id + 1);
            i.last_id = id;
            i.rounds.insert(
                instance.to_string(),
                Round {
                    id,
                    when,
                    op,
                    acting,
                    env,
                    targets,
                    started: Instant::now(),
                },
            );
            id
        })
    }

    /// Ends `instance`'s round.
    pub fn finish(&self, instance: &str) {
        self.with(|i| i.rounds.remove(instance));
    }

    /// Records that `instance` owes a post round for `op` on `replica`.
    pub fn owe(&self, instance: &str, op: Operation, replica: u32) {
        self.with(|i| i.owed.insert(instance.to_string(), (op, replica)));
    }

    /// The post round `instance` owes.
    pub fn owed(&self, instance: &str) -> Option<(Operation, u32)> {
        self.with(|i| i.owed.get(instance).copied())
    }

    /// The owed post round was started.
    pub fn settle(&self, instance: &str) {
        self.with(|i| i.owed.remove(instance));
    }

    /// The `notify` actions placement `placement` must run.
    pub fn calls_for(&self, placement: &str) -> Vec<NotifyCall> {
        self.with(|i| {
            i.rounds
                .values()
                .filter(|r| r.targets.contains(placement))
                .map(|r| NotifyCall {
                    id: r.id,
                    env: r.env.clone(),
                })
                .collect()
        })
    }

    /// `instance`'s running copies as last announced (`None`: not looked at yet).
    pub fn announced(&self, instance: &str) -> Option<BTreeMap<u32, String>> {
        self.with(|i| i.running.get(instance).cloned())
    }

    /// Forgets the announced copies of instances `exists` says are gone.
    pub fn keep_announced(&self, exists: impl Fn(&str) -> bool) {
        self.with(|i| i.running.retain(|id, _| exists(id)));
    }

    /// Records `instance`'s running copies as announced.
    pub fn set_announced(&self, instance: &str, running: BTreeMap<u32, String>) {
        self.with(|i| i.running.insert(instance.to_string(), running));
    }

    /// Drops everything (leadership lost: the next leader starts its own rounds).
    pub fn forget(&self) {
        self.with(|i| {
            i.rounds.clear();
            i.owed.clear();
            i.running.clear();
        });
    }
}
