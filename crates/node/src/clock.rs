//! The clock every lease deadline on a host is counted on: CLOCK_BOOTTIME. Unlike
//! CLOCK_MONOTONIC it keeps counting while the machine is suspended, so a host that wakes up
//! after its lease ended knows it at once and runs nothing (rule S1); unlike the wall clock,
//! no one can set it. The agent and its watchdog read the same clock, so a deadline one of them
//! writes means the same instant to the other.

use std::time::Duration;

/// CLOCK_BOOTTIME now: the time since boot, suspended time included.
pub fn boot_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on Linux since 2.6.39.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The longest a timer that enforces a lease deadline sleeps before it reads the clock again.
/// Timers sleep on CLOCK_MONOTONIC (tokio's), which stands still during a suspend: a timer
/// armed for a deadline 10 s away, interrupted by an hour of sleep, would still wait 10 s after
/// waking. Re-reading the boot clock this often bounds that lateness.
pub const RECHECK: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boot_clock_counts_at_least_what_the_monotonic_clock_counts() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let mono = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        let a = boot_now();
        // Boot time includes suspended time, so it is never behind the monotonic clock.
        assert!(a + Duration::from_millis(1) >= mono, "{a:?} < {mono:?}");
        std::thread::sleep(Duration::from_millis(20));
        let b = boot_now();
        assert!(b - a >= Duration::from_millis(20) && b - a < Duration::from_secs(5));
    }
}
