//! A control-plane server as hosts and other servers reach it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Raft voter or learner: the agent's name and where its HTTP API (which also carries the
/// Raft RPCs) listens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNode {
    pub name: String,
    /// `host:port` of its HTTP listener.
    pub http: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.http)
    }
}
