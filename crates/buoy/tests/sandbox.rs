//! The README's first command: `buoy sandbox` forms a cluster, brings up the control plane,
//! registers the hosts, shows a crash detected and a rejoin, and cleans up after itself.

use std::process::Command;

#[test]
fn the_sandbox_shows_the_cluster_working_and_cleans_up() {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(["sandbox", "--hosts", "4", "--duration", "8", "--base", "60"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "cluster formed: all 4 agents see 4 alive members",
        "control plane up on host-1",
        "segment `sandbox` with 4 hosts registered",
        "demo: every other agent declared host-4 dead",
        "rejoined with a higher incarnation",
        "stopping every agent and removing the sandbox files",
    ] {
        assert!(text.contains(expected), "missing `{expected}` in:\n{text}");
    }
    // Every agent it started is gone: nothing answers on the sandbox's addresses.
    for i in 61..=64 {
        let addr = std::net::SocketAddr::from(([127, 0, 0, i], 7070));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200))
                .is_err(),
            "an agent still listens on {addr}"
        );
    }
}
