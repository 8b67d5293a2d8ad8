//! The control-plane servers (Raft voters): list, add, remove.

use super::StateApi;
use super::error::{ApiError, bad_request, replica_error};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use state::types::ServerNode;

pub async fn servers(State(api): State<StateApi>) -> Response {
    match api.replica() {
        Ok(r) => {
            let s = r.status();
            Json(json!({"leader": s.leader, "voters": s.voters, "learners": s.learners, "term": s.term}))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

pub async fn add_server(State(api): State<StateApi>, body: Bytes) -> Response {
    let result = async {
        let value: Value = serde_json::from_slice(&body)
            .map_err(|e| bad_request(None, &format!("the body is not valid JSON: {e}")))?;
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_request(Some("name"), "name (the server agent's name) is required"))?
            .to_string();
        let node: ServerNode = api
            .cp
            .servers
            .live_servers()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                super::error::state_error(&model::error::StateError::unprocessable(
                    "name",
                    format!(
                        "no live agent `{name}` started with --server (and proven to hold the cluster secret) is known to gossip"
                    ),
                ))
            })?;
        api.replica()?
            .add_server(node)
            .await
            .map_err(replica_error)?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => servers(State(api)).await,
        Err(e) => e.into_response(),
    }
}

pub async fn remove_server(State(api): State<StateApi>, Path(name): Path<String>) -> Response {
    let result = async {
        let r = api.replica()?;
        let known = r
            .status()
            .voters
            .iter()
            .chain(r.status().learners.iter())
            .any(|s| s.name == name);
        if !known {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("`{name}` is not a server of this control plane"),
                None,
            ));
        }
        r.remove_server(&name).await.map_err(replica_error)
    }
    .await;
    match result {
        Ok(()) => servers(State(api)).await,
        Err(e) => e.into_response(),
    }
}
