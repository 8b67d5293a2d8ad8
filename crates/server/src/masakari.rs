//! Masakari-compatible API (v1.2), mapped onto Buoy's cluster state, so that OpenStack tooling
//! (openstacksdk's instance-ha proxy, python-masakariclient) works without Keystone.
//!
//! Served in two places that never collide with Buoy's own `/v1`: under the `/masakari` prefix
//! of the agent's HTTP listener (`http://HOST:7070/masakari/v1`), and at the root of an
//! optional listener of its own (`--masakari-http`, Masakari's port is 15868). Objects carry
//! `id` = `uuid` (Masakari's integer ids are not exposed), bodies are wrapped
//! (`{"segment": {...}}`), errors use Masakari's shape (`{"badRequest": {"code", "message"}}`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::host::{Host, HostSpec};
use model::notification::{Notification, NotificationSpec};
use model::segment::{Segment, SegmentSpec};
use model::{Expect, Kind, Object, ObjectMeta, Op};
use serde_json::{Map, Value, json};

use crate::api::{
    ApiError, StateApi, decode_map, field_matches, new_id, newest_first, one_notification,
    submit_notification,
};
use crate::control_plane::ControlPlane;
use crate::forward;
use node::http::auth::require_token;

/// The path prefix on the agent's own listener.
pub const PREFIX: &str = "/masakari";

pub fn router(api: StateApi) -> Router {
    let leader_only = Router::new()
        .route("/v1/segments", get(list_segments).post(create_segment))
        .route(
            "/v1/segments/{id}",
            get(show_segment).put(update_segment).delete(delete_segment),
        )
        .route("/v1/segments/{id}/hosts", get(list_hosts).post(create_host))
        .route(
            "/v1/segments/{id}/hosts/{host}",
            get(show_host).put(update_host).delete(delete_host),
        )
        .route(
            "/v1/notifications",
            get(list_notifications).post(create_notification),
        )
        .route("/v1/notifications/{id}", get(show_notification))
        .route("/v1/notifications/{id}/vmoves", get(list_vmoves))
        .route("/v1/notifications/{id}/vmoves/{vmove}", get(show_vmove))
        .route_layer(middleware::from_fn_with_state(api.cp.clone(), to_leader))
        .route_layer(middleware::from_fn_with_state(
            api.auth.clone(),
            require_token,
        ))
        .with_state(api);
    Router::new()
        .route("/", get(versions))
        .route("/v1", get(version))
        .route("/v1/", get(version))
        .route("/v1/openapi.json", get(crate::masakari_openapi::serve))
        .merge(leader_only)
}

/// Relays to the leader's `/masakari` prefix, whichever listener the request came in on.
async fn to_leader(
    State(cp): State<Arc<ControlPlane>>,
    OriginalUri(original): OriginalUri,
    mut req: Request,
    next: Next,
) -> Response {
    if !original.path().starts_with(PREFIX) {
        let pq = original.path_and_query().map_or("/", |p| p.as_str());
        if let Ok(uri) = format!("{PREFIX}{pq}").parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    } else {
        *req.uri_mut() = original;
    }
    forward::to_leader(State(cp), req, next).await
}

/// The version document. Its `self` link is absolute and keeps the `/masakari` prefix when
/// the request came through it: clients (openstacksdk) take that link as the endpoint.
fn version_doc(original: &Uri, headers: &HeaderMap) -> Value {
    let base = if original.path().starts_with(PREFIX) {
        format!("{PREFIX}/v1/")
    } else {
        "/v1/".to_string()
    };
    let href = match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => format!("http://{host}{base}"),
        None => base,
    };
    json!({
        "id": "v1.0",
        "status": "CURRENT",
        "version": "1.2",
        "min_version": "1.0",
        "updated": "2016-07-01T11:33:21Z",
        "links": [{"rel": "self", "href": href}],
    })
}

/// `GET /`: the versions document (also at `/masakari/`, which the nested router misses).
pub async fn versions(OriginalUri(original): OriginalUri, headers: HeaderMap) -> Json<Value> {
    Json(json!({"versions": [version_doc(&original, &headers)]}))
}

async fn version(OriginalUri(original): OriginalUri, headers: HeaderMap) -> Json<Value> {
    Json(json!({"version": version_doc(&original, &headers)}))
}

