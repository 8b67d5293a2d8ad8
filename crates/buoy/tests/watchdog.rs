//! `buoy watchdog`: kills what it tracks when its deadline passes unmoved, not before; and an
//! agent arms it with its lease, so a frozen agent (SIGSTOP) leaves nothing running past it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{Cluster, Watchdog, wait_until};
use serde_json::{Value, json};

fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A line-oriented connection to a watchdog.
struct Conn(UnixStream, BufReader<UnixStream>);

impl Conn {
    fn open(socket: &Path) -> Self {
        let s = UnixStream::connect(socket).unwrap();
        let r = BufReader::new(s.try_clone().unwrap());
        Conn(s, r)
    }

    fn send(&mut self, v: Value) {
        writeln!(self.0, "{v}").unwrap();
    }

    fn status(&mut self) -> Value {
        self.send(json!("status"));
        let mut line = String::new();
        self.1.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

/// `sleep 60` in a process group of its own (pgid = pid), killed by PID on drop.
struct Sleeper(Child);

impl Sleeper {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Sleeper {
    Sleeper(
        Command::new("sleep")
            .arg("60")
            .process_group(0)
            .spawn()
            .unwrap(),
    )
}

fn running(c: &mut Sleeper) -> bool {
    matches!(c.0.try_wait(), Ok(None))
}

#[test]
fn the_watchdog_kills_what_it_tracks_at_the_deadline_unless_it_moves() {
    let dir = std::env::temp_dir().join(format!("buoy-wd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("wd.sock");
    let _wd = Watchdog::start(&socket);
    let mut group = sleeper();
    let mut single = sleeper();
    let mut c = Conn::open(&socket);
    let t0 = boot_ns();
    c.send(
        json!({"sync": {"deadline_ns": t0 + 400_000_000, "tracked": {
        "group": {"process_group": group.id()}, "vm": {"process": single.id()}}}}),
    );
    std::thread::sleep(Duration::from_millis(250));
    // Moved before it passed: nothing dies at the first deadline.
    let deadline = boot_ns() + 500_000_000;
    c.send(json!({"arm": {"deadline_ns": deadline}}));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        running(&mut group) && running(&mut single),
        "killed before the deadline"
    );
    let status = c.status();
    assert_eq!(status["deadline_ns"], deadline, "{status}");
    assert_eq!(status["fired"], 0);
    // Not moved again: both die at the deadline.
    let started = Instant::now();
    wait_until(Duration::from_secs(3), || {
        !running(&mut group) && !running(&mut single)
    })
    .expect("the watchdog must kill what it tracks");
    let dead_at = boot_ns();
    assert!(
        dead_at >= deadline,
        "killed {} ms early",
        (deadline - dead_at) / 1_000_000
    );
    assert!(
        dead_at - deadline < 300_000_000,
        "killed {} ms late",
        (dead_at - deadline) / 1_000_000
    );
    let status = c.status();
    assert_eq!(status["fired"], 1, "{status}");
    assert_eq!(status["tracked"], json!({}), "{status}");
    assert!(status["deadline_ns"].is_null(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_frozen_agent_stops_moving_the_deadline_and_its_instances_die_with_its_lease() {
    let mut c = Cluster::new(47);
    let socket = c.dir.join("wd-h1.sock");
    let _wd = Watchdog::start(&socket);
    let data = c.dir.join("data-h1").display().to_string();
    c.start(
        1,
        &[
            "--server".into(),
            "--data-dir".into(),
            data,
            "--watchdog".into(),
            socket.display().to_string(),
        ],
    );
    let mut conn = Conn::open(&socket);
    // The agent arms the watchdog with its lease (TTL 1 s here) and keeps moving it.
    let mut first = 0;
    wait_until(Duration::from_secs(10), || {
        first = conn.status()["deadline_ns"].as_u64().unwrap_or(0);
        first > 0
    })
    .unwrap_or_else(|| panic!("the agent never armed its watchdog:\n{}", c.log(1)));
    std::thread::sleep(Duration::from_millis(400));
    let later = conn.status()["deadline_ns"].as_u64().unwrap_or(0);
    assert!(later > first, "the deadline must move with the lease");
    assert!(later <= boot_ns() + 1_000_000_000, "never past one TTL");

    // What the supervisor will track (an instance's process group), then the agent freezes.
    let mut instance = sleeper();
    conn.send(json!({"sync": {"deadline_ns": later, "tracked": {"web": {"process_group": instance.id()}}}}));
    let frozen = Instant::now();
    c.signal("h1", libc::SIGSTOP);
    let died_after = wait_until(Duration::from_secs(5), || !running(&mut instance))
        .expect("the watchdog must kill the instances of a frozen agent");
    let status = conn.status();
    c.signal("h1", libc::SIGCONT);
    assert!(
        frozen.elapsed() < Duration::from_millis(1500),
        "dead {died_after:?} after the freeze; the lease is 1 s"
    );
    assert_eq!(status["fired"], 1, "{status}");
}

#[test]
fn a_new_agent_connection_that_does_not_claim_an_instance_gets_it_killed() {
    let dir = std::env::temp_dir().join(format!("buoy-wd-orphan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("wd.sock");
    let _wd = Watchdog::start(&socket);
    let mut kept = sleeper();
    let mut orphan = sleeper();
    let far = boot_ns() + 60_000_000_000;
    let mut old_agent = Conn::open(&socket);
    old_agent.send(json!({"sync": {"deadline_ns": far, "tracked": {
        "kept": {"process_group": kept.id()}, "orphan": {"process_group": orphan.id()}}}}));
    assert_eq!(
        old_agent.status()["tracked"].as_object().map(|t| t.len()),
        Some(2)
    );
    // A restarted agent claims only what it runs now: the rest dies at once.
    let mut new_agent = Conn::open(&socket);
    new_agent.send(json!({"sync": {"deadline_ns": far, "tracked": {
        "kept": {"process_group": kept.id()}}}}));
    wait_until(Duration::from_secs(2), || !running(&mut orphan)).expect("the orphan is killed");
    assert!(
        running(&mut kept),
        "what the new agent claims keeps running"
    );
    // Later syncs on the same connection only untrack (the agent stopped it itself).
    new_agent.send(json!({"sync": {"deadline_ns": far, "tracked": {}}}));
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(&mut kept));
    assert_eq!(new_agent.status()["fired"], 0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_watchdog_device_that_is_not_one_is_refused_at_start() {
    let dir = std::env::temp_dir().join(format!("buoy-wd-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fake = dir.join("watchdog");
    std::fs::write(&fake, b"").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "agent",
            "--name",
            "wd",
            "--bind",
            "127.0.52.1:7946",
            "--http",
            "127.0.52.1:7070",
        ])
        .args(["--profile", "local", "--lease-ttl", "3s", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--unsafe-no-host-identity")
        .arg("--watchdog-device")
        .arg(&fake)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--watchdog-device") && err.contains("is not a watchdog device"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The phase and reason h`i` reports for `name`.
fn phase(c: &Cluster, i: u8, name: &str) -> (String, String) {
    let o = common::observed(c, i, name).unwrap_or(Value::Null);
    (
        o["phase"].as_str().unwrap_or("").to_string(),
        o["reason"].as_str().unwrap_or("").to_string(),
    )
}

/// Issue 15, hole 7: rule S1 leans on the watchdog, so an agent runs instances only while its
/// watchdog answers and is armed. Frozen (SIGSTOP) or killed, the agent stops its instances
/// itself and starts none until the watchdog is back. (Before the fix the agent noticed
/// nothing: the instance ran on with no watchdog behind it.)
#[test]
fn an_agent_whose_watchdog_hangs_or_dies_runs_nothing_until_it_is_back() {
    let mut c = Cluster::new(73);
    let socket = c.dir.join("wd-h1.sock");
    let mut wd = Some(c.start_watched(1, &[]));
    common::zone(&c, json!({}), &["h1"]);
    common::place_sleeper(&c, "sleeper", "h1");
    let mut pid = Some(common::wait_running(&c, 1, "sleeper"));

    // Frozen: it stops answering.
    let wd_pid = wd.as_ref().unwrap().pid();
    unsafe { libc::kill(wd_pid, libc::SIGSTOP) };
    let first = pid.unwrap();
    let stopped = wait_until(Duration::from_secs(5), || !common::alive(first));
    unsafe { libc::kill(wd_pid, libc::SIGCONT) };
    if common::alive(first) {
        unsafe { libc::kill(first, libc::SIGKILL) };
    }
    let stopped = stopped.expect("the instance stops when its watchdog stops answering");
    assert!(
        stopped < Duration::from_secs(3),
        "stopped after {stopped:?}"
    );
    // Back: it runs again.
    wait_until(Duration::from_secs(10), || {
        pid = common::running_pid(&c, 1, "sleeper");
        pid.is_some_and(|p| p != first)
    })
    .unwrap_or_else(|| panic!("runs again once the watchdog answers:\n{}", c.log(1)));

    // Killed: the same, and the reason says so.
    let second = pid.unwrap();
    drop(wd.take());
    let stopped = wait_until(Duration::from_secs(5), || !common::alive(second));
    if common::alive(second) {
        unsafe { libc::kill(second, libc::SIGKILL) };
    }
    stopped.expect("the instance stops when its watchdog dies");
    let (phase_now, reason) = phase(&c, 1, "sleeper");
    assert!(
        phase_now == "stopped" && reason.contains("watchdog"),
        "{phase_now}: {reason}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        common::running_pid(&c, 1, "sleeper").is_none(),
        "nothing starts while the watchdog is gone"
    );
    let _wd = Watchdog::start(&socket);
    wait_until(Duration::from_secs(10), || {
        common::running_pid(&c, 1, "sleeper").is_some_and(|p| p != second)
    })
    .unwrap_or_else(|| panic!("runs again once the watchdog is back:\n{}", c.log(1)));
}

/// Issue 15, hole 7: with no watchdog at all, an agent runs instances only when the operator
/// says so (--unsafe-no-watchdog); otherwise it warns at start and reports the copies placed on
/// it failed with the fix in the reason.
#[test]
fn an_agent_without_any_watchdog_runs_nothing_unless_told_to() {
    let mut c = Cluster::new(74);
    let data = c.dir.join("d1").display().to_string();
    let log = std::fs::File::create(c.dir.join("h1.log")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["agent", "--name", "h1", "--bind", &c.gossip(1).to_string()])
        .args(["--http", &c.http(1).to_string(), "--profile", "local"])
        .args(["--server", "--data-dir", &data])
        .args(c.identity_args("h1", &["--server".into()]))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    c.agents.push(("h1".into(), child));
    wait_until(Duration::from_secs(10), || {
        common::get(c.http(1), "/v1/health").is_some_and(|(s, _)| s == 200)
    })
    .expect("the agent starts");
    assert!(c.log(1).contains("--unsafe-no-watchdog"), "{}", c.log(1));
    common::zone(&c, json!({}), &["h1"]);
    common::place_sleeper(&c, "sleeper", "h1");
    wait_until(Duration::from_secs(10), || {
        let (p, r) = phase(&c, 1, "sleeper");
        p == "failed" && r.contains("--unsafe-no-watchdog")
    })
    .unwrap_or_else(|| panic!("{:?}\n{}", phase(&c, 1, "sleeper"), c.log(1)));
    assert!(common::running_pid(&c, 1, "sleeper").is_none());
}
