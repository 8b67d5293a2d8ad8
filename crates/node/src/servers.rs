//! Where the control-plane servers are: gossip says which members claim the role, and with
//! host identity on, a claim counts only once the member has proven it holds the cluster
//! secret ([`crate::server_proof`]). Every agent finds the servers this way (to renew its
//! lease, to relay API calls), and servers find each other to form the group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::server::ServerNode;
use swim::{MemberState, Role};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::gossip::runtime::Shared;
use crate::http::client::HttpClient;
use crate::identity::HostKey;
use crate::server_proof;

/// How often claims are looked at, and how long a failed proof waits before another try.
const PROVE_EVERY: Duration = Duration::from_millis(200);
const RETRY_AFTER: Duration = Duration::from_secs(2);
const PROOF_TIMEOUT: Duration = Duration::from_secs(2);

/// The servers announced through gossip, proven when identity is on.
#[derive(Clone)]
pub struct ServerDirectory {
    gossip: Arc<Shared>,
    /// `None`: host identity is off (`--unsafe-no-host-identity`), and a claim is taken as is.
    proofs: Option<Arc<Proofs>>,
}

/// The proofs asked of claimed servers.
struct Proofs {
    key: HostKey,
    client: HttpClient,
    /// This agent, when it is a server: it needs no proof of itself.
    me: Option<ServerNode>,
    by_name: Mutex<HashMap<String, Proof>>,
}

/// Where the proof of one claimed server stands (for the address gossip gave).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Proof {
    Asking { http: String },
    Proven { http: String },
    Failed { http: String, retry_at: Instant },
}

impl ServerDirectory {
    /// Takes gossip's claims as they are: for agents without host identity.
    pub fn unproven(gossip: Arc<Shared>) -> Self {
        ServerDirectory {
            gossip,
            proofs: None,
        }
    }

    /// Counts only servers that proved themselves to `key`, this agent's credential (`me`:
    /// this agent, when it is a server). Start [`ServerDirectory::run_proofs`] beside it.
    pub fn proven(
        gossip: Arc<Shared>,
        key: HostKey,
        client: HttpClient,
        me: Option<ServerNode>,
    ) -> Self {
        ServerDirectory {
            gossip,
            proofs: Some(Arc::new(Proofs {
                key,
                client,
                me,
                by_name: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// The servers gossip knows as alive, by name.
    pub fn live_servers(&self) -> Vec<ServerNode> {
        self.servers_where(|s| s == MemberState::Alive)
    }

    /// Every server gossip has heard of and that has not left: the alive ones first. A host
    /// that gossip cannot reach may still reach a server over HTTP (and keep its lease).
    pub fn servers_to_try(&self) -> Vec<ServerNode> {
        let mut all = self.live_servers();
        all.extend(self.servers_where(|s| matches!(s, MemberState::Suspect | MemberState::Dead)));
        all
    }

    fn servers_where(&self, keep: impl Fn(MemberState) -> bool) -> Vec<ServerNode> {
        let mut servers: Vec<ServerNode> = self
            .claims(keep)
            .into_iter()
            .filter(|s| self.is_proven(s))
            .collect();
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        servers
    }

    /// The members that claim the server role in gossip, in states `keep`.
    fn claims(&self, keep: impl Fn(MemberState) -> bool) -> Vec<ServerNode> {
        self.gossip.read(|sw| {
            sw.members()
                .iter()
                .filter(|m| m.meta().role == Role::Server && keep(m.state))
                .filter_map(|m| {
                    m.meta().http.map(|http| ServerNode {
                        name: m.name().to_string(),
                        http: http.to_string(),
                    })
                })
                .collect()
        })
    }

    fn is_proven(&self, s: &ServerNode) -> bool {
        let Some(p) = &self.proofs else {
            return true;
        };
        if p.me.as_ref() == Some(s) {
            return true;
        }
        lock(&p.by_name).get(&s.name)
            == Some(&Proof::Proven {
                http: s.http.clone(),
            })
    }

    /// Challenges every member that claims the server role and has not proven it yet (again
    /// when its address changes), for as long as the agent runs.
    pub async fn run_proofs(self) {
        let Some(p) = self.proofs.clone() else {
            return;
        };
        loop {
            let now = Instant::now();
            for claimed in self.claims(|s| s != MemberState::Left) {
                if p.me.as_ref() == Some(&claimed) {
                    continue;
                }
                let mut table = lock(&p.by_name);
                let due = match table.get(&claimed.name) {
                    None => true,
                    Some(Proof::Asking { http } | Proof::Proven { http }) => *http != claimed.http,
                    Some(Proof::Failed { http, retry_at }) => {
                        *http != claimed.http || *retry_at <= now
                    }
                };
                if !due {
                    continue;
                }
                let first = !matches!(table.get(&claimed.name), Some(Proof::Failed { http, .. }) if *http == claimed.http);
                table.insert(
                    claimed.name.clone(),
                    Proof::Asking {
                        http: claimed.http.clone(),
                    },
                );
                drop(table);
                let p = p.clone();
                tokio::spawn(async move {
                    let result =
                        server_proof::challenge(&p.client, &claimed, &p.key, PROOF_TIMEOUT).await;
                    let next = match result {
                        Ok(()) => {
                            info!(server = %claimed.name, http = %claimed.http, "server proven: it holds the cluster secret");
                            Proof::Proven {
                                http: claimed.http.clone(),
                            }
                        }
                        Err(why) => {
                            if first {
                                warn!(
                                    member = %claimed.name,
                                    http = %claimed.http,
                                    "a member claims the server role but has not proven it holds the cluster secret ({why}); nothing is sent to it until it does"
                                );
                            }
                            Proof::Failed {
                                http: claimed.http.clone(),
                                retry_at: Instant::now() + RETRY_AFTER,
                            }
                        }
                    };
                    let mut table = lock(&p.by_name);
                    // Only if gossip has not moved the claim elsewhere meanwhile.
                    if table.get(&claimed.name)
                        == Some(&Proof::Asking {
                            http: claimed.http.clone(),
                        })
                    {
                        table.insert(claimed.name, next);
                    }
                });
            }
            tokio::time::sleep(PROVE_EVERY).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