/// A Masakari-shaped error. Masakari has no 422: a request it cannot apply is a 400 there.
fn m_error(mut e: ApiError) -> Response {
    if e.status == StatusCode::UNPROCESSABLE_ENTITY {
        e.status = StatusCode::BAD_REQUEST;
    }
    let key = match e.status {
        StatusCode::BAD_REQUEST => "badRequest",
        StatusCode::NOT_FOUND => "itemNotFound",
        StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => "conflictingRequest",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        _ => "serviceUnavailable",
    };
    let message = match &e.field {
        Some(f) if !e.message.starts_with(f.as_str()) => format!("{f}: {}", e.message),
        _ => e.message.clone(),
    };
    (
        e.status,
        Json(json!({ key: {"code": e.status.as_u16(), "message": message} })),
    )
        .into_response()
}

fn bad(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message, None)
}

/// Unwraps `{"<key>": {...}}`.
fn unwrap_body(body: &[u8], key: &str) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| bad(&format!("the body is not valid JSON: {e}")))?;
    match v {
        Value::Object(mut m) => match (m.remove(key), m.keys().next()) {
            (Some(Value::Object(inner)), None) => Ok(inner),
            (Some(Value::Object(_)), Some(other)) => Err(bad(&format!(
                "unknown field `{other}`: the body must be {{\"{key}\": {{...}}}} alone"
            ))),
            _ => Err(bad(&format!("the body must be {{\"{key}\": {{...}}}}"))),
        },
        _ => Err(bad(&format!("the body must be {{\"{key}\": {{...}}}}"))),
    }
}

fn time(t: model::Timestamp) -> Value {
    json!(t.to_masakari())
}

fn segment_view(s: &Segment) -> Value {
    json!({
        "id": s.meta.id, "uuid": s.meta.id, "name": s.name, "description": s.description,
        "recovery_method": s.recovery_method, "service_type": s.service_type, "enabled": s.enabled,
        "created_at": time(s.meta.created_at), "updated_at": time(s.meta.updated_at),
        "deleted": false, "deleted_at": null,
    })
}

fn host_view(h: &Host) -> Value {
    json!({
        "id": h.meta.id, "uuid": h.meta.id, "name": h.name, "type": h.host_type,
        "control_attributes": h.control_attributes, "reserved": h.reserved,
        "on_maintenance": h.on_maintenance, "failover_segment_id": h.segment,
        "created_at": time(h.meta.created_at), "updated_at": time(h.meta.updated_at),
        "deleted": false, "deleted_at": null,
    })
}

fn notification_view(n: &Notification) -> Value {
    let steps: Vec<Value> = n
        .steps
        .iter()
        .map(|s| json!({"name": s.name, "state": "success", "progress": 1.0,
            "progress_details": [{"timestamp": s.at.to_masakari(), "message": s.detail, "progress": 1.0}]}))
        .collect();
    json!({
        "id": n.meta.id, "notification_uuid": n.meta.id, "type": n.notification_type,
        "hostname": n.hostname, "status": n.status, "generated_time": time(n.generated_time),
        "payload": n.payload, "source_host_uuid": n.source_host,
        "failover_segment_uuid": n.segment, "recovery_workflow_details": steps,
        "created_at": time(n.meta.created_at), "updated_at": time(n.meta.updated_at),
        "deleted": false, "deleted_at": null,
    })
}

