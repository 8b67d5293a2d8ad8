//! A fault for negative controls only: with fault injection enabled, `POST
//! /v1/debug/double-run` makes this host keep running its instances after it loses its lease,
//! and disarms its watchdog, breaking rule S1 on purpose. The checkers (`buoy chaos`, `buoy
//! bench failover`) must then report a double run: a checker that cannot fail proves nothing.

use std::sync::atomic::{AtomicBool, Ordering};

static KEEP_WITHOUT_LEASE: AtomicBool = AtomicBool::new(false);

/// Turns the fault on or off (the route checks that fault injection is enabled).
pub fn set_keep_without_lease(on: bool) {
    if on {
        tracing::error!(
            "FAULT INJECTED: this host keeps its instances after losing its lease and disarms its watchdog (rule S1 broken on purpose)"
        );
    }
    KEEP_WITHOUT_LEASE.store(on, Ordering::SeqCst);
}

/// Whether the fault is on.
pub fn keep_without_lease() -> bool {
    KEEP_WITHOUT_LEASE.load(Ordering::SeqCst)
}
