//! `GET /v1/openapi.json`: the OpenAPI 3 document of the control-plane API, built from the
//! route table below and the JSON Schemas derived from the API types themselves (schemars),
//! so a field added to a type shows up here without anyone editing a document.

use axum::Json;
use model::host::{Host, HostSpec};
use model::instance::{Instance, InstanceSpec};
use model::notification::{Notification, NotificationSpec};
use model::placement::{Placement, PlacementSpec};
use model::segment::{Segment, SegmentSpec};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// Produces a schema (usually a `$ref` into the components) for one body.
type SchemaFn = fn(&mut SchemaGenerator) -> Value;

/// One operation of the API.
struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    /// Schema of the request body, if it has one.
    body: Option<SchemaFn>,
    /// Success status and the schema of its body.
    ok: (u16, Option<SchemaFn>),
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    g.subschema_for::<T>().to_value()
}

fn list_of(key: &'static str, item: Value) -> Value {
    json!({"type": "object", "properties": {key: {"type": "array", "items": item}, "next_marker": {"type": ["string", "null"]}}})
}

fn any_object(_: &mut SchemaGenerator) -> Value {
    json!({"type": "object"})
}

/// Every route of the control-plane API (the Masakari-compatible one is documented by
/// Masakari's own API reference).
fn routes() -> Vec<Route> {
    macro_rules! crud {
        ($plural:literal, $tag:literal, $obj:ty, $spec:ty) => {
            vec![
                Route { method: "get", path: concat!("/v1/", $plural), summary: concat!("List ", $plural, " (filters: any listed field; `limit`, `marker`)"), tag: $tag, body: None, ok: (200, Some(|g| list_of($plural, schema::<$obj>(g)))) },
                Route { method: "post", path: concat!("/v1/", $plural), summary: concat!("Create one of the ", $plural), tag: $tag, body: Some(schema::<$spec>), ok: (201, Some(schema::<$obj>)) },
                Route { method: "get", path: concat!("/v1/", $plural, "/{id}"), summary: "Show one, by id or name", tag: $tag, body: None, ok: (200, Some(schema::<$obj>)) },
                Route { method: "patch", path: concat!("/v1/", $plural, "/{id}"), summary: "Change the fields given (`version` in the body or `If-Match` for optimistic concurrency)", tag: $tag, body: Some(schema::<$spec>), ok: (200, Some(schema::<$obj>)) },
                Route { method: "put", path: concat!("/v1/", $plural, "/{id}"), summary: "Same as PATCH", tag: $tag, body: Some(schema::<$spec>), ok: (200, Some(schema::<$obj>)) },
                Route { method: "delete", path: concat!("/v1/", $plural, "/{id}"), summary: "Delete one (`?version=` or `If-Match` to guard)", tag: $tag, body: None, ok: (204, None) },
            ]
        };
    }
    let mut r = Vec::new();
    r.extend(crud!("segments", "segments", Segment, SegmentSpec));
    r.extend(crud!("hosts", "hosts", Host, HostSpec));
    r.extend(crud!("instances", "instances", Instance, InstanceSpec));
    r.extend(crud!("placements", "placements", Placement, PlacementSpec));
    r.extend([
        Route { method: "get", path: "/v1/notifications", summary: "List notifications, newest first", tag: "notifications", body: None, ok: (200, Some(|g| list_of("notifications", schema::<Notification>(g)))) },
        Route { method: "post", path: "/v1/notifications", summary: "Report a failure (409 for a duplicate within 180 s or a host on maintenance)", tag: "notifications", body: Some(schema::<NotificationSpec>), ok: (201, Some(schema::<Notification>)) },
        Route { method: "get", path: "/v1/notifications/{id}", summary: "Show a notification with its recovery steps and vmoves", tag: "notifications", body: None, ok: (200, Some(schema::<Notification>)) },
        Route { method: "get", path: "/v1/events", summary: "Server-sent events: one `change` per applied change after `?since=INDEX`; `reset` when history was dropped; `follow=false` stops after the backlog", tag: "events", body: None, ok: (200, None) },
        Route { method: "get", path: "/v1/status", summary: "This agent, the Raft state (leader, term, log index, voters) and a membership summary", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/servers", summary: "Control-plane voters and learners", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "post", path: "/v1/servers", summary: "Add a running --server agent (`{\"name\": ...}`) to the voters", tag: "cluster", body: Some(any_object), ok: (200, Some(any_object)) },
        Route { method: "delete", path: "/v1/servers/{name}", summary: "Remove a server from the voters", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/settings", summary: "Cluster-wide settings: the lease timing every leader grants (`ttl_ms`, `drift_margin_ms`, `stop_grace_ms`: how long past its lease's end a host may still stop OCF resources before it kills them, and the ceilings `ceiling_ms` and `stop_grace_ceiling_ms`, the longest ever set, which a new leader waits out)", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "put", path: "/v1/settings/lease", summary: "Set the cluster's lease timing (`{\"ttl\": \"5s\", \"drift_margin\": \"500ms\", \"stop_grace\": \"3s\"}`; the margin defaults to a tenth of the TTL, the TTL and the grace to what is set)", tag: "cluster", body: Some(any_object), ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/lease", summary: "This agent's own lease: held, until (wall clock), remaining_ms, ttl_ms", tag: "leases", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/leases", summary: "The leader's view of every host's lease: ends_at, fenced_at (end plus the drift margin), expired", tag: "leases", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/supervisor", summary: "The instances this agent runs or ran: phase (starting, running, restarting, stopping, stopped, failed), epoch, pid, reason, exit_code, restarts; and `balancers`: each HAProxy backend its load balancer copies keep in sync (admin_socket, backend, servers, the last error, failures)", tag: "leases", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/instances/{id}/logs", summary: "The instance's output (text), relayed from the host that runs it: `tail` lines (default 100), `follow=true` to keep streaming, `replica` for clones", tag: "instances", body: None, ok: (200, None) },
        Route { method: "get", path: "/v1/supervisor/logs/{name}", summary: "The output of instance `name` on this agent's host (`tail`, `follow`)", tag: "leases", body: None, ok: (200, None) },
        Route { method: "get", path: "/v1/observed", summary: "What every host last reported about its instances (phase, epoch, since, reason, exit_code, restarts); `?instance=NAME` filters", tag: "instances", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/attributes", summary: "The attribute store the OCF agents write through Buoy's Pacemaker tool shims (promotion scores `master-RESOURCE`, node attributes, cluster properties): scope, node, set, name, value, updated_at; `?node=N` and `?name=A` filter", tag: "instances", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/members", summary: "Gossip membership as this agent sees it", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/health", summary: "Liveness of this agent", tag: "cluster", body: None, ok: (200, Some(any_object)) },
        Route { method: "post", path: "/v1/hosts/{id}/enable", summary: "Return a failed host to service once it is back (alive in gossip, renewing its lease); 409 otherwise", tag: "hosts", body: None, ok: (200, Some(any_object)) },
        Route { method: "post", path: "/v1/hosts/{id}/fence", summary: "Run the host's fence device (fence-agents stdin protocol) with `{\"action\": \"off\"}` (default), on, reboot, status, monitor, metadata or list; a confirmed off or reboot marks the host fenced and its instances move", tag: "hosts", body: None, ok: (200, Some(any_object)) },
        Route { method: "post", path: "/v1/instances/{id}/reset", summary: "Forget where the instance's copies failed (like Pacemaker's cleanup); a copy blocked where it failed starts again there under a new epoch. Answers failures_cleared and copies_restarted", tag: "instances", body: None, ok: (200, Some(any_object)) },
        Route { method: "post", path: "/v1/alertmanager/webhook", summary: "Prometheus Alertmanager's webhook (payload version 4; admin token in the receiver's http_config): instances whose scale rules match an alert grow while it fires and shrink after the cool-down once it resolves. Answers which instances matched and what changed", tag: "instances", body: Some(schema::<crate::alertmanager::Webhook>), ok: (200, Some(any_object)) },
        Route { method: "get", path: "/v1/segments/{id}/capacity", summary: "Failover headroom (admission control): capacity, the reserve of the `tolerate_host_failures` largest hosts, what started instances use, and what is left", tag: "segments", body: None, ok: (200, Some(schema::<model::capacity::Headroom>)) },
        Route { method: "get", path: "/v1/openapi.json", summary: "This document", tag: "cluster", body: None, ok: (200, Some(any_object)) },
    ]);
    r
}

/// The error body every endpoint uses.
fn error_schema() -> Value {
    json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string", "example": "invalid"},
        "message": {"type": "string"},
        "field": {"type": ["string", "null"], "example": "health_checks[0].port"}}}}})
}

