//! Feeds the watchdogs from the lease: each extension moves the watchdog's deadline to the
//! lease's new end, so a hung or dead agent leaves nothing running past its lease.

use std::sync::{Arc, Mutex};

use crate::gossip::runtime::Shared;
use crate::lease::keeper::LeaseKeeper;

/// Moves the watchdog's deadline to the lease's end at every renewal.
pub async fn feed_watchdog(
    keeper: Arc<LeaseKeeper>,
    gossip: Arc<Shared>,
    watchdog: Arc<super::client::WatchdogClient>,
) {
    let mut changed = keeper.changed.subscribe();
    loop {
        if let Some(until) = *changed.borrow_and_update() {
            let left = until.saturating_since(gossip.now());
            watchdog.arm(crate::clock::boot_now() + left, keeper.stop_grace());
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// Pets the hardware watchdog at every lease extension (the device resets the machine when a
/// hung or dead agent stops petting it).
pub async fn feed_device(
    keeper: Arc<LeaseKeeper>,
    gossip: Arc<Shared>,
    device: Arc<Mutex<Option<super::device::WatchdogDevice>>>,
) {
    let mut changed = keeper.changed.subscribe();
    loop {
        if let Some(until) = *changed.borrow_and_update() {
            let remaining = until.saturating_since(gossip.now());
            if let Some(d) = device.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                d.pet(remaining);
            }
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}
