//! The leader's view of every host's lease (rule S1). Soft state: leases are not Raft log
//! entries (10,000 hosts renewing every 500 ms would flood the log). A newly elected leader
//! knows nothing of the old one's grants, so it treats every lease as renewed at its
//! election: recovery waits at most one more lease after a leader change, and never starts a
//! host's instances elsewhere while that host may still believe it holds its lease.
//!
//! The shell must confirm it is still the leader (a quorum round) after receiving a renewal and
//! before granting it; then every grant of a deposed leader was received before the new
//! leader's election, and ends before the new leader's floor.

use std::collections::HashMap;
use std::time::Duration;

use crate::Instant;

/// Lease ends as the leader sees them.
#[derive(Debug)]
pub struct LeaseTable {
    ttl: Duration,
    /// Extra wait past a lease's end before the leader treats the host as fenced: covers the
    /// host's clock running slower than the leader's.
    drift_margin: Duration,
    /// No lease ends before this: this leader's election plus the longest TTL any leader may
    /// have granted (the cluster's ceiling, at least this leader's own TTL).
    floor: Instant,
    /// The end of each host's lease, from the last renewal this leader received.
    ends: HashMap<String, Instant>,
    /// When this leader last received a renewal from each host: the first evidence of a
    /// host's failure is that renewals stop (recovery steps are timed from it).
    last: HashMap<String, Instant>,
    /// The stop grace renewals get from now on: a host stops (or kills) what it ran by its
    /// lease's end plus the grace it was granted with.
    stop_grace: Duration,
    /// No host's stops end before this: the floor plus the longest grace any leader may have
    /// granted.
    stops_floor: Instant,
    /// By when each host has stopped everything, from the grants this leader made: the latest
    /// lease end plus grace among them (a lowered grace never shortens an earlier grant's).
    stops_end: HashMap<String, Instant>,
}

impl LeaseTable {
    /// The table of a leader elected at `elected_at`, granting `ttl`, after leaders that may
    /// have granted up to `ceiling`.
    pub fn new(
        ttl: Duration,
        drift_margin: Duration,
        ceiling: Duration,
        elected_at: Instant,
    ) -> Self {
        let floor = elected_at + ttl.max(ceiling);
        let grace = model::lease_settings::DEFAULT_STOP_GRACE;
        LeaseTable {
            ttl,
            drift_margin,
            floor,
            ends: HashMap::new(),
            last: HashMap::new(),
            stop_grace: grace,
            stops_floor: floor + grace,
            stops_end: HashMap::new(),
        }
    }

    /// Follows a change of the cluster's lease timing: renewals from now on get `ttl`. Ends
    /// already granted stay as they are.
    pub fn set_timing(&mut self, ttl: Duration, drift_margin: Duration) {
        self.ttl = ttl;
        self.drift_margin = drift_margin;
    }

    /// Follows the cluster's stop grace: renewals from now on get `grace`; `ceiling` is the
    /// longest any leader may have granted (a host not heard from in this term may hold it).
    pub fn set_stop_grace(&mut self, grace: Duration, ceiling: Duration) {
        self.stop_grace = grace;
        self.stops_floor = self.stops_floor.max(self.floor + ceiling.max(grace));
    }

    /// The stop grace renewals get now.
    pub fn stop_grace(&self) -> Duration {
        self.stop_grace
    }

    /// No lease ends before this instant in this leader's view.
    pub fn floor(&self) -> Instant {
        self.floor
    }

    /// A renewal from `host` received at `received_at` (after the leader confirmed its
    /// leadership); returns the lease length granted.
    pub fn renew(&mut self, host: &str, received_at: Instant) -> Duration {
        let end = received_at + self.ttl;
        let stops = self
            .stops_end
            .entry(host.to_string())
            .or_insert(end + self.stop_grace);
        *stops = (*stops).max(end + self.stop_grace);
        let last = self.last.entry(host.to_string()).or_insert(received_at);
        *last = (*last).max(received_at);
        match self.ends.get_mut(host) {
            Some(e) => *e = (*e).max(end),
            None => {
                self.ends.insert(host.to_string(), end);
            }
        }
        self.ttl
    }

    /// When `host`'s lease ends as far as this leader knows.
    pub fn ends_at(&self, host: &str) -> Instant {
        self.ends
            .get(host)
            .copied()
            .unwrap_or(self.floor)
            .max(self.floor)
    }

    /// Whether `host` has surely stopped running instances at `now` (its lease and the drift
    /// margin are over): only then may its single instances start elsewhere.
    pub fn expired(&self, host: &str, now: Instant) -> bool {
        now >= self.ends_at(host) + self.drift_margin
    }

