//! Rule S1 checked exactly, for simulations on the virtual clock: every copy of a single
//! instance is recorded when its process starts and when it ends, and a copy that starts while
//! another copy of the same instance still runs is a violation, whatever the epochs (two hosts
//! running one epoch count too). Unlike heartbeats (`crate::heartbeats`), nothing is sampled:
//! the simulator knows every process's start and end to the nanosecond.

use std::collections::BTreeMap;

use swim::Instant;

/// One copy: an instance's process on a host, at an epoch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Copy {
    pub instance: String,
    pub host: String,
    pub epoch: u64,
}

/// Two copies of one instance running at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The copy that was running, and since when.
    pub running: Copy,
    pub since: Instant,
    /// The copy that started meanwhile, and when.
    pub started: Copy,
    pub at: Instant,
}

/// Which copies run now, and every violation seen.
#[derive(Debug, Default)]
pub struct RunLog {
    running: BTreeMap<String, Vec<(Copy, Instant)>>,
    violations: Vec<Violation>,
    starts: u64,
    /// When each copy ended, in order, for those ended through [`RunLog::end`] (a copy on a
    /// host that sleeps twice runs, stops and runs again).
    ends: BTreeMap<Copy, Vec<Instant>>,
}

impl RunLog {
    /// `copy`'s process started at `at`.
    pub fn started(&mut self, at: Instant, copy: Copy) {
        self.starts += 1;
        let others = self.running.entry(copy.instance.clone()).or_default();
        for (other, since) in others.iter() {
            self.violations.push(Violation {
                running: other.clone(),
                since: *since,
                started: copy.clone(),
                at,
            });
        }
        others.push((copy, at));
    }

    /// `copy`'s process ended (a copy that is not running is ignored).
    pub fn ended(&mut self, copy: &Copy) {
        if let Some(list) = self.running.get_mut(&copy.instance) {
            list.retain(|(c, _)| c != copy);
            if list.is_empty() {
                self.running.remove(&copy.instance);
            }
        }
    }

    /// `copy`'s process ended at `at` (remembered for [`RunLog::ended_after`]).
    pub fn end(&mut self, at: Instant, copy: &Copy) {
        if self
            .running
            .get(&copy.instance)
            .is_some_and(|l| l.iter().any(|(c, _)| c == copy))
        {
            self.ends.entry(copy.clone()).or_default().push(at);
        }
        self.ended(copy);
    }

    /// When `copy` first ended at or after `since`, if it ended through [`RunLog::end`].
    pub fn ended_after(&self, copy: &Copy, since: Instant) -> Option<Instant> {
        self.ends.get(copy)?.iter().copied().find(|e| *e >= since)
    }

    /// How many copies of `instance` run now.
    pub fn running(&self, instance: &str) -> usize {
        self.running.get(instance).map_or(0, Vec::len)
    }

    /// Every copy running now.
    pub fn all_running(&self) -> impl Iterator<Item = &Copy> {
        self.running.values().flatten().map(|(c, _)| c)
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many copies started in all.
    pub fn starts(&self) -> u64 {
        self.starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    fn copy(host: &str, epoch: u64) -> Copy {
        Copy {
            instance: "web".into(),
            host: host.into(),
            epoch,
        }
    }

    #[test]
    fn one_copy_after_another_is_fine_even_at_the_same_instant() {
        let mut log = RunLog::default();
        log.started(at(0), copy("h1", 1));
        log.ended(&copy("h1", 1));
        log.started(at(0), copy("h2", 2));
        assert!(log.violations().is_empty());
        assert_eq!((log.running("web"), log.starts()), (1, 2));
    }

    /// The negative control: the checker must catch what it exists for.
    #[test]
    fn a_copy_starting_while_another_runs_is_caught_whatever_the_epochs() {
        let mut log = RunLog::default();
        log.started(at(0), copy("h1", 1));
        log.started(at(5), copy("h2", 2));
        log.started(at(7), copy("h3", 2)); // Two hosts at one epoch.
        let v = log.violations();
        assert_eq!(v.len(), 3, "{v:?}");
        assert_eq!((v[0].running.host.as_str(), v[0].since), ("h1", at(0)));
        assert_eq!((v[0].started.host.as_str(), v[0].at), ("h2", at(5)));
        assert_eq!(v[2].started.epoch, v[1].started.epoch);
        log.ended(&copy("h1", 1));
        log.ended(&copy("h2", 2));
        log.ended(&copy("h3", 2));
        assert_eq!(log.all_running().count(), 0);
    }

    /// Seed 226 of `buoy sim cluster` reported an 11.2 s overlap after a suspend that was two
    /// of 0.2 s: the host slept again 181 ms after resuming, and the overlap was measured to
    /// the copy's last end instead of the end of that run.
    #[test]
    fn a_copy_that_runs_twice_ends_each_run_at_its_own_end() {
        let mut log = RunLog::default();
        log.started(at(0), copy("h1", 1));
        log.end(at(10), &copy("h1", 1));
        log.started(at(20), copy("h1", 1));
        log.end(at(30), &copy("h1", 1));
        assert_eq!(log.ended_after(&copy("h1", 1), at(0)), Some(at(10)));
        assert_eq!(log.ended_after(&copy("h1", 1), at(20)), Some(at(30)));
        assert_eq!(log.ended_after(&copy("h1", 1), at(31)), None);
    }
}
