//! Raft RPCs between servers over HTTP: `POST /internal/raft/{append,vote,snapshot}` with JSON
//! bodies, on the agent's HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use state::network::{Rpc, Transport, TransportError};
use state::replica::Replica;
use state::types::ServerNode;

use node::http::client::{HttpClient, HttpError};
use node::http::error::error;
use node::identity::{self, HostKey, Verifier};

/// Sends Raft RPCs to other servers' HTTP listeners.
#[derive(Clone)]
pub struct HttpTransport {
    pub client: HttpClient,
    /// Sent as `Authorization: Bearer` when the servers require tokens (host identity off).
    pub token: Option<String>,
    /// This server's server key: every RPC is signed with it (host identity on).
    pub signer: Option<HostKey>,
}

impl Transport for HttpTransport {
    async fn call(
        &self,
        to: &ServerNode,
        rpc: Rpc,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let path = format!("/internal/raft/{}", rpc.as_str());
        let url = self.client.url(&to.http, &path);
        let timeout = match rpc {
            Rpc::Snapshot => Duration::from_secs(30),
            _ => Duration::from_secs(2),
        };
        let mut headers = HeaderMap::new();
        if let Some(t) = &self.token
            && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
        {
            headers.insert(axum::http::header::AUTHORIZATION, v);
        }
        if let Some(key) = &self.signer {
            key.sign(
                "POST",
                &path,
                identity::wall_ms(),
                &identity::nonce(),
                &body,
            )
            .insert_into(&mut headers);
        }
        match self.client.post_json(&url, body, headers, timeout).await {
            Ok((status, _, bytes)) if status.is_success() => Ok(bytes.to_vec()),
            Ok((status, _, bytes)) => Err(TransportError::Failed(format!(
                "{url}: {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
            Err(e @ HttpError::Connect(_)) => Err(TransportError::Unreachable(e.to_string())),
            Err(e) => Err(TransportError::Failed(e.to_string())),
        }
    }
}

/// The largest Raft request a server accepts: a snapshot chunk
/// ([`SNAPSHOT_CHUNK`](state::replica::SNAPSHOT_CHUNK)) or a batch of log entries,
/// with room to spare.
pub const MAX_BODY: usize = node::http::limits::RAFT_BODY;

/// What the Raft route needs.
#[derive(Clone)]
pub struct RaftRoute {
    pub replica: Option<Arc<Replica>>,
    /// With host identity on: every RPC must be signed with a server key.
    pub verifier: Option<Arc<Verifier>>,
}

/// `POST /internal/raft/{rpc}`: hands the request to this server's Raft node, once its sender
/// is proven a server (with host identity on).
pub async fn serve(
    State(route): State<RaftRoute>,
    Path(rpc): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(v) = &route.verifier {
        let sig = identity::signature_from(|h| {
            headers
                .get(h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        let path = format!("/internal/raft/{rpc}");
        if let Err(why) = v.verify_server(sig.as_ref(), "POST", &path, &body, identity::wall_ms()) {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                &why.to_string(),
                None,
            );
        }
    }
    let Some(replica) = route.replica else {
        return error(
            StatusCode::NOT_FOUND,
            "not_a_server",
            "this agent is not a control-plane server (start it with --server)",
            None,
        );
    };
    let Some(rpc) = Rpc::parse(&rpc) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "unknown Raft RPC: expected append, vote or snapshot",
            None,
        );
    };
    match replica.serve_rpc(rpc, &body).await {
        Ok(answer) => ([("content-type", "application/json")], answer).into_response(),
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            &format!("malformed Raft {} request: {e}", rpc.as_str()),
            None,
        ),
    }
}

/// The Raft route: with host identity on, each RPC is signed with the sender's server key
/// (so no host credential and no API token opens it); with it off, behind the API tokens when
/// configured (servers' RPCs carry the admin token). Bodies are capped by
/// [`node::http::limits`].
pub fn router(route: RaftRoute, auth: node::http::auth::Auth) -> axum::Router {
    let signed = route.verifier.is_some();
    let r = axum::Router::new().route("/internal/raft/{rpc}", axum::routing::post(serve));
    let r = if signed {
        r
    } else {
        r.route_layer(axum::middleware::from_fn_with_state(
            auth,
            node::http::auth::require_token,
        ))
    };
    r.with_state(route)
}
