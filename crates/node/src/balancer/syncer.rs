//! The host side of load balancing: while a copy of a load balancer (an instance with
//! `load_balancer`) runs here, its HAProxy's backends are kept equal to the servers its
//! assignment lists (`proto::Assignment::backends`, computed by the leader from the copies
//! that run): at every new grant and every [`PERIOD`], through the Runtime API
//! ([`super::admin_socket::sync`]), and written back into the configuration file between the
//! markers ([`super::config_file`]). A server that leaves is drained for [`DRAIN`] before it
//! is deleted. A socket that does not answer is logged (once per new error) and tried again;
//! it never stops the instance.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::{Backend, Phase};
use tracing::{info, warn};

use super::admin_socket;
use super::config_file;
use super::haproxy::Wanted;
use crate::lease::keeper::LeaseKeeper;
use crate::supervisor::reconciler::Supervisor;

/// How often the backends are checked even when nothing changed (HAProxy restarted, a
/// drain ran out).
pub const PERIOD: Duration = Duration::from_secs(1);

/// How long a leaving server drains (open connections finish) before it is deleted.
pub const DRAIN: Duration = Duration::from_secs(2);

/// How long one Runtime API command may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// One HAProxy to bring in sync: where its socket and configuration are, and its backends.
#[derive(Clone, Debug)]
struct Job {
    socket: String,
    config: Option<String>,
    backends: Vec<Backend>,
}

/// Keeps this host's HAProxy copies in sync with their assignments.
pub struct Syncer {
    host: String,
    supervisor: Arc<Supervisor>,
    /// When each leaving server (socket, backend/server) began draining.
    drains: Mutex<BTreeMap<(String, String), Instant>>,
    /// The last outcome per socket and backend (an error is logged when it changes), and
    /// how many syncs failed.
    outcomes: Mutex<BTreeMap<(String, String), Outcome>>,
}

/// A backend's last sync (servers serving, or why not) and the failures counted.
type Outcome = (Result<usize, String>, u64);

/// How one HAProxy backend stands (`GET /v1/supervisor`'s `balancers`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BackendStatus {
    pub admin_socket: String,
    pub backend: String,
    /// Servers serving after the last sync that worked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers: Option<usize>,
    /// Why the last sync failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Syncs that failed since the agent started.
    pub failures: u64,
}

impl Syncer {
    pub fn new(host: String, supervisor: Arc<Supervisor>) -> Arc<Self> {
        Arc::new(Syncer {
            host,
            supervisor,
            drains: Mutex::new(BTreeMap::new()),
            outcomes: Mutex::new(BTreeMap::new()),
        })
    }

    /// Every backend synced so far, with its last outcome.
    pub fn status(&self) -> Vec<BackendStatus> {
        let outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
        outcomes
            .iter()
            .map(|((socket, backend), (last, failures))| BackendStatus {
                admin_socket: socket.clone(),
                backend: backend.clone(),
                servers: last.as_ref().ok().copied(),
                error: last.as_ref().err().cloned(),
                failures: *failures,
            })
            .collect()
    }

