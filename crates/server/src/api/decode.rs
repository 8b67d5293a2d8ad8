//! Request bodies: fresh ids, specs decoded with the offending field named, and the
//! version an update expects.

use super::error::{ApiResult, bad_request};
use super::strict_value::StrictValue;
use axum::http::HeaderMap;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Decodes a JSON object body into `S`, naming the offending field on error. Read-only
/// fields (`id`, timestamps, the leader's `membership` and `scaling`) are dropped; `version` is returned apart, for concurrency checks.
pub fn decode_spec<S: DeserializeOwned>(body: &[u8]) -> ApiResult<(S, Option<u64>)> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(None, &format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(bad_request(None, "the body must be a JSON object"));
    };
    for read_only in ["id", "created_at", "updated_at", "membership", "scaling"] {
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

/// Decodes a JSON object into `S`, naming the offending field on error. Structs are read
/// from objects only, as the document says ([`StrictValue`]).
pub fn decode_map<S: DeserializeOwned>(map: Map<String, Value>) -> ApiResult<S> {
    let mut map = map;
    for (field, value) in map.iter_mut() {
        if !FREE_FORM.contains(&field.as_str()) {
            integral_floats(value);
        }
    }
    serde_path_to_error::deserialize(StrictValue(Value::Object(map))).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let field = (path != ".").then_some(path);
        bad_request(field.as_deref(), &inner)
    })
}

/// The fields whose values are the client's own JSON (an instance's `params`, a
/// notification's `payload`): stored as sent, `2.0` included.
const FREE_FORM: [&str; 2] = ["params", "payload"];

/// JSON Schema counts `2.0` as an integer, and so does the API: a number without a fraction
/// is read as an integer wherever one is expected. (Done on the value before decoding: serde
/// reads internally tagged enums such as health checks through a buffer that no deserializer
/// method of ours sees, so it cannot be done per field.)
fn integral_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(integral_floats),
        Value::Object(o) => o.values_mut().for_each(integral_floats),
        _ => {}
    }
}

/// The version an update or delete expects: `If-Match` header, else the body or `?version=`.
pub fn expected_version(headers: &HeaderMap, other: Option<u64>) -> ApiResult<Option<u64>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use model::host::HostSpec;
    use model::instance::InstanceSpec;
    use model::notification::NotificationSpec;
    use model::segment::SegmentSpec;
    use proptest::prelude::*;
    use serde_json::json;

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
                "params": {"command": "sleep", "args": ["1"]}, "cpu": f64::from(cpu) / 1000.0,
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

    #[test]
    fn integral_floats_are_integers_except_in_the_clients_own_json() {
        let body = json!({"name": "web", "max_restarts": 3.0, "params": {"ratio": 2.0},
            "health_checks": [{"type": "http", "port": 165.0}]});
        let Value::Object(map) = body else {
            unreachable!()
        };
        let spec: InstanceSpec = decode_map(map).unwrap();
        assert_eq!(spec.max_restarts, Some(3));
        let params = spec.params.unwrap();
        assert!(params["ratio"].is_f64(), "params keep 2.0: {params:?}");
        let port = serde_json::to_value(&spec.health_checks.unwrap()[0]).unwrap()["port"].clone();
        assert_eq!(port, json!(165));
    }

    /// Found by schemathesis in CI: `"memory_mb": 4340244467703318.0` (a whole number, so an
    /// integer to JSON Schema) was read as 4340244467703318.5 by serde_json's fast float
    /// parser and refused. The server parses floats exactly (`float_roundtrip`).
    #[test]
    fn a_large_whole_float_is_read_exactly_and_taken_as_an_integer() {
        let text = r#"{"name": "h", "segment": "s", "capacity": {"cpu": 437.235, "memory_mb": 4340244467703318.0}}"#;
        let Value::Object(map) = serde_json::from_str::<Value>(text).unwrap() else {
            unreachable!()
        };
        let spec: HostSpec = decode_map(map).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            spec.capacity.unwrap().memory_mb,
            Some(4_340_244_467_703_318)
        );
    }
}
