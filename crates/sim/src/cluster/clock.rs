//! A simulated machine's CLOCK_BOOTTIME: its own origin and a rate error, so that no two hosts
//! or servers agree on the time and leases must survive clock drift (rule S1's drift margin).

use swim::Instant;

/// One machine's boot clock, as a function of the simulation's true time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// The clock's reading at true time zero.
    origin_ns: u64,
    /// Rate error in parts per million (positive: runs fast).
    ppm: i64,
}

impl Clock {
    /// A clock reading `origin_ns` at true time zero and running `ppm` fast (slow if negative).
    pub fn new(origin_ns: u64, ppm: i64) -> Self {
        assert!(
            ppm.abs() < 100_000,
            "a clock off by 10% or more is not a clock"
        );
        Clock { origin_ns, ppm }
    }

    /// The machine's reading at true time `t`.
    pub fn local(&self, t: Instant) -> Instant {
        let n = t.as_nanos() as i128;
        let drift = n * self.ppm as i128 / 1_000_000;
        Instant::from_nanos((self.origin_ns as i128 + n + drift) as u64)
    }

    /// The first true time at which this clock reads `local` or more.
    pub fn true_time(&self, local: Instant) -> Instant {
        let l = local.as_nanos().saturating_sub(self.origin_ns) as i128;
        let mut t = (l * 1_000_000 / (1_000_000 + self.ppm as i128)).max(0) as u64;
        while t > 0 && self.local(Instant::from_nanos(t - 1)) >= local {
            t -= 1;
        }
        while self.local(Instant::from_nanos(t)) < local {
            t += 1;
        }
        Instant::from_nanos(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn true_time_inverts_local_time_whatever_the_drift() {
        for ppm in [-20_000, -1, 0, 7, 15_000] {
            let c = Clock::new(123_456_789, ppm);
            for t in [0u64, 1, 999, 3_000_000_000, 600_000_000_000] {
                let l = c.local(Instant::from_nanos(t));
                let back = c.true_time(l);
                assert!(c.local(back) >= l);
                assert!(back.as_nanos() <= t, "{ppm} {t} {back:?}");
            }
        }
        let fast = Clock::new(0, 10_000);
        assert_eq!(
            fast.local(Instant::from_nanos(1_000_000_000)),
            Instant::from_nanos(1_010_000_000)
        );
    }
}
