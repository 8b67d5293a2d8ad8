//! The agent's place in the control plane: on servers, the Raft replica and the bootstrap that
//! forms the group once `bootstrap_expect` servers know each other through gossip; on every
//! agent, where to send API calls it cannot answer itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use state::data_dir::DataDir;
use state::replica::{Replica, ReplicaConfig};
use state::types::ServerNode;
use tracing::{info, warn};

use crate::raft_http::HttpTransport;
use node::gossip::runtime::Shared;
use node::http::client::HttpClient;
use node::servers::ServerDirectory;

/// What a server needs to run its replica.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub data_dir: PathBuf,
    /// Servers that must know each other before a fresh group forms.
    pub bootstrap_expect: usize,
    /// Raft log entries between snapshots.
    pub snapshot_every: u64,
}

/// What this agent proves itself with to the control plane (all `None` with host identity
/// off).
#[derive(Clone, Default)]
pub struct CpIdentity {
    /// This agent's credential: claimed servers must prove themselves to it.
    pub credential: Option<node::identity::HostKey>,
    /// On servers: the key Raft calls are signed with.
    pub server_key: Option<node::identity::HostKey>,
    /// On servers: the cluster secret's verifier, which also signs the calls this server
    /// relays to a host ([`ControlPlane::sign_call`]).
    pub verifier: Option<Arc<node::identity::Verifier>>,
}

/// This agent's handle on the control plane.
pub struct ControlPlane {
    /// Present on servers.
    pub replica: Option<Arc<Replica>>,
    pub client: HttpClient,
    /// The servers gossip knows (proven, with host identity on).
    pub servers: ServerDirectory,
    /// This server's name and the cluster secret's verifier (servers with identity on).
    call_signer: Option<(String, Arc<node::identity::Verifier>)>,
}

impl ControlPlane {
    /// Opens the replica (servers only) and starts the bootstrap watcher.
    pub async fn start(
        me: ServerNode,
        server: Option<ServerSettings>,
        gossip: Arc<Shared>,
        client: HttpClient,
        token: Option<String>,
        identity: CpIdentity,
    ) -> Result<Arc<ControlPlane>> {
        let replica = match &server {
            Some(s) => {
                let dir = DataDir::open(&s.data_dir)?;
                let transport = HttpTransport {
                    client: client.clone(),
                    token,
                    signer: identity.server_key.clone(),
                };
                let config = ReplicaConfig {
                    snapshot_every: s.snapshot_every,
                    ..ReplicaConfig::default()
                };
                let r = Replica::open(&dir, me.clone(), transport, &config)
                    .await
                    .with_context(|| format!("control-plane data in {}", s.data_dir.display()))?;
                Some(Arc::new(r))
            }
            None => None,
        };
        let servers = match identity.credential {
            Some(key) => {
                let me = server.is_some().then(|| me.clone());
                let d = ServerDirectory::proven(gossip, key, client.clone(), me);
                tokio::spawn(d.clone().run_proofs());
                d
            }
            None => ServerDirectory::unproven(gossip),
        };
        let call_signer = identity
            .verifier
            .filter(|_| server.is_some())
            .map(|v| (me.name.clone(), v));
        let cp = Arc::new(ControlPlane {
            replica,
            client,
            servers,
            call_signer,
        });
        if let (Some(r), Some(s)) = (&cp.replica, server) {
            tokio::spawn(bootstrap(cp.clone(), r.clone(), s.bootstrap_expect));
        }
        Ok(cp)
    }

    /// Where to send an API call this agent cannot answer: the leader when this server knows
    /// it, otherwise any live server (which forwards to its leader).
    pub fn forward_target(&self) -> Option<String> {
        if let Some(r) = &self.replica {
            return r.leader().map(|l| l.http).filter(|_| !r.is_leader());
        }
        self.servers
            .live_servers()
            .into_iter()
            .next()
            .map(|s| s.http)
    }

    /// The signature that proves to host `host` that this server makes the call `method path`
    /// (with an empty body), or none without host identity.
    pub fn sign_call(
        &self,
        host: &str,
        method: &str,
        path: &str,
    ) -> Option<node::identity::Signature> {
        let (me, verifier) = self.call_signer.as_ref()?;
        Some(verifier.host_key(host).sign_call_now(me, method, path, b""))
    }

    /// True when this agent is the leader and answers API calls itself.
    pub fn is_leader(&self) -> bool {
        self.replica.as_ref().is_some_and(|r| r.is_leader())
    }
}

/// Forms the group once `expect` servers are alive in gossip: the `expect` first by name
/// are the founding voters, so every server picks the same set. A server with data from an
/// earlier run is already in a group and skips this.
async fn bootstrap(cp: Arc<ControlPlane>, replica: Arc<Replica>, expect: usize) {
    let mut waiting_logged = false;
    loop {
        if replica.is_initialized().await {
            return;
        }
        let servers = cp.servers.live_servers();
        if servers.len() >= expect {
            let founders: Vec<ServerNode> = servers.into_iter().take(expect).collect();
            if !founders.iter().any(|s| s.name == replica.me().name) {
                if !waiting_logged {
                    info!(
                        "{expect} servers already form the control plane; waiting to be added with `buoy servers add {}`",
                        replica.me().name
                    );
                    waiting_logged = true;
                }
            } else {
                let names: Vec<&str> = founders.iter().map(|s| s.name.as_str()).collect();
                info!(servers = ?names, "forming the control plane");
                match replica.bootstrap(&founders).await {
                    Ok(()) => return,
                    Err(e) => warn!(error = %e, "bootstrap failed; retrying"),
                }
            }
        } else if !waiting_logged {
            info!(
                have = servers.len(),
                expect, "waiting for servers to join before forming the control plane"
            );
            waiting_logged = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
