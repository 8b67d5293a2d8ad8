//! A virtual IP with `ocf:heartbeat:IPaddr2`, with every host in its own network namespace
//! (created here, removed at the end): a client reaches the address on whichever host holds
//! it, before and after it moves. Needs root, `ip netns` and resource-agents; skips otherwise.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::wait_until;
use serde_json::Value;

const VIP: &str = "10.77.0.50";

/// The namespaces of one test run, deleted (with their links) on drop, after the processes
/// started in them are killed by PID.
struct Net {
    prefix: String,
    processes: Vec<Child>,
    dir: PathBuf,
}

impl Net {
    fn ns(&self, node: &str) -> String {
        format!("{}-{node}", self.prefix)
    }

    /// Runs `ip args...` and says whether it worked.
    fn ip(args: &[&str]) -> bool {
        Command::new("ip")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A switch namespace with a bridge, and one namespace per node with `eth0` on it.
    fn build(nodes: &[(&str, &str)]) -> Option<Net> {
        let tag = std::process::id() % 100_000;
        let dir = std::env::temp_dir().join(format!("buoy-netns-{tag}"));
        std::fs::create_dir_all(&dir).ok()?;
        let net = Net {
            prefix: format!("bz{tag}"),
            processes: Vec::new(),
            dir,
        };
        let sw = net.ns("sw");
        if !Net::ip(&["netns", "add", &sw]) {
            return None;
        }
        let ok = Net::ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])
            && Net::ip(&["-n", &sw, "link", "set", "br0", "up"]);
        assert!(ok, "cannot create a bridge in a namespace");
        for (i, (node, addr)) in nodes.iter().enumerate() {
            let ns = net.ns(node);
            let (a, b) = (format!("bz{tag}a{i}"), format!("bz{tag}b{i}"));
            let ok = Net::ip(&["netns", "add", &ns])
                && Net::ip(&["link", "add", &a, "type", "veth", "peer", "name", &b])
                && Net::ip(&["link", "set", &a, "netns", &ns])
                && Net::ip(&["link", "set", &b, "netns", &sw])
                && Net::ip(&["-n", &ns, "link", "set", &a, "name", "eth0"])
                && Net::ip(&["-n", &ns, "link", "set", "lo", "up"])
                && Net::ip(&["-n", &ns, "link", "set", "eth0", "up"])
                && Net::ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{addr}/24"),
                    "dev",
                    "eth0",
                ])
                && Net::ip(&["-n", &sw, "link", "set", &b, "master", "br0"])
                && Net::ip(&["-n", &sw, "link", "set", &b, "up"]);
            assert!(ok, "cannot wire node {node} into the test network");
        }
        Some(net)
    }

    /// Starts `program args` inside `node`'s namespace, output to `log`.
    fn spawn(&mut self, node: &str, program: &Path, args: &[&str], log: &str) {
        let out = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(node)])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.processes.push(child);
    }

    /// Runs a command inside `node`'s namespace and waits for it.
    fn run(&self, node: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns(node), program])
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.processes {
            let _ = c.kill();
            let _ = c.wait();
        }
        for node in ["h1", "h2", "client", "sw"] {
            let _ = Net::ip(&["netns", "del", &self.ns(node)]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const BUOY: &str = env!("CARGO_BIN_EXE_buoy");

/// The CLI run inside h1's namespace against h1's agent.
fn cli(net: &Net, args: &[&str]) -> (bool, String) {
    let out = net.run("h1", BUOY, args, &[("BUOY_HTTP_ADDR", "10.77.0.1:7070")]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What the client gets from the virtual IP, if anything.
fn fetch_vip(net: &Net) -> Option<String> {
    let script = format!(
        "import urllib.request; print(urllib.request.urlopen('http://{VIP}:8080/', timeout=1).read().decode().strip())"
    );
    let out = net.run("client", "python3", &["-c", &script], &[]);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_virtual_ip_follows_its_placement_across_network_namespaces() {
    if !Path::new("/usr/lib/ocf/resource.d/heartbeat/IPaddr2").is_file() {
        eprintln!(
            "SKIPPED: ocf:heartbeat:IPaddr2 missing (scripts/setup-test-deps.sh installs resource-agents)"
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: network namespaces need root");
        return;
    }
    let nodes = [
        ("h1", "10.77.0.1"),
        ("h2", "10.77.0.2"),
        ("client", "10.77.0.100"),
    ];
    let Some(mut net) = Net::build(&nodes) else {
        eprintln!("SKIPPED: `ip netns add` does not work here");
        return;
    };
    // What answers on the virtual IP: a web server on every host, saying which host it is.
    for host in ["h1", "h2"] {
        let www = net.dir.join(format!("www-{host}"));
        std::fs::create_dir_all(&www).unwrap();
        std::fs::write(www.join("index.html"), host).unwrap();
        let www = www.display().to_string();
        net.spawn(
            host,
            Path::new("/bin/busybox"),
            &["httpd", "-f", "-p", "0.0.0.0:8080", "-h", &www],
            &format!("httpd-{host}.log"),
        );
    }
    for (i, host) in ["h1", "h2"].into_iter().enumerate() {
        let addr = nodes[i].1;
        let data = net.dir.join(format!("data-{host}"));
        let args =
            lab::netns::lab_agent_args(&net.dir, host, addr.parse().unwrap(), host == "h1", &data)
                .unwrap();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        net.spawn(host, Path::new(BUOY), &args, &format!("agent-{host}.log"));
    }
    wait_until(Duration::from_secs(20), || {
        let (ok, out) = cli(&net, &["status", "--json"]);
        ok && serde_json::from_str::<Value>(&out).is_ok_and(|v| v["leader"]["name"] == "h1")
    })
    .unwrap_or_else(|| panic!("no control plane:\n{}", net.log("agent-h1.log")));

    let spec = net.dir.join("vip.json");
    std::fs::write(
        &spec,
        // Created stopped, placed on h1 by hand, then started (otherwise the recovery engine
        // places it wherever it likes first).
        serde_json::json!({"segment": "zone", "driver": "ocf", "desired_state": "stopped",
            "params": {"agent": "ocf:heartbeat:IPaddr2", "monitor_interval": "1s",
                       "params": {"ip": VIP, "cidr_netmask": 24, "nic": "eth0"}}})
        .to_string(),
    )
    .unwrap();
    let spec = spec.display().to_string();
    for args in [
        vec!["segment", "create", "zone"],
        vec!["host", "create", "h1", "--segment", "zone"],
        vec!["host", "create", "h2", "--segment", "zone"],
        vec!["instance", "create", "vip", "-f", &spec],
    ] {
        let (ok, out) = cli(&net, &args);
        assert!(ok, "buoy {args:?}: {out}");
    }
    let (ok, out) = cli(
        &net,
        &[
            "placement",
            "create",
            "--set",
            "instance=vip",
            "--set",
            "host=h1",
            "--json",
        ],
    );
    assert!(ok, "{out}");
    let placement: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let id = placement["id"].as_str().unwrap().to_string();
    let (ok, out) = cli(
        &net,
        &[
            "instance",
            "update",
            "vip",
            "--set",
            "desired_state=started",
        ],
    );
    assert!(ok, "{out}");

    // The client reaches the virtual IP, served by h1.
    wait_until(Duration::from_secs(20), || {
        fetch_vip(&net).as_deref() == Some("h1")
    })
    .unwrap_or_else(|| {
        panic!(
            "the VIP never answered from h1:\n{}",
            net.log("agent-h1.log")
        )
    });

    // Moved to h2: the address leaves h1 and the client reaches it on h2.
    let (ok, out) = cli(&net, &["placement", "update", &id, "--set", "host=h2"]);
    assert!(ok, "{out}");
    wait_until(Duration::from_secs(20), || {
        fetch_vip(&net).as_deref() == Some("h2")
    })
    .unwrap_or_else(|| {
        panic!(
            "the VIP never answered from h2:\n{}",
            net.log("agent-h2.log")
        )
    });
    eprintln!("the VIP moved from h1 to h2");
    let h1_addrs = net.run("h1", "ip", &["addr", "show", "eth0"], &[]);
    assert!(
        !String::from_utf8_lossy(&h1_addrs.stdout).contains(VIP),
        "h1 still holds the VIP"
    );
}
