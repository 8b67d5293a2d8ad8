//! A host's own view of its lease (rule S1). The host may run instances only while it holds
//! a lease; it renews it with the leader, and counts each granted renewal from the moment it
//! *sent* the request, never from when the answer came. The leader counts from when it
//! received the request, which is later, so the host always believes its lease ends no later
//! than the leader does: when the leader gives up on the host, the host has already stopped.

use std::collections::VecDeque;
use std::time::Duration;

use crate::Instant;

/// How a host renews its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    /// How long a granted renewal lasts, counted from its sending.
    pub ttl: Duration,
    /// How often the host asks for a renewal (a few times per TTL, so one lost request or a
    /// slow answer does not end the lease).
    pub renew_every: Duration,
}

impl LeaseTiming {
    /// The LAN default: a 3 s lease renewed every 500 ms.
    pub const LAN: LeaseTiming = LeaseTiming {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_millis(500),
    };

    /// Checks that renewals come often enough to keep a lease alive.
    pub fn validate(&self) -> Result<(), String> {
        if self.ttl.is_zero() {
            return Err("lease ttl must be more than 0".into());
        }
        if self.renew_every.is_zero() || self.renew_every * 2 > self.ttl {
            return Err(format!(
                "lease renew_every {:?} must be more than 0 and at most half the ttl {:?}",
                self.renew_every, self.ttl
            ));
        }
        Ok(())
    }
}

/// Identifies one renewal request, so its answer is matched with its sending time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RenewalId(pub u64);

/// The host's lease: renewals in flight and the time the lease ends.
#[derive(Debug)]
pub struct HostLease {
    timing: LeaseTiming,
    /// Requests sent and not yet answered, oldest first, with their sending time. Requests
    /// older than one TTL are dropped: their grant could not extend the lease any more.
    in_flight: VecDeque<(RenewalId, Instant)>,
    next_id: u64,
    /// When the next request is due.
    next_renewal: Instant,
    /// When the last request was sent.
    last_sent: Instant,
    /// The end of the lease; `None` before the first grant.
    until: Option<Instant>,
    /// Since when the lease has been held without a break (the sending time of the request
    /// whose grant ended the last gap).
    since: Option<Instant>,
}

impl HostLease {
    /// A host without a lease, due to ask for one at `now`.
    pub fn new(timing: LeaseTiming, now: Instant) -> Self {
        HostLease {
            timing,
            in_flight: VecDeque::new(),
            next_id: 1,
            next_renewal: now,
            last_sent: now,
            until: None,
            since: None,
        }
    }

    /// When a renewal is due, returns the request to send now (the caller sends it right away:
    /// its sending time is `now`).
    pub fn poll_renewal(&mut self, now: Instant) -> Option<RenewalId> {
        if now < self.next_renewal {
            return None;
        }
        while let Some(&(_, sent)) = self.in_flight.front() {
            if now.saturating_since(sent) < self.timing.ttl {
                break;
            }
            self.in_flight.pop_front();
        }
        let id = RenewalId(self.next_id);
        self.next_id += 1;
        self.in_flight.push_back((id, now));
        self.last_sent = now;
        self.next_renewal = now + self.timing.renew_every;
        Some(id)
    }

    /// Something the leader should hear soon changed (an instance started or stopped): bring
    /// the next renewal forward, but not closer than `renew_every / 5` to the last one sent.
    pub fn expedite(&mut self) {
        let soonest = self.last_sent + self.timing.renew_every / 5;
        self.next_renewal = self.next_renewal.min(soonest);
    }

    /// When the next renewal is due (for the caller's timer).
    pub fn next_renewal(&self) -> Instant {
        self.next_renewal
    }

    /// The leader granted request `id` with lease length `ttl` (which may be shorter than
    /// ours: the shorter one counts). Returns true when the lease got longer.
    pub fn on_granted(&mut self, id: RenewalId, ttl: Duration) -> bool {
        let Some(pos) = self.in_flight.iter().position(|(i, _)| *i == id) else {
            return false;
        };
        let (_, sent) = self.in_flight[pos];
        // Older requests can only give earlier ends; their answers are now worthless.
        self.in_flight.drain(..=pos);
        let end = sent + ttl.min(self.timing.ttl);
        if self.until.is_some_and(|u| u >= end) {
            return false;
        }
        // The lease runs on unbroken only if the one before still held when this request left.
        if self.until.is_none_or(|u| u <= sent) {
            self.since = Some(sent);
        }
        self.until = Some(end);
        true
    }

    /// The leader refused a renewal (it does not know this host, or it is not the leader):
    /// nothing changes; the lease runs out unless another request is granted.
    pub fn on_refused(&mut self, id: RenewalId) {
        self.in_flight.retain(|(i, _)| *i != id);
    }

    /// Whether the host may run instances at `now`.
    pub fn is_held(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }

    /// Since when the lease has been held without a break, if it is held at `now`. A host
    /// that froze its instances for a suspend thaws them only under a lease held since before
    /// the freeze (`node::sleep`): a lease that lapsed and came back may have let the leader
    /// move them.
    pub fn held_since(&self, now: Instant) -> Option<Instant> {
        self.since.filter(|_| self.is_held(now))
    }

    /// When the lease ends (the watchdog's deadline), if one was ever granted.
    pub fn until(&self) -> Option<Instant> {
        self.until
    }

    pub fn timing(&self) -> LeaseTiming {
        self.timing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    const TIMING: LeaseTiming = LeaseTiming {
        ttl: Duration::from_millis(3000),
        renew_every: Duration::from_millis(500),
    };

    #[test]
    fn an_expedited_renewal_comes_early_but_not_right_after_the_last() {
        let mut l = HostLease::new(TIMING, at(0));
        let id = l.poll_renewal(at(0)).expect("due at once");
        assert!(l.on_granted(id, TIMING.ttl));
        assert_eq!(l.next_renewal(), at(500));
        l.expedite();
        assert_eq!(
            l.next_renewal(),
            at(100),
            "a fifth of the interval after the last"
        );
        assert!(l.poll_renewal(at(99)).is_none());
        assert!(l.poll_renewal(at(100)).is_some());
        assert_eq!(l.next_renewal(), at(600));
    }

    #[test]
    fn a_grant_counts_from_the_sending_of_its_request() {
        let mut l = HostLease::new(TIMING, at(0));
        assert!(!l.is_held(at(0)));
        let id = l.poll_renewal(at(100)).expect("due at once");
        // The answer comes 900 ms later; the lease still ends 3 s after the sending.
        assert!(l.on_granted(id, TIMING.ttl));
        assert_eq!(l.until(), Some(at(3100)));
        assert!(l.is_held(at(3099)));
        assert!(!l.is_held(at(3100)));
    }

    #[test]
    fn renewals_are_due_every_interval_and_the_shorter_ttl_wins() {
        let mut l = HostLease::new(TIMING, at(0));
        let first = l.poll_renewal(at(0)).unwrap();
        assert_eq!(l.poll_renewal(at(499)), None);
        let second = l.poll_renewal(at(500)).unwrap();
        assert!(l.on_granted(second, Duration::from_millis(1000)));
        assert_eq!(l.until(), Some(at(1500)));
        // The first request's answer, arriving late, is older: it cannot extend or shorten.
        assert!(!l.on_granted(first, TIMING.ttl));
        assert_eq!(l.until(), Some(at(1500)));
    }

    #[test]
    fn a_lease_is_never_shortened_and_unknown_answers_are_ignored() {
        let mut l = HostLease::new(TIMING, at(0));
        let a = l.poll_renewal(at(0)).unwrap();
        let b = l.poll_renewal(at(500)).unwrap();
        assert!(l.on_granted(b, TIMING.ttl));
        assert!(!l.on_granted(a, TIMING.ttl), "a is older than b");
        assert!(!l.on_granted(RenewalId(99), TIMING.ttl));
        l.on_refused(RenewalId(98));
        assert_eq!(l.until(), Some(at(3500)));
    }

    #[test]
    fn requests_older_than_a_ttl_are_forgotten() {
        let mut l = HostLease::new(TIMING, at(0));
        let old = l.poll_renewal(at(0)).unwrap();
        let _ = l.poll_renewal(at(3000)).unwrap();
        assert!(!l.on_granted(old, TIMING.ttl), "its grant would end now");
        assert!(!l.is_held(at(3000)));
    }

    #[test]
    fn held_since_marks_the_start_of_an_unbroken_run_of_leases() {
        let mut l = HostLease::new(TIMING, at(0));
        assert_eq!(l.held_since(at(0)), None);
        let a = l.poll_renewal(at(100)).unwrap();
        assert!(l.on_granted(a, TIMING.ttl));
        // Renewed while held, even if the answer came after the end: unbroken.
        let b = l.poll_renewal(at(3000)).unwrap();
        assert!(l.on_granted(b, TIMING.ttl));
        assert_eq!(l.held_since(at(3200)), Some(at(100)));
        // Lapsed (at 6000) and granted again: a new run, from the request that ended the gap.
        assert_eq!(l.held_since(at(6000)), None);
        let c = l.poll_renewal(at(7000)).unwrap();
        assert!(l.on_granted(c, TIMING.ttl));
        assert_eq!(l.held_since(at(7100)), Some(at(7000)));
    }

    #[test]
    fn timings_that_cannot_keep_a_lease_are_refused() {
        assert!(LeaseTiming::LAN.validate().is_ok());
        let bad = LeaseTiming {
            ttl: Duration::from_secs(1),
            renew_every: Duration::from_millis(600),
        };
        let e = bad.validate().unwrap_err();
        assert!(e.contains("at most half the ttl"), "{e}");
    }
}
