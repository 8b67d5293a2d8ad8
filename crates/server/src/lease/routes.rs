//! The leader's lease routes (relayed to the leader by any agent):
//!
//! - `POST /internal/lease` (a [`RenewalRequest`]) -> a [`Grant`](proto::Grant)
//! - `GET /v1/leases` -> the leader's view of every host's lease
//! - `GET /v1/observed[?instance=NAME]` -> what every host last reported
//!
//! The fault filter applies: a host cut from the servers cannot renew.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use node::gossip::runtime::Shared;
use node::http::error::error;
use node::identity::{self, HostKey, Verifier};
use node::lease::wall;
use proto::{Observed, RENEW_PATH, RenewalRequest};
use serde_json::json;

use super::grants::LeaseGrants;
use crate::control_plane::ControlPlane;
use node::http::auth::{Auth, require_token};

/// What the lease routes need.
#[derive(Clone)]
pub struct LeaseApi {
    /// Present on servers.
    pub grants: Option<Arc<LeaseGrants>>,
    pub gossip: Arc<Shared>,
    /// Checks hosts' signed renewals (servers with a cluster secret); `None` with
    /// `--unsafe-no-host-identity`, where the API tokens guard the route instead.
    pub verifier: Option<Arc<Verifier>>,
}

fn not_a_server() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "no_leader",
        "this agent is not a control-plane server",
        None,
    )
}

/// `POST /internal/lease` (on the leader: relayed there by the middleware). With host
/// identity, the renewal must be signed by the host it names (a host renews only its own
/// lease and reports only its own instances), and the answer carries the control plane's MAC.
pub async fn renew(State(api): State<LeaseApi>, headers: HeaderMap, body: Bytes) -> Response {
    let received_at = api.gossip.now();
    host_call(
        api.verifier.as_deref(),
        &headers,
        RENEW_PATH,
        &body,
        "a renewal",
        |req: &RenewalRequest| req.host.clone(),
        async |req| grant(&api, req, received_at).await,
    )
    .await
}

/// A host's signed call to `path`: `body` read as a `T` (`what` names it in errors), refused
/// unless the host that signed it is the one it names (`host_of`; a host acts for itself
/// only), handled by `handle`, and the answer signed for that host. Without host identity
/// (`verifier` none) the API tokens guarded the route, and the call is taken as it says.
pub async fn host_call<T: serde::de::DeserializeOwned>(
    verifier: Option<&Verifier>,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
    what: &str,
    host_of: impl FnOnce(&T) -> String,
    handle: impl AsyncFnOnce(T) -> Response,
) -> Response {
    let bad = |e: serde_json::Error| {
        error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!("not {what}: {e}"),
            None,
        )
    };
    let Some(verifier) = verifier else {
        return match serde_json::from_slice::<T>(body) {
            Ok(call) => handle(call).await,
            Err(e) => bad(e),
        };
    };
    let (key, nonce) = match verify_host(verifier, headers, path, body) {
        Ok(k) => k,
        Err(refused) => return *refused,
    };
    let answer = match serde_json::from_slice::<T>(body) {
        Err(e) => bad(e),
        Ok(call) => {
            let host = host_of(&call);
            if host == key.name() {
                handle(call).await
            } else {
                error(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    &format!(
                        "host `{}`'s credential cannot call for `{host}`: a host acts for itself only",
                        key.name()
                    ),
                    None,
                )
            }
        }
    };
    sign(answer, &key, nonce).await
}

/// Checks that `body`, posted to `path`, is signed by a host: that host's key and the nonce
/// to answer under, or the 401 to send.
pub fn verify_host(
    verifier: &Verifier,
    headers: &HeaderMap,
    path: &str,
    body: &[u8],
) -> Result<(HostKey, String), Box<Response>> {
    let sig = identity::signature_from(|h| {
        headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    });
    match verifier.verify(sig.as_ref(), "POST", path, body, identity::wall_ms()) {
        Ok(key) => Ok((key, sig.map(|s| s.nonce).unwrap_or_default())),
        Err(refused) => Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            &refused.to_string(),
            None,
        ))),
    }
}

