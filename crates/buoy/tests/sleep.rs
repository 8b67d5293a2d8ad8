//! Suspend (issue 15): `buoy sleep-hook pre` freezes a real agent's instances before the
//! machine sleeps; the agent thaws them after `post` only under a lease held since before the
//! freeze, and otherwise they die without running again. This machine cannot be suspended in
//! a test, so the sleep is played by stopping the agent and its watchdog (SIGSTOP) while
//! the boot clock runs on, as it does across a real suspend.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Cluster, wait_until};
use serde_json::json;

fn hook(run: &Path, phase: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["sleep-hook", phase, "suspend", "--run-dir"])
        .arg(run)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// The cgroups the hook said it froze.
fn frozen_paths(said: &str) -> Vec<PathBuf> {
    said.lines()
        .filter_map(|l| l.strip_suffix(": frozen"))
        .filter_map(|l| l.split_once(": ").map(|(_, p)| PathBuf::from(p)))
        .collect()
}

fn frozen(cg: &Path) -> bool {
    std::fs::read_to_string(cg.join("cgroup.events"))
        .is_ok_and(|e| e.lines().any(|l| l.trim() == "frozen 1"))
}

#[test]
fn instances_frozen_for_a_sleep_run_again_only_under_an_unbroken_lease() {
    let mut c = Cluster::new(77);
    let run = c.dir.join("run");
    let run_arg = run.display().to_string();
    let wd = c.start_watched(1, &["--run-dir", &run_arg]);
    common::zone(&c, json!({}), &["h1"]);
    common::place_sleeper(&c, "sleeper", "h1");
    let pid = common::wait_running(&c, 1, "sleeper");

    // A short sleep: frozen before, kept frozen until `post`, then thawed (the same process).
    let said = hook(&run, "pre");
    let cgs = frozen_paths(&said);
    assert_eq!(cgs.len(), 1, "one instance cgroup frozen: {said}");
    let cg = &cgs[0];
    std::thread::sleep(Duration::from_millis(600));
    assert!(frozen(cg), "the agent must not thaw before `post`");
    hook(&run, "post");
    wait_until(Duration::from_secs(3), || !frozen(cg))
        .unwrap_or_else(|| panic!("thawed after `post` under the lease:\n{}", c.log(1)));
    assert!(common::alive(pid));
    assert_eq!(common::running_pid(&c, 1, "sleeper"), Some(pid));

    // A sleep longer than the lease (1 s): the machine stops, its boot clock runs on.
    let said = hook(&run, "pre");
    assert_eq!(frozen_paths(&said), cgs, "{said}");
    c.signal("h1", libc::SIGSTOP);
    unsafe { libc::kill(wd.pid(), libc::SIGSTOP) };
    std::thread::sleep(Duration::from_millis(2500));
    hook(&run, "post");
    unsafe { libc::kill(wd.pid(), libc::SIGCONT) };
    c.signal("h1", libc::SIGCONT);
    // It dies without ever running again: frozen whenever it is seen alive.
    let woke = Instant::now();
    while common::alive(pid) {
        // A frozen task that gets SIGKILL leaves the frozen state to die: for that moment
        // its cgroup no longer reads frozen while the task is not yet a zombie. Thawed to
        // run, it would still be alive 100 ms later (a CI run hit that moment: a flake).
        let dying = || wait_until(Duration::from_millis(100), || !common::alive(pid)).is_some();
        assert!(
            frozen(cg) || !common::alive(pid) || dying(),
            "ran again after its lease lapsed:\n{}",
            c.log(1)
        );
        assert!(
            woke.elapsed() < Duration::from_secs(5),
            "still alive (frozen) 5 s after waking:\n{}",
            c.log(1)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    // The next lease starts it again, as a new process.
    wait_until(Duration::from_secs(10), || {
        common::running_pid(&c, 1, "sleeper").is_some_and(|p| p != pid)
    })
    .unwrap_or_else(|| panic!("runs again under a new lease:\n{}", c.log(1)));
}
