//! The change stream: server-sent events of every change applied to the state.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use model::Change;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::StateApi;
use super::error::bad_request;
use node::http::error::error;

/// How many followed event streams one agent serves at once (each dashboard tab holds one).
pub const MAX_STREAMS: usize = 256;

static STREAMS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(MAX_STREAMS);

/// `GET /v1/events?since=INDEX[&follow=false]`: server-sent events, one `change` per applied
/// change after `since` (default: from now on), then live ones unless `follow=false`. A
/// `reset` event means history was lost: re-read the lists.
pub async fn events(
    State(api): State<StateApi>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let Ok(replica) = api.replica() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_a_server",
            "no replica here",
            None,
        );
    };
    let shared = replica.shared().clone();
    let since = match params.get("since").map(|s| s.parse::<u64>()) {
        None => shared.read(|st| st.change_index()),
        Some(Ok(s)) => s,
        Some(Err(_)) => {
            return bad_request(Some("since"), "since must be a log index (a number)")
                .into_response();
        }
    };
    let follow = params.get("follow").is_none_or(|f| f != "false");
    let permit = match follow.then(|| STREAMS.try_acquire()) {
        Some(Err(_)) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                &format!(
                    "this agent already serves {MAX_STREAMS} event streams: close some, or follow another agent"
                ),
                None,
            );
        }
        Some(Ok(p)) => Some(p),
        None => None,
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let live = shared.subscribe();
    let backlog = shared.changes_since(since);
    let first: Vec<Result<SseEvent, Infallible>> = match &backlog {
        Some(b) => b.iter().map(|c| Ok(change_event(c))).collect(),
        None => vec![Ok(reset_event(since))],
    };
    let last = backlog
        .as_ref()
        .and_then(|b| b.last().map(|c| c.index))
        .unwrap_or(since);
    // The permit lives as long as the stream.
    let live = stream::unfold((live, last, permit), |(mut rx, last, permit)| async move {
        loop {
            match rx.recv().await {
                Ok(c) if c.index <= last => continue,
                Ok(c) => {
                    let index = c.index;
                    return Some((Ok(change_event(&c)), (rx, index, permit)));
                }
                Err(RecvError::Lagged(_)) => {
                    return Some((Ok(reset_event(last)), (rx, last, permit)));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let body: std::pin::Pin<Box<dyn Stream<Item = Result<SseEvent, Infallible>> + Send>> = if follow
    {
        Box::pin(futures_util::StreamExt::chain(stream::iter(first), live))
    } else {
        Box::pin(stream::iter(first))
    };
    Sse::new(body)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

pub fn change_event(c: &Change) -> SseEvent {
    SseEvent::default()
        .event("change")
        .id(c.index.to_string())
        .data(serde_json::to_string(c).unwrap_or_default())
}

pub fn reset_event(since: u64) -> SseEvent {
    SseEvent::default().event("reset").data(
        json!({"since": since, "message": "changes were dropped; re-read the lists"}).to_string(),
    )
}
