//! The agent's own HTTP API, served by every host: members, Prometheus metrics, key reload
//! and the fault filter.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::gossip::faults::FaultFilter;
use crate::gossip::runtime::Shared;
use crate::http::error::error;
use crate::http::host_gate::{self, HostGate};

/// State of the HTTP handlers.
#[derive(Clone)]
pub struct Api {
    pub shared: Arc<Shared>,
    pub keyring_path: Option<std::path::PathBuf>,
    pub label: String,
}

pub fn router(api: Api, gate_by: HostGate) -> Router {
    // Everything but liveness and metrics passes the host's gate: a call signed with this
    // host's credential, or a token where the agent has tokens (a read token for the
    // membership).
    let admin = Router::new()
        .route("/v1/members", get(members))
        .route("/v1/keyring/reload", post(reload_keyring))
        .route("/v1/debug/faults", get(get_faults).post(set_faults))
        .route("/v1/debug/double-run", axum::routing::post(set_double_run))
        .route_layer(axum::middleware::from_fn_with_state(
            gate_by,
            host_gate::gate,
        ))
        .with_state(api.clone());
    Router::new()
        .route(
            "/v1/health",
            get(|| async { Json(json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics))
        .merge(admin)
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; see `buoy --help`",
                None,
            )
        })
        .with_state(api)
}

async fn members(State(api): State<Api>) -> Json<Value> {
    let (me, health, list) = api.shared.read(|s| {
        let list: Vec<Value> = s
            .members()
            .iter()
            .map(|m| {
                let meta = m.meta();
                json!({
                    "name": m.name(),
                    "address": m.addr().to_string(),
                    "state": m.state.as_str(),
                    "incarnation": m.incarnation.0,
                    "segment": meta.segment,
                    "role": meta.role.as_str(),
                    "capacity": {"cpus": meta.capacity.cpus, "memory_mb": meta.capacity.memory_mb},
                    "addresses": meta.addresses.iter().map(|a| json!({"label": a.label, "address": a.addr.to_string()})).collect::<Vec<_>>(),
                    "http": meta.http.map(|h| h.to_string()),
                })
            })
            .collect();
        (s.name().to_string(), s.local_health(), list)
    });
    let mut list = list;
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({"self": me, "local_health": health, "members": list}))
}

