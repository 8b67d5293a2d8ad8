//! The control-plane API under `/v1`: create/list/show/update/delete of segments, hosts and
//! instances, notifications, the change stream, servers and status. Runs on the leader (other
//! agents relay to it, see `forward.rs`); reads wait for a read barrier so they see every
//! acknowledged write.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use state::notification::{Notification, NotificationSpec};
use state::object::uuid_from_bytes;
use state::raft::replica::{Replica, ReplicaError};
use state::raft::types::ServerNode;
use state::{Change, ClusterState, Expect, Kind, Object, ObjectMeta, Op, StateError, Timestamp};
use swim::MemberState;
use tokio::sync::broadcast::error::RecvError;

use super::auth::{Auth, require_token};
use super::control::ControlPlane;
use super::forward;
use super::http::error;
use super::resources::{Hosts, Instances, Placements, Resource, Segments};
use super::runtime::Shared;

/// State of the control-plane handlers.
#[derive(Clone)]
pub struct StateApi {
    pub cp: Arc<ControlPlane>,
    pub gossip: Arc<Shared>,
    pub auth: Auth,
    /// The leader's lease table (servers only): a host's status joins it in.
    pub grants: Option<Arc<super::lease::LeaseGrants>>,
}

/// Why a call failed: becomes the HTTP status and the `{"error": {...}}` body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        field: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: field.map(String::from),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message, self.field.as_deref())
    }
}

type ApiResult<T> = Result<T, ApiError>;

pub fn router(api: StateApi) -> Router {
    let leader_only = Router::new()
        .route(
            "/v1/segments",
            get(list::<Segments>).post(create::<Segments>),
        )
        .route(
            "/v1/segments/{id}",
            get(show::<Segments>)
                .put(update::<Segments>)
                .patch(update::<Segments>)
                .delete(delete::<Segments>),
        )
        .route("/v1/segments/{id}/capacity", get(segment_capacity))
        .route("/v1/hosts", get(list::<Hosts>).post(create::<Hosts>))
        .route(
            "/v1/hosts/{id}",
            get(show::<Hosts>)
                .put(update::<Hosts>)
                .patch(update::<Hosts>)
                .delete(delete::<Hosts>),
        )
        .route(
            "/v1/instances",
            get(list::<Instances>).post(create::<Instances>),
        )
        .route(
            "/v1/instances/{id}",
            get(show::<Instances>)
                .put(update::<Instances>)
                .patch(update::<Instances>)
                .delete(delete::<Instances>),
        )
        .route("/v1/instances/{id}/logs", get(instance_logs))
        .route(
            "/v1/placements",
            get(list::<Placements>).post(create::<Placements>),
        )
        .route(
            "/v1/placements/{id}",
            get(show::<Placements>)
                .put(update::<Placements>)
                .patch(update::<Placements>)
                .delete(delete::<Placements>),
        )
        .route(
            "/v1/notifications",
            get(list_notifications).post(create_notification),
        )
        .route("/v1/notifications/{id}", get(show_notification))
        .route("/v1/events", get(events))
        .route("/v1/servers", get(servers).post(add_server))
        .route("/v1/servers/{name}", axum::routing::delete(remove_server))
        .route_layer(middleware::from_fn_with_state(
            api.cp.clone(),
            forward::to_leader,
        ))
        .route_layer(middleware::from_fn_with_state(
            api.auth.clone(),
            require_token,
        ))
        .with_state(api.clone());
    Router::new()
        .route("/v1/status", get(status))
        .route_layer(middleware::from_fn_with_state(
            api.auth.clone(),
            require_token,
        ))
        .with_state(api)
        .merge(leader_only)
}

