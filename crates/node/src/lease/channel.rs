//! How this host's renewals reach the control-plane leader. The keeper only needs "send this
//! renewal, get a grant or nothing"; the agent wires a channel that asks its own grant table
//! when it leads (`server::lease::renewals`) and [`HttpRenewals`] otherwise.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use engine::Instant;
use model::server::ServerNode;
use proto::{Grant, RENEW_PATH, RenewalRequest};

use crate::gossip::runtime::Shared;
use crate::http::client::HttpClient;
use crate::servers::ServerDirectory;

/// A renewal's answer, as a boxed future (the channel is chosen at run time).
pub type Renewal<'a> = Pin<Box<dyn Future<Output = Option<Grant>> + Send + 'a>>;

/// Carries renewals to the leader.
pub trait RenewalChannel: Send + Sync {
    /// Sends `request` (sent at `sent` on the agent's clock) and waits at most `timeout` for
    /// the grant; none when no server granted it.
    fn renew(&self, request: RenewalRequest, sent: Instant, timeout: Duration) -> Renewal<'_>;
}

/// Renewals over HTTP: to the leader when known, then to the servers gossip knows (any server
/// relays to its leader).
pub struct HttpRenewals {
    pub me: String,
    pub client: HttpClient,
    pub servers: ServerDirectory,
    pub gossip: std::sync::Arc<Shared>,
    /// The token renewals carry when the servers require one.
    pub token: Option<String>,
}

impl HttpRenewals {
    /// Asks `leader` (when known), then the servers gossip sees alive, then the others:
    /// gossip may be cut while HTTP still passes (an isolated host keeps its lease).
    pub async fn ask(
        &self,
        request: &RenewalRequest,
        leader: Option<ServerNode>,
        timeout: Duration,
    ) -> Option<Grant> {
        let mut targets: Vec<ServerNode> = Vec::new();
        for t in leader.into_iter().chain(self.servers.servers_to_try()) {
            if t.name != self.me && !targets.iter().any(|o| o.name == t.name) {
                targets.push(t);
            }
        }
        let body = serde_json::to_vec(request).ok()?;
        let deadline = tokio::time::Instant::now() + timeout;
        for target in targets {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            if self.gossip.drops(&target.name, true) {
                continue;
            }
            let url = self.client.url(&target.http, RENEW_PATH);
            if let Ok((status, bytes)) = self
                .client
                .post_bytes(&url, body.clone(), self.token.as_deref(), left)
                .await
                && status.is_success()
                && let Ok(grant) = serde_json::from_slice(&bytes)
            {
                return Some(grant);
            }
        }
        None
    }
}

impl RenewalChannel for HttpRenewals {
    fn renew(&self, request: RenewalRequest, _sent: Instant, timeout: Duration) -> Renewal<'_> {
        Box::pin(async move { self.ask(&request, None, timeout).await })
    }
}
