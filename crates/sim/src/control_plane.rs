//! The control-plane scenario: 3 or 5 replicas (real openraft + redb on disk) on the in-memory
//! network, under a paused tokio clock, with clients writing while a seeded schedule crashes,
//! restarts and partitions servers. It checks rule S2 (every acknowledged write survives) and
//! Raft's election safety (at most one leader per term), then restarts every server and checks
//! that they all come back to the same state.
//!
//! The fault schedule, latency and loss come from the seed; openraft draws its election
//! timeouts from its own random source, so a seed replays the same faults, not necessarily the
//! same elections.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::segment::{Segment, SegmentSpec};
use model::{ClusterState, Expect, Object, ObjectMeta, Op, Timestamp};
use serde::Serialize;
use state::data_dir::DataDir;
use state::disk_io::DiskIo;
use state::replica::{Replica, ReplicaConfig};
use state::types::{ServerNode, node_id};
use swim::Rng;

use crate::raft_network::MemNetwork;

/// What to run.
#[derive(Clone, Debug)]
pub struct ControlPlaneScenario {
    pub servers: usize,
    pub clients: usize,
    /// Virtual time with faults, before the final heal and checks.
    pub duration: Duration,
    pub seed: u64,
    /// Datagram loss on every link.
    pub loss: f64,
    /// Where the servers' data directories go (removed afterwards).
    pub dir: PathBuf,
}

/// What happened and what broke.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ControlPlaneReport {
    pub seed: u64,
    pub servers: usize,
    pub acked_writes: usize,
    pub failed_writes: usize,
    pub crashes: usize,
    pub partitions: usize,
    pub elections: usize,
    /// Acknowledged writes missing from the final state (must be empty).
    pub lost_acked_writes: Vec<String>,
    /// Terms in which two servers were leader (must be empty).
    pub split_brain_terms: Vec<u64>,
    /// Servers whose state differed from the leader's after the full restart (must be empty).
    pub diverged_servers: Vec<String>,
}

impl ControlPlaneReport {
    /// True when no rule broke.
    pub fn ok(&self) -> bool {
        self.lost_acked_writes.is_empty()
            && self.split_brain_terms.is_empty()
            && self.diverged_servers.is_empty()
    }
}

fn server(i: usize) -> ServerNode {
    ServerNode {
        name: format!("server-{i}"),
        http: format!("sim:{i}"),
    }
}

/// Everything the scenario's tasks share.
struct Cluster {
    net: MemNetwork,
    dirs: Vec<DataDir>,
    config: ReplicaConfig,
    /// term -> leaders seen in it.
    leaders: Mutex<BTreeMap<u64, BTreeSet<String>>>,
}

impl Cluster {
    async fn start(&self, i: usize) -> Result<Arc<Replica>, String> {
        let me = server(i);
        let mut attempts = 0;
        let replica = loop {
            match Replica::open(
                &self.dirs[i],
                me.clone(),
                self.net.transport(&me.name),
                &self.config,
            )
            .await
            {
                Ok(r) => break r,
                // The previous life's tasks (replication streams holding the database) are
                // still winding down; a real restart is a new process and never sees this.
                Err(e) if attempts < 500 && e.to_string().contains("already open") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(format!("{}: {e}", me.name)),
            }
        };
        let replica = Arc::new(replica);
        self.net.attach(replica.clone());
        Ok(replica)
    }

    async fn crash(&self, name: &str) {
        if let Some(r) = self.net.detach(name) {
            r.shutdown().await;
        }
    }

    /// Records who leads in which term, from every running replica's own view.
    fn observe_leaders(&self) {
        let mut leaders = self.leaders.lock().unwrap_or_else(|p| p.into_inner());
        for r in self.net.running() {
            let s = r.status();
            if s.role == "leader" {
                leaders.entry(s.term).or_default().insert(s.server);
            }
        }
    }

    fn leader(&self) -> Option<Arc<Replica>> {
        self.net.running().into_iter().find(|r| r.is_leader())
    }
}

fn segment_named(name: &str, id: &str) -> Object {
    let spec = SegmentSpec {
        name: Some(name.into()),
        ..Default::default()
    };
    let meta = ObjectMeta {
        id: id.into(),
        ..Default::default()
    };
    Object::Segment(Segment::create(meta, &spec).expect("a valid segment"))
}

