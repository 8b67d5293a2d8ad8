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

/// `PUT /v1/settings/lease` with `{"ttl": "5s", "drift_margin": "500ms", "stop_grace": "3s"}`
/// (the margin defaults to a tenth of the TTL; the TTL and the grace to what is set): every
/// leader grants this TTL and stop grace from now on. The ceilings a new leader waits out keep
/// the longest TTL and grace ever set.
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
            .find(|k| !["ttl", "drift_margin", "stop_grace"].contains(&k.as_str()))
        {
            return Err(bad_request(
                Some(k),
                &format!("unknown field `{k}`: expected ttl, drift_margin and stop_grace"),
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
        let current = api.read(|st| st.lease()).await?;
        let ttl = match (duration("ttl")?, current) {
            (Some(t), _) => t,
            (None, Some(c)) => c.ttl(),
            (None, None) => {
                return Err(bad_request(
                    Some("ttl"),
                    "ttl is required until the lease timing is set, e.g. {\"ttl\": \"5s\"}",
                ));
            }
        };
        let drift = duration("drift_margin")?.unwrap_or(ttl / 10);
        let grace = duration("stop_grace")?;
        LeaseSettings::validate(ttl, drift).map_err(|e| super::error::state_error(&e))?;
        if let Some(g) = grace {
            LeaseSettings::validate_stop_grace(g).map_err(|e| super::error::state_error(&e))?;
        }
        api.propose(Op::SetLease {
            ttl_ms: ttl.as_millis() as u64,
            drift_margin_ms: drift.as_millis() as u64,
            stop_grace_ms: grace.map(|g| g.as_millis() as u64),
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
