//! Failure accounting: where a copy failed, so that recovery never loops. A copy that failed
//! on a host (it could not start, or crashed past its restart budget) is not placed there
//! again (Pacemaker's migration threshold of 1) until the failure expires (the instance's
//! `failure_timeout`; never when 0) or an operator resets it. A copy that failed on every
//! usable host is blocked: it stays where it failed, unplaced, and nothing moves. The leader
//! writes these rules' results through Raft; the planner reads them (`plan_input`).

use std::collections::BTreeSet;
use std::time::Duration;

use model::Timestamp;
use model::placement::{HostFailure, Placement};

/// `current` failed on its host for `reason` at `at`: the same placement with that failure
/// counted (the leader writes it with the move, or alone when the copy is blocked).
pub fn record(current: &Placement, reason: &str, at: Timestamp) -> Placement {
    let mut p = current.clone();
    match p.failures.iter_mut().find(|f| f.host == current.host) {
        Some(f) => {
            f.count += 1;
            f.epoch = current.epoch;
            f.reason = reason.to_string();
            f.at = at;
        }
        None => p.failures.push(HostFailure {
            host: current.host.clone(),
            count: 1,
            epoch: current.epoch,
            reason: reason.to_string(),
            at,
        }),
    }
    p
}

/// Whether the failure of `current`'s copy at its epoch is already counted: the leader sees
/// the same failed report at every tick and counts it once.
pub fn counted(current: &Placement) -> bool {
    current
        .failures
        .iter()
        .any(|f| f.host == current.host && f.epoch == current.epoch)
}

/// Whether `p`'s copy sits on a host where it failed: a blocked copy, or one being reset.
pub fn failed_here(p: &Placement) -> bool {
    p.failures.iter().any(|f| f.host == p.host)
}

/// Whether a failure recorded at `at` still counts at `now`.
pub fn fresh(at: Timestamp, timeout: Duration, now: Timestamp) -> bool {
    timeout.is_zero() || now < at.plus(timeout)
}

/// The hosts `p`'s copy is kept off at `now`.
pub fn avoided(p: &Placement, timeout: Duration, now: Timestamp) -> BTreeSet<String> {
    p.failures
        .iter()
        .filter(|f| fresh(f.at, timeout, now))
        .map(|f| f.host.clone())
        .collect()
}

/// The failures of `p`, one line per host, host ids turned into names by `name`.
pub fn describe(p: &Placement, name: impl Fn(&str) -> String) -> String {
    p.failures
        .iter()
        .map(|f| {
            let times = if f.count == 1 {
                String::new()
            } else {
                format!(" ({} times)", f.count)
            };
            format!("{}: {}{times}", name(&f.host), f.reason)
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The placement after a reset: no failures; a copy that sits on a host where it failed
/// starts again there under a new epoch (the old one must be confirmed stopped first).
/// `None` when there is nothing to reset.
pub fn reset(p: &Placement) -> Option<Placement> {
    if p.failures.is_empty() {
        return None;
    }
    let mut next = p.clone();
    if failed_here(p) {
        next.attempt += 1;
    }
    next.failures.clear();
    Some(next)
}

/// Whether `p` is blocked where it sits and every failure of it has expired at `now`: the
/// leader then resets it by itself.
pub fn expired(p: &Placement, timeout: Duration, now: Timestamp) -> bool {
    !timeout.is_zero() && failed_here(p) && p.failures.iter().all(|f| !fresh(f.at, timeout, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::placement::Epoch;

    fn placement(host: &str) -> Placement {
        Placement {
            meta: Default::default(),
            instance: "i".into(),
            replica: 0,
            host: host.into(),
            epoch: Epoch(3),
            handoffs: Vec::new(),
            home: None,
            failures: Vec::new(),
            attempt: 0,
        }
    }

    fn at(s: u64) -> Timestamp {
        Timestamp::from_unix_millis(s * 1000)
    }

    #[test]
    fn failures_are_counted_per_host_avoided_until_they_expire_and_reset_in_place() {
        let p = record(&placement("h1"), "no such program", at(10));
        let p = record(&p, "exit 1", at(20));
        assert_eq!(p.failures.len(), 1);
        assert_eq!(p.failures[0].count, 2);
        assert!(counted(&p));
        let mut moved = p.clone();
        moved.host = "h2".into();
        moved.epoch = Epoch(4);
        assert!(!counted(&moved));
        let moved = record(&moved, "exit 2", at(30));
        assert_eq!(
            avoided(&moved, Duration::ZERO, at(10_000)),
            ["h1".to_string(), "h2".into()].into()
        );
        assert_eq!(
            avoided(&moved, Duration::from_secs(15), at(40)),
            ["h2".to_string()].into()
        );
        assert_eq!(
            describe(&moved, |h| format!("host-{h}")),
            "host-h1: exit 1 (2 times); host-h2: exit 2"
        );
        assert!(!expired(&moved, Duration::ZERO, at(10_000)));
        assert!(!expired(&moved, Duration::from_secs(15), at(40)));
        assert!(expired(&moved, Duration::from_secs(15), at(46)));
        let r = reset(&moved).expect("something to reset");
        assert!(r.failures.is_empty() && r.attempt == 1, "{r:?}");
        assert_eq!(reset(&r), None);
        // A copy that runs elsewhere keeps its attempt: only its history is cleared.
        let elsewhere = record(&placement("h1"), "x", at(1));
        let mut elsewhere = elsewhere;
        elsewhere.host = "h2".into();
        assert_eq!(reset(&elsewhere).map(|r| r.attempt), Some(0));
    }
}