/// The create (POST) bodies whose spec also serves updates, where every field is optional:
/// the fields a create needs.
const CREATE_REQUIRED: &[(&str, &str, &[&str])] = &[
    ("/v1/segments", "SegmentSpec", &["name"]),
    ("/v1/hosts", "HostSpec", &["name", "segment"]),
    (
        "/v1/instances",
        "InstanceSpec",
        &["name", "segment", "driver"],
    ),
    ("/v1/placements", "PlacementSpec", &["instance", "host"]),
];

/// `spec` with `required` fields that may not be null.
fn creating(spec: &Value, required: &[&str]) -> Value {
    let mut s = spec.clone();
    s["required"] = json!(required);
    for field in required {
        let p = &mut s["properties"][*field];
        // `type: [T, "null"]` becomes `type: T`; `anyOf: [{$ref}, {type: null}]` the reference.
        if let Some(types) = p["type"].as_array() {
            let kept: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            p["type"] = if kept.len() == 1 {
                kept[0].clone()
            } else {
                Value::Array(kept)
            };
        }
        if let Some(any) = p["anyOf"].as_array()
            && let Some(r) = any.iter().find(|a| a["$ref"].is_string())
        {
            *p = r.clone();
        }
    }
    s
}

/// A flattened enum (`oneOf` branches beside shared `properties`) refuses unknown fields, as
/// serde does: each branch gets the shared properties and `additionalProperties: false`.
fn close_flattened(schema: &mut Value) {
    let shared = schema
        .as_object_mut()
        .and_then(|o| o.remove("properties"))
        .unwrap_or_else(|| json!({}));
    if let Some(branches) = schema["oneOf"].as_array_mut() {
        for b in branches {
            if let (Some(props), Some(extra)) =
                (b["properties"].as_object_mut(), shared.as_object())
            {
                props.extend(extra.clone());
            }
            b["additionalProperties"] = json!(false);
        }
    }
}