/// Masakari's list filters, mapped onto the view's fields.
fn filtered(
    items: Vec<Value>,
    params: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<Vec<Value>, ApiError> {
    let mut out = items;
    for (k, want) in params {
        if matches!(
            k.as_str(),
            "sort_key" | "sort_dir" | "limit" | "marker" | "generated-since"
        ) {
            continue;
        }
        if !allowed.contains(&k.as_str()) {
            return Err(bad(&format!(
                "invalid filter `{k}`: filters are {}",
                allowed.join(", ")
            )));
        }
        out.retain(|v| field_matches(v.get(k.as_str()), want));
    }
    if let Some(limit) = params.get("limit") {
        let n: usize = limit.parse().map_err(|_| bad("limit must be a number"))?;
        out.truncate(n);
    }
    Ok(out)
}

/// Stores `object` and answers with its wrapped view (`{"segment": {...}}`).
async fn store(
    api: &StateApi,
    object: Object,
    expect: Expect,
    status: StatusCode,
) -> Result<(StatusCode, Value), ApiError> {
    let stored = api
        .propose(Op::Put {
            object: Box::new(object),
            expect,
        })
        .await?;
    match stored {
        Some(Object::Segment(s)) => Ok((status, json!({"segment": segment_view(&s)}))),
        Some(Object::Host(h)) => Ok((status, json!({"host": host_view(&h)}))),
        _ => Err(bad("the object was not stored")),
    }
}

fn respond(r: Result<(StatusCode, Value), ApiError>) -> Response {
    match r {
        Ok((status, _)) if status == StatusCode::NO_CONTENT => status.into_response(),
        Ok((status, v)) => (status, Json(v)).into_response(),
        Err(e) => m_error(e),
    }
}

async fn stored_segment(api: &StateApi, id: &str) -> Result<Segment, ApiError> {
    match api.find(Kind::Segment, id).await? {
        Object::Segment(s) => Ok(s),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("Failover segment {id} could not be found."),
            None,
        )),
    }
}

async fn list_segments(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    respond(
        api.read_large(move |_, st| {
            let mut all: Vec<&Segment> = st.segments().collect();
            all.sort_by_key(|s| std::cmp::Reverse(s.meta.created_at));
            let views = all.into_iter().map(segment_view).collect();
            let views = filtered(
                views,
                &params,
                &["recovery_method", "service_type", "enabled", "name"],
            )?;
            Ok((StatusCode::OK, json!({"segments": views})))
        })
        .await,
    )
}

async fn create_segment(State(api): State<StateApi>, body: Bytes) -> Response {
    respond(
        async {
            let spec: SegmentSpec = decode_map(unwrap_body(&body, "segment")?)?;
            let meta = ObjectMeta {
                id: new_id(),
                ..Default::default()
            };
            let s = Segment::create(meta, &spec).map_err(|e| crate::api::state_error(&e))?;
            store(
                &api,
                Object::Segment(s),
                Expect::Absent,
                StatusCode::CREATED,
            )
            .await
        }
        .await,
    )
}

async fn show_segment(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    respond(
        async {
            Ok((
                StatusCode::OK,
                json!({"segment": segment_view(&stored_segment(&api, &id).await?)}),
            ))
        }
        .await,
    )
}

async fn update_segment(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let spec: SegmentSpec = decode_map(unwrap_body(&body, "segment")?)?;
            let mut s = stored_segment(&api, &id).await?;
            let version = s.meta.version;
            s.update(&spec).map_err(|e| crate::api::state_error(&e))?;
            store(
                &api,
                Object::Segment(s),
                Expect::Version(version),
                StatusCode::OK,
            )
            .await
        }
        .await,
    )
}

async fn delete_segment(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    respond(
        async {
            let s = stored_segment(&api, &id).await?;
            api.propose(Op::Delete {
                kind: Kind::Segment,
                id: s.meta.id,
                version: None,
            })
            .await?;
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        .await,
    )
}

async fn stored_host(api: &StateApi, segment: &Segment, id: &str) -> Result<Host, ApiError> {
    match api.find(Kind::Host, id).await {
        Ok(Object::Host(h)) if h.segment == segment.meta.id => Ok(h),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "Host {id} could not be found in segment {}.",
                segment.meta.id
            ),
            None,
        )),
    }
}

