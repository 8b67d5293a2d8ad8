//! The agent's side of the watchdog: keeps `buoy watchdog` told of the lease's end and of
//! what runs on the host, reconnecting (and re-sending everything) whenever the connection
//! breaks, e.g. after the watchdog or the agent restarted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::Notify;

use super::protocol::{Request, Status, Target};

/// How long the watchdog has to answer a status request before it counts as gone.
const ANSWER: Duration = Duration::from_secs(1);
/// How often the client asks for the status when nothing changed (a liveness check).
const PING: Duration = Duration::from_millis(300);
/// How old the last good answer may be for the watchdog to count as there.
const STALE: Duration = Duration::from_millis(1500);

/// What the watchdog should know.
#[derive(Default)]
struct Desired {
    deadline_ns: Option<u64>,
    tracked: BTreeMap<String, Target>,
    /// The tracked set changed since it was last sent.
    tracked_changed: bool,
    /// The deadline changed since it was last sent.
    deadline_changed: bool,
    /// The stop grace of the lease (how long a stop command may run once the deadline passed).
    stop_grace_ms: Option<u64>,
}

/// A handle the agent uses to feed its watchdog (cheap to share).
pub struct WatchdogClient {
    desired: Mutex<Desired>,
    wake: Notify,
    /// When the watchdog last answered with a deadline armed (none: not since connecting).
    armed_at: Mutex<Option<std::time::Instant>>,
    /// Set by the negative-control fault only: the watchdog is told nothing more.
    disarmed: std::sync::atomic::AtomicBool,
}

impl WatchdogClient {
    /// Starts feeding the watchdog listening on `socket`.
    pub fn start(socket: PathBuf) -> Arc<Self> {
        let c = Arc::new(WatchdogClient {
            desired: Mutex::new(Desired::default()),
            wake: Notify::new(),
            armed_at: Mutex::new(None),
            disarmed: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(c.clone().run(socket));
        c
    }

    /// Whether the watchdog is there and armed: it answered within the last [`STALE`] with a
    /// deadline set. Instances may run only while it is (rule S1: a hung agent's instances
    /// must still die at its lease's end).
    pub fn ready(&self) -> bool {
        self.armed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < STALE)
    }

    fn set_armed(&self, armed: bool) {
        *self.armed_at.lock().unwrap_or_else(|p| p.into_inner()) =
            armed.then(std::time::Instant::now);
    }

    /// Negative control only (`supervisor::injected`): disarms the watchdog and tells it
    /// nothing more, so it kills nothing.
    pub fn disarm(&self) {
        if self
            .disarmed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        d.deadline_ns = None;
        d.tracked.clear();
        d.tracked_changed = true;
        drop(d);
        self.wake.notify_one();
    }

    fn is_disarmed(&self) -> bool {
        self.disarmed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Moves the deadline (CLOCK_BOOTTIME, see [`crate::clock`]) to `deadline`; stop
    /// commands run then are cut off after `stop_grace` (the lease's, when it has one).
    pub fn arm(&self, deadline: Duration, stop_grace: Option<Duration>) {
        if self.is_disarmed() {
            return;
        }
        let mut d = self.desired.lock().unwrap_or_else(|p| p.into_inner());
        d.deadline_ns = Some(deadline.as_nanos() as u64);
        if let Some(g) = stop_grace {
            d.stop_grace_ms = Some(g.as_millis() as u64);
        }
        d.deadline_changed = true;
        drop(d);
        self.wake.notify_one();
    }

    /// Tracks `target` under `id` (an instance that started here).
    pub fn track(&self, id: &str, target: Target) {
        if self.is_disarmed() {
            return;
        }
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
                stop_grace_ms: d.stop_grace_ms,
            })
        } else if d.deadline_changed {
            d.deadline_ns.map(|deadline_ns| Request::Arm {
                deadline_ns,
                stop_grace_ms: d.stop_grace_ms,
            })
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
            let stream = match UnixStream::connect(&socket).await {
                Ok(s) => {
                    tracing::info!(socket = %socket.display(), "connected to the watchdog");
                    warned = false;
                    s
                }
                Err(e) => {
                    self.set_armed(false);
                    if !warned {
                        tracing::error!(socket = %socket.display(), error = %e, "cannot reach the watchdog (is `buoy watchdog` running?): this host runs no instances until it can; retrying");
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let why = self.exchange(stream).await;
            self.set_armed(false);
            tracing::error!(
                reason = why,
                "lost the watchdog: this host runs no instances until it is back; reconnecting"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Feeds one connection: sends what changed, then asks for the status, whose answer proves
    /// the watchdog is alive and armed; again at every change and every [`PING`]. Returns why
    /// the connection ended.
    async fn exchange(&self, stream: UnixStream) -> &'static str {
        let (read, mut write) = stream.into_split();
        let mut answers = BufReader::new(read).lines();
        // Send everything on a new connection.
        let mut everything = true;
        loop {
            let mut out = String::new();
            if let Some(msg) = self.next_message(everything) {
                let Ok(line) = serde_json::to_string(&msg) else {
                    return "cannot encode a request";
                };
                out.push_str(&line);
                out.push('\n');
            }
            everything = false;
            out.push_str("\"status\"\n");
            if write.write_all(out.as_bytes()).await.is_err() {
                return "the connection broke";
            }
            match tokio::time::timeout(ANSWER, answers.next_line()).await {
                Ok(Ok(Some(line))) => match serde_json::from_str::<Status>(&line) {
                    // Ready only when armed and done killing what an earlier lease (or an
                    // earlier agent) ran: until then it may still run.
                    Ok(status) => {
                        self.set_armed(status.deadline_ns.is_some() && status.killing == 0)
                    }
                    Err(_) => return "it answered something else than its status",
                },
                Ok(_) => return "the connection closed",
                Err(_) => return "no answer within 1 s",
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(PING) => {}
            }
        }
    }
}
