//! Helpers shared by the multi-process tests: a set of real agents on one 127.0.N.0/24
//! network, killed by PID when the test ends, and a tiny HTTP client.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Agents started by one test; dropping it kills them all.
pub struct Cluster {
    pub net: u8,
    pub agents: Vec<(String, Child)>,
    pub dir: PathBuf,
    /// The name each agent index was last started with (`h{i}` unless told otherwise).
    names: std::cell::RefCell<BTreeMap<u8, String>>,
}

impl Cluster {
    pub fn new(net: u8) -> Self {
        let dir = cluster_dir(net);
        std::fs::create_dir_all(&dir).unwrap();
        Cluster {
            net,
            agents: Vec::new(),
            dir,
            names: Default::default(),
        }
    }

    pub fn gossip(&self, i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, self.net, i], 7946))
    }

    pub fn http(&self, i: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, self.net, i], 7070))
    }

    /// A signed `GET path` of agent `i`'s own routes (its lease, supervisor, members...), as
    /// its gate asks (`node::http::host_gate`): with its credential, from the cluster secret.
    pub fn host_get(&self, i: u8, path: &str) -> Option<(u16, String)> {
        self.host_call(i, "GET", path, "")
    }

    /// A signed `POST path` of agent `i`'s own routes (its fault filter, key reload...).
    pub fn host_post(&self, i: u8, path: &str, body: &str) -> Option<(u16, String)> {
        self.host_call(i, "POST", path, body)
    }

    /// Records that agent `i` runs as `name` (for an agent started without [`Cluster::command`]).
    #[allow(dead_code)]
    pub fn set_name(&self, i: u8, name: &str) {
        self.names.borrow_mut().insert(i, name.to_string());
    }

    fn host_call(&self, i: u8, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let name = self.names.borrow().get(&i).cloned();
        let signed = lab::identity_files::sign_for(
            &self.dir,
            &name.unwrap_or_else(|| format!("h{i}")),
            method,
            path,
            body.as_bytes(),
        );
        let headers: Vec<(&str, &str)> = signed.iter().map(|(k, v)| (*k, v.as_str())).collect();
        request_with(self.http(i), method, path, &headers, body)
    }

    /// The identity flags of agent `name` started with `extra`: the cluster secret for a
    /// server, its own credential (issued here) for a host, and the cluster's keyring; none
    /// of those `extra` sets itself.
    pub fn identity_args(&self, name: &str, extra: &[String]) -> Vec<String> {
        let given = |f: &str| extra.iter().any(|a| a == f);
        let mut args = Vec::new();
        if !(given("--unsafe-no-host-identity")
            || given("--credential")
            || given("--cluster-secret"))
        {
            args = lab::identity_files::agent_args(&self.dir, name, given("--server")).unwrap();
        }
        // Gossip encrypted, as it should be everywhere.
        if !(given("--keyring") || given("--unsafe-no-gossip-encryption")) {
            args.extend(lab::identity_files::keyring_args(&self.dir).unwrap());
        }
        args
    }

    pub fn command(&self, i: u8, name: &str, extra: &[String]) -> Command {
        self.names.borrow_mut().insert(i, name.to_string());
        let mut c = Command::new(env!("CARGO_BIN_EXE_buoy"));
        c.args([
            "agent",
            "--name",
            name,
            "--bind",
            &self.gossip(i).to_string(),
            "--http",
            &self.http(i).to_string(),
        ])
        .args(["--profile", "local", "--enable-fault-injection"])
        .args(extra)
        .args(self.identity_args(name, extra))
        .stdin(Stdio::null());
        // Agents without a watchdog of their own run instances only when told to.
        if !extra.iter().any(|a| a == "--watchdog") {
            c.arg("--unsafe-no-watchdog");
        }
        c
    }

    /// Kills agent `name` (SIGKILL, by PID) and forgets it.
    pub fn kill(&mut self, name: &str) {
        if let Some(pos) = self.agents.iter().position(|(n, _)| n == name) {
            let (_, mut c) = self.agents.remove(pos);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts agent `i` (named `h{i}`) joining through agent 1.
    pub fn start(&mut self, i: u8, extra: &[String]) {
        self.spawn(i, extra);
        wait_until(Duration::from_secs(10), || {
            get(self.http(i), "/v1/health").is_some_and(|(s, _)| s == 200)
        })
        .unwrap_or_else(|| panic!("agent h{i} did not start:\n{}", self.log(i)));
    }

    /// Starts agent `i` like `start` without waiting for its plain-HTTP API.
    pub fn spawn(&mut self, i: u8, extra: &[String]) {
        let mut args = extra.to_vec();
        if i != 1 {
            args.extend(["--join".to_string(), self.gossip(1).to_string()]);
        }
        let log = std::fs::File::create(self.dir.join(format!("h{i}.log"))).unwrap();
        let child = self
            .command(i, &format!("h{i}"), &args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.agents.push((format!("h{i}"), child));
    }

    pub fn log(&self, i: u8) -> String {
        std::fs::read_to_string(self.dir.join(format!("h{i}.log"))).unwrap_or_default()
    }

    pub fn pid(&self, name: &str) -> i32 {
        self.agents
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id() as i32)
            .unwrap()
    }

    pub fn signal(&self, name: &str, sig: i32) {
        // SAFETY: kill(2) on a PID this test started.
        unsafe { libc::kill(self.pid(name), sig) };
    }

    /// Agent `i`'s view: member -> (state, incarnation).
    pub fn view(&self, i: u8) -> BTreeMap<String, (String, u64)> {
        let Some((200, body)) = self.host_get(i, "/v1/members") else {
            return BTreeMap::new();
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["name"].as_str().unwrap().to_string(),
                    (
                        m["state"].as_str().unwrap().to_string(),
                        m["incarnation"].as_u64().unwrap(),
                    ),
                )
            })
            .collect()
    }

    pub fn state(&self, observer: u8, subject: &str) -> Option<String> {
        self.view(observer).get(subject).map(|(s, _)| s.clone())
    }

    /// Waits until every observer sees `subject` in `state`.
    pub fn wait_all_see(
        &self,
        observers: &[u8],
        subject: &str,
        state: &str,
        timeout: Duration,
    ) -> Duration {
        wait_until(timeout, || {
            observers
                .iter()
                .all(|&o| self.state(o, subject).as_deref() == Some(state))
        })
        .unwrap_or_else(|| {
            let views: Vec<_> = observers.iter().map(|&o| (o, self.view(o))).collect();
            panic!("not every agent sees {subject} {state} within {timeout:?}: {views:?}")
        })
    }

    pub fn faults(&self, i: u8, body: &str) {
        let (status, answer) = self.host_post(i, "/v1/debug/faults", body).unwrap();
        assert_eq!(status, 200, "{answer}");
    }
}

