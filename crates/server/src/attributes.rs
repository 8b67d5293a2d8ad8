//! The attribute store's routes (on the leader; any agent relays):
//!
//! - `POST /internal/attributes` (an [`AttributeCall`], signed by the host that makes it) ->
//!   an [`AttributeAnswer`]: what the Pacemaker tool shims on a host ask. A write is answered
//!   once committed, and a read after a read barrier, so an agent reads back what it wrote.
//!   A host writes only what [`ClusterState::may_write_attribute`] allows it.
//! - `GET /v1/attributes[?node=N&name=A]` (operators): every attribute, filtered.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{ClusterState, Op, Timestamp};
use node::http::auth::{Auth, require_token};
use node::http::error::error;
use node::identity::Verifier;
use proto::{ATTRIBUTES_PATH, AttributeAnswer, AttributeCall, AttributeOp};
use serde_json::json;

use crate::control_plane::ControlPlane;

/// What the attribute routes need.
#[derive(Clone)]
pub struct AttributesApi {
    pub cp: Arc<ControlPlane>,
    /// Checks hosts' signatures; `None` with `--unsafe-no-host-identity` (the API tokens
    /// guard the route instead, and the call's `host` is taken as said).
    pub verifier: Option<Arc<Verifier>>,
}

/// `POST /internal/attributes`.
pub async fn host_call(
    State(api): State<AttributesApi>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    crate::lease::routes::host_call(
        api.verifier.as_deref(),
        &headers,
        ATTRIBUTES_PATH,
        &body,
        "an attribute call",
        |call: &AttributeCall| call.host.clone(),
        async |call| answer(&api, call).await,
    )
    .await
}

fn unavailable(why: String) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", &why, None)
}

async fn answer(api: &AttributesApi, call: AttributeCall) -> Response {
    let Some(replica) = &api.cp.replica else {
        return unavailable("this agent is not a control-plane server".into());
    };
    if let Err(e) = call.key.validate() {
        return error(StatusCode::BAD_REQUEST, "invalid", &e.to_string(), None);
    }
    let query = matches!(call.op, AttributeOp::Query);
    let value = match call.op {
        AttributeOp::Set(v) => Some(v),
        AttributeOp::Query | AttributeOp::Delete => None,
    };
    if !query {
        let allowed = replica
            .shared()
            .read(|st: &ClusterState| st.may_write_attribute(&call.host, &call.key));
        if let Err(why) = allowed {
            return error(StatusCode::FORBIDDEN, "forbidden", &why, None);
        }
        let op = Op::SetAttribute {
            key: call.key.clone(),
            value: value.clone(),
        };
        return match replica.write(op, Timestamp::now()).await {
            Ok(Ok(_)) => Json(AttributeAnswer { value }).into_response(),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, "invalid", &e.to_string(), None),
            Err(e) => unavailable(format!("the write was not committed: {e}")),
        };
    }
    if let Err(e) = replica.read_barrier().await {
        return unavailable(format!("cannot read the committed state: {e}"));
    }
    let value = replica
        .shared()
        .read(|st| st.attribute(&call.key).map(|a| a.value.clone()));
    Json(AttributeAnswer { value }).into_response()
}

/// `GET /v1/attributes[?node=N&name=A]`.
pub async fn list(
    State(api): State<AttributesApi>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let Some(replica) = &api.cp.replica else {
        return unavailable("this agent is not a control-plane server".into());
    };
    if let Err(e) = replica.read_barrier().await {
        return unavailable(format!("cannot read the committed state: {e}"));
    }
    let attributes: Vec<serde_json::Value> = replica.shared().read(|st| {
        st.attributes()
            .filter(|a| q.get("node").is_none_or(|n| a.key.node.as_ref() == Some(n)))
            .filter(|a| q.get("name").is_none_or(|n| a.key.name == *n))
            .map(|a| json!(a))
            .collect()
    });
    Json(json!({ "attributes": attributes })).into_response()
}

/// The attribute routes, relayed to the leader; the list behind the API tokens, host calls
/// behind the host's signature (or the tokens without host identity).
pub fn router(api: AttributesApi, auth: Auth) -> axum::Router {
    let calls = axum::Router::new()
        .route(ATTRIBUTES_PATH, axum::routing::post(host_call))
        .route_layer(axum::middleware::from_fn_with_state(
            api.cp.clone(),
            crate::forward::to_leader,
        ));
    let calls = match api.verifier {
        Some(_) => calls,
        None => calls.route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            require_token,
        )),
    };
    let reads = axum::Router::new()
        .route("/v1/attributes", axum::routing::get(list))
        .route_layer(axum::middleware::from_fn_with_state(
            api.cp.clone(),
            crate::forward::to_leader,
        ))
        .route_layer(axum::middleware::from_fn_with_state(auth, require_token));
    calls.merge(reads).with_state(api)
}