    /// When `expired(host, _)` becomes true.
    pub fn fenced_at(&self, host: &str) -> Instant {
        self.ends_at(host) + self.drift_margin
    }

    /// When `host` has stopped, or killed, whatever its stops left, in this leader's view: its
    /// lease's end plus the stop grace of the grant, plus the drift margin.
    pub fn stops_done_at(&self, host: &str) -> Instant {
        self.stops_end
            .get(host)
            .copied()
            .unwrap_or(self.stops_floor)
            .max(self.stops_floor)
            + self.drift_margin
    }

    /// Whether `host` has surely stopped everything it ran at `now`: its lease and the drift
    /// margin are over and, where `slow_stops` says it has copies whose stop takes time (OCF
    /// resources, [`crate::stop_budget`]), the stop grace too. `slow_stops` is asked only when
    /// it decides (it walks the placements).
    pub fn lease_over(&self, host: &str, now: Instant, slow_stops: impl FnOnce() -> bool) -> bool {
        self.fenced_at(host) <= now && (self.stops_done_at(host) <= now || !slow_stops())
    }

    /// When this leader last received a renewal from `host`, if it ever did.
    pub fn last_renewal(&self, host: &str) -> Option<Instant> {
        self.last.get(host).copied()
    }

    /// Whether `host` renewed with this leader within the last third of a lease (it still
    /// renews: it holds its lease, not merely within it).
    pub fn still_renews(&self, host: &str, now: Instant) -> bool {
        self.renewed(host) && self.ends_at(host) + self.ttl() / 3 > now + self.ttl()
    }

    /// Whether `host` renewed with this leader at all.
    pub fn renewed(&self, host: &str) -> bool {
        self.ends.contains_key(host)
    }