impl Cluster {
    /// Cuts agents `a` and `b` from each other, both ways, through both fault filters.
    pub fn cut(&self, a: u8, b: u8) {
        for (from, to) in [(a, b), (b, a)] {
            self.faults(
                from,
                &format!(r#"{{"drop":[{{"peer":"h{to}","direction":"both"}}]}}"#),
            );
        }
    }

    /// Clears the fault filters of `agents`.
    pub fn heal(&self, agents: &[u8]) {
        for &i in agents {
            self.faults(i, r#"{"drop":[]}"#);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, c) in &mut self.agents {
            // SAFETY: SIGCONT first so a stopped agent can die; then SIGKILL by PID.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn wait_until(timeout: Duration, mut ok: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if ok() {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    None
}

pub fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
    request_with(addr, method, path, &[], body)
}

/// A request with extra headers (`("If-Match", "\"3\"")`).
pub fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    Some((
        head.split_whitespace().nth(1)?.parse().ok()?,
        body.to_string(),
    ))
}

pub fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    request(addr, "GET", path, "")
}

pub fn post(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, String)> {
    request(addr, "POST", path, body)
}

pub fn five(net: u8, extra: &[String]) -> Cluster {
    let mut c = Cluster::new(net);
    for i in 1..=5 {
        c.start(i, extra);
    }
    for i in 1..=5 {
        for s in 1..=5 {
            c.wait_all_see(&[i], &format!("h{s}"), "alive", Duration::from_secs(15));
        }
    }
    c
}

/// Runs the `buoy` CLI against the agent at `http`; (success, stdout, stderr).
pub fn buoy(http: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_buoy"))
        .args(args)
        .env("BUOY_HTTP_ADDR", http.to_string())
        .env_remove("BUOY_TLS_CA")
        .env_remove("BUOY_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `buoy watchdog` on `socket`, killed by PID on drop.
pub struct Watchdog(Child);

impl Watchdog {
    pub fn start(socket: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_buoy"))
            .args(["watchdog", "--socket"])
            .arg(socket)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(Duration::from_secs(5), || {
            std::os::unix::net::UnixStream::connect(socket).is_ok()
        })
        .expect("the watchdog listens");
        Watchdog(child)
    }

    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Creates an object through agent 1 (waiting out a leader election at start-up).
pub fn create(c: &Cluster, path: &str, body: serde_json::Value) -> serde_json::Value {
    let mut answer = None;
    wait_until(Duration::from_secs(10), || {
        answer = post(c.http(1), path, &body.to_string());
        !matches!(answer, Some((503, _)) | None)
    });
    let (status, text) = answer.expect("answer");
    assert_eq!(status, 201, "POST {path} {body}: {text}");
    json(&text)
}

/// What agent `i`'s supervisor reports about instance `name`.
pub fn observed(c: &Cluster, i: u8, name: &str) -> Option<serde_json::Value> {
    let (_, body) = c.host_get(i, "/v1/supervisor")?;
    json(&body)["instances"]
        .as_array()?
        .iter()
        .find(|o| o["name"] == name)
        .cloned()
}

/// Waits up to 10 s until `name` runs on agent `i`: its PID.
pub fn wait_running(c: &Cluster, i: u8, name: &str) -> i32 {
    let mut pid = None;
    wait_until(Duration::from_secs(10), || {
        pid = running_pid(c, i, name);
        pid.is_some()
    })
    .unwrap_or_else(|| panic!("{name} never ran on h{i}:\n{}", c.log(i)));
    pid.unwrap_or_default()
}

pub fn running_pid(c: &Cluster, i: u8, name: &str) -> Option<i32> {
    let o = observed(c, i, name)?;
    (o["phase"] == "running")
        .then(|| o["pid"].as_i64())?
        .map(|p| p as i32)
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

impl Cluster {
    /// Starts agent `i` with its data directory in the test's directory (`--server` for
    /// agent 1), the socket of its watchdog when given, and `extra` flags.
    pub fn start_agent(&mut self, i: u8, watchdog: Option<&Path>, extra: &[&str]) {
        let mut args = vec![
            "--data-dir".to_string(),
            self.dir.join(format!("d{i}")).display().to_string(),
        ];
        if i == 1 {
            args.push("--server".into());
        }
        if let Some(socket) = watchdog {
            args.extend(["--watchdog".to_string(), socket.display().to_string()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        self.start(i, &args);
    }

    /// Starts agents 1 to 3 as the three servers of a new cluster (`--bootstrap-expect 3`),
    /// their data in the test's directory.
    pub fn start_three_servers(&mut self) {
        for i in 1..=3u8 {
            let data = self.dir.join(format!("data-h{i}")).display().to_string();
            let args: Vec<String> = ["--server", "--bootstrap-expect", "3", "--data-dir", &data]
                .iter()
                .map(|s| s.to_string())
                .collect();
            self.start(i, &args);
        }
    }

    /// Starts agent 1 as a server whose API needs `tokens` (`(token, role)`); its address.
    pub fn start_with_tokens(&mut self, tokens: &[(&str, &str)]) -> SocketAddr {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join("tokens.json");
        let list: Vec<serde_json::Value> = tokens
            .iter()
            .map(|(t, r)| serde_json::json!({"token": t, "role": r}))
            .collect();
        std::fs::write(&path, serde_json::json!({ "tokens": list }).to_string()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = path.display().to_string();
        self.start_agent(1, None, &["--tokens", &path]);
        let http = self.http(1);
        wait_until(Duration::from_secs(20), || {
            get(http, "/v1/health").is_some_and(|(s, _)| s == 200)
        })
        .expect("the server answers");
        http
    }

    /// Starts agent `i` like `start_agent`, with a watchdog of its own (returned: it lives
    /// as long as the guard, past the agent's death, as hardware would).
    pub fn start_watched(&mut self, i: u8, extra: &[&str]) -> Watchdog {
        let socket = self.dir.join(format!("wd-h{i}.sock"));
        let wd = Watchdog::start(&socket);
        self.start_agent(i, Some(&socket), extra);
        wd
    }
}

/// Creates segment `zone` (with `fields` added to its spec) and registers `hosts` in it.
pub fn zone(c: &Cluster, fields: serde_json::Value, hosts: &[&str]) {
    let mut spec = serde_json::json!({"name": "zone"});
    if let (Some(s), Some(f)) = (spec.as_object_mut(), fields.as_object()) {
        s.extend(f.clone());
    }
    create(c, "/v1/segments", spec);
    for h in hosts {
        create(
            c,
            "/v1/hosts",
            serde_json::json!({"name": h, "segment": "zone"}),
        );
    }
}

/// Creates the instance `spec` placed on `host` by hand (rather than where the recovery
/// engine would place it): created stopped, placed, then started. Returns the placement.
pub fn create_placed(c: &Cluster, spec: serde_json::Value, host: &str) -> serde_json::Value {
    let mut stopped = spec.clone();
    stopped["desired_state"] = "stopped".into();
    let name = spec["name"].as_str().expect("a name").to_string();
    create(c, "/v1/instances", stopped);
    let placement = create(
        c,
        "/v1/placements",
        serde_json::json!({"instance": name, "host": host}),
    );
    let (status, body) = request(
        c.http(1),
        "PATCH",
        &format!("/v1/instances/{name}"),
        r#"{"desired_state": "started"}"#,
    )
    .expect("an answer");
    assert_eq!(status, 200, "starting {name}: {body}");
    placement
}

/// Creates `name`, a `sleep 600` process instance in segment `zone`, placed on `host`.
pub fn place_sleeper(c: &Cluster, name: &str, host: &str) {
    create_placed(
        c,
        serde_json::json!({"name": name, "segment": "zone", "driver": "process",
               "params": {"command": "/bin/sleep", "args": ["600"]}}),
        host,
    );
}

/// Whether this process can make network namespaces (root, and iproute2's `ip netns`).
pub fn netns_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Installs OCF agent `test:NAME` (the shell `script`) under the OCF root `root`.
#[allow(dead_code)]
pub fn install_ocf_agent(root: &Path, name: &str, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    let dir = root.join("resource.d/test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Kills, by PID, every process whose command line names `dir` when dropped: the instances
/// a test's agents started, which outlive agents killed with SIGKILL (no watchdog in these
/// tests). Declare it before the [`Cluster`] so that it drops after the agents are gone.
#[allow(dead_code)]
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle)
                && pid != std::process::id() as i32
            {
                // SAFETY: kill(2) on a process whose command line names this test's directory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The directory [`Cluster::new`] makes for net `net` (for a [`Reaper`] made before it).
#[allow(dead_code)]
pub fn cluster_dir(net: u8) -> PathBuf {
    std::env::temp_dir().join(format!("buoy-test-{}-{net}", std::process::id()))
}
