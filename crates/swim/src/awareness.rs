//! Local health awareness (Lifeguard): how much this member should distrust itself.

use std::time::Duration;

/// A score from 0 (healthy) to `max`. It rises when this member misses nacks or has to refute
/// a suspicion about itself (signs that *it* is slow), and falls with each successful probe.
/// Probe interval and timeout are multiplied by `score + 1`, so a starved member probes less
/// aggressively instead of accusing healthy peers.
#[derive(Clone, Debug)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// A healthy score with the given ceiling.
    pub fn new(max: u32) -> Self {
        Awareness { score: 0, max }
    }

    /// Moves the score by `delta`, staying within `0..=max`.
    pub fn apply(&mut self, delta: i64) {
        let s = (i64::from(self.score) + delta).clamp(0, i64::from(self.max));
        self.score = s as u32;
    }

    /// The current score.
    pub fn score(&self) -> u32 {
        self.score
    }

    /// `d` stretched by the current score.
    pub fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_stays_within_bounds() {
        let mut a = Awareness::new(8);
        a.apply(-3);
        assert_eq!(a.score(), 0);
        a.apply(5);
        a.apply(5);
        assert_eq!(a.score(), 8);
    }

    #[test]
    fn timings_stretch_with_the_score() {
        let mut a = Awareness::new(8);
        assert_eq!(
            a.scale(Duration::from_millis(100)),
            Duration::from_millis(100)
        );
        a.apply(2);
        assert_eq!(
            a.scale(Duration::from_millis(100)),
            Duration::from_millis(300)
        );
    }
}
