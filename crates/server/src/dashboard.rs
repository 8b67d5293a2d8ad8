//! The live dashboard at `/ui`: one HTML page (plain HTML, CSS and JS, embedded in the binary)
//! that reads the API of the agent serving it: hosts by segment with their state and capacity,
//! the instances on each, the timeline of recoveries with each step's timing, membership
//! health, and (in the sandbox) chaos buttons and the clock app's customer view. Updates come
//! from the event stream (`/v1/events`) and a one-second poll of what hosts report; the page
//! never reloads. `?token=` passes an API token; `?sandbox=URL` and `?clock=URL` enable the
//! sandbox's panels.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

const PAGE: &str = include_str!("dashboard/index.html");

pub fn router() -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}
