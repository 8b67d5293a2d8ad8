//! The agent's side of the watchdog: keeps `buoy watchdog` told of the lease's end and of
//! what runs on the host, reconnecting (and re-sending everything) whenever the connection
//! breaks, e.g. after the watchdog or the agent restarted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::protocol::{Request, Target};

/// What the watchdog should know.
#[derive(Default)]
struct Desired {
    deadline_ns: Option<u64>,
    tracked: BTreeMap<String, Target>,
    /// The tracked set changed since it was last sent.
    tracked_changed: bool,
    /// The deadline changed since it was last sent.
    deadline_changed: bool,
}

/// A handle the agent uses to feed its watchdog (cheap to share).
pub struct WatchdogClient {
    desired: Mutex<Desired>,
    wake: Notify,
}

impl WatchdogClient {
    /// Starts feeding the watchdog listening on `socket`.
    pub fn start(socket: PathBuf) -> Arc<Self> {
        let c = Arc::new(WatchdogClient {
            desired: Mutex::new(Desired::default()),
            wake: Notify::new(),
        });
        tokio::spawn(c.clone().run(socket));
        c
    }

    /// Moves the deadline (CLOCK_BOOTTIME, see [`crate::clock`]) to `deadline`.
    pub fn arm(&self, deadline: Duration) {
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        d.deadline_ns = Some(deadline.as_nanos() as u64);
        d.deadline_changed = true;
        drop(d);
        self.wake.notify_one();
    }

    /// Tracks `target` under `id` (an instance that started here).
    pub fn track(&self, id: &str, target: Target) {
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        d.tracked.insert(id.to_string(), target);
        d.tracked_changed = true;
        drop(d);
        self.wake.notify_one();
    }

    /// Stops tracking `id` (the instance stopped).
    pub fn untrack(&self, id: &str) {
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        d.tracked.remove(id);
        d.tracked_changed = true;
        drop(d);
        self.wake.notify_one();
    }

    /// The next message to send: everything after a (re)connection or a change of the
    /// tracked set, else just the deadline; none when nothing changed.
    fn next_message(&self, everything: bool) -> Option<Request> {
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        let msg = if everything || d.tracked_changed {
            Some(Request::Sync {
                deadline_ns: d.deadline_ns,
                tracked: d.tracked.clone(),
            })
        } else if d.deadline_changed {
            d.deadline_ns
                .map(|deadline_ns| Request::Arm { deadline_ns })
        } else {
            None
        };
        d.tracked_changed = false;
        d.deadline_changed = false;
        msg
    }

    async fn run(self: Arc<Self>, socket: PathBuf) {
        let mut warned = false;
        loop {
            let mut stream = match UnixStream::connect(&socket).await {
                Ok(s) => {
                    tracing::info!(socket = %socket.display(), "connected to the watchdog");
                    warned = false;
                    s
                }
                Err(e) => {
                    if !warned {
                        tracing::error!(socket = %socket.display(), error = %e, "cannot reach the watchdog (is `buoy watchdog` running?); retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let mut everything = true;
            loop {
                if let Some(msg) = self.next_message(everything) {
                    let Ok(mut line) = serde_json::to_string(&msg) else {
                        break;
                    };
                    line.push('\n');
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        // Send everything again on the next connection.
                        break;
                    }
                }
                everything = false;
                self.wake.notified().await;
            }
            tracing::warn!("lost the watchdog connection; reconnecting");
        }
    }
}
