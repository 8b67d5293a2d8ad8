//! Create, list, show, update and delete of the resource kinds (segments, hosts, instances,
//! placements), one generic handler each, and a segment's capacity.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::{Expect, Kind, Object, ObjectMeta, Op};

use super::StateApi;
use super::decode::{decode_spec, expected_version};
use super::error::{ApiError, ApiResult, bad_request, not_found, state_error};
use super::paging::list_page;
use super::resources::Resource;
use crate::ids::new_id;

pub async fn list<R: Resource>(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = api
        .read_large(move |api, st| list_page(api, st, R::KIND, &params, R::FILTERS, R::PLURAL))
        .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

impl StateApi {
    /// Finds an object of `kind` by id or name.
    pub async fn find(&self, kind: Kind, id_or_name: &str) -> ApiResult<Object> {
        self.read(|st| {
            st.resolve(kind, id_or_name)
                .and_then(|id| st.get(kind, &id))
        })
        .await?
        .ok_or_else(|| not_found(kind, id_or_name))
    }
}

pub async fn show<R: Resource>(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    match api.find(R::KIND, &id).await {
        Ok(o) => Json(api.view(&o)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn create<R: Resource>(State(api): State<StateApi>, body: Bytes) -> Response {
    let result = async {
        let (spec, _) = decode_spec::<R::Spec>(&body)?;
        let meta = ObjectMeta {
            id: new_id(),
            ..Default::default()
        };
        let object = api
            .read_local(|st| R::create(meta, &spec, st))?
            .map_err(|e| state_error(&e))?;
        let stored = api
            .propose(Op::Put {
                object: Box::new(object),
                expect: Expect::Absent,
            })
            .await?;
        Ok::<_, ApiError>(stored)
    }
    .await;
    match result {
        Ok(Some(o)) => (StatusCode::CREATED, Json(api.view(&o))).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn update<R: Resource>(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = async {
        let (spec, body_version) = decode_spec::<R::Spec>(&body)?;
        let expected = expected_version(&headers, body_version)?;
        // Without a version from the client, re-read and retry when someone else won a race.
        for _ in 0..5 {
            let current = api.find(R::KIND, &id).await?;
            let version = current.meta().version;
            let next = api
                .read_local(|st| R::update(current, &spec, st))?
                .map_err(|e| state_error(&e))?;
            let op = Op::Put {
                object: Box::new(next),
                expect: Expect::Version(expected.unwrap_or(version)),
            };
            match api.propose(op).await {
                Err(e) if expected.is_none() && e.status == StatusCode::PRECONDITION_FAILED => {
                    continue;
                }
                other => return other,
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "busy",
            "the object kept changing under this update; retry",
            None,
        ))
    }
    .await;
    match result {
        Ok(Some(o)) => Json(api.view(&o)).into_response(),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn delete<R: Resource>(
    State(api): State<StateApi>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let result = async {
        let query_version =
            match params.get("version") {
                None => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    bad_request(Some("version"), "version must be a positive integer")
                })?),
            };
        let version = expected_version(&headers, query_version)?;
        let current = api.find(R::KIND, &id).await?;
        api.propose(Op::Delete {
            kind: R::KIND,
            id: current.meta().id.clone(),
            version,
        })
        .await
    }
    .await;
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /v1/segments/{id}/capacity`: the segment's failover headroom (admission control).
pub async fn segment_capacity(State(api): State<StateApi>, Path(id): Path<String>) -> Response {
    let found = api
        .read(|st| {
            st.resolve(Kind::Segment, &id)
                .and_then(|sid| model::capacity::headroom(st, &sid, None))
        })
        .await;
    match found {
        Ok(Some(h)) => Json(h).into_response(),
        Ok(None) => not_found(Kind::Segment, &id).into_response(),
        Err(e) => e.into_response(),
    }
}
