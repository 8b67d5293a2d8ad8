//! `POST /v1/alertmanager/webhook`: Prometheus Alertmanager's webhook receiver (leader only,
//! admin token: configure the receiver's `http_config.authorization`). Every instance with a
//! scale policy takes the alerts its rules match (`engine::scaling::on_alerts`); the new
//! count and the record of who asked and why are written with the instance.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use model::{Expect, Object, Op, Timestamp};
use serde_json::{Value, json};
use tracing::info;

use crate::api::error::bad_request;
use crate::api::{ApiError, StateApi};

/// Writes lost to a concurrent change of the same instance are tried again this often.
const ATTEMPTS: usize = 3;

/// `POST /v1/alertmanager/webhook`.
pub async fn receive(State(api): State<StateApi>, body: Bytes) -> Response {
    match receive_inner(&api, &body).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn receive_inner(api: &StateApi, body: &[u8]) -> Result<Value, ApiError> {
    let (receiver, alerts) =
        crate::alertmanager::parse(body).map_err(|e| bad_request(Some(&e.field), &e.message))?;
    let by = if receiver.is_empty() {
        "alertmanager".to_string()
    } else {
        format!("alertmanager receiver `{receiver}`")
    };
    let names: Vec<String> = api
        .read(|st| {
            st.instances()
                .filter(|i| i.scale.is_some())
                .map(|i| i.name.clone())
                .collect()
        })
        .await?;
    let mut matched_any = vec![false; alerts.len()];
    let mut instances = Vec::new();
    for name in names {
        for attempt in 1..=ATTEMPTS {
            let Some(i) = api.read_local(|st| st.instances().find(|i| i.name == name).cloned())?
            else {
                break;
            };
            for (k, a) in alerts.iter().enumerate() {
                if engine::scaling::Policy::of(&i).is_some_and(|p| p.rule_for(a).is_some()) {
                    matched_any[k] = true;
                }
            }
            let out = engine::scaling::on_alerts(&i, &alerts, &by, Timestamp::now());
            if out.matched > 0 {
                instances.push(json!({
                    "instance": name,
                    "alerts_matched": out.matched,
                    "replicas": out.instance.as_ref().map_or(i.copies(), |n| n.copies()),
                    "scaled": out.decision.as_ref().map(|d| json!({"from": d.from, "to": d.to, "why": d.why})),
                }));
            }
            let Some(next) = out.instance else { break };
            if let Some(d) = &out.decision {
                info!(instance = %name, from = d.from, to = d.to, by = %by, why = %d.why, "scale policy: copy count changes");
            }
            match api
                .propose(Op::Put {
                    object: Box::new(Object::Instance(next)),
                    expect: Expect::Version(i.meta.version),
                })
                .await
            {
                Ok(_) => break,
                Err(e) if e.code == "version_mismatch" && attempt < ATTEMPTS => {
                    instances.pop();
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(json!({
        "receiver": receiver,
        "alerts": alerts.len(),
        "unmatched": matched_any.iter().filter(|m| !**m).count(),
        "instances": instances,
    }))
}
