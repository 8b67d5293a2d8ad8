//! Ctrl-C (SIGINT) and SIGTERM for the commands that run a local cluster (`sandbox`,
//! `chaos`): the signal sets a flag the command polls, so that it stops, ends every process it
//! started (by PID) and removes its network namespaces and files, instead of dying and leaving
//! them behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A flag set by the first SIGINT or SIGTERM from now on.
pub fn flag() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let set = stop.clone();
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        set.store(true, Ordering::Relaxed);
    });
    stop
}
