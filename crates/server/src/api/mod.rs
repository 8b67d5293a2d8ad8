//! The control-plane API under `/v1`: create/list/show/update/delete of segments, hosts and
//! instances, notifications, the change stream, servers and status. Runs on the leader (other
//! agents relay to it, see `forward.rs`); reads wait for a read barrier so they see every
//! acknowledged write.
//!
//! - [`StateApi`] (here): reads, writes, and how an object is shown.
//! - `crud` over the kinds in `resources`; `paging`; `decode` (bodies); `error`.
//! - `notifications`, `instance_logs`, `events` (SSE), `servers`, `status`, `host_actions`, `instance_actions`.
//! - `openapi`: the OpenAPI document of all of it.

mod alert_webhook;
mod crud;
mod decode;
mod error;
mod events;
pub mod host_actions;
pub mod instance_actions;
mod instance_logs;
mod notifications;
pub mod openapi;
mod paging;
mod resources;
mod servers;
mod settings;
mod status;
mod strict_value;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::routing::get;
use model::{ClusterState, Object, Op, Timestamp};
use node::gossip::runtime::Shared;
use node::http::auth::{Auth, require_token};
use serde_json::{Value, json};
use state::replica::Replica;

use crate::control_plane::ControlPlane;
use crate::forward;
pub use crate::ids::new_id;
use crate::lease::grants::LeaseGrants;
use crud::{create, delete, list, segment_capacity, show, update};
pub use decode::{decode_map, decode_spec};
use error::replica_error;
pub use error::{ApiError, ApiResult, state_error};
use events::events;
use instance_logs::instance_logs;
use notifications::{create_notification, list_notifications, show_notification};
pub use notifications::{newest_first, one_notification, submit_notification};
pub use paging::field_matches;
use resources::{Hosts, Instances, Placements, Segments};
use servers::{add_server, remove_server, servers};
use status::status;

/// State of the control-plane handlers.
#[derive(Clone)]
pub struct StateApi {
    pub cp: Arc<ControlPlane>,
    pub gossip: Arc<Shared>,
    pub auth: Auth,
    /// The leader's lease table (servers only): a host's status joins it in.
    pub grants: Option<Arc<LeaseGrants>>,
    /// Why the leader's last plan left copies without a host.
    pub unplaced: Arc<crate::recovery::unplaced::Unplaced>,
}

