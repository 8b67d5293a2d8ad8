//! The HAProxy sync against a real HAProxy (Debian's 2.6; `scripts/setup-test-deps.sh`
//! installs it): started on loopback with an admin socket, its backend is brought to the
//! servers wanted, read back with `show servers state`, through a join, a leave (drained,
//! then deleted) and a move. A server of the configuration file Buoy does not manage stays.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use node::balancer::admin_socket::{servers, sync};
use node::balancer::haproxy::Wanted;

/// HAProxy in the foreground, killed by PID when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wanted(name: &str, port: u16) -> Wanted {
    Wanted::new(name, "127.0.0.1", port)
}

#[test]
fn a_real_haproxy_backend_follows_the_servers_wanted() {
    let bin = Path::new("/usr/sbin/haproxy");
    if !bin.exists() {
        eprintln!(
            "SKIPPED (loudly): /usr/sbin/haproxy is not installed (run scripts/setup-test-deps.sh)"
        );
        return;
    }
    let dir = std::env::temp_dir().join(format!("buoy-haproxy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("admin.sock");
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  stats socket {} level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             backend web\n  option httpchk GET /\n  server fixed 127.0.0.1:9 check\n",
            socket.display()
        ),
    )
    .unwrap();
    let _haproxy = Haproxy(
        Command::new(bin)
            .args(["-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let t0 = Instant::now();
    while !socket.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let timeout = Duration::from_secs(2);
    let keep = vec!["fixed".to_string()];
    let names = |list: &[node::balancer::haproxy::ServerState]| -> Vec<(String, u16, bool)> {
        list.iter()
            .map(|s| (s.name.clone(), s.port, s.in_maintenance() || s.draining()))
            .collect()
    };

    // Two copies join: added, enabled.
    let want = [wanted("web-0", 18001), wanted("web-1", 18002)];
    let (sent, now) = sync(&socket, "web", &want, &keep, |_| false, timeout).unwrap();
    assert_eq!(sent.len(), 6, "{sent:?}");
    assert_eq!(
        names(&now),
        [
            ("fixed".into(), 9, false),
            ("web-0".into(), 18001, false),
            ("web-1".into(), 18002, false)
        ]
    );
    // In sync: nothing to send.
    let (sent, _) = sync(&socket, "web", &want, &keep, |_| false, timeout).unwrap();
    assert!(sent.is_empty(), "{sent:?}");

    // web-1 leaves: drained, still listed, then deleted once its drain time is over.
    let want = [wanted("web-0", 18001)];
    let (_, now) = sync(&socket, "web", &want, &keep, |_| false, timeout).unwrap();
    assert_eq!(names(&now)[2], ("web-1".into(), 18002, true), "draining");
    let (_, now) = sync(&socket, "web", &want, &keep, |_| true, timeout).unwrap();
    assert_eq!(
        names(&now),
        [("fixed".into(), 9, false), ("web-0".into(), 18001, false)]
    );

    // web-0 moves to another port.
    let (_, now) = sync(
        &socket,
        "web",
        &[wanted("web-0", 18003)],
        &keep,
        |_| true,
        timeout,
    )
    .unwrap();
    assert_eq!(names(&now)[1], ("web-0".into(), 18003, false));

    // A backend HAProxy does not have is a clear error.
    let e = servers(&socket, "nosuch", timeout).unwrap_err();
    assert!(e.to_string().contains("no backend `nosuch`"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
