//! Where the control-plane servers are, as gossip knows them: every agent finds the servers
//! this way (to renew its lease, to relay API calls), and servers find each other to form the
//! group.

use std::sync::Arc;

use model::server::ServerNode;
use swim::{MemberState, Role};

use crate::gossip::runtime::Shared;

/// The servers announced through gossip.
#[derive(Clone)]
pub struct ServerDirectory {
    gossip: Arc<Shared>,
}

impl ServerDirectory {
    pub fn new(gossip: Arc<Shared>) -> Self {
        ServerDirectory { gossip }
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
        let mut servers: Vec<ServerNode> = self.gossip.read(|sw| {
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
        });
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        servers
    }
}
