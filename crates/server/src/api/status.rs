//! The control plane and membership at a glance.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use swim::MemberState;

use super::StateApi;
use crate::forward;

/// `GET /v1/status`: this agent, the control plane as this server sees it (clients relay to a
/// server), and a membership summary.
pub async fn status(State(api): State<StateApi>, req: Request) -> Response {
    let Some(replica) = &api.cp.replica else {
        return forward::to_any_server(&api.cp, req).await;
    };
    let raft = replica.status();
    let members = api.gossip.read(|sw| {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for m in sw.members() {
            *counts.entry(m.state.as_str()).or_default() += 1;
        }
        let total = sw.members().len();
        let alive = sw
            .members()
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .count();
        json!({"total": total, "alive": alive, "by_state": counts})
    });
    Json(json!({
        "agent": replica.me().name,
        "leader": raft.leader,
        "raft": raft,
        "members": members,
    }))
    .into_response()
}
