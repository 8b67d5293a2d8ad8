//! The README's first command: `buoy sandbox` starts a cluster with demo instances and the
//! clock app behind its load balancer, crashes a host and shows its instances come back
//! elsewhere, takes a chaos request, keeps the clock app answering, and cleans up after itself.

use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn the_sandbox_shows_a_recovery_takes_chaos_and_cleans_up() {
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "sandbox",
            "--hosts",
            "5",
            "--instances",
            "6",
            "--duration",
            "16",
            "--demo-delay",
            "1",
            "--net",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs, a chaos request through `buoy sandbox chaos` (as the dashboard's buttons do).
    std::thread::sleep(Duration::from_secs(7));
    let chaos = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["sandbox", "chaos", "hang", "h2", "--net", "60"])
        .output()
        .unwrap();
    let chaos_out = String::from_utf8_lossy(&chaos.stdout).to_string();
    let bad = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["sandbox", "chaos", "explode", "h2", "--net", "60"])
        .output()
        .unwrap();
    let text = finishes_well(child);
    assert!(
        chaos.status.success() && chaos_out.contains("h2's agent hangs"),
        "{chaos_out}"
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown action `explode`"));
    for expected in [
        "control plane up: leader h1",
        "segments zone-a, zone-b with 5 hosts registered",
        "6 demo instances, the clock app (2 copies behind the load balancer",
        "dashboard:  http://127.0.60.1:7070/ui?sandbox=",
        "demo: a host crashes in 1 s; open the dashboard",
        "ran elsewhere",
        "chaos: h2's agent hangs (SIGSTOP)",
        // Every recovery gets its line, the chaos request's too, timed from the host's last
        // lease renewal.
        "recovery of COMPUTE_HOST h2: ran elsewhere",
        "after its last lease renewal",
        "clock app seen by its customer:",
        "stopping every agent and removing the sandbox files",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // The recovery's steps are shown in order.
    let line = text
        .lines()
        .find(|l| l.contains("demo: recovery of"))
        .unwrap();
    let (d, h) = (
        line.find("detected").unwrap(),
        line.find("healthy").unwrap(),
    );
    assert!(d < h, "{line}");
    // The live summary is printed when it changes (not a terminal), without escape codes.
    assert!(!text.contains('\x1b'), "{text}");
    // Every agent it started is gone: nothing answers on the sandbox's addresses.
    for i in 1..=5 {
        let addr = std::net::SocketAddr::from(([127, 0, 60, i], 7070));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "an agent still listens on {addr}"
        );
    }
}

