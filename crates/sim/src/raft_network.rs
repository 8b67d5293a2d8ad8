//! An in-memory network for simulated control-plane servers: it routes openraft's RPCs to the
//! running replicas with seeded latency and loss, and honours crashes and partitions (one way
//! or both), like the membership simulator's network does for gossip.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use state::network::{Rpc, Transport, TransportError};
use state::replica::Replica;
use state::types::ServerNode;
use swim::Rng;

/// Who is up and which links are cut.
struct NetState {
    /// Running replicas by server name (a crashed server is absent).
    running: BTreeMap<String, Arc<Replica>>,
    /// (from, to) pairs whose traffic is dropped.
    blocked: BTreeSet<(String, String)>,
    rng: Rng,
    loss: f64,
}

/// The shared network; hand each server its own [`MemTransport`].
#[derive(Clone)]
pub struct MemNetwork {
    state: Arc<Mutex<NetState>>,
}

impl MemNetwork {
    /// A network with no servers yet; `seed` drives latency and loss.
    pub fn new(seed: u64, loss: f64) -> Self {
        MemNetwork {
            state: Arc::new(Mutex::new(NetState {
                running: BTreeMap::new(),
                blocked: BTreeSet::new(),
                rng: Rng::new(seed ^ 0x5eed_0f4a_5700),
                loss,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The transport the server called `name` sends with.
    pub fn transport(&self, name: &str) -> MemTransport {
        MemTransport {
            net: self.clone(),
            from: name.to_string(),
        }
    }

    /// Marks a replica as running (it receives RPCs).
    pub fn attach(&self, replica: Arc<Replica>) {
        let name = replica.me().name.clone();
        self.lock().running.insert(name, replica);
    }

    /// Takes a server off the network (crash); returns its replica to shut down.
    pub fn detach(&self, name: &str) -> Option<Arc<Replica>> {
        self.lock().running.remove(name)
    }

    /// The running replicas.
    pub fn running(&self) -> Vec<Arc<Replica>> {
        self.lock().running.values().cloned().collect()
    }

    /// Drops traffic from `a` to `b`, and back unless `one_way`.
    pub fn cut(&self, a: &str, b: &str, one_way: bool) {
        let mut s = self.lock();
        s.blocked.insert((a.into(), b.into()));
        if !one_way {
            s.blocked.insert((b.into(), a.into()));
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.lock().blocked.clear();
    }

    /// Latency of one message, or `None` when it is lost or the link is cut.
    fn hop(&self, from: &str, to: &str) -> Option<Duration> {
        let mut s = self.lock();
        if s.blocked.contains(&(from.to_string(), to.to_string())) {
            return None;
        }
        let loss = s.loss;
        if s.rng.chance(loss) {
            return None;
        }
        Some(
            s.rng
                .duration_between(Duration::from_micros(200), Duration::from_millis(2)),
        )
    }
}

/// One server's sending end.
#[derive(Clone)]
pub struct MemTransport {
    net: MemNetwork,
    from: String,
}

impl Transport for MemTransport {
    async fn call(
        &self,
        to: &ServerNode,
        rpc: Rpc,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let Some(there) = self.net.hop(&self.from, &to.name) else {
            // A lost request looks like a timeout to the sender.
            tokio::time::sleep(Duration::from_millis(50)).await;
            return Err(TransportError::Failed(format!(
                "request to {} lost",
                to.name
            )));
        };
        tokio::time::sleep(there).await;
        let Some(replica) = self.net.lock().running.get(&to.name).cloned() else {
            return Err(TransportError::Unreachable(format!("{} is down", to.name)));
        };
        let reply = replica
            .serve_rpc(rpc, &body)
            .await
            .map_err(|e| TransportError::Failed(e.to_string()))?;
        let Some(back) = self.net.hop(&to.name, &self.from) else {
            return Err(TransportError::Failed(format!(
                "reply from {} lost",
                to.name
            )));
        };
        tokio::time::sleep(back).await;
        Ok(reply)
    }
}