    /// Syncs at every new grant and every [`PERIOD`].
    pub async fn run(self: Arc<Self>, keeper: Arc<LeaseKeeper>) {
        let mut assigned = keeper.assignments.subscribe();
        let mut tick = tokio::time::interval(PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = assigned.changed() => if r.is_err() { return },
                _ = tick.tick() => {}
            }
            let jobs = self.jobs(assigned.borrow_and_update().as_deref());
            if jobs.is_empty() {
                continue;
            }
            let this = self.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for job in &jobs {
                    this.sync(job);
                }
            })
            .await;
        }
    }

    /// The load balancer copies that run here now, with their backends.
    fn jobs(&self, assigned: Option<&crate::lease::keeper::Assigned>) -> Vec<Job> {
        let Some(assigned) = assigned else {
            return Vec::new();
        };
        let observed = self.supervisor.observed();
        assigned
            .list
            .iter()
            .filter(|a| {
                observed.iter().any(|o| {
                    o.placement == a.placement.meta.id
                        && o.epoch == a.placement.epoch
                        && o.phase == Phase::Running
                })
            })
            .filter_map(|a| {
                let lb = a.instance.load_balancer.as_ref()?;
                Some(Job {
                    socket: lb.socket_on(&self.host),
                    config: lb.config_on(&self.host),
                    backends: a.backends.clone(),
                })
            })
            .collect()
    }

    /// The backends Buoy kept in this HAProxy that its job no longer names (the last
    /// instance served through one was deleted or unlinked): the ones synced since the agent
    /// started and the ones marked in the configuration file. They are emptied.
    fn orphans(&self, job: &Job) -> Vec<Backend> {
        let mut names: Vec<String> = self
            .outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(socket, _)| socket == &job.socket)
            .map(|(_, b)| b.clone())
            .collect();
        if let Some(text) = job
            .config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
        {
            names.extend(config_file::marked_backends(&text));
        }
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|n| !job.backends.iter().any(|b| &b.name == n))
            .map(|name| Backend {
                name,
                servers: Vec::new(),
            })
            .collect()
    }

    /// Brings one HAProxy's backends to its job (blocking).
    fn sync(&self, job: &Job) {
        let orphans = self.orphans(job);
        for (b, orphan) in job
            .backends
            .iter()
            .map(|b| (b, false))
            .chain(orphans.iter().map(|b| (b, true)))
        {
            let wanted: Vec<Wanted> = b
                .servers
                .iter()
                .map(|s| Wanted::new(&s.name, &s.addr, s.port))
                .collect();
            let key = |server: &str| (job.socket.clone(), format!("{}/{server}", b.name));
            let drained = |server: &str| {
                let mut drains = self.drains.lock().unwrap_or_else(|p| p.into_inner());
                let since = drains.entry(key(server)).or_insert_with(Instant::now);
                since.elapsed() >= DRAIN
            };
            let outcome = admin_socket::sync(
                Path::new(&job.socket),
                &b.name,
                &wanted,
                &[],
                drained,
                TIMEOUT,
            )
            .map_err(|e| e.to_string())
            .and_then(|(commands, now)| {
                let mut drains = self.drains.lock().unwrap_or_else(|p| p.into_inner());
                for c in &commands {
                    if let Some(server) = drain_started(c, &b.name) {
                        drains.insert(key(server), Instant::now());
                    }
                }
                // Forget drains of servers gone from HAProxy.
                drains.retain(|(socket, id), _| {
                    socket != &job.socket
                        || !id.starts_with(&format!("{}/", b.name))
                        || now.iter().any(|s| id == &format!("{}/{}", b.name, s.name))
                });
                drop(drains);
                if !commands.is_empty() {
                    info!(backend = %b.name, socket = %job.socket, commands = ?commands, "load balancer: backend brought in sync");
                }
                match &job.config {
                    Some(path) => write_back(path, b).map(|_| now.len()),
                    None => Ok(now.len()),
                }
            });
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|p| p.into_inner());
            let k = (job.socket.clone(), b.name.clone());
            let before = outcomes.get(&k).cloned();
            if before.as_ref().map(|(o, _)| o) != Some(&outcome) {
                match &outcome {
                    Err(e) => {
                        warn!(backend = %b.name, error = %e, "load balancer: backend not in sync (tried again every second)")
                    }
                    Ok(n) if before.as_ref().is_some_and(|(o, _)| o.is_err()) => {
                        info!(backend = %b.name, servers = n, "load balancer: backend in sync again")
                    }
                    Ok(_) => {}
                }
            }
            if orphan && outcome == Ok(0) {
                // Emptied: nothing more to keep there.
                outcomes.remove(&k);
                continue;
            }
            let failures = before.map_or(0, |(_, f)| f) + u64::from(outcome.is_err());
            outcomes.insert(k, (outcome, failures));
        }
    }
}

/// The server a `set server BACKEND/NAME state drain` command starts draining.
fn drain_started<'a>(command: &'a str, backend: &str) -> Option<&'a str> {
    command
        .strip_prefix("set server ")?
        .strip_suffix(" state drain")?
        .strip_prefix(backend)?
        .strip_prefix('/')
}

/// Rewrites `b`'s servers in the configuration file at `path` (when they changed).
fn write_back(path: &str, b: &Backend) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("HAProxy's configuration {path}: {e}"))?;
    let Some(next) = config_file::rewrite(&text, &b.name, &b.servers)
        .map_err(|e| format!("HAProxy's configuration {path}: {e}"))?
    else {
        return Ok(());
    };
    let tmp = format!("{path}.buoy-tmp");
    std::fs::write(&tmp, next)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("writing HAProxy's configuration {path}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_command_names_its_server() {
        assert_eq!(
            drain_started("set server web/web-2 state drain", "web"),
            Some("web-2")
        );
        assert_eq!(
            drain_started("set server web/web-2 state maint", "web"),
            None
        );
        assert_eq!(drain_started("set server api/x state drain", "web"), None);
    }
}