/// Bodies too small for a type of their own.
fn small_bodies() -> Vec<(&'static str, &'static str, Value)> {
    let duration = json!({"type": "string", "pattern": model::duration_text::PATTERN});
    vec![
        (
            "/v1/settings/lease",
            "put",
            json!({"type": "object", "additionalProperties": false, "properties": {
                "ttl": duration, "drift_margin": duration, "stop_grace": duration}}),
        ),
        (
            "/v1/servers",
            "post",
            json!({"type": "object", "additionalProperties": false, "required": ["name"], "properties": {
                "name": {"type": "string", "description": "A running agent started with --server"}}}),
        ),
    ]
}

/// Gives every integer the bounds of its Rust type (`format: uint32` says nothing to a JSON
/// Schema validator; `maximum` does).
fn bound_integers(v: &mut Value) {
    match v {
        Value::Object(o) => {
            let bounds: Option<(i128, i128)> = match o.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((0, u8::MAX.into())),
                Some("uint16") => Some((0, u16::MAX.into())),
                Some("uint32") => Some((0, u32::MAX.into())),
                Some("uint64") => Some((0, u64::MAX.into())),
                Some("int32") => Some((i32::MIN.into(), i32::MAX.into())),
                Some("int64") => Some((i64::MIN.into(), i64::MAX.into())),
                _ => None,
            };
            if let Some((lo, hi)) = bounds {
                o.entry("minimum").or_insert_with(|| json!(lo as i64));
                let hi = u64::try_from(hi).map_or(json!(i64::MAX), |h| json!(h));
                o.entry("maximum").or_insert(hi);
            }
            o.values_mut().for_each(bound_integers);
        }
        Value::Array(a) => a.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Builds the whole document.
pub fn document() -> Value {
    // OpenAPI 3.1 takes JSON Schema 2020-12 as it is (`propertyNames` for label keys, `null`
    // as a type).
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut g = settings.into_generator();
    let mut paths: Map<String, Value> = Map::new();
    for r in routes() {
        let mut op = json!({
            "summary": r.summary,
            "tags": [r.tag],
            "responses": {
                "default": {"description": "An error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
            }
        });
        let ok = match r.ok.1 {
            Some(f) => {
                json!({"description": "Success", "content": {"application/json": {"schema": f(&mut g)}}})
            }
            None => json!({"description": "Success"}),
        };
        op["responses"][r.ok.0.to_string()] = ok;
        if let Some(f) = r.body {
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": f(&mut g)}}});
        }
        if let Some(params) = path_parameters(r.path) {
            op["parameters"] = params;
        }
        let entry = paths.entry(r.path.to_string()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    let mut schemas = g.take_definitions(true);
    schemas.insert("Error".into(), error_schema());
    for (path, spec, required) in CREATE_REQUIRED {
        let name = format!("{}Create", spec.trim_end_matches("Spec"));
        if let Some(s) = schemas.get(*spec) {
            schemas.insert(name.clone(), creating(s, required));
            paths[*path]["post"]["requestBody"]["content"]["application/json"]["schema"] =
                json!({"$ref": format!("#/components/schemas/{name}")});
        }
    }
    // A placement moves (its host changes); its instance and replica never do.
    if let Some(s) = schemas.get("PlacementSpec") {
        let mut mv = s.clone();
        if let Some(props) = mv["properties"].as_object_mut() {
            props.retain(|k, _| k == "host");
        }
        mv["description"] = json!("Moves a placement to another host (by name or id).");
        schemas.insert("PlacementMove".into(), mv);
        for method in ["patch", "put"] {
            paths["/v1/placements/{id}"][method]["requestBody"]["content"]["application/json"]["schema"] =
                json!({"$ref": "#/components/schemas/PlacementMove"});
        }
    }
    for (path, method, schema) in small_bodies() {
        paths[path][method]["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": schema}}});
    }
    // Open to anyone, tokens or not: liveness for load balancers and supervisors.
    paths["/v1/health"]["get"]["security"] = json!([]);
    for op in paths.values_mut().filter_map(Value::as_object_mut) {
        for op in op.values_mut() {
            op["responses"]["422"] = json!({"description": "Well-formed, but refused by a rule the schema cannot state: a reference to an object that does not exist, or a rule between fields", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        }
    }
    // The fence device is a program outside Buoy: when it cannot run or fails the action, the
    // request failed because what it depends on failed (424), naming the agent and its exit.
    paths["/v1/hosts/{id}/fence"]["post"]["responses"]["424"] = json!({"description": "The host's fence agent could not run or failed the action (`fence_failed`); the message names the agent, its exit code and its stderr. The host is not marked fenced", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
    if let Some(h) = schemas.get_mut("HealthCheck") {
        close_flattened(h);
    }
    let mut schemas = Value::Object(schemas);
    bound_integers(&mut schemas);
    envelope(
        json!({
            "title": "Buoy control-plane API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Every agent serves it; calls that need the control-plane leader are relayed to it. With a tokens file, send `Authorization: Bearer TOKEN` (read tokens may only GET). The Masakari-compatible API lives under /masakari/v1.",
        }),
        paths,
        schemas,
    )
}

/// An OpenAPI 3.1 document of `paths` and `schemas`, behind bearer tokens.
pub fn envelope(info: Value, paths: Map<String, Value>, schemas: Value) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": info,
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    })
}

/// The parameters of the `{name}` segments of `path`, if any.
pub fn path_parameters(path: &str) -> Option<Value> {
    let params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect();
    (!params.is_empty()).then_some(Value::Array(params))
}

/// `GET /v1/openapi.json` (built once: the types do not change while the agent runs).
pub async fn serve() -> Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

/// The (method, path) of every documented route, for the test that each one is served.
#[cfg(test)]
pub fn documented() -> Vec<(&'static str, &'static str)> {
    routes().into_iter().map(|r| (r.method, r.path)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_with_schemas_from_the_types() {
        let d = document();
        assert_eq!(d["openapi"], "3.1.0");
        for (method, path) in documented() {
            assert!(d["paths"][path][method].is_object(), "{method} {path}");
        }
        let schemas = &d["components"]["schemas"];
        // Fields come from the Rust types: a new field appears here by itself.
        assert!(
            schemas["Segment"]["properties"]["recovery_method"].is_object(),
            "{schemas}"
        );
        assert!(schemas["InstanceSpec"]["properties"]["health_checks"].is_object());
        assert!(schemas["Host"]["properties"]["capacity"].is_object());
        assert!(schemas["Timestamp"]["pattern"].is_string());
        let refs = d.to_string().matches("#/components/schemas/").count();
        assert!(
            refs > 20,
            "operations refer to shared schemas ({refs} refs)"
        );
    }
}