async fn list_hosts(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    respond(
        async {
            let seg = stored_segment(&api, &id).await?;
            let mut hosts = api
                .read(|st| {
                    st.hosts()
                        .filter(|h| h.segment == seg.meta.id)
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .await?;
            hosts.sort_by(|a, b| a.name.cmp(&b.name));
            let views = hosts.iter().map(host_view).collect();
            let views = filtered(
                views,
                &params,
                &[
                    "type",
                    "on_maintenance",
                    "reserved",
                    "failover_segment_id",
                    "name",
                ],
            )?;
            Ok((StatusCode::OK, json!({"hosts": views})))
        }
        .await,
    )
}

async fn create_host(State(api): State<StateApi>, Path(id): Path<String>, body: Bytes) -> Response {
    respond(
        async {
            let seg = stored_segment(&api, &id).await?;
            let spec: HostSpec = decode_map(unwrap_body(&body, "host")?)?;
            let meta = ObjectMeta {
                id: new_id(),
                ..Default::default()
            };
            let h = Host::create(meta, &spec, seg.meta.id.clone())
                .map_err(|e| crate::api::state_error(&e))?;
            store(&api, Object::Host(h), Expect::Absent, StatusCode::CREATED).await
        }
        .await,
    )
}

async fn show_host(
    State(api): State<StateApi>,
    Path((id, host)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            let seg = stored_segment(&api, &id).await?;
            Ok((
                StatusCode::OK,
                json!({"host": host_view(&stored_host(&api, &seg, &host).await?)}),
            ))
        }
        .await,
    )
}

async fn update_host(
    State(api): State<StateApi>,
    Path((id, host)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    respond(
        async {
            let seg = stored_segment(&api, &id).await?;
            let spec: HostSpec = decode_map(unwrap_body(&body, "host")?)?;
            let mut h = stored_host(&api, &seg, &host).await?;
            let version = h.meta.version;
            h.update(&spec, None)
                .map_err(|e| crate::api::state_error(&e))?;
            store(
                &api,
                Object::Host(h),
                Expect::Version(version),
                StatusCode::OK,
            )
            .await
        }
        .await,
    )
}

async fn delete_host(
    State(api): State<StateApi>,
    Path((id, host)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            let seg = stored_segment(&api, &id).await?;
            let h = stored_host(&api, &seg, &host).await?;
            api.propose(Op::Delete {
                kind: Kind::Host,
                id: h.meta.id,
                version: None,
            })
            .await?;
            Ok((StatusCode::NO_CONTENT, Value::Null))
        }
        .await,
    )
}

async fn list_notifications(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    respond(
        api.read_large(move |_, st| {
            let views = newest_first(st).iter().map(notification_view).collect();
            let views = filtered(
                views,
                &params,
                &["source_host_uuid", "type", "status", "hostname"],
            )?;
            Ok((StatusCode::OK, json!({"notifications": views})))
        })
        .await,
    )
}

async fn create_notification(State(api): State<StateApi>, body: Bytes) -> Response {
    respond(
        async {
            let spec: NotificationSpec = decode_map(unwrap_body(&body, "notification")?)?;
            let n = submit_notification(&api, spec).await?;
            Ok((
                StatusCode::ACCEPTED,
                json!({"notification": notification_view(&n)}),
            ))
        }
        .await,
    )
}

async fn show_notification(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    respond(
        async {
            Ok((
                StatusCode::OK,
                json!({"notification": notification_view(&one_notification(&api, &id).await?)}),
            ))
        }
        .await,
    )
}

fn vmove_view(n: &Notification, v: &model::notification::VMove) -> Value {
    json!({
        "id": v.id, "uuid": v.id, "notification_uuid": n.meta.id, "instance_uuid": v.instance,
        "instance_name": v.instance_name, "source_host": v.source_host, "dest_host": v.dest_host,
        "start_time": v.start_time.map(|t| t.to_masakari()), "end_time": v.end_time.map(|t| t.to_masakari()),
        "status": v.status, "type": "evacuation", "message": v.message,
        "created_at": time(n.meta.created_at), "updated_at": time(n.meta.updated_at),
    })
}

async fn list_vmoves(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    respond(
        async {
            let n = one_notification(&api, &id).await?;
            let views: Vec<Value> = n.vmoves.iter().map(|v| vmove_view(&n, v)).collect();
            Ok((StatusCode::OK, json!({"vmoves": views})))
        }
        .await,
    )
}

async fn show_vmove(
    State(api): State<StateApi>,
    Path((id, vmove)): Path<(String, String)>,
) -> Response {
    respond(
        async {
            let n = one_notification(&api, &id).await?;
            let v = n.vmoves.iter().find(|v| v.id == vmove).ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("VMove {vmove} could not be found."),
                    None,
                )
            })?;
            Ok((StatusCode::OK, json!({"vmove": vmove_view(&n, v)})))
        }
        .await,
    )
}
