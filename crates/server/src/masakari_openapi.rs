//! `GET /masakari/v1/openapi.json`: the OpenAPI document of the Masakari-compatible API, so
//! that it can be fuzzed like Buoy's own (Masakari publishes no such document). Its bodies are
//! Buoy's own specs wrapped the Masakari way (`{"segment": {...}}`), so the schemas come from
//! Buoy's document ([`crate::api::openapi::document`]).

use axum::Json;
use serde_json::{Map, Value, json};

use crate::api::openapi;

/// (path, method, summary, wrapped body (key, schema), success status, open to all).
type Route = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
    u16,
    bool,
);

/// `{key: schema}`, nothing else.
fn wrapped(key: &str, schema: &str) -> Value {
    json!({"type": "object", "additionalProperties": false, "required": [key],
        "properties": {key: {"$ref": format!("#/components/schemas/{schema}")}}})
}

/// Builds the whole document.
pub fn document() -> Value {
    let buoy = openapi::document();
    let mut schemas = buoy["components"]["schemas"].clone();
    // A host is created inside the segment its path names: the body needs only the name.
    if let Some(spec) = schemas.get("HostSpec").cloned() {
        let mut create = spec;
        create["required"] = json!(["name"]);
        create["properties"]["name"] = schemas["HostCreate"]["properties"]["name"].clone();
        schemas["MasakariHostCreate"] = create;
    }
    let object = json!({"description": "Success", "content": {"application/json": {"schema": {"type": "object"}}}});
    let deleted = json!({"description": "Deleted"});
    let op = |summary: &str, body: Option<Value>, status: u16, open: bool| {
        let mut o = json!({"summary": summary, "responses": {
            "default": {"description": "A Masakari error: {\"badRequest\": {\"code\", \"message\"}}, itemNotFound, conflictingRequest, unauthorized",
                "content": {"application/json": {"schema": {"type": "object"}}}}}});
        o["responses"][status.to_string()] = if status == 204 {
            deleted.clone()
        } else {
            object.clone()
        };
        if let Some(b) = body {
            o["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": b}}});
        }
        if open {
            o["security"] = json!([]);
        }
        o
    };
    let mut paths = Map::new();
    let mut add = |path: &str, method: &str, o: Value| {
        let mut o = o;
        if let Some(params) = openapi::path_parameters(path) {
            o["parameters"] = params;
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[method] = o;
    };
    let routes: [Route; 17] = [
        ("/", "get", "API versions", None, 200, true),
        ("/v1", "get", "This API version", None, 200, true),
        ("/v1/segments", "get", "List segments", None, 200, false),
        (
            "/v1/segments",
            "post",
            "Create a segment",
            Some(("segment", "SegmentCreate")),
            201,
            false,
        ),
        (
            "/v1/segments/{segment_id}",
            "get",
            "Show a segment",
            None,
            200,
            false,
        ),
        (
            "/v1/segments/{segment_id}",
            "put",
            "Change a segment",
            Some(("segment", "SegmentSpec")),
            200,
            false,
        ),
        (
            "/v1/segments/{segment_id}",
            "delete",
            "Delete a segment",
            None,
            204,
            false,
        ),
        (
            "/v1/segments/{segment_id}/hosts",
            "get",
            "List a segment's hosts",
            None,
            200,
            false,
        ),
        (
            "/v1/segments/{segment_id}/hosts",
            "post",
            "Add a host to the segment",
            Some(("host", "MasakariHostCreate")),
            201,
            false,
        ),
        (
            "/v1/segments/{segment_id}/hosts/{host_id}",
            "get",
            "Show a host",
            None,
            200,
            false,
        ),
        (
            "/v1/segments/{segment_id}/hosts/{host_id}",
            "put",
            "Change a host",
            Some(("host", "HostSpec")),
            200,
            false,
        ),
        (
            "/v1/segments/{segment_id}/hosts/{host_id}",
            "delete",
            "Delete a host",
            None,
            204,
            false,
        ),
        (
            "/v1/notifications",
            "get",
            "List notifications",
            None,
            200,
            false,
        ),
        (
            "/v1/notifications",
            "post",
            "Report a failure",
            Some(("notification", "NotificationSpec")),
            202,
            false,
        ),
        (
            "/v1/notifications/{notification_id}",
            "get",
            "Show a notification",
            None,
            200,
            false,
        ),
        (
            "/v1/notifications/{notification_id}/vmoves",
            "get",
            "List a notification's VM moves",
            None,
            200,
            false,
        ),
        (
            "/v1/notifications/{notification_id}/vmoves/{vmove_id}",
            "get",
            "Show a VM move",
            None,
            200,
            false,
        ),
    ];
    for (path, method, summary, body, status, open) in routes {
        add(
            path,
            method,
            op(summary, body.map(|(k, s)| wrapped(k, s)), status, open),
        );
    }
    add_links(&mut paths);
    openapi::envelope(
        json!({
            "title": "Buoy's Masakari-compatible API",
            "version": "1.2",
            "description": "Masakari's instance-HA API (v1.2) as Buoy serves it. Without Keystone: with a tokens file, send `Authorization: Bearer TOKEN` (or `X-Auth-Token`). A request Buoy cannot apply (a reference to a missing object) is a 400, as in Masakari.",
        }),
        paths,
        schemas,
    )
}

