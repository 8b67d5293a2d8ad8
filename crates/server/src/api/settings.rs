//! Cluster-wide settings kept in the replicated state: the lease timing (rule S1).

use super::StateApi;
use super::error::{ApiResult, bad_request};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use model::{LeaseSettings, Op};
use serde_json::{Value, json};

/// `GET /v1/settings`: the cluster's settings (the lease timing is null until the first
/// leader has written its own).
pub async fn show(State(api): State<StateApi>) -> Response {
    match api.read(|st| st.lease()).await {
        Ok(lease) => Json(json!({"lease": lease})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `PUT /v1/settings/lease` with `{"ttl": "5s", "drift_margin": "500ms"}` (the margin defaults
/// to a tenth of the TTL): every leader grants this TTL from now on. The ceiling a new leader
/// waits out keeps the longest TTL ever set.
pub async fn set_lease(State(api): State<StateApi>, body: Bytes) -> Response {
    let result: ApiResult<Value> = async {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| bad_request(None, &format!("the body is not valid JSON: {e}")))?;
        let Some(fields) = v.as_object() else {
            return Err(bad_request(
                None,
                "expected an object like {\"ttl\": \"5s\"}",
            ));
        };
        if let Some(k) = fields
            .keys()
            .find(|k| !["ttl", "drift_margin"].contains(&k.as_str()))
        {
            return Err(bad_request(
                Some(k),
                &format!("unknown field `{k}`: expected ttl and drift_margin"),
            ));
        }
        let duration = |field: &str| -> ApiResult<Option<std::time::Duration>> {
            match v.get(field) {
                None => Ok(None),
                Some(Value::String(s)) => model::duration_text::parse(s)
                    .map(Some)
                    .map_err(|e| bad_request(Some(field), &format!("{field}: {e}"))),
                Some(other) => Err(bad_request(
                    Some(field),
                    &format!(
                        "{field}: expected a duration such as \"5s\" or \"500ms\", got {other}"
                    ),
                )),
            }
        };
        let ttl = duration("ttl")?
            .ok_or_else(|| bad_request(Some("ttl"), "ttl is required, e.g. {\"ttl\": \"5s\"}"))?;
        let drift = duration("drift_margin")?.unwrap_or(ttl / 10);
        LeaseSettings::validate(ttl, drift).map_err(|e| super::error::state_error(&e))?;
        api.propose(Op::SetLease {
            ttl_ms: ttl.as_millis() as u64,
            drift_margin_ms: drift.as_millis() as u64,
        })
        .await?;
        let lease = api.read(|st| st.lease()).await?;
        Ok(json!({"lease": lease}))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
