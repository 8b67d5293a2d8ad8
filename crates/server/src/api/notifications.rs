//! Notifications: failure reports and the recoveries they caused (shared with the
//! Masakari-compatible API).

use std::collections::BTreeMap;

use super::StateApi;
use super::decode::decode_spec;
use super::error::{ApiError, ApiResult, not_found, state_error};
use super::paging::paginate;
use crate::ids::new_id;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::notification::{Notification, NotificationSpec};
use model::{ClusterState, Expect, Kind, Object, ObjectMeta, Op};

/// Creates a notification from `spec`; shared with the Masakari-compatible endpoint.
pub async fn submit_notification(
    api: &StateApi,
    spec: NotificationSpec,
) -> ApiResult<Notification> {
    let meta = ObjectMeta {
        id: new_id(),
        ..Default::default()
    };
    let n = Notification::create(meta, 0, &spec).map_err(|e| state_error(&e))?;
    match api
        .propose(Op::Put {
            object: Box::new(Object::Notification(n)),
            expect: Expect::Absent,
        })
        .await?
    {
        Some(Object::Notification(n)) => Ok(n),
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the notification was not stored",
            None,
        )),
    }
}

/// Every notification, newest first.
pub fn newest_first(st: &ClusterState) -> Vec<Notification> {
    let mut all: Vec<Notification> = st.notifications().cloned().collect();
    all.sort_by_key(|n| std::cmp::Reverse(n.serial));
    all
}

/// One notification by id.
pub async fn one_notification(api: &StateApi, id: &str) -> ApiResult<Notification> {
    api.read(|st| st.notification(id).cloned())
        .await?
        .ok_or_else(|| not_found(Kind::Notification, id))
}

pub async fn create_notification(State(api): State<StateApi>, body: Bytes) -> Response {
    let result = async {
        let (spec, _) = decode_spec::<NotificationSpec>(&body)?;
        submit_notification(&api, spec).await
    }
    .await;
    match result {
        Ok(n) => (
            StatusCode::CREATED,
            Json(api.view(&Object::Notification(n))),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn list_notifications(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = api
        .read_large(move |api, st| {
            let views = newest_first(st)
                .into_iter()
                .map(|n| api.view(&Object::Notification(n)))
                .collect();
            paginate(
                views,
                &params,
                &["hostname", "type", "status", "source_host", "segment"],
                "notifications",
            )
        })
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn show_notification(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    match one_notification(&api, &id).await {
        Ok(n) => Json(api.view(&Object::Notification(n))).into_response(),
        Err(e) => e.into_response(),
    }
}