    /// The hosts that renewed with this leader.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.ends.keys().map(String::as_str)
    }

    /// Forgets a host removed from the cluster.
    pub fn forget(&mut self, host: &str) {
        self.ends.remove(host);
        self.last.remove(host);
        self.stops_end.remove(host);
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::host_lease::{HostLease, LeaseTiming};

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    /// Issue 15, hole 9: the old leader granted 8 s leases; the new one grants 2 s. Its floor
    /// must cover the 8 s a host may still hold, not its own 2 s.
    #[test]
    fn a_leader_with_a_shorter_ttl_waits_out_the_longest_lease_granted_before_it() {
        let (host_ttl, new_ttl) = (Duration::from_secs(8), Duration::from_secs(2));
        let mut old = LeaseTable::new(host_ttl, Duration::ZERO, host_ttl, at(0));
        // The host's last renewal reached the old leader just before the election at 1 s.
        old.renew("h", at(999));
        let mut host = HostLease::new(
            LeaseTiming {
                ttl: host_ttl,
                renew_every: Duration::from_secs(1),
            },
            at(0),
        );
        let id = host.poll_renewal(at(998)).unwrap();
        host.on_granted(id, host_ttl);
        let new = LeaseTable::new(new_ttl, Duration::from_millis(100), host_ttl, at(1_000));
        let first_expired = (1_000..20_000)
            .find(|&ms| new.expired("h", at(ms)))
            .unwrap();
        assert!(
            !host.is_held(at(first_expired)),
            "the new leader counts h's lease over at {first_expired} ms while h holds it"
        );
        assert_eq!(new.floor(), at(9_000));
    }

    /// The stop grace: a host with OCF copies is done at lease end + grace + drift; one
    /// without at lease end + drift. A lowered grace never shortens a grant already made, and
    /// a new leader assumes the longest grace ever set for hosts it has not heard from.
    #[test]
    fn hosts_with_slow_stops_are_over_only_after_the_grace_they_were_granted() {
        let (ttl, drift) = (Duration::from_secs(3), Duration::from_millis(300));
        let mut t = LeaseTable::new(ttl, drift, ttl, at(0));
        t.set_stop_grace(Duration::from_secs(3), Duration::from_secs(3));
        t.renew("h", at(1_000));
        assert!(t.lease_over("h", at(4_300), || false));
        assert!(!t.lease_over("h", at(4_299), || false));
        assert!(!t.lease_over("h", at(7_299), || true));
        assert!(t.lease_over("h", at(7_300), || true));
        // Lowered to 1 s: the next grant ends at 5 s + 1 s, but the one before still
        // allows stops until 7 s.
        t.set_stop_grace(Duration::from_secs(1), Duration::from_secs(3));
        t.renew("h", at(2_000));
        assert!(!t.lease_over("h", at(7_299), || true));
        t.renew("h", at(5_000));
        assert_eq!(t.stops_done_at("h"), at(9_300));
        // A new leader elected at 10 s, the ceiling grace 5 s: nobody is done before
        // 10 + 3 + 5 s (+ drift), whatever its own grace.
        let mut new = LeaseTable::new(ttl, drift, ttl, at(10_000));
        new.set_stop_grace(Duration::from_secs(1), Duration::from_secs(5));
        assert!(!new.lease_over("h", at(18_299), || true));
        assert!(new.lease_over("h", at(18_300), || true));
        assert!(new.lease_over("h", at(13_300), || false));
    }

    #[test]
    fn a_new_leader_grants_everyone_a_full_lease_from_its_election() {
        let mut t = LeaseTable::new(
            Duration::from_secs(3),
            Duration::from_millis(100),
            Duration::ZERO,
            at(10_000),
        );
        assert_eq!(t.ends_at("never-seen"), at(13_000));
        assert!(!t.expired("never-seen", at(13_099)));
        assert!(t.expired("never-seen", at(13_100)));
        // A renewal right after the election cannot end before the floor either.
        t.renew("h1", at(10_001));
        assert_eq!(t.ends_at("h1"), at(13_001));
        t.renew("h1", at(12_000));
        assert_eq!(t.fenced_at("h1"), at(15_100));
        t.forget("h1");
        assert_eq!(t.ends_at("h1"), at(13_000));
    }

    /// One renewal's life: sent by the host, received by a leader, answered.
    #[derive(Clone, Debug)]
    struct Renewal {
        /// Milliseconds after the previous renewal was sent.
        gap: u64,
        /// Network delay to the leader, and back.
        to_leader: u64,
        back: u64,
        /// Lost on the way (the leader never sees it) or its answer lost.
        lost: bool,
        answer_lost: bool,
    }

    fn renewal() -> impl Strategy<Value = Renewal> {
        (
            1u64..1500,
            0u64..2000,
            0u64..2000,
            prop::bool::weighted(0.2),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(gap, to_leader, back, lost, answer_lost)| Renewal {
                gap,
                to_leader,
                back,
                lost,
                answer_lost,
            })
    }

    proptest! {
        /// Rule S1's lease half: whatever the delays and losses, and across a leader change
        /// (the new leader is elected after the old one received its last renewal), the host's
        /// lease never ends later than the leader's view of it.
        #[test]
        fn the_host_never_holds_a_lease_a_leader_thinks_expired(
            renewals in prop::collection::vec(renewal(), 1..40),
            change_after in 0u64..40,
            election_delay in 0u64..500,
        ) {
            let timing = LeaseTiming { ttl: Duration::from_millis(3000), renew_every: Duration::from_millis(1) };
            let mut host = HostLease::new(timing, at(0));
            let mut leader = LeaseTable::new(timing.ttl, Duration::ZERO, Duration::ZERO, at(0));
            // (time, 0 = the leader receives, 1 = the host gets the grant, renewal id)
            let mut events: Vec<(u64, u8, u64)> = Vec::new();
            let mut now = 0;
            for r in &renewals {
                now += r.gap;
                let Some(id) = host.poll_renewal(at(now)) else { continue };
                if !r.lost {
                    events.push((now + r.to_leader, 0, id.0));
                    if !r.answer_lost {
                        events.push((now + r.to_leader + r.back, 1, id.0));
                    }
                }
            }
            events.sort();
            let mut last_received = 0;
            let mut changed = false;
            for (t, kind, id) in events {
                if kind == 0 && !changed && id > change_after {
                    // Elected after the old leader's last reception, before this one.
                    let elected_at = (last_received + election_delay).min(t);
                    leader = LeaseTable::new(timing.ttl, Duration::ZERO, Duration::ZERO, at(elected_at));
                    changed = true;
                }
                if kind == 0 {
                    leader.renew("h", at(t));
                    last_received = t;
                } else {
                    host.on_granted(crate::host_lease::RenewalId(id), timing.ttl);
                }
                if let Some(until) = host.until() {
                    prop_assert!(
                        until <= leader.ends_at("h"),
                        "at {t} ms the host holds its lease until {until:?}, the leader sees it end at {:?}",
                        leader.ends_at("h")
                    );
                    prop_assert!(!(host.is_held(at(t)) && leader.expired("h", at(t))));
                }
            }
        }
    }
}
