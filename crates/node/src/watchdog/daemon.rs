//! The `buoy watchdog` process: listens on a Unix socket for the agent's arm and sync
//! requests, and kills everything it tracks once the deadline passes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;

use super::protocol::{Request, Status, Target};
use crate::clock::{RECHECK, boot_now};

/// The watchdog's state, shared by the connections and the timer.
struct Watchdog {
    status: Mutex<Status>,
    /// Wakes the timer when the deadline moves.
    moved: Notify,
    /// The clock deadlines are read on: the boot clock (a test moves it as a suspend would).
    clock: Box<dyn Fn() -> Duration + Send + Sync>,
    /// Itself, for the tasks that report a kill done.
    me: std::sync::OnceLock<std::sync::Weak<Watchdog>>,
}

impl Watchdog {
    fn new(clock: Box<dyn Fn() -> Duration + Send + Sync>) -> Self {
        Watchdog {
            status: Mutex::new(Status::default()),
            moved: Notify::new(),
            clock,
            me: std::sync::OnceLock::new(),
        }
    }

    /// Shared, with the handle its kill tasks report through.
    fn shared(self) -> Arc<Self> {
        let wd = Arc::new(self);
        let _ = wd.me.set(Arc::downgrade(&wd));
        wd
    }

    fn done_killing(&self) {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.killing = s.killing.saturating_sub(1);
    }

    /// Applies one request. `first_sync` is true for the first `Sync` of a connection: a new
    /// agent (after a crash or restart) does not know what the old one ran, so whatever the
    /// watchdog tracked and the new set lacks is an orphan, killed now.
    fn apply(&self, req: Request, first_sync: bool) -> Option<Status> {
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match req {
            Request::Arm {
                deadline_ns,
                stop_grace_ms,
            } => {
                s.deadline_ns = Some(deadline_ns);
                s.stop_grace_ms = stop_grace_ms.or(s.stop_grace_ms);
            }
            Request::Sync {
                deadline_ns,
                tracked,
                stop_grace_ms,
            } => {
                s.deadline_ns = deadline_ns;
                s.stop_grace_ms = stop_grace_ms.or(s.stop_grace_ms);
                let old = std::mem::replace(&mut s.tracked, tracked);
                if first_sync {
                    let orphans: Vec<(String, Target)> = old
                        .into_iter()
                        .filter(|(id, t)| s.tracked.get(id) != Some(t))
                        .collect();
                    if !orphans.is_empty() {
                        tracing::warn!(
                            count = orphans.len(),
                            "a new agent connection does not claim what the old one ran: killing it"
                        );
                        s.killing += 1;
                        let grace = grace_of(&s);
                        drop(s);
                        let wd = self.me.get().and_then(std::sync::Weak::upgrade);
                        tokio::spawn(async move {
                            kill_all(orphans, grace).await;
                            if let Some(wd) = wd {
                                wd.done_killing();
                            }
                        });
                        self.moved.notify_one();
                        return None;
                    }
                }
            }
            Request::Status => return Some(s.clone()),
        }
        self.moved.notify_one();
        None
    }

    /// Sleeps until the deadline and fires when it passes unmoved.
    async fn run_timer(self: Arc<Self>) {
        loop {
            let deadline = self
                .status
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .deadline_ns;
            // Never sleep past RECHECK: the sleep stands still during a suspend, the clock does
            // not.
            let wait = match deadline {
                Some(d) => Duration::from_nanos(d)
                    .saturating_sub((self.clock)())
                    .min(RECHECK),
                None => Duration::from_secs(3600),
            };
            if deadline.is_some() && wait.is_zero() {
                self.fire().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.moved.notified() => {}
            }
        }
    }

    /// Kills everything tracked, then disarms.
    async fn fire(&self) {
        let (targets, deadline, grace) = {
            let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = s.deadline_ns.take().unwrap_or(0);
            if !s.tracked.is_empty() {
                s.fired += 1;
                s.killing += 1;
            }
            let grace = grace_of(&s);
            (std::mem::take(&mut s.tracked), deadline, grace)
        };
        if targets.is_empty() {
            return;
        }
        let late = (self.clock)().saturating_sub(Duration::from_nanos(deadline));
        tracing::warn!(
            late_ms = late.as_millis() as u64,
            count = targets.len(),
            "deadline passed: killing every tracked instance"
        );
        kill_all(targets.into_iter().collect(), grace).await;
        self.done_killing();
    }
}

/// How long a stop command may run: the lease's stop grace, 20 s where none was given.
fn grace_of(s: &Status) -> Duration {
    s.stop_grace_ms
        .map_or(Duration::from_secs(20), Duration::from_millis)
}

/// Stops everything in `targets` at once: every signal is sent before any stop command runs,
/// and the stop commands run side by side, each cut off after `grace` (then its cgroup is
/// killed). A hung OCF `stop` never delays the SIGKILL of anything else.
async fn kill_all(targets: Vec<(String, Target)>, grace: Duration) {
    let (commands, signals): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .partition(|(_, t)| matches!(t, Target::Exec { .. }));
    for (id, t) in &signals {
        kill(id, t, grace).await;
    }
    futures_util::future::join_all(commands.iter().map(|(id, t)| kill(id, t, grace))).await;
}