impl ControlPlaneScenario {
    /// Runs the scenario on a fresh single-threaded runtime with a paused clock.
    pub fn run(&self) -> Result<ControlPlaneReport, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&self.dir);
        let result = rt.block_on(self.run_async());
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }

    async fn run_async(&self) -> Result<ControlPlaneReport, String> {
        let mut rng = Rng::new(self.seed);
        let dirs = (0..self.servers)
            .map(|i| {
                DataDir::open(&self.dir.join(format!("server-{i}"))).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cluster = Arc::new(Cluster {
            net: MemNetwork::new(self.seed, self.loss),
            dirs,
            config: ReplicaConfig {
                disk_io: DiskIo::Runtime,
                ..ReplicaConfig::default()
            },
            leaders: Mutex::new(BTreeMap::new()),
        });
        let all: Vec<ServerNode> = (0..self.servers).map(server).collect();
        for i in 0..self.servers {
            cluster
                .start(i)
                .await?
                .bootstrap(&all)
                .await
                .map_err(|e| e.to_string())?;
        }
        let mut report = ControlPlaneReport {
            seed: self.seed,
            servers: self.servers,
            ..Default::default()
        };

        // Clients write unique segments through whichever server leads.
        let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let failed = Arc::new(Mutex::new(0usize));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for c in 0..self.clients {
            let (cluster, acked, failed, stop) =
                (cluster.clone(), acked.clone(), failed.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Some(leader) = cluster.leader() else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    n += 1;
                    let name = format!("c{c}-w{n}");
                    let id = format!("id-{name}");
                    let op = Op::Put {
                        object: Box::new(segment_named(&name, &id)),
                        expect: Expect::Absent,
                    };
                    let write = tokio::time::timeout(
                        Duration::from_secs(2),
                        leader.write(op, Timestamp::from_unix_millis(n)),
                    );
                    match write.await {
                        Ok(Ok(Ok(_))) => acked
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((name, id)),
                        _ => {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
            }));
        }

        // Faults, with leaders sampled every 10 ms between them.
        let start = tokio::time::Instant::now();
        let mut crashed: Vec<usize> = Vec::new();
        let minority = (self.servers - 1) / 2;
        while start.elapsed() < self.duration {
            let pause =
                rng.duration_between(Duration::from_millis(300), Duration::from_millis(1500));
            let until = tokio::time::Instant::now() + pause;
            while tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
                cluster.observe_leaders();
            }
            match rng.below(5) {
                // Crash a server, preferring the leader half of the time.
                0 | 1 if crashed.len() < minority => {
                    let leader = cluster.leader().map(|l| l.me().name.clone());
                    let victim = match leader {
                        Some(l) if rng.chance(0.5) => l,
                        _ => server(rng.below(self.servers)).name,
                    };
                    let i: usize = victim.trim_start_matches("server-").parse().unwrap_or(0);
                    if !crashed.contains(&i) {
                        cluster.crash(&victim).await;
                        crashed.push(i);
                        report.crashes += 1;
                    }
                }
                2 if !crashed.is_empty() => {
                    let i = crashed.swap_remove(rng.below(crashed.len()));
                    cluster.start(i).await?;
                }
                3 => {
                    let a = server(rng.below(self.servers)).name;
                    for b in &all {
                        if b.name != a {
                            cluster.net.cut(&a, &b.name, rng.chance(0.3));
                        }
                    }
                    report.partitions += 1;
                }
                _ => cluster.net.heal(),
            }
        }

        // Heal, bring everyone back, let the clients finish, and wait for a stable leader.
        cluster.net.heal();
        for i in crashed.drain(..) {
            cluster.start(i).await?;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for c in clients {
            let _ = c.await;
        }
        let final_state = self.settle(&cluster).await?;
        let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
        report.acked_writes = acked.len();
        report.failed_writes = *failed.lock().unwrap_or_else(|p| p.into_inner());
        report.lost_acked_writes = acked
            .iter()
            .filter(|(_, id)| final_state.segment(id).is_none())
            .map(|(name, _)| name.clone())
            .collect();

        // Stop every server, start them again: each comes back to the same state.
        for s in &all {
            cluster.crash(&s.name).await;
        }
        for i in 0..self.servers {
            cluster.start(i).await?;
        }
        let after = self.settle(&cluster).await?;
        for r in cluster.net.running() {
            let same = r.shared().read(|s| *s == after);
            if !same || after != final_state {
                report.diverged_servers.push(r.me().name.clone());
            }
        }
        {
            let leaders = cluster.leaders.lock().unwrap_or_else(|p| p.into_inner());
            report.elections = leaders.len();
            report.split_brain_terms = leaders
                .iter()
                .filter(|(_, names)| names.len() > 1)
                .map(|(term, _)| *term)
                .collect();
        }
        for s in &all {
            cluster.crash(&s.name).await;
        }
        Ok(report)
    }

    /// Waits until a leader has applied everything and every server caught up with it; returns
    /// the leader's state.
    async fn settle(&self, cluster: &Cluster) -> Result<ClusterState, String> {
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cluster.observe_leaders();
            let Some(leader) = cluster.leader() else {
                continue;
            };
            if leader.read_barrier().await.is_err() {
                continue;
            }
            let target = leader.status().last_applied;
            let running = cluster.net.running();
            if running.len() == self.servers
                && running.iter().all(|r| r.status().last_applied >= target)
            {
                return Ok(leader.shared().read(Clone::clone));
            }
        }
        Err(format!(
            "seed {}: no stable leader with every server caught up after 30 s (leader ids: {:?})",
            self.seed,
            (0..self.servers)
                .map(|i| node_id(&server(i).name))
                .collect::<Vec<_>>()
        ))
    }
}