async fn metrics(State(api): State<Api>) -> Response {
    let (c, health, states, queued) = api.shared.read(|s| {
        let mut states = [0u64; 4];
        for m in s.members() {
            states[m.state as usize] += 1;
        }
        (
            s.counters().clone(),
            s.local_health(),
            states,
            s.queued_broadcasts(),
        )
    });
    let d = &api.shared.drops;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP buoy_{name} {help}\n# TYPE buoy_{name} counter\nbuoy_{name} {v}\n"
        ));
    };
    counter("swim_probes_total", "Direct probes started.", c.probes);
    counter(
        "swim_probe_failures_total",
        "Probes that got no ack by any path.",
        c.probe_failures,
    );
    counter(
        "swim_indirect_probes_total",
        "Indirect probe requests sent.",
        c.indirect_probes,
    );
    counter(
        "swim_fallback_probes_total",
        "TCP fallback probes started.",
        c.fallback_probes,
    );
    counter(
        "swim_alternate_probes_total",
        "Pings sent to members' other announced addresses after a missed probe.",
        c.alternate_probes,
    );
    counter(
        "swim_fallback_acks_total",
        "Probes saved by the TCP fallback.",
        c.fallback_acks,
    );
    counter(
        "swim_suspicions_total",
        "Members this agent started to suspect.",
        c.suspicions,
    );
    counter(
        "swim_refutations_total",
        "Suspicions about this agent it refuted.",
        c.refutations,
    );
    counter(
        "swim_deaths_declared_total",
        "Members this agent declared dead.",
        c.deaths_declared,
    );
    counter("swim_packets_sent_total", "Datagrams sent.", c.packets_sent);
    counter(
        "swim_bytes_sent_total",
        "Datagram bytes sent (before encryption).",
        c.bytes_sent,
    );
    counter(
        "swim_packets_received_total",
        "Datagrams received and decrypted.",
        c.packets_received,
    );
    counter(
        "swim_push_pulls_total",
        "Periodic push-pull exchanges started.",
        c.push_pulls,
    );
    counter(
        "swim_stream_failures_total",
        "Stream exchanges that failed.",
        c.stream_failures,
    );
    counter(
        "swim_name_conflicts_total",
        "Alive messages rejected for a name already in use.",
        c.name_conflicts,
    );
    counter(
        "swim_members_refused_total",
        "New members refused because the member table is full (swim.max_members).",
        c.members_refused,
    );
    out.push_str("# HELP buoy_swim_packets_dropped_total Packets dropped, by reason.\n# TYPE buoy_swim_packets_dropped_total counter\n");
    for (reason, v) in [
        ("decode", c.decode_errors),
        ("unknown_message", c.unknown_messages),
        ("misdirected", c.misdirected_pings),
        ("decrypt", d.decrypt.load(Ordering::Relaxed)),
        ("oversize", d.oversize.load(Ordering::Relaxed)),
        ("fault_filter", d.fault_filter.load(Ordering::Relaxed)),
        ("send_error", d.send_errors.load(Ordering::Relaxed)),
        ("stream_refused", d.stream_refused.load(Ordering::Relaxed)),
    ] {
        out.push_str(&format!(
            "buoy_swim_packets_dropped_total{{reason=\"{reason}\"}} {v}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP buoy_swim_local_health Lifeguard local health score (0 is healthy).\n# TYPE buoy_swim_local_health gauge\nbuoy_swim_local_health {health}\n"
    ));
    out.push_str(
        "# HELP buoy_swim_members Members known, by state.\n# TYPE buoy_swim_members gauge\n",
    );
    for (i, state) in ["alive", "suspect", "dead", "left"].iter().enumerate() {
        out.push_str(&format!(
            "buoy_swim_members{{state=\"{state}\"}} {}\n",
            states[i]
        ));
    }
    out.push_str(&format!(
        "# HELP buoy_swim_broadcast_queue Broadcasts waiting to be gossiped.\n# TYPE buoy_swim_broadcast_queue gauge\nbuoy_swim_broadcast_queue {queued}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn reload_keyring(State(api): State<Api>) -> Response {
    let Some(path) = &api.keyring_path else {
        return error(
            StatusCode::BAD_REQUEST,
            "no_keyring",
            "this agent runs without --keyring; nothing to reload",
            None,
        );
    };
    match crate::gossip::keyring_file::load_keyring(path, &api.label) {
        Ok(ring) => {
            let fps = ring.fingerprints();
            *api.shared
                .keyring
                .write()
                .unwrap_or_else(|p| p.into_inner()) = Some(ring);
            tracing::info!(keys = ?fps, "keyring reloaded");
            Json(json!({"keys": fps})).into_response()
        }
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            "bad_keyring",
            &format!("{e:#}"),
            Some("keyring"),
        ),
    }
}

async fn get_faults(State(api): State<Api>) -> Response {
    match &api.shared.faults {
        Some(f) => Json(f.read().unwrap_or_else(|p| p.into_inner()).clone()).into_response(),
        None => fault_injection_off(),
    }
}

async fn set_faults(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    let Some(f) = &api.shared.faults else {
        return fault_injection_off();
    };
    let filter: FaultFilter = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!(
                "invalid fault rules ({e}); expected {{\"drop\": [{{\"peer\": NAME, \"direction\": \"in|out|both\"}}]}}"
            );
            return error(StatusCode::BAD_REQUEST, "invalid_body", &msg, Some("drop"));
        }
    };
    tracing::warn!(rules = ?filter.drop, "fault filter changed");
    *f.write().unwrap_or_else(|p| p.into_inner()) = filter.clone();
    Json(filter).into_response()
}

/// `POST /v1/debug/double-run` with `{"keep_instances_without_lease": true}`: the negative
/// control of the S1 checkers (`crate::supervisor::injected`).
async fn set_double_run(State(api): State<Api>, body: axum::body::Bytes) -> Response {
    if api.shared.faults.is_none() {
        return fault_injection_off();
    }
    let on = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["keep_instances_without_lease"].as_bool());
    let Some(on) = on else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "expected {\"keep_instances_without_lease\": true|false}",
            Some("keep_instances_without_lease"),
        );
    };
    crate::supervisor::injected::set_keep_without_lease(on);
    Json(serde_json::json!({"keep_instances_without_lease": on})).into_response()
}

fn fault_injection_off() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "fault_injection_disabled",
        "fault injection is off; start the agent with --enable-fault-injection",
        None,
    )
}