/// The control-plane routes: status on any agent, the rest relayed to the leader.
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
        .route(
            "/v1/instances/{id}/reset",
            axum::routing::post(instance_actions::reset),
        )
        .route(
            "/v1/alertmanager/webhook",
            axum::routing::post(alert_webhook::receive),
        )
        .route("/v1/settings", get(settings::show))
        .route(
            "/v1/settings/lease",
            axum::routing::put(settings::set_lease),
        )
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
        .route("/v1/openapi.json", get(openapi::serve))
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

    /// An object as the API shows it: hosts get their membership state from gossip, instances
    /// their copies (where, at which epoch, in which phase, and why not running).
    fn view(&self, o: &Object) -> Value {
        match (o, self.replica()) {
            (Object::Instance(_), Ok(r)) => r.shared().read(|st| self.view_in(Some(st), o)),
            _ => self.view_in(None, o),
        }
    }

    /// [`Self::view`] inside a read of the state (never read it again there: the lock is not
    /// re-entrant).
    fn view_in(&self, st: Option<&model::ClusterState>, o: &Object) -> Value {
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
        if let (Object::Instance(i), Some(st), Some(map)) = (o, st, v.as_object_mut()) {
            let (copies, status, reason) = self.copies(st, i);
            map.insert("copies".into(), copies.into());
            map.insert("status".into(), status.into());
            map.insert("reason".into(), reason.map_or(Value::Null, Value::String));
            // A load balancer: the servers its backends should hold now (what the leader
            // sends its copies; each host's HAProxy is in its `/v1/supervisor`).
            if i.load_balancer.is_some()
                && let Some(g) = &self.grants
            {
                let backends: Vec<Value> = g
                    .backends_now(st, i)
                    .into_iter()
                    .map(|b| {
                        let servers: Vec<Value> = b
                            .servers
                            .iter()
                            .map(|s| json!({"name": s.name, "addr": s.addr, "port": s.port}))
                            .collect();
                        json!({"name": b.name, "servers": servers})
                    })
                    .collect();
                map.insert("backends".into(), backends.into());
            }
        }
        v
    }

    /// Instance `i`'s copies, and one status with its reason for the whole: `blocked` (failed
    /// on every usable host), `pending` (not placed), the phase of a copy that does not run
    /// (`starting`, `failed`...), or `running`. Phases come from the hosts' reports to the
    /// leader (`unknown` on another server, or before a report).
    fn copies(
        &self,
        st: &model::ClusterState,
        i: &model::instance::Instance,
    ) -> (Vec<Value>, String, Option<String>) {
        let name = |id: &str| st.host(id).map_or(id.to_string(), |h| h.name.clone());
        let mut placements: Vec<_> = st
            .placements()
            .filter(|p| p.instance == i.meta.id)
            .collect();
        placements.sort_by_key(|p| p.replica);
        let mut worst: Option<(String, Option<String>)> = None;
        let copies = placements
            .iter()
            .map(|p| {
                let host = name(&p.host);
                let observed = self
                    .grants
                    .as_ref()
                    .and_then(|g| g.observed(&host, &p.meta.id, p.epoch));
                let blocked = engine::failures::failed_here(p)
                    && observed.as_ref().is_none_or(|o| o.phase == proto::Phase::Failed);
                // A failed host's last report still says what ran there: its copy is lost
                // until recovery places it elsewhere (no other host may have room).
                let lost = st.host(&p.host).is_some_and(|h| h.failed);
                let (phase, reason) = match (&observed, blocked) {
                    _ if lost => (
                        "lost".to_string(),
                        Some(format!(
                            "its host {host} failed; recovery places it on another host once one can take it"
                        )),
                    ),
                    (_, true) => (
                        "blocked".to_string(),
                        Some(format!(
                            "failed on every usable host: {}; `buoy instance reset {}` retries",
                            engine::failures::describe(p, name),
                            i.name
                        )),
                    ),
                    (Some(o), _) => (
                        serde_json::to_value(o.phase)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        o.reason.clone(),
                    ),
                    (None, _) if !p.handoffs.is_empty() => (
                        "waiting".to_string(),
                        Some("for the host it left to confirm its old copy stopped".into()),
                    ),
                    (None, _) => ("unknown".to_string(), None),
                };
                if phase != "running" && worst.as_ref().is_none_or(|(w, _)| w != "blocked") {
                    worst = Some((phase.clone(), reason.clone()));
                }
                let failures: Vec<Value> = p
                    .failures
                    .iter()
                    .map(|f| json!({"host": name(&f.host), "count": f.count, "reason": f.reason, "at": f.at}))
                    .collect();
                let mut copy = json!({"replica": p.replica, "host": host, "epoch": p.epoch,
                       "phase": phase, "reason": reason, "failures": failures});
                if i.mode == model::instance::Mode::Promotable {
                    // The role its agent's last monitor reported, and its promotion grant.
                    let grant = st
                        .promotion_grants(&i.meta.id)
                        .iter()
                        .find(|g| g.replica == p.replica && g.host == p.host);
                    // A failed host's last report is history, not a role.
                    let live = st.host(&p.host).is_some_and(|h| !h.failed);
                    copy["role"] = observed
                        .as_ref()
                        .filter(|_| live)
                        .and_then(|o| o.role)
                        .map_or(Value::Null, |r| json!(r));
                    copy["promotion"] = grant.map_or(Value::Null, |g| {
                        json!({"epoch": g.epoch, "revoked": g.revoked})
                    });
                }
                copy
            })
            .collect();
        let wanted = engine::plan_input::copies(i) as usize;
        let started = i.desired_state == model::instance::DesiredState::Started;
        let (status, reason) = match worst {
            Some(w) if started => w,
            _ if started && placements.len() < wanted => {
                let placed: Vec<u32> = placements.iter().map(|p| p.replica).collect();
                let why = (0..wanted as u32)
                    .filter(|r| !placed.contains(r))
                    .find_map(|r| self.unplaced.reason(&i.meta.id, r))
                    .unwrap_or_else(|| "the leader places it within a second".into());
                (
                    "pending".to_string(),
                    Some(format!(
                        "{} of {wanted} copies placed: {why}",
                        placements.len()
                    )),
                )
            }
            _ if started => ("running".to_string(), None),
            _ => (
                serde_json::to_value(i.desired_state)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                None,
            ),
        };
        (copies, status, reason)
    }
}

impl StateApi {
    /// One word for a host's state, as operators and the dashboard want it: `fenced` (failed
    /// through its fence device), `failed`,
    /// `maintenance`, `isolated` (gossip cannot reach it, yet it renews its lease: nothing
    /// moves), `dead` (waiting for its lease to end), `suspect`, `alive`, `left`, `unknown`.
    fn host_status(&self, h: &model::host::Host, gossip: &str) -> &'static str {
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
