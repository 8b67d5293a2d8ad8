//! Suspend. A machine that sleeps while it holds its lease wakes up with its instances runnable
//! at the same instant as its agent and its watchdog, whose timers stood still during the
//! sleep. If the lease ran out meanwhile, the leader may have started those instances
//! elsewhere, and they run twice (rule S1) until the agent or the watchdog notices, up to a
//! renewal interval later. No timer closes that window; freezing does.
//!
//! The systemd-sleep hook (`buoy sleep-hook pre|post`, installed as
//! `/usr/lib/systemd/system-sleep/buoy`) freezes every instance cgroup (`cgroup.freeze`) before
//! the machine sleeps. After the resume only the agent thaws them, and only under a lease held
//! without a break since before the freeze (by the boot clock, which counts the sleep): then
//! no other host can have been given them. A lease that lapsed, even one granted again since,
//! may have let the leader move them: the supervisor kills them frozen instead (`cgroup.kill`
//! works on a frozen cgroup), so they never run again.
//!
//! The hook and the agents meet in a run directory ([`DEFAULT_RUN_DIR`]): `agents/<pid>` holds
//! each agent's instance-cgroup root, `sleep` says `pre <boot ms>` or `post <pre boot ms>
//! <boot ms>`, and `sleep.lock` is locked (`flock`) while either side acts, so that no agent
//! thaws between the hook's `pre` and the sleep itself.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::cgroup::Cgroup;
use crate::lease::keeper::LeaseKeeper;

/// Where the hook and the agents meet unless told otherwise.
pub const DEFAULT_RUN_DIR: &str = "/run/buoy";

/// A `pre` older than this (boot clock) no longer holds a thaw back: the machine slept and
/// woke without the `post` hook (or did not sleep). The lease rule still applies.
const PRE_EXPIRES: Duration = Duration::from_secs(30);

/// How often the agent looks for frozen instances.
const TICK: Duration = Duration::from_millis(100);

/// What the hook does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The machine is about to sleep: freeze every registered agent's instances.
    Pre,
    /// The machine woke: each agent thaws its own instances once it holds its lease.
    Post,
}

/// An exclusive `flock` on `<run dir>/sleep.lock`, released when dropped.
struct Lock(File);

impl Lock {
    fn take(run_dir: &Path) -> std::io::Result<Lock> {
        std::fs::create_dir_all(run_dir)?;
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(run_dir.join("sleep.lock"))?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Lock(f))
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: as above; closing the file would release it too.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The hook: `pre` freezes the instances of every agent registered in `run_dir` and waits (up
/// to `wait`) until they are frozen; `post` records the resume. Returns what it did, one line
/// per cgroup or problem; errors are for the caller to print, never a reason to block a sleep.
pub fn hook(run_dir: &Path, phase: Phase, wait: Duration) -> std::io::Result<Vec<String>> {
    let _lock = Lock::take(run_dir)?;
    let now = crate::clock::boot_now().as_millis();
    let file = run_dir.join("sleep");
    let mut said = Vec::new();
    if phase == Phase::Post {
        // Keep the freeze time: agents compare their lease with it.
        let pre = match read_state(&file) {
            Some(State::Pre(at)) | Some(State::Post(at)) => at,
            None => now,
        };
        std::fs::write(&file, format!("post {pre} {now}\n"))?;
        return Ok(said);
    }
    std::fs::write(&file, format!("pre {now}\n"))?;
    let mut frozen = Vec::new();
    for (pid, root) in registered(run_dir) {
        for cg in instance_cgroups(&root, pid) {
            match cg.set_frozen(true) {
                Ok(()) => frozen.push(cg),
                Err(e) => said.push(format!("{}: cannot freeze: {e}", cg.path().display())),
            }
        }
    }
    let deadline = std::time::Instant::now() + wait;
    for cg in &frozen {
        while !cg.frozen() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        said.push(if cg.frozen() {
            format!("{}: frozen", cg.path().display())
        } else {
            format!("{}: not frozen after {wait:?}", cg.path().display())
        });
    }
    Ok(said)
}

/// What the `sleep` file says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Frozen at (boot ms), the machine about to sleep.
    Pre(u128),
    /// Frozen at (boot ms), and resumed since.
    Post(u128),
}

fn read_state(file: &Path) -> Option<State> {
    let s = std::fs::read_to_string(file).ok()?;
    let mut w = s.split_whitespace();
    let word = w.next()?;
    let at: u128 = w.next()?.parse().ok()?;
    match word {
        "pre" => Some(State::Pre(at)),
        "post" => Some(State::Post(at)),
        _ => None,
    }
}

/// The agents registered in `run_dir` whose process still exists: pid and cgroup root. The
/// entries of agents gone are removed.
fn registered(run_dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(run_dir.join("agents")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_file(e.path());
                return None;
            }
            let root = std::fs::read_to_string(e.path()).ok()?;
            Some((pid, PathBuf::from(root.trim())))
        })
        .collect()
}

