//! Containment: every process instance (and VM) runs in a cgroup v2 of its own, so that
//! whatever it starts stays inside, even a daemon that calls `setsid` or forks twice and so
//! leaves its process group. Stopping and killing go through the cgroup: `cgroup.kill` ends
//! every member at once, and the watchdog uses the same file.
//!
//! The instance cgroups are children of the agent's own cgroup v2 (on systemd hosts give the
//! agent's unit `Delegate=yes`). Where no cgroup v2 is mounted, or it cannot be written, the
//! agent says so at start and falls back to process groups, which a daemon that calls
//! `setsid` leaves.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Where this agent creates instance cgroups; none without cgroup v2.
static ROOT: OnceLock<Option<PathBuf>> = OnceLock::new();
/// Makes cgroup names unique within this agent.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Finds the cgroup v2 hierarchy and this process's place in it, checks that a child can be
/// created and killed there, and records it for every later start. Returns where instance
/// cgroups go, or why there are none (the caller logs it). Idempotent.
pub fn init() -> Result<PathBuf, String> {
    let found = ROOT.get_or_init(|| match probe() {
        Ok(p) => Some(p),
        Err(e) => {
            FALLBACK_REASON.get_or_init(|| e);
            None
        }
    });
    match found {
        Some(p) => Ok(p.clone()),
        None => Err(FALLBACK_REASON.get().cloned().unwrap_or_default()),
    }
}

static FALLBACK_REASON: OnceLock<String> = OnceLock::new();

/// Where instance cgroups go, once [`init`] found cgroup v2.
pub fn root() -> Option<&'static Path> {
    ROOT.get().and_then(|r| r.as_deref())
}

fn probe() -> Result<PathBuf, String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
    // Fields: ... mount-point ... - fstype source options
    let mount = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2")
                .then(|| left.split_whitespace().nth(4).map(PathBuf::from))?
        })
        .ok_or("no cgroup v2 hierarchy is mounted")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
    let own = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this process has no cgroup v2 path")?;
    let base = mount.join(own.trim_start_matches('/'));
    if !base.join("cgroup.kill").exists() && own != "/" {
        return Err(format!(
            "{} has no cgroup.kill (Linux 5.14 or later is needed)",
            base.display()
        ));
    }
    let probe = base.join(format!("buoy-probe-{}", std::process::id()));
    std::fs::create_dir(&probe)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Ok(())
            } else {
                Err(e)
            }
        })
        .map_err(|e| {
            format!(
                "cannot create a cgroup under {} ({e}); on systemd give the agent's unit Delegate=yes",
                base.display()
            )
        })?;
    let killable = probe.join("cgroup.kill").exists();
    let _ = std::fs::remove_dir(&probe);
    if !killable {
        return Err(format!(
            "cgroups under {} have no cgroup.kill (Linux 5.14 or later is needed)",
            base.display()
        ));
    }
    Ok(base)
}

