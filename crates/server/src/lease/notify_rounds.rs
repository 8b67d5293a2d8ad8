//! The leader's notification rounds (soft state, like leases): for a clone with `notify`,
//! the `notify` action every active copy runs before and after a promotion or demotion,
//! before copies start (their hosts get them only once it ran: [`NotifyRounds::may_start`]),
//! before copies stop (their hosts keep them until it ran: [`NotifyRounds::released`]), and
//! after copies start or stop. A
//! round travels with the lease grants (each target copy's assignment carries it until its
//! host reports it run); the recovery loop starts rounds and waits for them
//! (`recovery::promotion`). Ids come from the wall clock, so a new leader's rounds are newer
//! than an old leader's and hosts run each once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::notify::{Operation, When};
use model::placement::{Epoch, Placement};
use proto::NotifyCall;

/// How long a round waits for copies that neither run it nor stop: then the operation goes
/// on (Pacemaker ignores failed notifications too).
pub const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// The target a round names a copy leaving its host by (its placement id goes with its new
/// host, or with nothing).
pub fn departing_key(placement: &str, epoch: Epoch) -> String {
    format!("{placement}@{epoch}")
}

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
    /// Copies (placement, epoch) whose start the running copies were told of (or that had
    /// nobody to tell): their hosts may start them.
    cleared: BTreeSet<(String, Epoch)>,
    /// Per instance: the copies its pre-start or pre-stop round in progress announces.
    announcing: BTreeMap<String, Vec<(String, Epoch)>>,
    /// Copies (placement, epoch) leaving their host whose stop was announced: their host
    /// may stop them.
    released: BTreeSet<(String, Epoch)>,
    /// The placements of instances with notifications as last seen, kept while a host
    /// still runs a copy of one that was removed (its held assignment is made from it).
    placed: BTreeMap<String, Placement>,
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

    /// Ends `instance`'s round (a pre-start round lets the copies it announced start).
    pub fn finish(&self, instance: &str) {
        self.with(|i| {
            let Some(ended) = i.rounds.remove(instance) else {
                return;
            };
            let copies = i.announcing.remove(instance).unwrap_or_default();
            match (ended.when, ended.op) {
                (When::Pre, Operation::Start) => i.cleared.extend(copies),
                (When::Pre, Operation::Stop) => i.released.extend(copies),
                _ => {}
            }
        });
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

    /// Whether the copy of `placement` at `epoch` may start: the running copies were told.
    pub fn may_start(&self, placement: &str, epoch: Epoch) -> bool {
        self.with(|i| i.cleared.contains(&(placement.to_string(), epoch)))
    }

    /// Lets `copies` start (nobody had to be told, or they were).
    pub fn clear(&self, copies: impl IntoIterator<Item = (String, Epoch)>) {
        self.with(|i| i.cleared.extend(copies));
    }

    /// Records the copies `instance`'s pre-start round (started now) announces.
    pub fn announcing(&self, instance: &str, copies: Vec<(String, Epoch)>) {
        self.with(|i| i.announcing.insert(instance.to_string(), copies));
    }

    /// Whether the copy of `placement` at `epoch`, leaving its host, may stop: every active
    /// copy was told.
    pub fn released(&self, placement: &str, epoch: Epoch) -> bool {
        self.with(|i| i.released.contains(&(placement.to_string(), epoch)))
    }

    /// Remembers `placements` (those of instances with notifications, as placed now), and
    /// forgets the removed ones and released copies that `reported` says no host reports
    /// any more.
    pub fn remember(
        &self,
        placements: impl IntoIterator<Item = Placement>,
        reported: impl Fn(&str, Option<Epoch>) -> bool,
    ) {
        self.with(|i| {
            let now: BTreeMap<String, Placement> = placements
                .into_iter()
                .map(|p| (p.meta.id.clone(), p))
                .collect();
            i.placed
                .retain(|id, _| !now.contains_key(id) && reported(id, None));
            i.placed.extend(now);
            i.released.retain(|(p, e)| reported(p, Some(*e)));
        });
    }

    /// The placement `id` as last seen.
    pub fn placement(&self, id: &str) -> Option<Placement> {
        self.with(|i| i.placed.get(id).cloned())
    }

    /// Forgets the cleared copies `exists` says are no longer placed.
    pub fn keep_cleared(&self, exists: impl Fn(&str, Epoch) -> bool) {
        self.with(|i| i.cleared.retain(|(p, e)| exists(p, *e)));
    }

    /// Drops everything (leadership lost: the next leader starts its own rounds).
    pub fn forget(&self) {
        self.with(|i| {
            i.rounds.clear();
            i.owed.clear();
            i.running.clear();
            i.cleared.clear();
            i.announcing.clear();
            i.released.clear();
            i.placed.clear();
        });
    }
}