impl StateApi {
    /// The local replica; the leader middleware guarantees there is one.
    fn replica(&self) -> ApiResult<&Arc<Replica>> {
        self.cp.replica.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_a_server",
                "this agent is not a control-plane server",
                None,
            )
        })
    }

    /// Reads the state after a read barrier (so every acknowledged write is visible).
    pub async fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> ApiResult<R> {
        let r = self.replica()?;
        r.read_barrier().await.map_err(replica_error)?;
        Ok(r.shared().read(f))
    }

    /// Reads the state as applied here, without a barrier: for building a command, which the
    /// state machine checks again against the committed state (versions, names, references).
    pub fn read_local<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> ApiResult<R> {
        Ok(self.replica()?.shared().read(f))
    }

    /// Like [`read`](Self::read), but runs `f` on the blocking pool: for reads whose cost
    /// grows with the state (lists). The runtime's worker also runs Raft and gossip, and a
    /// list of 70,000 objects built there once held it past the election timeout.
    pub async fn read_large<R: Send + 'static>(
        &self,
        f: impl FnOnce(&StateApi, &ClusterState) -> ApiResult<R> + Send + 'static,
    ) -> ApiResult<R> {
        let r = self.replica()?.clone();
        r.read_barrier().await.map_err(replica_error)?;
        let api = self.clone();
        tokio::task::spawn_blocking(move || r.shared().read(|st| f(&api, st)))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    format!("the read failed: {e}"),
                    None,
                )
            })?
    }

    /// Commits `op`; returns the stored object (none for deletes).
    pub async fn propose(&self, op: Op) -> ApiResult<Option<Object>> {
        let r = self.replica()?;
        match r.write(op, Timestamp::now()).await {
            Ok(Ok(o)) => Ok(o),
            Ok(Err(e)) => Err(state_error(&e)),
            Err(e) => Err(replica_error(e)),
        }
    }

    /// An object as the API shows it: hosts get their membership state from gossip.
    fn view(&self, o: &Object) -> Value {
        let mut v = match o {
            Object::Segment(x) => serde_json::to_value(x),
            Object::Host(x) => serde_json::to_value(x),
            Object::Instance(x) => serde_json::to_value(x),
            Object::Notification(x) => serde_json::to_value(x),
            Object::Placement(x) => serde_json::to_value(x),
        }
        .unwrap_or(Value::Null);
        if let (Object::Host(h), Some(map)) = (o, v.as_object_mut()) {
            let membership = self.gossip.read(|sw| {
                sw.member(&h.name).map(|m| {
                    json!({"state": m.state.as_str(), "incarnation": m.incarnation.0, "address": m.addr().to_string()})
                })
            });
            let gossip_state = membership
                .as_ref()
                .and_then(|m| m["state"].as_str())
                .unwrap_or("unknown")
                .to_string();
            map.insert(
                "membership".into(),
                membership.unwrap_or_else(|| json!({"state": "unknown"})),
            );
            map.insert("status".into(), self.host_status(h, &gossip_state).into());
        }
        v
    }
}

impl StateApi {
    /// One word for a host's state, as operators and the dashboard want it: `fenced` (failed
    /// through its fence device), `failed`,
    /// `maintenance`, `isolated` (gossip cannot reach it, yet it renews its lease: nothing
    /// moves), `dead` (waiting for its lease to end), `suspect`, `alive`, `left`, `unknown`.
    fn host_status(&self, h: &state::host::Host, gossip: &str) -> &'static str {
        let renews = self
            .grants
            .as_ref()
            .is_some_and(|g| g.renews(&h.name, self.gossip.now()));
        match gossip {
            _ if h.failed && h.fenced => "fenced",
            _ if h.failed => "failed",
            _ if h.on_maintenance => "maintenance",
            "dead" | "left" if renews => "isolated",
            "dead" => "dead",
            "left" => "left",
            "suspect" => "suspect",
            "alive" => "alive",
            _ => "unknown",
        }
    }
}

/// Maps a refused command to its HTTP status and error body.
pub fn state_error(e: &StateError) -> ApiError {
    let (status, code) = match e {
        StateError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        StateError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        StateError::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
        StateError::NameTaken { .. } | StateError::IdTaken { .. } => {
            (StatusCode::CONFLICT, "already_exists")
        }
        StateError::InUse { .. } => (StatusCode::CONFLICT, "in_use"),
        StateError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
    };
    ApiError::new(status, code, e.to_string(), e.field())
}

fn replica_error(e: ReplicaError) -> ApiError {
    let code = match e {
        ReplicaError::NotLeader { .. } => "not_leader",
        _ => "unavailable",
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        format!("{e}; retry shortly"),
        None,
    )
}

fn bad_request(field: Option<&str>, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message, field)
}

fn not_found(kind: Kind, id: &str) -> ApiError {
    state_error(&StateError::NotFound {
        kind,
        id: id.to_string(),
    })
}