/// The instance cgroups agent `pid` created under `root` ([`Cgroup::create`] names them).
fn instance_cgroups(root: &Path, pid: u32) -> Vec<Cgroup> {
    let prefix = format!("buoy-{pid}-");
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<Cgroup> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| Cgroup::at(e.path()))
        .collect();
    v.sort_by(|a, b| a.path().cmp(b.path()));
    v
}

/// What [`Freezer::thaw_if_held`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thawed {
    Nothing,
    /// This many frozen instances run again.
    Thawed(usize),
    /// This many frozen instances were killed: the lease lapsed since the freeze.
    Killed(usize),
}

/// This agent's side: registered in the run directory while it lives, it thaws or kills its
/// frozen instances once the machine has resumed.
pub struct Freezer {
    run_dir: PathBuf,
    root: PathBuf,
    pid: u32,
}

impl Freezer {
    /// Registers this agent (its instance cgroups live under `cgroup_root`) so that the hook
    /// freezes them.
    pub fn register(run_dir: &Path, cgroup_root: &Path) -> std::io::Result<Arc<Freezer>> {
        let agents = run_dir.join("agents");
        std::fs::create_dir_all(&agents)?;
        registered(run_dir);
        let pid = std::process::id();
        std::fs::write(
            agents.join(pid.to_string()),
            format!("{}\n", cgroup_root.display()),
        )?;
        Ok(Arc::new(Freezer {
            run_dir: run_dir.to_path_buf(),
            root: cgroup_root.to_path_buf(),
            pid,
        }))
    }

    /// Once the machine has resumed: thaws this agent's frozen instances if its lease has been
    /// held without a break since before the freeze, and kills them otherwise (they die
    /// without running again; the supervisor sees them end). `held_for` is how long the lease
    /// has been held now (read by the caller on the boot clock), `None` if it is not held. A
    /// freeze that is not the hook's (no `sleep` file) is left alone.
    pub fn thaw_if_held(&self, held_for: Option<Duration>) -> Thawed {
        // The cheap check first: without the hook's file nothing of ours was frozen by it.
        if !self.run_dir.join("sleep").exists() {
            return Thawed::Nothing;
        }
        let frozen: Vec<Cgroup> = instance_cgroups(&self.root, self.pid)
            .into_iter()
            .filter(Cgroup::freeze_asked)
            .collect();
        if frozen.is_empty() {
            return Thawed::Nothing;
        }
        let Ok(_lock) = Lock::take(&self.run_dir) else {
            return Thawed::Nothing;
        };
        let now = crate::clock::boot_now().as_millis();
        let frozen_at = match read_state(&self.run_dir.join("sleep")) {
            Some(State::Pre(at)) if now.saturating_sub(at) < PRE_EXPIRES.as_millis() => {
                return Thawed::Nothing; // the machine is about to sleep
            }
            Some(State::Pre(at)) | Some(State::Post(at)) => at,
            None => return Thawed::Nothing,
        };
        let n = frozen.len();
        if held_for.is_none_or(|h| h.as_millis() < now.saturating_sub(frozen_at)) {
            for cg in frozen {
                cg.kill();
            }
            return Thawed::Killed(n);
        }
        for cg in frozen {
            if let Err(e) = cg.set_frozen(false) {
                warn!(cgroup = %cg.path().display(), "cannot thaw: {e}");
            }
        }
        Thawed::Thawed(n)
    }