/// Makes the child `cmd` starts join the cgroup whose `cgroup.procs` is `procs` before it
/// runs its program (so everything it starts is inside from the first instruction). Fails only
/// when the path cannot be passed to the kernel (a NUL byte).
pub fn join_on_start(cmd: &mut tokio::process::Command, procs: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(procs.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("the cgroup path contains a NUL byte"))?;
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls (open,
    // write, close) on memory prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if n != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
    Ok(())
}

/// One instance's cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates a cgroup for instance `name` under the agent's (none without cgroup v2).
    pub fn create(name: &str) -> std::io::Result<Option<Cgroup>> {
        let Some(root) = root() else { return Ok(None) };
        create_in(root, std::process::id(), name, &NEXT).map(Some)
    }

    /// The cgroup at `path` (the watchdog's view of one).
    pub fn at(path: PathBuf) -> Cgroup {
        Cgroup { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `cgroup.procs` file a child writes itself into before it runs its program.
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// The processes in it now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.procs_file())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// Whether any process is left in it.
    pub fn populated(&self) -> bool {
        self.event("populated 1")
    }

    /// Whether every process in it is frozen (`cgroup.events` says `frozen 1`).
    pub fn frozen(&self) -> bool {
        self.event("frozen 1")
    }

    /// Whether a freeze was asked (`cgroup.freeze` is 1), done or not yet.
    pub fn freeze_asked(&self) -> bool {
        std::fs::read_to_string(self.path.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Freezes (`true`) or thaws (`false`) every process in it.
    pub fn set_frozen(&self, frozen: bool) -> std::io::Result<()> {
        std::fs::write(
            self.path.join("cgroup.freeze"),
            if frozen { b"1" } else { b"0" },
        )
    }

    fn event(&self, line: &str) -> bool {
        std::fs::read_to_string(self.path.join("cgroup.events"))
            .map(|e| e.lines().any(|l| l.trim() == line))
            .unwrap_or(false)
    }

    /// Sends `signal` to every process in it.
    pub fn signal(&self, signal: i32) {
        for pid in self.pids() {
            // SAFETY: a plain signal send; a process already gone gives ESRCH.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// Kills every process in it at once (`cgroup.kill`; SIGKILL to each where that fails).
    pub fn kill(&self) {
        if std::fs::write(self.path.join("cgroup.kill"), b"1").is_err() {
            self.signal(libc::SIGKILL);
        }
    }

    /// Waits up to `timeout` for it to empty, then removes it. Returns whether it emptied.
    pub async fn remove(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.populated() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = std::fs::remove_dir(&self.path);
        true
    }
}

/// How many names [`create_in`] tries before it gives up.
const CREATE_ATTEMPTS: u32 = 64;

/// Creates `buoy-{pid}-{name}-{n}` under `root`, with `n` from `next`. A directory already
/// there was left by an earlier process with the same PID (PIDs are reused; an agent killed
/// with SIGKILL removes nothing): an empty one is removed and its name reused, one still
/// holding processes is left alone and the next name tried.
fn create_in(root: &Path, pid: u32, name: &str, next: &AtomicU64) -> std::io::Result<Cgroup> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut last = None;
    for _ in 0..CREATE_ATTEMPTS {
        let path = root.join(format!(
            "buoy-{pid}-{safe}-{}",
            next.fetch_add(1, Ordering::Relaxed)
        ));
        match std::fs::create_dir(&path) {
            Ok(()) => return Ok(Cgroup { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = Cgroup { path: path.clone() };
                if !stale.populated() && std::fs::remove_dir(&path).is_ok() {
                    match std::fs::create_dir(&path) {
                        Ok(()) => return Ok(Cgroup { path }),
                        Err(e) => last = Some(e),
                    }
                } else {
                    last = Some(e);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free cgroup name")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CI failed on this: an agent got the PID of one killed earlier, whose cgroup
    /// `buoy-PID-sleeper-0` was still there, and every start failed with "File exists".
    #[test]
    fn a_cgroup_left_by_an_earlier_process_with_the_same_pid_does_not_block_a_start() {
        let root = std::env::temp_dir().join(format!("buoy-cgname-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // Left behind: name 0 empty, name 1 still holding a process.
        std::fs::create_dir(root.join("buoy-7-app-0")).unwrap();
        std::fs::create_dir(root.join("buoy-7-app-1")).unwrap();
        std::fs::write(root.join("buoy-7-app-1/cgroup.events"), "populated 1\n").unwrap();
        let next = AtomicU64::new(0);
        let first = create_in(&root, 7, "app", &next).unwrap();
        assert_eq!(
            first.path(),
            root.join("buoy-7-app-0"),
            "the empty one is reused"
        );
        let second = create_in(&root, 7, "app", &next).unwrap();
        assert_eq!(
            second.path(),
            root.join("buoy-7-app-2"),
            "the populated one is skipped"
        );
        assert!(
            root.join("buoy-7-app-1/cgroup.events").exists(),
            "and left alone"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_probe_finds_cgroup_v2_or_says_why_not() {
        match init() {
            Ok(root) => assert!(root.is_dir(), "{}", root.display()),
            Err(why) => {
                assert!(!why.is_empty());
                eprintln!("no cgroup v2 here: {why}");
            }
        }
    }
}