/// OpenAPI links from each create to the operations on what it created, so a client (or a
/// fuzzer's stateful phase) knows the id is `uuid` inside Masakari's wrapper: guessed from the
/// parameter's name alone, `{host}` was taken to be the whole `host` object. The path
/// parameters are named as in Masakari's API reference (`segment_id`, `host_id`...), which
/// also keeps them apart from the body's `host` and `segment` keys.
/// A create operation's links: (its path, its success status, the operations it leads to as
/// (path, methods), and each path parameter's runtime expression).
type Links = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
    &'static [(&'static str, &'static str)],
);

fn add_links(paths: &mut Map<String, Value>) {
    let links: [Links; 3] = [
        (
            "/v1/segments",
            "201",
            &[
                ("/v1/segments/{segment_id}", &["get", "put", "delete"]),
                ("/v1/segments/{segment_id}/hosts", &["get", "post"]),
            ],
            &[("segment_id", "$response.body#/segment/uuid")],
        ),
        (
            "/v1/segments/{segment_id}/hosts",
            "201",
            &[(
                "/v1/segments/{segment_id}/hosts/{host_id}",
                &["get", "put", "delete"],
            )],
            &[
                ("segment_id", "$request.path.segment_id"),
                ("host_id", "$response.body#/host/uuid"),
            ],
        ),
        (
            "/v1/notifications",
            "202",
            &[
                ("/v1/notifications/{notification_id}", &["get"]),
                ("/v1/notifications/{notification_id}/vmoves", &["get"]),
            ],
            &[(
                "notification_id",
                "$response.body#/notification/notification_uuid",
            )],
        ),
    ];
    for (from, status, targets, params) in links {
        let mut out = Map::new();
        for (path, methods) in targets {
            for method in *methods {
                let pointer = format!("#/paths/{}/{method}", path.replace('/', "~1"));
                let name = format!("{method}{}", path.replace(['/', '{', '}'], "_"));
                let parameters: Map<String, Value> = params
                    .iter()
                    .filter(|(p, _)| path.contains(&format!("{{{p}}}")))
                    .map(|(p, e)| (p.to_string(), json!(e)))
                    .collect();
                out.insert(
                    name,
                    json!({"operationRef": pointer, "parameters": parameters}),
                );
            }
        }
        paths[from]["post"]["responses"][status]["links"] = Value::Object(out);
    }
}

/// `GET /masakari/v1/openapi.json` (built once).
pub async fn serve() -> Json<Value> {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    Json(DOCUMENT.get_or_init(document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_link_points_at_an_operation_and_fills_its_path_parameters() {
        let doc = document();
        let mut count = 0;
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                for (status, response) in op["responses"].as_object().unwrap() {
                    let Some(links) = response.get("links").and_then(Value::as_object) else {
                        continue;
                    };
                    for (name, link) in links {
                        let pointer = link["operationRef"].as_str().unwrap();
                        let target = doc.pointer(&pointer[1..]).unwrap_or_else(|| {
                            panic!("{method} {path} {status} {name}: {pointer}")
                        });
                        for p in target["parameters"].as_array().unwrap_or(&vec![]) {
                            let p = p["name"].as_str().unwrap();
                            assert!(
                                link["parameters"].get(p).is_some(),
                                "{name} leaves `{p}` of {pointer} unset"
                            );
                        }
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, 10, "links in the document");
    }
}