    /// Every [`TICK`], thaws what the hook froze once the lease is held.
    pub async fn run(self: Arc<Self>, keeper: Arc<LeaseKeeper>, now: impl Fn() -> swim::Instant) {
        loop {
            let held_for = keeper.held_for(now());
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.thaw_if_held(held_for)).await {
                Ok(Thawed::Thawed(n)) => info!(
                    instances = n,
                    "resumed from sleep under a lease held since before it: instances thawed"
                ),
                Ok(Thawed::Killed(n)) => warn!(
                    instances = n,
                    "resumed from sleep after the lease lapsed (the leader may have moved them): frozen instances killed without running again"
                ),
                _ => {}
            }
            tokio::time::sleep(TICK).await;
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.run_dir.join("agents").join(self.pid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// `sleep 60` moved into `cg`, killed by PID on drop.
    struct Sleeper(Child);

    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// Removes the test's run directory and cgroup root however the test ends.
    struct Cleanup(Vec<PathBuf>);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for p in &self.0 {
                if let Ok(dir) = std::fs::read_dir(p)
                    && p.starts_with("/sys")
                {
                    for e in dir.flatten().filter(|e| e.path().is_dir()) {
                        let _ = std::fs::write(e.path().join("cgroup.kill"), b"1");
                        let _ = std::fs::remove_dir(e.path());
                    }
                    let _ = std::fs::remove_dir(p);
                } else {
                    let _ = std::fs::remove_dir_all(p);
                }
            }
        }
    }

    fn alive(c: &mut Sleeper) -> bool {
        matches!(c.0.try_wait(), Ok(None))
    }

    /// The rule, on real cgroups: nothing thaws while a sleep is about to begin; after the
    /// resume, a lease held since before the freeze thaws, a shorter one kills. (Reading
    /// `held_for` as "held at all" fails the second half: it thaws.)
    #[test]
    fn frozen_instances_run_again_only_under_a_lease_held_since_before_the_freeze() {
        let base = match crate::cgroup::init() {
            Ok(b) => b,
            Err(why) => {
                eprintln!("SKIPPED (loudly): no writable cgroup v2 here: {why}");
                return;
            }
        };
        let pid = std::process::id();
        // A root of its own, so that other tests' cgroups (same PID prefix) are not touched.
        let root = base.join(format!("buoy-sleeptest-{pid}"));
        let run = std::env::temp_dir().join(format!("buoy-sleeptest-{pid}"));
        let _ = std::fs::create_dir_all(&root);
        let _cleanup = Cleanup(vec![run.clone(), root.clone()]);
        let freezer = Freezer::register(&run, &root).unwrap();
        let cg = Cgroup::at(root.join(format!("buoy-{pid}-app-0")));
        std::fs::create_dir_all(cg.path()).unwrap();
        let mut app = Sleeper(Command::new("sleep").arg("60").spawn().unwrap());
        std::fs::write(cg.procs_file(), app.0.id().to_string()).unwrap();
        let long = Some(Duration::from_secs(3600));

        let said = hook(&run, Phase::Pre, Duration::from_secs(2)).unwrap();
        assert!(said.iter().any(|l| l.ends_with(": frozen")), "{said:?}");
        assert!(cg.frozen());
        assert_eq!(freezer.thaw_if_held(long), Thawed::Nothing, "sleep pending");
        assert!(cg.frozen());
        hook(&run, Phase::Post, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(freezer.thaw_if_held(long), Thawed::Thawed(1));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!cg.frozen() && alive(&mut app), "thawed and running");

        // Slept again; the lease held now began after the freeze: it lapsed meanwhile.
        hook(&run, Phase::Pre, Duration::from_secs(2)).unwrap();
        hook(&run, Phase::Post, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            freezer.thaw_if_held(Some(Duration::from_millis(10))),
            Thawed::Killed(1)
        );
        let died = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            !alive(&mut app)
        });
        assert!(died, "killed frozen");
        drop(freezer);
    }
}
