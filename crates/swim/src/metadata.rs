//! Member metadata: what a host announces about itself to the layers above membership.

use std::net::SocketAddr;

/// Whether an agent is a control-plane server (a Raft voter) or a plain client host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs instances, follows the servers.
    #[default]
    Client,
    /// Also replicates the cluster state.
    Server,
}

impl Role {
    /// The lowercase name used in the API and config.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

/// What a host can give to instances.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Capacity {
    /// Whole CPUs available to instances.
    pub cpus: u32,
    /// Memory available to instances, in MiB.
    pub memory_mb: u64,
}

/// One named network of a host (management, storage, tenant...), announced so that later layers
/// can probe and reach the host over every path it has.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetAddress {
    /// The network's name, e.g. `storage`.
    pub label: String,
    /// The host's address on that network.
    pub addr: SocketAddr,
}

/// A member's metadata. It travels in alive messages and is versioned by the member's
/// incarnation: changing it bumps the incarnation so the new value wins everywhere.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// The failover domain the host belongs to.
    pub segment: String,
    /// Client or server.
    pub role: Role,
    /// Resources offered to instances.
    pub capacity: Capacity,
    /// Extra networks the host is reachable on.
    pub addresses: Vec<NetAddress>,
    /// The HTTP API address of the agent, when it serves one.
    pub http: Option<SocketAddr>,
}

/// The largest encoded metadata a member may announce, so an alive message always fits a packet.
pub const MAX_METADATA_BYTES: usize = 512;