#[test]
fn the_sandbox_runs_qemu_guests_when_asked() {
    let guest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-guest");
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok();
    if !guest.join("vmlinuz").is_file() || !qemu {
        eprintln!(
            "SKIPPED: qemu or the test guest missing (scripts/setup-test-deps.sh installs both)"
        );
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "sandbox",
            "--hosts",
            "3",
            "--instances",
            "1",
            "--vms",
            "1",
            "--no-demo",
        ])
        .args(["--duration", "20", "--net", "66"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The guest runs on some host, as the hosts report it.
    let api = std::net::SocketAddr::from(([127, 0, 66, 1], 7070));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut seen = false;
    while std::time::Instant::now() < deadline && !seen {
        std::thread::sleep(Duration::from_millis(300));
        seen = observed(api).is_some_and(|text| {
            text.contains("\"name\":\"vm-1\"") && text.contains("\"phase\":\"running\"")
        });
    }
    let text = finishes_well(child);
    assert!(seen, "vm-1 never ran:\n{text}");
    assert!(text.contains("and 1 QEMU guests running"), "{text}");
}

/// The zones scenario in network namespaces (`--zones 3`, the default where they can run):
/// HAProxy behind an IPaddr2 VIP, the clock reading its time from a replicated PostgreSQL;
/// the dashboard and the VIP forwarded to the sandbox's loopback address. The demo crashes
/// zone b with the database's primary: no failed request, the copies back in the other zones,
/// the database failed over and read again, then the zone back with its replica.
#[test]
fn the_sandbox_zones_scenario_in_namespaces_reads_a_replicated_database() {
    if !lab::zone_lab::ZoneLab::can_run_with_db() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["sandbox", "--zones", "3", "--hosts", "7"])
        .args(["--demo-delay", "0", "--duration", "30", "--net", "70"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The forwarded VIP answers with the database's time; the forwarded API answers too.
    let clock = std::net::SocketAddr::from(([127, 0, 70, 100], 8080));
    let api = std::net::SocketAddr::from(([127, 0, 70, 100], 7070));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (mut answer, mut status) = (None, None);
    while std::time::Instant::now() < deadline && (answer.is_none() || status.is_none()) {
        std::thread::sleep(Duration::from_millis(500));
        if answer.is_none() {
            answer = get(clock, "/").filter(|t| t.contains(" db "));
        }
        if status.is_none() {
            status = get(api, "/v1/status").filter(|t| t.contains("\"leader\""));
        }
    }
    let text = finishes_well(child);
    assert!(
        answer.is_some(),
        "the forwarded VIP never answered with the database's time:\n{text}"
    );
    assert!(
        status.is_some(),
        "the forwarded API never answered:\n{text}"
    );
    for expected in [
        "the clock reads its time from PostgreSQL",
        "dashboard:  http://127.0.70.100:7070/ui?clock=http://127.0.70.100:8080",
        "demo: zone b crashes",
        "(the database's primary is on h4)",
        "copies run again in the other zones",
        "demo: the database failed over to h2; the clock reads from it again",
        "demo: zone b is back",
        "replicates synchronously to h4 again",
        "stopping every agent and removing the namespaces and files",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    let down = text
        .lines()
        .find(|l| l.contains("was down the clock answered"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(down.contains(" requests, 0 failed"), "{down}");
    assert!(text.contains(" requests answered, 0 failed"), "{text}");
    assert!(
        std::net::TcpStream::connect_timeout(&clock, Duration::from_millis(200)).is_err(),
        "the sandbox still forwards {clock}"
    );
}

/// `GET path` at `addr`: the whole answer, headers included.
fn get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

fn observed(api: std::net::SocketAddr) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&api, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /v1/observed HTTP/1.0\r\nHost: {api}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

/// Waits for the sandbox to end; it must succeed. Its output.
fn finishes_well(child: std::process::Child) -> String {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// The zones scenario on loopback (`--zones 3 --loopback`): the clock spread over three zones
/// behind HAProxy (a Buoy clone of 2 copies); the demo crashes a whole zone; the customer sees
/// no failed request, the copies run again in the other zones, and HAProxy's backends follow.
#[test]
fn the_sandbox_zones_scenario_loses_a_zone_without_a_failed_request() {
    if !std::path::Path::new("/usr/sbin/haproxy").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "/usr/sbin/haproxy is missing: scripts/setup-test-deps.sh installs haproxy"
        );
        eprintln!("SKIPPED: no /usr/sbin/haproxy (scripts/setup-test-deps.sh installs it)");
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args([
            "sandbox",
            "--zones",
            "3",
            "--hosts",
            "7",
            "--instances",
            "0",
            "--loopback",
        ])
        .args(["--demo-delay", "0", "--duration", "25", "--net", "68"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let text = finishes_well(child);
    assert!(text.contains("demo: zone "), "{text}");
    assert!(
        text.contains("copies run again in the other zones"),
        "{text}"
    );
    assert!(
        text.contains("was down the clock answered") && text.contains(" requests, 0 failed"),
        "{text}"
    );
    // HAProxy's backends changed: a line without the dead zone's copy, then one with its
    // replacement.
    let backend_lines = text.matches("HAProxy backends: ").count();
    assert!(backend_lines >= 3, "{text}");
    assert!(
        text.contains("clock app seen by its customer:") && text.contains("answered, 0 failed"),
        "{text}"
    );
}
