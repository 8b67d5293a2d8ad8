//! A hardware watchdog (`/dev/watchdog`, the Linux watchdog API) as the production fence: the
//! agent pets it at every lease renewal; a hung or dead agent stops petting and the machine
//! resets when the timer runs out. The timer is set one second shorter than the lease (whole
//! seconds only), and the agent pets only when the lease outlasts a full timer, so the reset
//! never comes after the lease ends.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

/// `WDIOC_SETTIMEOUT`: `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// An open, armed watchdog device.
pub struct WatchdogDevice {
    file: File,
    timeout: Duration,
}

/// The device timer for a lease of `ttl`: a second less, in whole seconds, at least one.
pub fn timer_for(ttl: Duration) -> Result<Duration, String> {
    let secs = ttl.as_secs();
    if secs < 2 {
        return Err(format!(
            "a hardware watchdog needs a lease of at least 2s (its timer has whole seconds and runs 1s shorter); --lease-ttl is {ttl:?}"
        ));
    }
    Ok(Duration::from_secs(secs - 1))
}

impl WatchdogDevice {
    /// Opens `path` and sets its timer for leases of `ttl`.
    pub fn open(path: &Path, ttl: Duration) -> Result<Self, String> {
        let timeout = timer_for(ttl)?;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open the watchdog device {}: {e}", path.display()))?;
        let mut secs: libc::c_int = timeout.as_secs() as libc::c_int;
        // SAFETY: a valid fd and a pointer to an int, as WDIOC_SETTIMEOUT expects.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), WDIOC_SETTIMEOUT as _, &mut secs) };
        if rc != 0 {
            return Err(format!(
                "{} is not a watchdog device (setting its timeout failed: {})",
                path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(WatchdogDevice {
            file,
            timeout: Duration::from_secs(secs.max(1) as u64),
        })
    }

    /// Pets the watchdog when the lease (`remaining`) outlasts a full timer; returns whether
    /// it did.
    pub fn pet(&mut self, remaining: Duration) -> bool {
        if remaining < self.timeout {
            return false;
        }
        self.file.write_all(b"\0").is_ok()
    }

    /// Disarms it on a clean shutdown (the "magic close"; ignored by `nowayout` devices).
    pub fn disarm(mut self) {
        let _ = self.file.write_all(b"V");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_a_whole_second_shorter_than_the_lease() {
        assert_eq!(
            timer_for(Duration::from_secs(3)),
            Ok(Duration::from_secs(2))
        );
        assert_eq!(
            timer_for(Duration::from_millis(2500)),
            Ok(Duration::from_secs(1))
        );
        assert!(
            timer_for(Duration::from_secs(1))
                .unwrap_err()
                .contains("at least 2s")
        );
    }

    #[test]
    fn a_file_that_is_not_a_watchdog_is_refused() {
        let path = std::env::temp_dir().join(format!("buoy-not-a-watchdog-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        let e = WatchdogDevice::open(&path, Duration::from_secs(3))
            .err()
            .unwrap();
        assert!(e.contains("is not a watchdog device"), "{e}");
        let _ = std::fs::remove_file(path);
        let e = WatchdogDevice::open(Path::new("/nonexistent/watchdog"), Duration::from_secs(3))
            .err()
            .unwrap();
        assert!(e.contains("cannot open the watchdog device"), "{e}");
    }
}
