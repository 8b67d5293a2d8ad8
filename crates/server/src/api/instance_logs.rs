//! An instance's output, relayed by the leader from the host that runs it.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::Kind;

use super::StateApi;
use super::error::{ApiError, bad_request, not_found};
use crate::forward;

/// `GET /v1/instances/{id}/logs?replica=N&tail=N&follow=true`: the instance's output, relayed
/// from the host that runs it (answered on the leader, which knows the placements).
pub async fn instance_logs(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
    req: Request,
) -> Response {
    let replica: u32 = match params.get("replica").map(|r| r.parse()) {
        None => 0,
        Some(Ok(r)) => r,
        Some(Err(_)) => return bad_request(Some("replica"), "must be a number").into_response(),
    };
    let found = api
        .read(|st| {
            let inst = st
                .resolve(Kind::Instance, &id)
                .and_then(|i| st.instance(&i).cloned())?;
            let host = st
                .placements()
                .find(|p| p.instance == inst.meta.id && p.replica == replica)
                .and_then(|p| st.host(&p.host).map(|h| h.name.clone()));
            Some((inst.name, host))
        })
        .await;
    let (name, host) = match found {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(Kind::Instance, &id).into_response(),
        Err(e) => return e.into_response(),
    };
    let Some(host) = host else {
        return ApiError::new(
            StatusCode::CONFLICT,
            "not_placed",
            format!("instance `{name}` replica {replica} is not placed on any host: it has no log"),
            None,
        )
        .into_response();
    };
    let http = api
        .gossip
        .read(|sw| sw.member(&host).and_then(|m| m.meta().http));
    let Some(http) = http else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "host_unreachable",
            format!(
                "host `{host}`, which runs `{name}`, is not a live member with an HTTP address"
            ),
            None,
        )
        .into_response();
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let path = format!("/v1/supervisor/logs/{name}{query}");
    // The host answers the control plane, which has checked the operator's token here.
    let proof = api.cp.sign_call(&host, "GET", &path);
    forward::relay_to(&api.cp, &http.to_string(), &path, proof.as_ref(), req).await
}
