//! `buoy bench control-plane`: starts its own servers on loopback, drives them with concurrent
//! writers, optionally kills the leader halfway, and prints throughput, latency, failover time
//! and acknowledged writes lost (must be zero).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::body::Body;
use clap::Args;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};
use sim::stats::Percentiles;

use node::http::client::HttpClient;

/// Flags of `buoy bench control-plane`.
#[derive(Args, Debug)]
pub struct ControlPlaneBenchArgs {
    /// Servers to start (1, 3 or 5).
    #[arg(long, default_value_t = 3)]
    pub servers: u8,
    /// Concurrent writers.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long to write.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Kill -9 the leader halfway through and measure the failover.
    #[arg(long)]
    pub kill_leader: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Third octet of the 127.0.X.0/24 network the servers use.
    #[arg(long, default_value_t = 77)]
    pub net: u8,
    /// Run the servers without host identity (`--unsafe-no-host-identity`), to measure what
    /// identity costs: Raft RPCs unsigned, renewals unsigned.
    #[arg(long)]
    pub no_identity: bool,
    /// Lease renewals to time after the writes (one at a time, as host `bench-host`).
    #[arg(long, default_value_t = 2000)]
    pub renewals: usize,
}

/// The servers this benchmark started; killed (by PID) when dropped.
struct Servers {
    children: Vec<Option<Child>>,
    dir: PathBuf,
    net: u8,
}

