//! The renewal channel of an agent that may be the leader: while it leads, its own grants
//! answer its renewals; otherwise they go over HTTP, to the leader it knows first.

use std::sync::Arc;
use std::time::Duration;

use engine::Instant;
use node::lease::channel::{HttpRenewals, Renewal, RenewalChannel};
use proto::RenewalRequest;

use super::grants::LeaseGrants;
use crate::control_plane::ControlPlane;

/// Renews with this server's own grants while it leads, over HTTP otherwise.
pub struct LeaderFirst {
    pub cp: Arc<ControlPlane>,
    /// Present on servers.
    pub grants: Option<Arc<LeaseGrants>>,
    pub http: HttpRenewals,
}

impl RenewalChannel for LeaderFirst {
    fn renew(&self, request: RenewalRequest, sent: Instant, timeout: Duration) -> Renewal<'_> {
        Box::pin(async move {
            match self.grants.as_ref().filter(|_| self.cp.is_leader()) {
                Some(g) => g
                    .grant(&request.host, sent, request.known, request.report)
                    .await
                    .ok(),
                None => {
                    let leader = self.cp.replica.as_ref().and_then(|r| r.leader());
                    self.http.ask(&request, leader, timeout).await
                }
            }
        })
    }
}
