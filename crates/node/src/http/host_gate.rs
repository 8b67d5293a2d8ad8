//! Who may call a host's own routes: its lease, its instances and their logs, its view of the
//! membership, its keyring reload and fault filter.
//!
//! - A call signed for this host with [`HostKey::sign_call`]: by a server relaying what an
//!   operator's token allowed it (the servers derive every host's key from the cluster
//!   secret), or by someone holding this host's credential file (root on the host, through
//!   `buoy --credential`; the lab's tools). The body, if any, is signed too.
//! - An operator's token, where this agent has a tokens file.
//! - Nothing else on a host (an agent that is not a server) with a credential: it holds no
//!   operator token, so without a signature these routes answer 401. A server with no tokens
//!   leaves its whole API open, these routes included; so does an agent with no identity at
//!   all (`--unsafe-no-host-identity`) and no tokens.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use super::auth::{Auth, require_token};
use super::error::error;
use crate::identity::{self, HostKey};

/// The gate in front of a host's own routes (see the module).
#[derive(Clone)]
pub struct HostGate {
    pub auth: Auth,
    /// This host's credential, which checks signed calls.
    pub credential: Option<HostKey>,
    /// Refuse unsigned calls even with no tokens: a host that is not a server.
    pub signed_only: bool,
}

/// Middleware: lets a call through the [`HostGate`].
pub async fn gate(State(g): State<HostGate>, req: Request, next: Next) -> Response {
    let sig = identity::signature_from(|h| {
        req.headers()
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    let Some(key) = &g.credential else {
        // No identity here: a signature can't be checked, so it counts for nothing.
        let mut req = req;
        for h in identity::SIGNATURE_HEADERS {
            req.headers_mut().remove(h);
        }
        return require_token(State(g.auth), req, next).await;
    };
    let Some(sig) = sig else {
        if g.auth.required() || !g.signed_only {
            return require_token(State(g.auth), req, next).await;
        }
        return refuse(&identity::Refused::NotFromControlPlane.to_string());
    };
    let (parts, body) = req.into_parts();
    // Bodies are already capped by route (`super::limits`); these routes take small ones.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "the body is over this route's limit",
            None,
        );
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match key.verify_call(
        Some(&sig),
        parts.method.as_str(),
        path,
        &bytes,
        identity::wall_ms(),
    ) {
        Ok(_) => {
            let mut req = Request::from_parts(parts, axum::body::Body::from(bytes));
            // Past the gate the call is the host's own: no later check mistakes the
            // signature for a host's signed request to the control plane.
            for h in identity::SIGNATURE_HEADERS {
                req.headers_mut().remove(h);
            }
            next.run(req).await
        }
        Err(why) => refuse(&why.to_string()),
    }
}

fn refuse(why: &str) -> Response {
    error(StatusCode::UNAUTHORIZED, "unauthorized", why, None)
}