impl Servers {
    fn http(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, self.net, i as u8 + 1], 7070))
    }

    fn start(args: &ControlPlaneBenchArgs) -> Result<Servers> {
        let dir = std::env::temp_dir().join(format!("buoy-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let exe = std::env::current_exe().context("locating the buoy binary")?;
        let mut s = Servers {
            children: Vec::new(),
            dir,
            net: args.net,
        };
        for i in 0..args.servers as usize {
            let ip = format!("127.0.{}.{}", args.net, i + 1);
            let log = std::fs::File::create(s.dir.join(format!("server-{i}.log")))?;
            let mut cmd = Command::new(&exe);
            cmd.args([
                "agent",
                "--name",
                &format!("bench-{i}"),
                "--profile",
                "local",
            ])
            .args([
                "--bind",
                &format!("{ip}:7946"),
                "--http",
                &format!("{ip}:7070"),
            ])
            .args(["--server", "--bootstrap-expect", &args.servers.to_string()])
            .args(if args.no_identity {
                vec!["--unsafe-no-host-identity".to_string()]
            } else {
                crate::identity_files::agent_args(&s.dir, &format!("bench-{i}"), true)?
            })
            .arg("--unsafe-no-watchdog")
            .arg("--data-dir")
            .arg(s.dir.join(format!("data-{i}")))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
            if i > 0 {
                cmd.args(["--join", &format!("127.0.{}.1:7946", args.net)]);
            }
            s.children
                .push(Some(cmd.spawn().context("starting a server")?));
        }
        Ok(s)
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn call(
    client: &HttpClient,
    method: Method,
    addr: SocketAddr,
    path: &str,
    body: Option<Value>,
) -> Result<(StatusCode, Value)> {
    let mut headers = HeaderMap::new();
    headers.insert(hyper::header::CONTENT_TYPE, "application/json".parse()?);
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
    let answer = client
        .send(
            method,
            &format!("http://{addr}{path}"),
            &headers,
            body,
            Duration::from_secs(5),
        )
        .await?;
    let bytes = answer.body.collect().await?.to_bytes();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)?
    };
    Ok((answer.status, v))
}

/// Every segment name in the state, read page by page through the leader. A page that fails
/// is asked again (of whichever server leads then), so a failed read is never counted as
/// missing writes.
async fn segment_names(
    client: &HttpClient,
    servers: &[SocketAddr],
    alive: &[bool],
) -> Result<BTreeSet<String>> {
    let mut names = BTreeSet::new();
    let mut marker: Option<String> = None;
    loop {
        let path = match &marker {
            None => "/v1/segments?limit=10000".to_string(),
            Some(m) => format!("/v1/segments?limit=10000&marker={m}"),
        };
        let mut attempt = 0;
        let page = loop {
            attempt += 1;
            let answer = match find_leader(client, servers, alive).await {
                Some(l) => call(client, Method::GET, servers[l], &path, None).await,
                None => Err(anyhow::anyhow!("no leader")),
            };
            match answer {
                Ok((StatusCode::OK, page)) => break page,
                Ok((status, body)) if attempt >= 5 => bail!("listing segments: {status} {body}"),
                Err(e) if attempt >= 5 => return Err(e.context("listing segments")),
                Ok((status, body)) => eprintln!("listing segments: {status} {body}; again"),
                Err(e) => eprintln!("listing segments: {e:#}; again"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        for s in page["segments"].as_array().into_iter().flatten() {
            if let Some(n) = s["name"].as_str() {
                names.insert(n.to_string());
            }
        }
        match page["next_marker"].as_str() {
            Some(m) => marker = Some(m.to_string()),
            None => return Ok(names),
        }
    }
}

/// Times `args.renewals` lease renewals of host `bench-host` sent to the leader one at a time:
/// signed with the host's credential (and the answer's MAC checked) unless `--no-identity`.
async fn renewals(
    client: &HttpClient,
    servers: &Servers,
    addrs: &[SocketAddr],
    alive: &[bool],
    args: &ControlPlaneBenchArgs,
) -> Result<Percentiles> {
    let Some(l) = find_leader(client, addrs, alive).await else {
        bail!("no leader to renew with");
    };
    let key = if args.no_identity {
        None
    } else {
        let secret = node::identity::ClusterSecret::load(&servers.dir.join("cluster.secret"))?;
        Some(secret.host_key("bench-host"))
    };
    let url = format!("http://{}{}", addrs[l], proto::RENEW_PATH);
    let body = br#"{"host":"bench-host"}"#.to_vec();
    let mut times = Vec::with_capacity(args.renewals);
    let mut last_ms = 0;
    for _ in 0..args.renewals {
        let t = Instant::now();
        let mut headers = HeaderMap::new();
        let nonce = node::identity::nonce();
        if let Some(k) = &key {
            // Each signed renewal is newer than the one before (the leader refuses replays).
            last_ms = node::identity::wall_ms().max(last_ms + 1);
            k.sign("POST", proto::RENEW_PATH, last_ms, &nonce, &body)
                .insert_into(&mut headers);
        }
        let (status, answer_headers, answer) = client
            .post_json(&url, body.clone(), headers, Duration::from_secs(5))
            .await?;
        if !status.is_success() {
            bail!("renewal: {status} {}", String::from_utf8_lossy(&answer));
        }
        if let Some(k) = &key {
            let mac = answer_headers
                .get(node::identity::MAC_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !k.answer_is_genuine(&nonce, status.as_u16(), &answer, mac) {
                bail!("a renewal's answer is not signed by the control plane");
            }
        }
        times.push(t.elapsed());
    }
    Ok(Percentiles::of(&times))
}

/// The leader's index among the live servers, asking each in turn.
async fn find_leader(client: &HttpClient, servers: &[SocketAddr], alive: &[bool]) -> Option<usize> {
    for (i, addr) in servers.iter().enumerate() {
        if !alive[i] {
            continue;
        }
        if let Ok((StatusCode::OK, v)) = call(client, Method::GET, *addr, "/v1/status", None).await
            && let Some(http) = v["leader"]["http"].as_str()
        {
            return servers
                .iter()
                .position(|a| a.to_string() == http)
                .filter(|&l| alive[l]);
        }
    }
    None
}

pub fn control_plane(args: ControlPlaneBenchArgs) -> Result<()> {
    if !matches!(args.servers, 1 | 3 | 5) {
        bail!("--servers {}: expected 1, 3 or 5", args.servers);
    }
    if args.clients == 0 || args.seconds == 0 {
        bail!("--clients and --seconds must be at least 1");
    }
    if args.kill_leader && args.servers == 1 {
        bail!("--kill-leader needs --servers 3 or 5 (one server has no one to take over)");
    }
    let mut servers = Servers::start(&args)?;
    // The writers share the machine with the servers they measure: one worker drives them
    // all (async, keep-alive) and leaves the most CPU to the servers (measured: 33 against
    // 37-40 us of the writers' CPU per write, and fewer context switches for everyone).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let addrs: Vec<SocketAddr> = (0..args.servers as usize)
        .map(|i| servers.http(i))
        .collect();
    let client = HttpClient::new(None);
    let alive = Arc::new(Mutex::new(vec![true; addrs.len()]));

    // Wait for the group to form.
    let t0 = Instant::now();
    let mut leader = loop {
        let a = alive.lock().map(|a| a.clone()).unwrap_or_default();
        if let Some(l) = rt.block_on(find_leader(&client, &addrs, &a)) {
            break l;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("no leader after 30 s; logs in {}", servers.dir.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !args.json {
        eprintln!(
            "{} servers up, leader bench-{leader}; writing for {} s with {} clients",
            args.servers, args.seconds, args.clients
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let current_leader = Arc::new(Mutex::new(leader));
    let acked: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    // Failed writes by what failed ("503 no_leader", "timeout ..."), shown in the report.
    let errors: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (client, addrs, alive, stop, current_leader, acked, errors) = (
            client.clone(),
            addrs.clone(),
            alive.clone(),
            stop.clone(),
            current_leader.clone(),
            acked.clone(),
            errors.clone(),
        );
        tasks.push(rt.spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let name = format!("b-{c}-{n}");
                let to = addrs[*current_leader.lock().unwrap_or_else(|p| p.into_inner())];
                let t = Instant::now();
                match call(
                    &client,
                    Method::POST,
                    to,
                    "/v1/segments",
                    Some(json!({"name": name})),
                )
                .await
                {
                    Ok((StatusCode::CREATED, _)) => {
                        acked.lock().unwrap_or_else(|p| p.into_inner()).push((
                            name,
                            Instant::now(),
                            t.elapsed(),
                        ));
                    }
                    other => {
                        let kind = match other {
                            Ok((status, v)) => format!(
                                "{} {}",
                                status.as_u16(),
                                v["error"]["code"].as_str().unwrap_or("")
                            ),
                            Err(e) => e.to_string(),
                        };
                        *errors
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .entry(kind)
                            .or_default() += 1;
                        let a = alive.lock().map(|a| a.clone()).unwrap_or_default();
                        if let Some(l) = find_leader(&client, &addrs, &a).await {
                            *current_leader.lock().unwrap_or_else(|p| p.into_inner()) = l;
                        } else {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }
        }));
    }
    let mut killed_at = None;
    let half = Duration::from_secs(args.seconds) / 2;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        std::thread::sleep(Duration::from_millis(20));
        if args.kill_leader && killed_at.is_none() && start.elapsed() >= half {
            leader = *current_leader.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(mut a) = alive.lock() {
                a[leader] = false;
            }
            servers.kill(leader);
            killed_at = Some(Instant::now());
            if !args.json {
                eprintln!("killed the leader bench-{leader} (kill -9)");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = rt.block_on(t);
    }
    let elapsed = start.elapsed();
    let acked = acked.lock().map(|a| a.clone()).unwrap_or_default();
    let latencies: Vec<Duration> = acked.iter().map(|(_, _, l)| *l).collect();
    let p = Percentiles::of(&latencies);
    let failover_ms = killed_at.map(|k| {
        acked
            .iter()
            .filter(|(_, at, _)| *at > k)
            .map(|(_, at, _)| (*at - k).as_secs_f64() * 1000.0)
            .fold(f64::INFINITY, f64::min)
    });

    // Writes acknowledged in each second of the run: shows a slowdown as the state grows,
    // or the gap a failover leaves.
    let mut per_second = vec![0u64; args.seconds as usize + 1];
    for (_, at, _) in &acked {
        let s = at.saturating_duration_since(start).as_secs() as usize;
        if let Some(n) = per_second.get_mut(s) {
            *n += 1;
        }
    }
    per_second.truncate(elapsed.as_secs().max(1) as usize);

    // Every acknowledged write must be in the state, read through the (new) leader.
    let a = alive.lock().map(|a| a.clone()).unwrap_or_default();
    let present = rt.block_on(segment_names(&client, &addrs, &a))?;
    let lost = acked
        .iter()
        .filter(|(n, _, _)| !present.contains(n))
        .count();
    let renew = rt.block_on(renewals(&client, &servers, &addrs, &a, &args))?;
    let report = json!({
        "identity": !args.no_identity,
        "renewals": args.renewals,
        "renew_ms": {"p50": renew.p50, "p99": renew.p99, "max": renew.max},
        "servers": args.servers,
        "clients": args.clients,
        "seconds": elapsed.as_secs_f64(),
        "writes": acked.len(),
        "writes_per_s": (acked.len() as f64 / elapsed.as_secs_f64()).round(),
        "latency_ms": {"p50": p.p50, "p99": p.p99, "max": p.max},
        "writes_by_second": per_second,
        "failover_ms": failover_ms,
        "lost_acked_writes": lost,
        "errors": errors.lock().map(|e| e.values().sum::<u64>()).unwrap_or(0),
        "error_kinds": errors.lock().map(|e| e.clone()).unwrap_or_default(),
    });
    if args.json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    drop(servers);
    if lost > 0 {
        bail!("{lost} acknowledged writes were lost");
    }
    Ok(())
}