/// `GET /v1/segments/{id}/capacity`: the segment's failover headroom (admission control).
async fn segment_capacity(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    let found = api
        .read(|st| {
            st.resolve(Kind::Segment, &id)
                .and_then(|sid| state::capacity::headroom(st, &sid, None))
        })
        .await;
    match found {
        Ok(Some(h)) => Json(h).into_response(),
        Ok(None) => not_found(Kind::Segment, &id).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A fresh object id.
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to the clock, still unique enough for one cluster.
        let t = Timestamp::now().unix_millis().to_le_bytes();
        b[..8].copy_from_slice(&t);
    }
    uuid_from_bytes(b)
}

/// Decodes a JSON object body into `S`, naming the offending field on error. Read-only
/// fields (`id`, timestamps) are dropped; `version` is returned apart, for concurrency checks.
pub fn decode_spec<S: DeserializeOwned>(body: &[u8]) -> ApiResult<(S, Option<u64>)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(None, &format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(bad_request(None, "the body must be a JSON object"));
    };
    for read_only in ["id", "created_at", "updated_at", "membership"] {
        map.remove(read_only);
    }
    let version =
        match map.remove("version") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| {
                bad_request(Some("version"), "version must be a positive integer")
            })?),
        };
    decode_map(map).map(|s| (s, version))
}

/// Decodes a JSON object into `S`, naming the offending field on error.
pub fn decode_map<S: DeserializeOwned>(map: Map<String, Value>) -> ApiResult<S> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = (path != ".").then_some(path);
        bad_request(field.as_deref(), &inner)
    })
}

/// The version an update or delete expects: `If-Match` header, else the body or `?version=`.
fn expected_version(headers: &HeaderMap, other: Option<u64>) -> ApiResult<Option<u64>> {
    match headers.get("if-match") {
        None => Ok(other),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| {
                bad_request(
                    Some("If-Match"),
                    "If-Match must be the object's version, e.g. \"3\"",
                )
            }),
    }
}

/// True when a list filter `?field=want` matches the field's value (strings exactly, other
/// values by their JSON text, booleans in any case; an absent field matches an empty filter).
pub fn field_matches(value: Option<&Value>, want: &str) -> bool {
    match value {
        Some(Value::String(s)) => s == want,
        Some(Value::Bool(b)) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Some(Value::Null) | None => want.is_empty(),
        Some(other) => want.parse::<Value>().is_ok_and(|w| w == *other),
    }
}

/// A list request's `limit`, `marker` and field filters, checked.
struct PageRequest<'a> {
    limit: usize,
    marker: Option<&'a str>,
    filters: Vec<(&'a str, &'a str)>,
}

impl<'a> PageRequest<'a> {
    fn parse(params: &'a BTreeMap<String, String>, filters: &[&str]) -> ApiResult<Self> {
        let limit = match params.get("limit") {
            None => 1000,
            Some(l) => l
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=10_000).contains(l))
                .ok_or_else(|| bad_request(Some("limit"), "limit must be 1 to 10000"))?,
        };
        let mut wanted = Vec::new();
        for (k, v) in params {
            match k.as_str() {
                "limit" | "marker" => {}
                k if filters.contains(&k) => wanted.push((k, v.as_str())),
                _ => {
                    return Err(bad_request(
                        Some(k),
                        &format!("cannot filter on `{k}`: filters are {}", filters.join(", ")),
                    ));
                }
            }
        }
        Ok(PageRequest {
            limit,
            marker: params.get("marker").map(String::as_str),
            filters: wanted,
        })
    }

    fn matches(&self, v: &Value) -> bool {
        self.filters
            .iter()
            .all(|(k, want)| field_matches(v.get(*k), want))
    }

    fn unknown_marker(&self) -> ApiError {
        let m = self.marker.unwrap_or_default();
        bad_request(Some("marker"), &format!("marker `{m}` is not in this list"))
    }

    /// The page of `views` (the whole list, in order) after the marker, with the marker of
    /// the next page.
    fn page_of(&self, views: impl Iterator<Item = Value>, key: &str) -> Value {
        let mut page = Vec::new();
        let mut more = false;
        for v in views.filter(|v| self.matches(v)) {
            if page.len() == self.limit {
                more = true;
                break;
            }
            page.push(v);
        }
        let next = more
            .then(|| page.last().and_then(|v| v.get("id").cloned()))
            .flatten();
        json!({ key: page, "next_marker": next })
    }
}

