//! Raft RPCs between servers over HTTP: `POST /internal/raft/{append,vote,snapshot}` with JSON
//! bodies, on the agent's HTTP listener.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use state::network::{Rpc, Transport, TransportError};
use state::replica::Replica;
use state::types::ServerNode;

use node::http::client::{HttpClient, HttpError};
use node::http::error::error;

/// Sends Raft RPCs to other servers' HTTP listeners.
#[derive(Clone)]
pub struct HttpTransport {
    pub client: HttpClient,
    /// Sent as `Authorization: Bearer` when the servers require tokens.
    pub token: Option<String>,
}

impl Transport for HttpTransport {
    async fn call(
        &self,
        to: &ServerNode,
        rpc: Rpc,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        let url = self
            .client
            .url(&to.http, &format!("/internal/raft/{}", rpc.as_str()));
        let timeout = match rpc {
            Rpc::Snapshot => Duration::from_secs(30),
            _ => Duration::from_secs(2),
        };
        match self
            .client
            .post_bytes(&url, body, self.token.as_deref(), timeout)
            .await
        {
            Ok((status, bytes)) if status.is_success() => Ok(bytes.to_vec()),
            Ok((status, bytes)) => Err(TransportError::Failed(format!(
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

/// `POST /internal/raft/{rpc}`: hands the request to this server's Raft node.
pub async fn serve(
    State(replica): State<Option<Arc<Replica>>>,
    Path(rpc): Path<String>,
    body: Bytes,
) -> Response {
    let Some(replica) = replica else {
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

/// The Raft route, behind the API tokens when configured (servers' RPCs carry the admin
/// token). Snapshot chunks and batches of entries run past axum's default 2 MB body limit.
pub fn router(replica: Option<Arc<Replica>>, auth: node::http::auth::Auth) -> axum::Router {
    axum::Router::new()
        .route("/internal/raft/{rpc}", axum::routing::post(serve))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .route_layer(axum::middleware::from_fn_with_state(
            auth,
            node::http::auth::require_token,
        ))
        .with_state(replica)
}