/// Stops one tracked thing.
async fn kill(id: &str, target: &Target, grace: Duration) {
    match target {
        // SAFETY: plain signal sends; a process already gone gives ESRCH, which is fine.
        Target::ProcessGroup(pgid) => unsafe {
            libc::killpg(*pgid, libc::SIGKILL);
        },
        Target::Process(pid) => unsafe {
            libc::kill(*pid, libc::SIGKILL);
        },
        Target::Cgroup { path, pgid } => {
            crate::cgroup::Cgroup::at(path.clone()).kill();
            // SAFETY: as above.
            unsafe { libc::killpg(*pgid, libc::SIGKILL) };
        }
        Target::Exec { argv, env, cgroup } => {
            let Some((program, args)) = argv.split_first() else {
                return;
            };
            let mut cmd = tokio::process::Command::new(program);
            cmd.args(args)
                .envs(env)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            if let Some(cg) = cgroup.as_ref().filter(|c| c.is_dir()) {
                let _ = crate::cgroup::join_on_start(&mut cmd, &cg.join("cgroup.procs"));
            }
            match tokio::time::timeout(grace, cmd.status()).await {
                Ok(Ok(s)) if s.success() => {}
                Ok(other) => tracing::error!(%id, result = ?other, "stop command failed"),
                Err(_) => {
                    tracing::error!(%id, grace_ms = grace.as_millis() as u64, "stop command cut off after the stop grace")
                }
            }
            // Whatever the stop left (or a stop cut off, and the agent's own processes) goes.
            if let Some(cg) = cgroup.as_ref().filter(|c| c.is_dir()) {
                let cg = crate::cgroup::Cgroup::at(cg.clone());
                cg.kill();
                if !cg.remove(Duration::from_secs(5)).await {
                    tracing::error!(%id, cgroup = %cg.path().display(), "processes outlived SIGKILL for 5 s");
                }
            }
        }
    }
    tracing::warn!(%id, ?target, "killed by the watchdog");
}

