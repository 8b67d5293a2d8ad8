//! What this host says about itself over HTTP:
//!
//! - `GET /v1/lease`: this host's own lease.
//! - `GET /v1/supervisor`: the instances it runs or ran, with their state.
//! - `GET /v1/supervisor/logs/{name}`: the output of an instance on this host, its tail and
//!   then (with `follow`) what it appends, across rotations. The leader relays
//!   `GET /v1/instances/{id}/logs` here from any agent.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use axum::Json;
use serde_json::json;

use crate::gossip::runtime::Shared;
use crate::http::error::error;
use crate::http::host_gate::{self, HostGate};
use crate::lease::keeper::LeaseKeeper;
use crate::lease::wall;
use crate::supervisor::reconciler::Supervisor;

/// What the host routes need.
#[derive(Clone)]
pub struct HostApi {
    pub keeper: Arc<LeaseKeeper>,
    pub gossip: Arc<Shared>,
    pub supervisor: Arc<Supervisor>,
    /// The HAProxy syncs of the load balancer copies run here.
    pub balancers: Arc<crate::balancer::syncer::Syncer>,
}

/// `GET /v1/lease`: this agent's own lease.
pub async fn own_lease(State(api): State<HostApi>) -> Json<serde_json::Value> {
    let now = api.gossip.now();
    api.keeper.with_lease(|lease| {
        let until = lease.until();
        Json(json!({
            "host": api.keeper.me(),
            "held": lease.is_held(now),
            "until": until.map(|u| wall(u, now)),
            "remaining_ms": until.map(|u| u.saturating_since(now).as_millis() as u64),
            "ttl_ms": lease.timing().ttl.as_millis() as u64,
            "renew_every_ms": lease.timing().renew_every.as_millis() as u64,
        }))
    })
}

/// `GET /v1/supervisor`: the instances this agent runs or ran, with their state.
pub async fn supervised(State(api): State<HostApi>) -> Json<serde_json::Value> {
    Json(json!({"instances": api.supervisor.observed(), "balancers": api.balancers.status()}))
}

/// Query of `GET /v1/supervisor/logs/{name}`.
#[derive(Deserialize)]
pub struct LogQuery {
    /// Lines from the end to show first (default 100).
    pub tail: Option<usize>,
    /// Keep streaming what the instance writes.
    #[serde(default)]
    pub follow: bool,
}

/// `GET /v1/supervisor/logs/{name}`: the output of instance `name` on this host.
pub async fn instance_log(
    State(api): State<HostApi>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogQuery>,
) -> Response {
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "not an instance name",
            Some("name"),
        );
    }
    let path = api.supervisor.log_path(&name);
    let tail = q.tail.unwrap_or(100);
    // Files are read on the blocking pool, a bounded window at a time: a large log or a slow
    // disk never stalls the runtime that renews this host's lease.
    let at = path.clone();
    let Ok(Ok((first, len))) = tokio::task::spawn_blocking(move || tail_of(&at, tail)).await else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no log of instance `{name}` on this host: it has not run here"),
            None,
        );
    };
    let first = bytes::Bytes::from(first);
    if !q.follow {
        return ([("content-type", "text/plain; charset=utf-8")], first).into_response();
    }
    // Follow: what was there, then what gets appended (from the start of a rotated file).
    let state = (Some(first), path, len);
    let stream = futures_util::stream::unfold(state, |(first, path, mut pos)| async move {
        if let Some(f) = first {
            return Some((Ok::<_, std::io::Error>(f), (None, path, pos)));
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let at = path.clone();
            let Ok(Ok((chunk, len))) =
                tokio::task::spawn_blocking(move || read_from(&at, pos)).await
            else {
                continue;
            };
            if len < pos {
                pos = 0; // rotated
                continue;
            }
            if !chunk.is_empty() {
                let end = pos + chunk.len() as u64;
                return Some((Ok(bytes::Bytes::from(chunk)), (None, path, end)));
            }
        }
    });
    (
        [("content-type", "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// The most a log read takes at once: the tail window, and each chunk a follower gets.
const LOG_WINDOW: u64 = 1 << 20;

/// The last `lines` lines of `path` (within its last [`LOG_WINDOW`] bytes), and its length.
fn tail_of(path: &std::path::Path, lines: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(LOG_WINDOW);
    f.seek(SeekFrom::Start(from))?;
    let mut text = Vec::new();
    f.take(LOG_WINDOW).read_to_end(&mut text)?;
    let start = text
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, b)| **b == b'\n')
        .nth(lines)
        .map_or(0, |(i, _)| i + 1);
    text.drain(..start);
    Ok((text, len))
}

/// The bytes of `path` from offset `pos` (at most [`LOG_WINDOW`] of them), and its length.
fn read_from(path: &std::path::Path, pos: u64) -> std::io::Result<(Vec<u8>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= pos {
        return Ok((Vec::new(), len));
    }
    f.seek(SeekFrom::Start(pos))?;
    let mut out = Vec::new();
    f.take(LOG_WINDOW).read_to_end(&mut out)?;
    Ok((out, len))
}

/// The host routes, behind the [`HostGate`].
pub fn router(api: HostApi, gate_by: HostGate) -> axum::Router {
    axum::Router::new()
        .route("/v1/lease", axum::routing::get(own_lease))
        .route("/v1/supervisor", axum::routing::get(supervised))
        .route(
            "/v1/supervisor/logs/{name}",
            axum::routing::get(instance_log),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            gate_by,
            host_gate::gate,
        ))
        .with_state(api)
}
