//! How this host's renewals reach the control-plane leader. The keeper only needs "send this
//! renewal, get a grant or nothing"; the agent wires a channel that asks its own grant table
//! when it leads (`server::lease::renewals`) and [`HttpRenewals`] otherwise.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use engine::Instant;
use model::server::ServerNode;
use proto::{Grant, RENEW_PATH, RenewalRequest};

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::StatusCode;
use hyper::header::{HeaderMap, HeaderValue};
use tracing::warn;

use crate::gossip::runtime::Shared;
use crate::http::client::HttpClient;
use crate::identity::{self, HostKey};
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
    /// The token renewals carry when the servers require one and the host has no credential
    /// (`--unsafe-no-host-identity`).
    pub token: Option<String>,
    /// This host's credential: renewals are signed with it, and a grant counts only with the
    /// control plane's MAC on it.
    pub credential: Option<HostKey>,
    /// The time of the last signed renewal (wall ms): each is newer than the one before, even
    /// when the wall clock steps back.
    pub last_signed_ms: AtomicU64,
    /// The server whose grant was last taken: asked first next time.
    pub preferred: Mutex<Option<ServerNode>>,
    /// When each server was last reported for an answer not signed by the control plane (a
    /// warning a minute per server, not one per renewal).
    pub warned: Mutex<HashMap<String, std::time::Instant>>,
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
        let preferred = self
            .preferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for t in leader
            .into_iter()
            .chain(preferred)
            .chain(self.servers.servers_to_try())
        {
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
            let (headers, nonce) = self.headers(&body);
            let Ok((status, answer_headers, bytes)) = self
                .client
                .post_json(&url, body.clone(), headers, left)
                .await
            else {
                continue;
            };
            if let (Some(key), Some(nonce)) = (&self.credential, &nonce)
                && !key.answer_is_signed(nonce, status.as_u16(), &bytes, &answer_headers)
            {
                if status == StatusCode::UNAUTHORIZED {
                    if !self.first_warning_in_a_minute(&target.name) {
                        continue;
                    }
                    warn!(
                        server = %target.name, answer = %String::from_utf8_lossy(&bytes),
                        "a server refused this host's credential"
                    );
                    continue;
                }
                if self.first_warning_in_a_minute(&target.name) {
                    warn!(
                        server = %target.name, http = %target.http, status = status.as_u16(),
                        "an answer to this host's renewal is not signed by the control plane (a member claiming the server role, or a server with another cluster secret): ignored"
                    );
                }
                continue;
            }
            if status.is_success()
                && let Ok(grant) = serde_json::from_slice(&bytes)
            {
                *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = Some(target);
                return Some(grant);
            }
            if status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED {
                warn!(server = %target.name, answer = %String::from_utf8_lossy(&bytes), "the control plane refused this host's renewal");
            }
        }
        None
    }

    fn first_warning_in_a_minute(&self, server: &str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        let now = std::time::Instant::now();
        match warned.get(server) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
            _ => {
                warned.insert(server.to_string(), now);
                true
            }
        }
    }

    /// The headers of one renewal attempt, and the nonce its answer must be signed with.
    fn headers(&self, body: &[u8]) -> (HeaderMap, Option<String>) {
        let mut h = HeaderMap::new();
        if let Some(key) = &self.credential {
            let wall = identity::wall_ms();
            let prev = self
                .last_signed_ms
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                    Some(wall.max(p + 1))
                })
                .unwrap_or(0);
            let time_ms = wall.max(prev + 1);
            let nonce = identity::nonce();
            key.sign("POST", RENEW_PATH, time_ms, &nonce, body)
                .insert_into(&mut h);
            return (h, Some(nonce));
        }
        if let Some(t) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            h.insert(hyper::header::AUTHORIZATION, v);
        }
        (h, None)
    }
}

impl RenewalChannel for HttpRenewals {
    fn renew(&self, request: RenewalRequest, _sent: Instant, timeout: Duration) -> Renewal<'_> {
        Box::pin(async move { self.ask(&request, None, timeout).await })
    }
}