async fn serve_connection(wd: Arc<Watchdog>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut synced = false;
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(req) => {
                let first_sync = matches!(req, Request::Sync { .. }) && !synced;
                synced |= first_sync;
                wd.apply(req, first_sync)
                    .and_then(|s| serde_json::to_string(&s).ok())
            }
            Err(e) => Some(serde_json::json!({"error": format!("bad request: {e}")}).to_string()),
        };
        if let Some(mut a) = answer {
            a.push('\n');
            if write.write_all(a.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// Runs `buoy watchdog` until SIGTERM/SIGINT.
pub fn run(socket: &Path) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(socket);
        let listener = UnixListener::bind(socket)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))?;
        }
        let wd = Watchdog::new(Box::new(boot_now)).shared();
        tokio::spawn(wd.clone().run_timer());
        tracing::info!(socket = %socket.display(), "watchdog ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                conn = listener.accept() => {
                    if let Ok((stream, _)) = conn {
                        tokio::spawn(serve_connection(wd.clone(), stream));
                    }
                }
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let _ = std::fs::remove_file(socket);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    /// Issue 15, hole 5: a stop command that hangs must not delay the SIGKILL of a process
    /// group tracked beside it. (Before the fix the watchdog killed in series, and `a-ocf`
    /// sorts before `b-group`: the group lived 20 s more.)
    #[tokio::test]
    async fn a_hung_stop_command_does_not_delay_the_other_kills() {
        let wd = Watchdog::new(Box::new(boot_now)).shared();
        let mut group = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let marker = std::env::temp_dir().join(format!("buoy-wd-stop-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let tracked = [
            (
                "a-ocf".to_string(),
                Target::Exec {
                    argv: vec![
                        "/bin/sh".into(),
                        "-c".into(),
                        format!("touch {}; exec sleep 30", marker.display()),
                    ],
                    env: Default::default(),
                    cgroup: None,
                },
            ),
            (
                "b-group".to_string(),
                Target::ProcessGroup(group.id() as i32),
            ),
        ];
        wd.apply(
            Request::Sync {
                deadline_ns: Some(boot_now().as_nanos() as u64),
                tracked: tracked.into(),
                stop_grace_ms: None,
            },
            true,
        );
        let fired = tokio::spawn(async move { wd.fire().await });
        let t0 = std::time::Instant::now();
        let mut dead = false;
        while t0.elapsed() < Duration::from_secs(3) {
            if matches!(group.try_wait(), Ok(Some(_))) {
                dead = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = group.kill();
        let _ = group.wait();
        fired.abort();
        assert!(
            dead,
            "the process group outlived a hung stop command by 3 s"
        );
        // The stop command did run (it is not skipped either).
        let ran = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            marker.exists()
        });
        let _ = std::fs::remove_file(&marker);
        assert!(ran, "the stop command ran");
    }

    use super::*;
    use std::os::unix::process::CommandExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Issue 15, hole 11: a suspend moves the boot clock past the deadline while tokio's timers
    /// stand still. The watchdog must fire within RECHECK of waking, not when its sleep would
    /// have ended. (Before the fix it slept the whole 60 s.)
    #[tokio::test]
    async fn a_deadline_passed_during_a_suspend_fires_at_once_on_waking() {
        let jump = Arc::new(AtomicU64::new(0));
        let j = jump.clone();
        let wd = Watchdog::new(Box::new(move || {
            boot_now() + Duration::from_nanos(j.load(Ordering::SeqCst))
        }))
        .shared();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let deadline = boot_now() + Duration::from_secs(60);
        wd.apply(
            Request::Sync {
                deadline_ns: Some(deadline.as_nanos() as u64),
                tracked: [("sleeper".to_string(), Target::ProcessGroup(pgid))].into(),
                stop_grace_ms: None,
            },
            true,
        );
        tokio::spawn(wd.clone().run_timer());
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The machine "sleeps" for 61 s.
        jump.store(Duration::from_secs(61).as_nanos() as u64, Ordering::SeqCst);
        let woke = std::time::Instant::now();
        let mut fired = false;
        while woke.elapsed() < Duration::from_secs(3) {
            if matches!(child.try_wait(), Ok(Some(_))) {
                fired = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(fired, "the watchdog did not fire within 3 s of waking");
        assert!(
            woke.elapsed() < RECHECK * 5,
            "fired {:?} after waking",
            woke.elapsed()
        );
        assert_eq!(wd.apply(Request::Status, false).unwrap().fired, 1);
    }

    /// Found by `buoy sim cluster`: a new agent started an OCF resource again while the
    /// watchdog was still running the `stop` of the old agent's copy. Kills under way are now
    /// counted in the status, and the agent waits for none to be left.
    #[tokio::test]
    async fn orphans_count_as_being_killed_until_their_stops_are_done() {
        let wd = Watchdog::new(Box::new(boot_now)).shared();
        let slow_stop = Target::Exec {
            argv: vec!["/bin/sleep".into(), "0.5".into()],
            env: Default::default(),
            cgroup: None,
        };
        wd.apply(
            Request::Sync {
                deadline_ns: None,
                tracked: [("db".to_string(), slow_stop)].into(),
                stop_grace_ms: None,
            },
            true,
        );
        // A new agent's first sync claims nothing: the resource is an orphan.
        wd.apply(
            Request::Sync {
                deadline_ns: Some((boot_now() + Duration::from_secs(60)).as_nanos() as u64),
                tracked: Default::default(),
                stop_grace_ms: None,
            },
            true,
        );
        let status = || wd.apply(Request::Status, false).expect("a status");
        assert_eq!(status().killing, 1, "{:?}", status());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while status().killing > 0 {
            assert!(std::time::Instant::now() < deadline, "{:?}", status());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The stop grace bounds a hung OCF stop after the deadline: the command is cut off and
    /// everything in the resource's cgroup (here a daemon the agent left) is killed, well
    /// before the 20 s a stop command gets without a grace.
    #[tokio::test]
    async fn a_hung_stop_is_cut_off_at_the_stop_grace_and_its_cgroup_killed() {
        if let Err(why) = crate::cgroup::init() {
            eprintln!("SKIPPED: no writable cgroup v2 here ({why}); CI runs this as root");
            return;
        }
        let cg = crate::cgroup::Cgroup::create("hung-stop").unwrap().unwrap();
        let mut cmd = tokio::process::Command::new("sleep");
        cmd.arg("600").kill_on_drop(true);
        crate::cgroup::join_on_start(&mut cmd, &cg.procs_file()).unwrap();
        let mut daemon = cmd.spawn().unwrap();
        let wd = Watchdog::new(Box::new(boot_now)).shared();
        let hung = Target::Exec {
            argv: vec!["/bin/sh".into(), "-c".into(), "exec sleep 30".into()],
            env: Default::default(),
            cgroup: Some(cg.path().to_path_buf()),
        };
        wd.apply(
            Request::Sync {
                deadline_ns: Some(boot_now().as_nanos() as u64),
                tracked: [("db".to_string(), hung)].into(),
                stop_grace_ms: Some(500),
            },
            true,
        );
        let t0 = std::time::Instant::now();
        let fired = tokio::time::timeout(Duration::from_secs(5), wd.fire()).await;
        let took = t0.elapsed();
        let exited = tokio::time::timeout(Duration::from_secs(2), daemon.wait()).await;
        let _ = daemon.kill().await;
        assert!(fired.is_ok(), "the hung stop was not cut off within 5 s");
        assert!(
            took >= Duration::from_millis(450),
            "cut off before the grace: {took:?}"
        );
        assert!(
            exited.is_ok(),
            "the daemon in the cgroup outlived the cut-off"
        );
        assert!(!cg.path().exists(), "the emptied cgroup is removed");
    }
}
