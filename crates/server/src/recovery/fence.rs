//! STONITH: runs a host's fence device (a fence-agents command) with the fence-agents stdin
//! protocol: one `key=value` per line, `action=off` first, then the device's parameters, as
//! the agents in Debian's `fence-agents` read them when started without arguments. Exit
//! status 0 confirms the action.
//!
//! The recovery loop asks for `off` when a host with a fence device is dead in gossip and no
//! longer renews its lease; the host counts as failed as soon as `off` is confirmed, without
//! waiting for its lease to run out. `buoy fence HOST` runs it by hand.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::Timestamp;
use model::host::{FenceDevice, Host};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

/// How long one run of a fence agent may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// How many times `off` is tried before the recovery waits for the lease instead.
pub const ATTEMPTS: u32 = 3;

/// The actions `buoy fence` accepts (those of the fence-agents protocol that make sense by hand).
pub const ACTIONS: &[&str] = &[
    "off", "on", "reboot", "status", "monitor", "metadata", "list",
];

/// What running a fence agent gave.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FenceRun {
    pub action: String,
    pub exit_code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed_ms: u64,
}

impl FenceRun {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Runs `device` once with `action` (fence-agents stdin protocol), within `timeout`.
pub async fn run(
    device: &FenceDevice,
    action: &str,
    timeout: Duration,
) -> Result<FenceRun, String> {
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(&device.agent)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run fence agent `{}`: {e}", device.agent))?;
    let mut input = format!("action={action}\n");
    for (k, v) in &device.params {
        // The action is ours to choose; a device's own `action` parameter is ignored.
        if k != "action" {
            input.push_str(&format!("{k}={v}\n"));
        }
    }
    if let Some(mut stdin) = child.stdin.take() {
        // An agent may exit without reading (e.g. `metadata`): a broken pipe is no error.
        let _ = stdin.write_all(input.as_bytes()).await;
    }
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            format!(
                "fence agent `{}` did not finish `{action}` within {} s",
                device.agent,
                timeout.as_secs()
            )
        })?
        .map_err(|e| format!("fence agent `{}`: {e}", device.agent))?;
    Ok(FenceRun {
        action: action.to_string(),
        exit_code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
}

/// Where fencing a host stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FenceState {
    Running,
    Off(Timestamp),
    GaveUp,
}

/// The leader's fencing of failed hosts: one `off` at a time per host, retried, remembered
/// until the host is marked failed.
#[derive(Default)]
pub struct Fencer {
    hosts: Mutex<BTreeMap<String, FenceState>>,
}

impl Fencer {
    pub fn new() -> Arc<Self> {
        Arc::new(Fencer::default())
    }

    /// When a fence agent confirmed `host` off, if it did.
    pub fn confirmed_off(&self, host: &str) -> Option<Timestamp> {
        match self.lock().get(host) {
            Some(FenceState::Off(at)) => Some(*at),
            _ => None,
        }
    }

    /// Records `host` off (by hand, through `buoy fence`).
    pub fn record_off(&self, host: &str) {
        self.lock()
            .insert(host.to_string(), FenceState::Off(Timestamp::now()));
    }

    /// Forgets `host` (it is marked failed, or came back).
    pub fn forget(&self, host: &str) {
        self.lock().remove(host);
    }

    /// `host` is down and no longer renews: fences it when it has a fence device and no
    /// fencing of it is under way or done.
    pub fn host_down(self: &Arc<Self>, host: &Host) {
        let Some(device) = host.fence.clone() else {
            return;
        };
        {
            let mut hosts = self.lock();
            if hosts.contains_key(&host.name) {
                return;
            }
            hosts.insert(host.name.clone(), FenceState::Running);
        }
        let me = self.clone();
        let name = host.name.clone();
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                match run(&device, "off", TIMEOUT).await {
                    Ok(r) if r.succeeded() => {
                        info!(host = %name, agent = %device.agent, elapsed_ms = r.elapsed_ms, "fenced: the fence agent confirmed `off`");
                        me.lock().insert(name, FenceState::Off(Timestamp::now()));
                        return;
                    }
                    Ok(r) => {
                        warn!(host = %name, attempt, exit_code = ?r.exit_code, stderr = %r.stderr.trim(), "fence agent failed")
                    }
                    Err(e) => warn!(host = %name, attempt, error = %e, "fence agent failed"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            warn!(host = %name, "fencing gave up: the host's instances move when its lease is over");
            me.lock().insert(name, FenceState::GaveUp);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FenceState>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }
}
