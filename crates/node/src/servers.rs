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

/// How long a proof holds before the server is asked again (it stays trusted meanwhile).
const REPROVE_EVERY: Duration = Duration::from_secs(60);

/// The claim a proof is for: the address gossip gave, at the member's incarnation. A member
/// that comes back under a new incarnation (a restart, or another process taking the name and
/// address of a dead server) is untrusted until it proves itself again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    http: String,
    incarnation: u32,
}

/// Where the proof of one claimed server stands.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Proof {
    /// Asked, not trusted yet.
    Asking(Claim),
    /// Proven; asked again from `until` on.
    Proven {
        claim: Claim,
        until: Instant,
    },
    /// Asked again after [`REPROVE_EVERY`]: trusted while the answer comes.
    Reproving(Claim),
    Failed {
        claim: Claim,
        retry_at: Instant,
    },
}

impl Proof {
    /// Whether this proof makes `claim` trusted now.
    fn trusts(&self, claim: &Claim) -> bool {
        matches!(self, Proof::Proven { claim: c, .. } | Proof::Reproving(c) if c == claim)
    }

    /// Whether `claim` needs a challenge now.
    fn due(&self, claim: &Claim, now: Instant) -> bool {
        match self {
            Proof::Asking(c) | Proof::Reproving(c) => c != claim,
            Proof::Proven { claim: c, until } => c != claim || *until <= now,
            Proof::Failed { claim: c, retry_at } => c != claim || *retry_at <= now,
        }
    }

    /// The claim this proof is about.
    fn claim(&self) -> &Claim {
        match self {
            Proof::Asking(c) | Proof::Reproving(c) => c,
            Proof::Proven { claim, .. } | Proof::Failed { claim, .. } => claim,
        }
    }
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
            .filter(|(s, claim)| self.is_proven(s, claim))
            .map(|(s, _)| s)
            .collect();
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        servers
    }

    /// The members that claim the server role in gossip, in states `keep`.
    fn claims(&self, keep: impl Fn(MemberState) -> bool) -> Vec<(ServerNode, Claim)> {
        self.gossip.read(|sw| {
            sw.members()
                .iter()
                .filter(|m| m.meta().role == Role::Server && keep(m.state))
                .filter_map(|m| {
                    m.meta().http.map(|http| {
                        let server = ServerNode {
                            name: m.name().to_string(),
                            http: http.to_string(),
                        };
                        let claim = Claim {
                            http: server.http.clone(),
                            incarnation: m.incarnation.0,
                        };
                        (server, claim)
                    })
                })
                .collect()
        })
    }

    fn is_proven(&self, s: &ServerNode, claim: &Claim) -> bool {
        let Some(p) = &self.proofs else {
            return true;
        };
        if p.me.as_ref() == Some(s) {
            return true;
        }
        lock(&p.by_name)
            .get(&s.name)
            .is_some_and(|proof| proof.trusts(claim))
    }

    /// Challenges every member that claims the server role and has not proven it yet, again
    /// when its address or incarnation changes (untrusted until it answers), and every
    /// [`REPROVE_EVERY`] (trusted meanwhile), for as long as the agent runs.
    pub async fn run_proofs(self) {
        let Some(p) = self.proofs.clone() else {
            return;
        };
        loop {
            let now = Instant::now();
            for (server, claim) in self.claims(|s| s != MemberState::Left) {
                if p.me.as_ref() == Some(&server) {
                    continue;
                }
                let mut table = lock(&p.by_name);
                let before = table.get(&server.name).cloned();
                if before.as_ref().is_some_and(|b| !b.due(&claim, now)) {
                    continue;
                }
                // Warn once per claim, not at every retry of the same one.
                let first = !matches!(&before, Some(Proof::Failed { claim: c, .. }) if *c == claim);
                let asking = match &before {
                    Some(b) if b.trusts(&claim) => Proof::Reproving(claim.clone()),
                    _ => Proof::Asking(claim.clone()),
                };
                let again = matches!(asking, Proof::Reproving(_));
                table.insert(server.name.clone(), asking.clone());
                drop(table);
                let p = p.clone();
                tokio::spawn(async move {
                    let result =
                        server_proof::challenge(&p.client, &server, &p.key, PROOF_TIMEOUT).await;
                    let next = match result {
                        Ok(()) => {
                            if !again {
                                info!(server = %server.name, http = %server.http, "server proven: it holds the cluster secret");
                            }
                            Proof::Proven {
                                claim: claim.clone(),
                                until: Instant::now() + REPROVE_EVERY,
                            }
                        }
                        Err(why) => {
                            if first {
                                warn!(
                                    member = %server.name,
                                    http = %server.http,
                                    "a member claims the server role but has not proven it holds the cluster secret ({why}); nothing is sent to it until it does"
                                );
                            }
                            Proof::Failed {
                                claim: claim.clone(),
                                retry_at: Instant::now() + RETRY_AFTER,
                            }
                        }
                    };
                    let mut table = lock(&p.by_name);
                    // Only if gossip has not moved the claim on meanwhile.
                    if table.get(&server.name).map(Proof::claim) == Some(asking.claim()) {
                        table.insert(server.name, next);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(inc: u32) -> Claim {
        Claim {
            http: "127.0.0.1:7070".into(),
            incarnation: inc,
        }
    }

    #[test]
    fn a_proof_holds_for_its_claim_only_and_is_asked_again_in_time() {
        let now = Instant::now();
        let proven = Proof::Proven {
            claim: claim(3),
            until: now + REPROVE_EVERY,
        };
        assert!(proven.trusts(&claim(3)) && !proven.due(&claim(3), now));
        // The same name and address under a new incarnation (a restart, or an impostor that
        // took a dead server's address): untrusted, asked at once.
        assert!(!proven.trusts(&claim(4)) && proven.due(&claim(4), now));
        // Its time is up: asked again, and trusted while asked.
        assert!(proven.due(&claim(3), now + REPROVE_EVERY));
        assert!(Proof::Reproving(claim(3)).trusts(&claim(3)));
        assert!(!Proof::Reproving(claim(3)).due(&claim(3), now));
        assert!(!Proof::Asking(claim(3)).trusts(&claim(3)));
        let failed = Proof::Failed {
            claim: claim(3),
            retry_at: now + RETRY_AFTER,
        };
        assert!(!failed.trusts(&claim(3)) && !failed.due(&claim(3), now));
        assert!(failed.due(&claim(3), now + RETRY_AFTER) && failed.due(&claim(4), now));
    }
}