/// Applies `limit`, `marker` and field filters to a whole list of views (sorted by the
/// caller).
fn paginate(
    items: Vec<Value>,
    params: &BTreeMap<String, String>,
    filters: &[&str],
    key: &str,
) -> ApiResult<Value> {
    let req = PageRequest::parse(params, filters)?;
    let start = match req.marker {
        None => 0,
        Some(m) => {
            items
                .iter()
                .position(|v| v.get("id").and_then(Value::as_str) == Some(m))
                .ok_or_else(|| req.unknown_marker())?
                + 1
        }
    };
    Ok(req.page_of(items.into_iter().skip(start), key))
}

/// One page of a list of `kind`, in list order (by name): the objects after the marker that
/// match the filters. It walks the name index from the marker and views only what it looks
/// at, so a page costs its own size rather than the whole list's (unless filters skip most).
fn list_page(
    api: &StateApi,
    st: &ClusterState,
    kind: Kind,
    params: &BTreeMap<String, String>,
    filters: &[&str],
    key: &str,
) -> ApiResult<Value> {
    let req = PageRequest::parse(params, filters)?;
    let ids = st
        .ids_in_list_order(kind, req.marker)
        .ok_or_else(|| req.unknown_marker())?;
    // Hosts and instances: `segment=` takes the segment's name as well as its id (and those
    // listed show it as given).
    let segment = params
        .get("segment")
        .filter(|_| matches!(kind, Kind::Host | Kind::Instance))
        .and_then(|seg| Some((seg, st.resolve(Kind::Segment, seg)?)));
    let views = ids.filter_map(|id| st.get(kind, id)).map(|o| {
        let mut v = api.view(&o);
        if let Some((seg, id)) = &segment
            && v.get("segment").and_then(Value::as_str) == Some(id.as_str())
        {
            v["segment"] = Value::String((*seg).clone());
        }
        v
    });
    Ok(req.page_of(views, key))
}

