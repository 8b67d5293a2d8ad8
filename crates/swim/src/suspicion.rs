//! One suspicion: a timer that ends in "dead" unless the suspect refutes, and that runs faster
//! as other members independently confirm it (Lifeguard's dynamic suspicion).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::time::Instant;

/// The suspicion timer of one member.
#[derive(Clone, Debug)]
pub struct Suspicion {
    /// When this member started suspecting: the timeout counts from here.
    start: Instant,
    /// Timeout with no confirmation.
    max: Duration,
    /// Timeout once `expected` confirmations arrived.
    min: Duration,
    /// Confirmations that bring the timeout down to `min`; 0 means `min` from the start.
    expected: u32,
    /// Members that suspect independently; the first accuser is in here but does not count.
    accusers: BTreeSet<String>,
    /// Extra time while this member only heard of the suspicion (never failed to probe the
    /// suspect itself): accusers get a direct refutation, second-hand holders rely on gossip.
    second_hand_margin: Duration,
    /// Whether this member is one of the accusers.
    ours: bool,
    /// Set when a second-hand suspicion ran out and this member asked the suspect itself:
    /// the suspect is declared dead only if no answer came by then.
    verify_until: Option<Instant>,
}

impl Suspicion {
    /// A suspicion raised by `from` at `start`; `ours` when this member is the accuser.
    pub fn new(
        start: Instant,
        from: &str,
        ours: bool,
        expected: u32,
        min: Duration,
        max: Duration,
        margin: Duration,
    ) -> Self {
        let mut accusers = BTreeSet::new();
        accusers.insert(from.to_string());
        Suspicion {
            start,
            max,
            min,
            expected,
            accusers,
            second_hand_margin: margin,
            ours,
            verify_until: None,
        }
    }

    /// Records an accuser (`ours` when it is this member). Returns true when `from` had not
    /// accused yet (the caller then re-gossips the suspicion); the deadline may move either way.
    pub fn confirm(&mut self, from: &str, ours: bool) -> bool {
        self.ours |= ours;
        if self.confirmations() >= self.expected {
            return false;
        }
        self.accusers.insert(from.to_string())
    }

    /// True when the timer ran out on a suspicion this member only heard of and has not
    /// checked itself yet: it must ask the suspect before declaring it dead.
    pub fn needs_verification(&self) -> bool {
        !self.ours && self.verify_until.is_none()
    }

    /// Gives the suspect until `until` to answer this member's own check.
    pub fn verify(&mut self, until: Instant) {
        self.ours = true;
        self.verify_until = Some(until);
    }

    /// Independent confirmations so far, not counting the first accuser.
    pub fn confirmations(&self) -> u32 {
        (self.accusers.len() as u32).saturating_sub(1)
    }

    /// The members that accused the suspect (a refutation is sent straight back to them).
    pub fn accusers(&self) -> impl Iterator<Item = &str> {
        self.accusers.iter().map(String::as_str)
    }

    /// When the suspect is declared dead if it has not refuted.
    pub fn deadline(&self) -> Instant {
        if let Some(t) = self.verify_until {
            return t;
        }
        let margin = if self.ours {
            Duration::ZERO
        } else {
            self.second_hand_margin
        };
        self.start
            + suspicion_timeout(self.min, self.max, self.expected, self.confirmations())
            + margin
    }
}

/// The dynamic suspicion timeout: `max` with no confirmation, falling logarithmically to `min`
/// once `expected` independent confirmations arrived, never below `min`.
pub fn suspicion_timeout(
    min: Duration,
    max: Duration,
    expected: u32,
    confirmations: u32,
) -> Duration {
    if expected == 0 || max <= min {
        return min;
    }
    let frac = (f64::from(confirmations) + 1.0).ln() / (f64::from(expected) + 1.0).ln();
    let span = (max - min).as_secs_f64();
    let t = max.as_secs_f64() - frac * span;
    Duration::from_secs_f64(t.max(min.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_hand_suspicion_waits_longer_until_we_accuse_too() {
        let margin = Duration::from_millis(500);
        let mut s = Suspicion::new(Instant::ZERO, "a", false, 0, MIN, MAX, margin);
        assert_eq!(s.deadline(), Instant::ZERO + MIN + margin);
        s.confirm("me", true);
        assert_eq!(s.deadline(), Instant::ZERO + MIN);
    }

    #[test]
    fn a_second_hand_suspicion_is_verified_once_before_it_ends() {
        let mut s = Suspicion::new(Instant::ZERO, "a", false, 0, MIN, MAX, Duration::ZERO);
        assert!(s.needs_verification());
        let until = Instant::ZERO + MIN + Duration::from_millis(100);
        s.verify(until);
        assert!(!s.needs_verification());
        assert_eq!(s.deadline(), until);
        let mine = Suspicion::new(Instant::ZERO, "me", true, 0, MIN, MAX, Duration::ZERO);
        assert!(
            !mine.needs_verification(),
            "an accuser already probed the suspect"
        );
    }

    const MIN: Duration = Duration::from_secs(2);
    const MAX: Duration = Duration::from_secs(8);

    #[test]
    fn the_timeout_starts_at_max_and_falls_to_min() {
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 0), MAX);
        let one = suspicion_timeout(MIN, MAX, 3, 1);
        let two = suspicion_timeout(MIN, MAX, 3, 2);
        assert!(MAX > one && one > two && two > MIN, "{one:?} {two:?}");
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 3), MIN);
        assert_eq!(suspicion_timeout(MIN, MAX, 3, 10), MIN);
    }

    #[test]
    fn with_no_confirmations_expected_the_timeout_is_min() {
        assert_eq!(suspicion_timeout(MIN, MAX, 0, 0), MIN);
    }

    #[test]
    fn the_first_accuser_does_not_count_and_repeats_are_ignored() {
        let mut s = Suspicion::new(Instant::ZERO, "a", true, 2, MIN, MAX, Duration::ZERO);
        assert_eq!(s.deadline(), Instant::ZERO + MAX);
        assert!(!s.confirm("a", false));
        assert!(s.confirm("b", false));
        assert!(!s.confirm("b", false));
        assert_eq!(s.confirmations(), 1);
        assert!(s.confirm("c", false));
        assert_eq!(s.deadline(), Instant::ZERO + MIN);
        assert!(!s.confirm("d", false), "no need for more than expected");
        assert_eq!(s.accusers().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
