//! Operator actions on a host, run on the leader:
//!
//! - `POST /v1/hosts/{id}/enable`: a failed host that is back (alive in gossip, renewing its
//!   lease) takes work again.
//! - `POST /v1/hosts/{id}/fence` `{"action": "off"}`: runs the host's fence device (STONITH)
//!   with that action; only a confirmed `off` marks the host fenced (the recovery loop then
//!   moves its instances at once). After a `reboot` the host may be up again, so it counts as
//!   down only once its lease is over, like any host (rule S1).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router, middleware};
use bytes::Bytes;
use model::host::Host;
use model::{Expect, Kind, Object, Op};
use serde::Deserialize;
use serde_json::json;
use swim::MemberState;

use crate::api::{ApiError, StateApi, state_error};
use crate::forward;
use crate::lease::grants::LeaseGrants;
use crate::recovery::fence::{self, Fencer};
use node::http::auth::require_token;

/// State of the host-action handlers.
#[derive(Clone)]
pub struct HostActions {
    pub api: StateApi,
    pub grants: Option<Arc<LeaseGrants>>,
    pub fencer: Arc<Fencer>,
}

pub fn router(actions: HostActions) -> Router {
    Router::new()
        .route("/v1/hosts/{id}/enable", post(enable))
        .route("/v1/hosts/{id}/fence", post(fence_host))
        .route_layer(middleware::from_fn_with_state(
            actions.api.cp.clone(),
            forward::to_leader,
        ))
        .route_layer(middleware::from_fn_with_state(
            actions.api.auth.clone(),
            require_token,
        ))
        .with_state(actions)
}

/// The host named (or with id) `id`.
async fn host(api: &StateApi, id: &str) -> Result<Host, ApiError> {
    api.read(|st| {
        st.resolve(Kind::Host, id)
            .and_then(|i| st.host(&i).cloned())
    })
    .await?
    .ok_or_else(|| {
        state_error(&model::StateError::NotFound {
            kind: Kind::Host,
            id: id.to_string(),
        })
    })
}

fn conflict(message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "conflict", message, None)
}

async fn enable(State(a): State<HostActions>, Path(id): Path<String>) -> Response {
    let result = async {
        let h = host(&a.api, &id).await?;
        if !h.failed {
            return Err(conflict(format!(
                "host `{}` is not marked failed: it already takes work",
                h.name
            )));
        }
        let state = a.api.gossip.read(|sw| sw.member(&h.name).map(|m| m.state));
        if state != Some(MemberState::Alive) {
            return Err(conflict(format!(
                "host `{}` is not back: gossip says {}; start its agent, then enable it",
                h.name,
                state.map_or("unknown", |s| s.as_str())
            )));
        }
        let now = a.api.gossip.now();
        if !a
            .grants
            .as_ref()
            .is_some_and(|g| g.holds_lease(&h.name, now))
        {
            return Err(conflict(format!(
                "host `{}` is alive in gossip but does not renew its lease yet; retry shortly",
                h.name
            )));
        }
        let version = h.meta.version;
        let mut enabled = h;
        enabled.failed = false;
        enabled.failed_at = None;
        enabled.fenced = false;
        let stored = a
            .api
            .propose(Op::Put {
                object: Box::new(Object::Host(enabled)),
                expect: Expect::Version(version),
            })
            .await?;
        Ok(Json(json!({"host": stored})))
    }
    .await;
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}

/// Body of `POST /v1/hosts/{id}/fence`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FenceRequest {
    #[serde(default)]
    action: Option<String>,
}

async fn fence_host(State(a): State<HostActions>, Path(id): Path<String>, body: Bytes) -> Response {
    let result = async {
        let req: FenceRequest = if body.iter().all(u8::is_ascii_whitespace) {
            FenceRequest::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("bad fence request: {e}; expected {{\"action\": \"off\"}}"),
                    None,
                )
            })?
        };
        let action = req.action.unwrap_or_else(|| "off".into());
        if !fence::ACTIONS.contains(&action.as_str()) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!(
                    "unknown fence action `{action}`: expected one of {}",
                    fence::ACTIONS.join(", ")
                ),
                Some("action"),
            ));
        }
        let h = host(&a.api, &id).await?;
        let Some(device) = &h.fence else {
            return Err(conflict(format!(
                "host `{}` has no fence device: set `fence` (agent and params) on the host first",
                h.name
            )));
        };
        let run = fence::run(device, &action, fence::TIMEOUT)
            .await
            .map_err(|e| ApiError::new(StatusCode::FAILED_DEPENDENCY, "fence_failed", e, None))?;
        // Only a confirmed `off` proves the host runs nothing; a rebooted host may be up.
        let fenced = run.succeeded() && action == "off";
        if fenced {
            a.fencer.record_off(&h.name);
        }
        if !run.succeeded() && action != "status" {
            return Err(ApiError::new(
                StatusCode::FAILED_DEPENDENCY,
                "fence_failed",
                format!(
                    "fence agent `{}` failed `{action}` (exit {:?}): {}",
                    device.agent,
                    run.exit_code,
                    run.stderr.trim()
                ),
                None,
            ));
        }
        Ok(Json(json!({"host": h.name, "fenced": fenced, "run": run})))
    }
    .await;
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
