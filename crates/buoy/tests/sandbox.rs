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
            "14",
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
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
        "instances run elsewhere",
        "chaos: h2's agent hangs (SIGSTOP)",
        "clock app seen by its customer:",
        "stopping every agent and removing the sandbox files",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // The recovery's steps are shown in order.
    let line = text
        .lines()
        .find(|l| l.contains("instances run elsewhere"))
        .unwrap();
    let (d, h) = (
        line.find("detected").unwrap(),
        line.find("healthy").unwrap(),
    );
    assert!(d < h, "{line}");
    // Every agent it started is gone: nothing answers on the sandbox's addresses.
    for i in 1..=5 {
        let addr = std::net::SocketAddr::from(([127, 0, 60, i], 7070));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
            "an agent still listens on {addr}"
        );
    }
}
