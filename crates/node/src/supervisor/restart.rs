//! The restart policy of one instance: restart in place with exponential backoff, at most
//! `max_restarts` times within `window`; past that the instance is failed, for the recovery
//! engine to move. Pure: the caller passes the time.

use std::collections::VecDeque;
use std::time::Duration;

use engine::Instant;

/// The first backoff; each restart within the window doubles it, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What to do after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterCrash {
    /// Start again at this time.
    RestartAt(Instant),
    /// The budget is spent: report the instance failed.
    GiveUp,
}

/// Restarts within the window, and the policy.
#[derive(Debug)]
pub struct RestartBudget {
    max_restarts: u32,
    window: Duration,
    restarts: VecDeque<Instant>,
}

impl RestartBudget {
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        RestartBudget {
            max_restarts,
            window,
            restarts: VecDeque::new(),
        }
    }

    /// The instance crashed at `now`.
    pub fn on_crash(&mut self, now: Instant) -> AfterCrash {
        while let Some(&t) = self.restarts.front() {
            if now.saturating_since(t) < self.window {
                break;
            }
            self.restarts.pop_front();
        }
        let used = self.restarts.len() as u32;
        if used >= self.max_restarts {
            return AfterCrash::GiveUp;
        }
        self.restarts.push_back(now);
        let backoff = FIRST_BACKOFF
            .saturating_mul(1 << used.min(16))
            .min(MAX_BACKOFF);
        AfterCrash::RestartAt(now + backoff)
    }

    /// Restarts used within the window as of the last crash.
    pub fn used(&self) -> u32 {
        self.restarts.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn backoff_doubles_until_the_budget_is_spent_then_the_window_refills_it() {
        let mut b = RestartBudget::new(3, Duration::from_secs(60));
        assert_eq!(b.on_crash(at(0)), AfterCrash::RestartAt(at(500)));
        assert_eq!(b.on_crash(at(1_000)), AfterCrash::RestartAt(at(2_000)));
        assert_eq!(b.on_crash(at(3_000)), AfterCrash::RestartAt(at(5_000)));
        assert_eq!(b.used(), 3);
        assert_eq!(b.on_crash(at(6_000)), AfterCrash::GiveUp);
        // A minute after the first two restarts, they leave the window: one is still in it,
        // so the backoff is the second step's.
        assert_eq!(b.on_crash(at(61_500)), AfterCrash::RestartAt(at(62_500)));
        let mut none = RestartBudget::new(0, Duration::from_secs(60));
        assert_eq!(none.on_crash(at(0)), AfterCrash::GiveUp);
    }

    #[test]
    fn backoff_is_capped() {
        let mut b = RestartBudget::new(100, Duration::from_secs(3600));
        let mut last = AfterCrash::GiveUp;
        for i in 0..20 {
            last = b.on_crash(at(i * 1000));
        }
        assert_eq!(last, AfterCrash::RestartAt(at(19_000) + MAX_BACKOFF));
    }
}
