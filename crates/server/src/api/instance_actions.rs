//! Operator actions on an instance, run on the leader:
//!
//! - `POST /v1/instances/{id}/reset`: forgets where its copies failed (like Pacemaker's
//!   cleanup), so recovery may use those hosts again; a copy blocked on the host where it
//!   failed starts there again under a new epoch (`engine::failures::reset`).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use model::{Expect, Kind, Object, Op};
use serde_json::json;

use crate::api::{ApiError, StateApi, state_error};

/// `POST /v1/instances/{id}/reset` (leader only, admin token).
pub async fn reset(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    let result = async {
        let (name, placements) = api
            .read(|st| {
                let i = st
                    .resolve(Kind::Instance, &id)
                    .and_then(|i| st.instance(&i).cloned())?;
                let ps: Vec<_> = st
                    .placements()
                    .filter(|p| p.instance == i.meta.id)
                    .cloned()
                    .collect();
                Some((i.name, ps))
            })
            .await?
            .ok_or_else(|| {
                state_error(&model::StateError::NotFound {
                    kind: Kind::Instance,
                    id: id.clone(),
                })
            })?;
        let mut cleared = 0;
        let mut restarted = 0;
        for p in &placements {
            let Some(next) = engine::failures::reset(p) else {
                continue;
            };
            if next.attempt != p.attempt {
                restarted += 1;
            }
            cleared += p.failures.len();
            api.propose(Op::Put {
                object: Box::new(Object::Placement(next)),
                expect: Expect::Version(p.meta.version),
            })
            .await?;
        }
        Ok::<_, ApiError>(Json(json!({
            "instance": name,
            "failures_cleared": cleared,
            "copies_restarted": restarted,
        })))
    }
    .await;
    match result {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    }
}