async fn list<R: Resource>(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = api
        .read_large(move |api, st| list_page(api, st, R::KIND, &params, R::FILTERS, R::PLURAL))
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

impl StateApi {
    /// Finds an object of `kind` by id or name.
    pub async fn find(&self, kind: Kind, id_or_name: &str) -> ApiResult<Object> {
        self.read(|st| {
            st.resolve(kind, id_or_name)
                .and_then(|id| st.get(kind, &id))
        })
        .await?
        .ok_or_else(|| not_found(kind, id_or_name))
    }
}

async fn show<R: Resource>(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    match api.find(R::KIND, &id).await {
        Ok(o) => Json(api.view(&o)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn create<R: Resource>(State(api): State<StateApi>, body: Bytes) -> Response {
    let result = async {
        let (spec, _) = decode_spec::<R::Spec>(&body)?;
        let meta = ObjectMeta {
            id: new_id(),
            ..Default::default()
        };
        let object = api
            .read_local(|st| R::create(meta, &spec, st))?
            .map_err(|e| state_error(&e))?;
        let stored = api
            .propose(Op::Put {
                object: Box::new(object),
                expect: Expect::Absent,
            })
            .await?;
        Ok::<_, ApiError>(stored)
    }
    .await;
    match result {
        Ok(Some(o)) => (StatusCode::CREATED, Json(api.view(&o))).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn update<R: Resource>(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (spec, body_version) = decode_spec::<R::Spec>(&body)?;
        let expected = expected_version(&headers, body_version)?;
        // Without a version from the client, re-read and retry when someone else won a race.
        for _ in 0..5 {
            let current = api.find(R::KIND, &id).await?;
            let version = current.meta().version;
            let next = api
                .read_local(|st| R::update(current, &spec, st))?
                .map_err(|e| state_error(&e))?;
            let op = Op::Put {
                object: Box::new(next),
                expect: Expect::Version(expected.unwrap_or(version)),
            };
            match api.propose(op).await {
                Err(e) if expected.is_none() && e.status == StatusCode::PRECONDITION_FAILED => {
                    continue;
                }
                other => return other,
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "the object kept changing under this update; retry",
            None,
        ))
    }
    .await;
    match result {
        Ok(Some(o)) => Json(api.view(&o)).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn delete<R: Resource>(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let query_version =
            match params.get("version") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    bad_request(Some("version"), "version must be a positive integer")
                })?),
            };
        let version = expected_version(&headers, query_version)?;
        let current = api.find(R::KIND, &id).await?;
        api.propose(Op::Delete {
            kind: R::KIND,
            id: current.meta().id.clone(),
            version,
        })
        .await
    }
    .await;
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

// ----- notifications -----

/// Creates a notification from `spec`; shared with the Masakari-compatible endpoint.
pub async fn submit_notification(
    api: &StateApi,
    spec: NotificationSpec,
) -> ApiResult<Notification> {
    let meta = ObjectMeta {
        id: new_id(),
        ..Default::default()
    };
    let n = Notification::create(meta, 0, &spec).map_err(|e| state_error(&e))?;
    match api
        .propose(Op::Put {
            object: Box::new(Object::Notification(n)),
            expect: Expect::Absent,
        })
        .await?
    {
        Some(Object::Notification(n)) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the notification was not stored",
            None,
        )),
    }
}

/// Every notification, newest first.
pub fn newest_first(st: &ClusterState) -> Vec<Notification> {
    let mut all: Vec<Notification> = st.notifications().cloned().collect();
    all.sort_by_key(|n| std::cmp::Reverse(n.serial));
    all
}

/// One notification by id.
pub async fn one_notification(api: &StateApi, id: &str) -> ApiResult<Notification> {
    api.read(|st| st.notification(id).cloned())
        .await?
        .ok_or_else(|| not_found(Kind::Notification, id))
}

async fn create_notification(State(api): State<StateApi>, body: Bytes) -> Response {
    let result = async {
        let (spec, _) = decode_spec::<NotificationSpec>(&body)?;
        submit_notification(&api, spec).await
    }
    .await;
    match result {
        Ok(n) => (
            StatusCode::CREATED,
            Json(api.view(&Object::Notification(n))),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list_notifications(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = api
        .read_large(move |api, st| {
            let views = newest_first(st)
                .into_iter()
                .map(|n| api.view(&Object::Notification(n)))
                .collect();
            paginate(
                views,
                &params,
                &["hostname", "type", "status", "source_host", "segment"],
                "notifications",
            )
        })
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn show_notification(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    match one_notification(&api, &id).await {
        Ok(n) => Json(api.view(&Object::Notification(n))).into_response(),
        Err(e) => e.into_response(),
    }
}

// ----- instance logs -----

/// `GET /v1/instances/{id}/logs?replica=N&tail=N&follow=true`: the instance's output, relayed
/// from the host that runs it (answered on the leader, which knows the placements).
async fn instance_logs(
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
    forward::relay_to(
        &api.cp,
        &http.to_string(),
        &format!("/v1/supervisor/logs/{name}{query}"),
        req,
    )
    .await
}

// ----- change stream -----

/// `GET /v1/events?since=INDEX[&follow=false]`: server-sent events, one `change` per applied
/// change after `since` (default: from now on), then live ones unless `follow=false`. A
/// `reset` event means history was lost: re-read the lists.
async fn events(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Ok(replica) = api.replica() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_a_server",
            "no replica here",
            None,
        );
    };
    let shared = replica.shared().clone();
    let since = match params.get("since").map(|s| s.parse::<u64>()) {
        None => shared.read(|st| st.change_index()),
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            return bad_request(Some("since"), "since must be a log index (a number)")
                .into_response();
        }
    };
    let follow = params.get("follow").is_none_or(|f| f != "false");
    // Subscribe before reading the backlog, so nothing falls between the two.
    let live = shared.subscribe();
    let backlog = shared.changes_since(since);
    let first: Vec<Result<SseEvent, Infallible>> = match &backlog {
        Some(b) => b.iter().map(|c| Ok(change_event(c))).collect(),
        None => vec![Ok(reset_event(since))],
    };
    let last = backlog
        .as_ref()
        .and_then(|b| b.last().map(|c| c.index))
        .unwrap_or(since);
    let live = stream::unfold((live, last), |(mut rx, last)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if c.index <= last => continue,
                Ok(c) => {
                    let index = c.index;
                    return Some((Ok(change_event(&c)), (rx, index)));
                }
                Err(RecvError::Lagged(_)) => return Some((Ok(reset_event(last)), (rx, last))),
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> = if follow
    {
        Box::pin(futures_util::StreamExt::chain(stream::iter(first), live))
    } else {
        Box::pin(stream::iter(first))
    };
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn change_event(c: &Change) -> SseEvent {
    SseEvent::default()
        .event("change")
        .id(c.index.to_string())
        .data(serde_json::to_string(c).unwrap_or_default())
}

fn reset_event(since: u64) -> SseEvent {
    SseEvent::default().event("reset").data(
        json!({"since": since, "message": "changes were dropped; re-read the lists"}).to_string(),
    )
}

// ----- servers and status -----

async fn servers(State(api): State<StateApi>) -> Response {
    match api.replica() {
        Ok(r) => {
            let s = r.status();
            Json(json!({"leader": s.leader, "voters": s.voters, "learners": s.learners, "term": s.term}))
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn add_server(State(api): State<StateApi>, body: Bytes) -> Response {
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
            .live_servers()
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                bad_request(
                    Some("name"),
                    &format!("no live agent `{name}` started with --server is known to gossip"),
                )
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

async fn remove_server(State(api): State<StateApi>, Path(name): Path<String>) -> Response {
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

/// `GET /v1/status`: this agent, the control plane as this server sees it (clients relay to a
/// server), and a membership summary.
async fn status(State(api): State<StateApi>, req: Request) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use state::host::HostSpec;
    use state::instance::InstanceSpec;
    use state::segment::SegmentSpec;

    /// Any JSON value, nested a few levels, with the field names the specs use among others.
    fn json_value() -> impl Strategy<Value = Value> {
        let key = prop_oneof![
            Just("name".to_string()),
            Just("segment".to_string()),
            Just("driver".to_string()),
            Just("params".to_string()),
            Just("cpu".to_string()),
            Just("capacity".to_string()),
            Just("health_checks".to_string()),
            Just("restart_window".to_string()),
            Just("version".to_string()),
            Just("type".to_string()),
            Just("port".to_string()),
            "[a-z_]{1,8}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            "\\PC{0,12}".prop_map(Value::String),
            Just(json!("5m")),
            Just(json!("process")),
        ];
        leaf.prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn decoders_never_panic_and_errors_are_400s(v in json_value(), bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let body = v.to_string();
            for raw in [body.as_bytes(), bytes.as_slice()] {
                if let Err(e) = decode_spec::<SegmentSpec>(raw) { prop_assert_eq!(e.status, StatusCode::BAD_REQUEST); }
                if let Err(e) = decode_spec::<HostSpec>(raw) { prop_assert_eq!(e.status, StatusCode::BAD_REQUEST); }
                if let Err(e) = decode_spec::<InstanceSpec>(raw) { prop_assert_eq!(e.status, StatusCode::BAD_REQUEST); }
                if let Err(e) = decode_spec::<NotificationSpec>(raw) { prop_assert_eq!(e.status, StatusCode::BAD_REQUEST); }
            }
        }

        #[test]
        fn a_decoded_spec_encodes_back_to_what_it_read(name in "[a-z][a-z0-9-]{0,20}", cpu in 0u32..64_000, mem in 0u64..1_000_000, prio in 0u16..=1000) {
            let body = json!({
                "name": name, "segment": "zone-a", "driver": "process",
                "params": {"command": "sleep 1"}, "cpu": f64::from(cpu) / 1000.0,
                "memory_mb": mem, "priority": prio, "restart_window": "90s", "version": 4,
            });
            let (spec, version) = decode_spec::<InstanceSpec>(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(version, Some(4));
            let mut back = serde_json::to_value(&spec).unwrap();
            back["version"] = json!(4);
            // Whole cores print as integers (2, not 2.0): compare CPU by value.
            prop_assert_eq!(back["cpu"].as_f64(), body["cpu"].as_f64());
            let mut body = body;
            for v in [&mut back, &mut body] {
                v.as_object_mut().unwrap().remove("cpu");
            }
            prop_assert_eq!(back, body);
        }
    }

    #[test]
    fn decode_errors_name_the_nested_field() {
        let e = decode_spec::<InstanceSpec>(
            br#"{"health_checks":[{"type":"tcp","port":80,"interval":"soon"}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("health_checks[0].interval"),
            "{}",
            e.message
        );
        // Probe fields pass through serde's buffer for the tagged enum: the check is named.
        let e = decode_spec::<InstanceSpec>(br#"{"health_checks":[{"type":"tcp","port":"x"}]}"#)
            .unwrap_err();
        assert!(
            e.field
                .as_deref()
                .is_some_and(|f| f.starts_with("health_checks[0]")),
            "{:?}",
            e.field
        );
        let e = decode_spec::<HostSpec>(br#"{"capacity":{"cpu":1,"disk":2}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("capacity.disk"), "{}", e.message);
        let e = decode_spec::<SegmentSpec>(br#"{"version":-1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("version"));
        let e = decode_spec::<SegmentSpec>(b"{").unwrap_err();
        assert_eq!(e.field, None);
        assert!(e.message.contains("not valid JSON"));
    }
}
