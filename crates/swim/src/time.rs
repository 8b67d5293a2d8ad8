//! Virtual time: the core never reads a clock, every input carries the caller's `now`.

use std::ops::{Add, AddAssign};
use std::time::Duration;

/// A point in time, in nanoseconds since an origin the caller picks (process start for the
/// agent, zero for the simulator). Only differences between two `Instant`s mean anything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The origin of the caller's timeline.
    pub const ZERO: Instant = Instant(0);

    /// The instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since `earlier`, or zero when `earlier` is in the future.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_a_duration_moves_forward_and_saturates() {
        let t = Instant::from_nanos(10) + Duration::from_nanos(5);
        assert_eq!(t.as_nanos(), 15);
        assert_eq!(
            (Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(1)).as_nanos(),
            u64::MAX
        );
    }

    #[test]
    fn elapsed_time_never_goes_negative() {
        let a = Instant::from_nanos(100);
        let b = Instant::from_nanos(40);
        assert_eq!(a.saturating_since(b), Duration::from_nanos(60));
        assert_eq!(b.saturating_since(a), Duration::ZERO);
    }
}