/// `answer` with the control plane's MAC for the request signed with `nonce`.
pub async fn sign(answer: Response, key: &HostKey, nonce: String) -> Response {
    let (mut parts, body) = answer.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mac = key.sign_answer(&nonce, parts.status.as_u16(), &bytes);
    if let Ok(v) = HeaderValue::from_str(&mac) {
        parts.headers.insert(identity::MAC_HEADER, v);
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

async fn grant(api: &LeaseApi, req: RenewalRequest, received_at: swim::Instant) -> Response {
    if api.gossip.drops(&req.host, false) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "dropped",
            "renewal dropped by the fault filter",
            None,
        );
    }
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    if let Err(why) = grants.admits(&req.host) {
        return error(StatusCode::CONFLICT, "not_registered", &why, None);
    }
    match grants
        .grant(&req.host, received_at, req.known, req.report)
        .await
    {
        Ok(grant) => Json(grant).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_leader",
            &format!("cannot grant a lease: {e}"),
            None,
        ),
    }
}

/// `GET /v1/leases` (on the leader): every host's lease as this leader sees it.
pub async fn leases(State(api): State<LeaseApi>) -> Response {
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    let now = api.gossip.now();
    let table = grants.table.lock().unwrap_or_else(|p| p.into_inner());
    let Some((term, t)) = table.as_ref() else {
        return Json(json!({"term": null, "leases": []})).into_response();
    };
    let leases: Vec<_> = t
        .hosts()
        .map(|h| {
            json!({
                "host": h,
                "ends_at": wall(t.ends_at(h), now),
                "fenced_at": wall(t.fenced_at(h), now),
                "expired": t.expired(h, now),
            })
        })
        .collect();
    Json(json!({
        "term": term,
        "ttl_ms": t.ttl().as_millis() as u64,
        "floor": wall(t.floor(), now),
        "settings": grants.settings(),
        "leases": leases,
    }))
    .into_response()
}

/// `GET /v1/observed[?instance=NAME]` (on the leader): what every host last reported about
/// its instances.
pub async fn observed(
    State(api): State<LeaseApi>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let Some(grants) = &api.grants else {
        return not_a_server();
    };
    let reports = grants.reports.lock().unwrap_or_else(|p| p.into_inner());
    let hosts: BTreeMap<&String, serde_json::Value> = reports
        .iter()
        .map(|(host, r)| {
            let instances: Vec<&Observed> = r
                .report
                .instances
                .iter()
                .filter(|o| {
                    q.get("instance")
                        .is_none_or(|n| *n == o.name || *n == o.instance)
                })
                .collect();
            (
                host,
                json!({"reported_at": r.reported_at, "applied": r.report.applied, "instances": instances}),
            )
        })
        .collect();
    Json(json!({ "hosts": hosts })).into_response()
}

/// The lease routes, relayed to the leader and behind the API tokens when configured.
pub fn router(api: LeaseApi, cp: Arc<ControlPlane>, auth: Auth) -> axum::Router {
    // With host identity the renewal proves its host; hosts hold no API token.
    let renewals = axum::Router::new()
        .route(RENEW_PATH, axum::routing::post(renew))
        .route(
            proto::STATUS_PATH,
            axum::routing::post(super::cluster_status::status),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            cp.clone(),
            crate::forward::to_leader,
        ));
    let renewals = match api.verifier {
        Some(_) => renewals,
        None => renewals.route_layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            require_token,
        )),
    };
    // Layers apply to the routes above them only: the reads need a token, renewals (above)
    // only without identity.
    let reads = axum::Router::new()
        .route("/v1/leases", axum::routing::get(leases))
        .route("/v1/observed", axum::routing::get(observed))
        .route_layer(axum::middleware::from_fn_with_state(
            cp,
            crate::forward::to_leader,
        ))
        .route_layer(axum::middleware::from_fn_with_state(auth, require_token));
    renewals.merge(reads).with_state(api)
}
