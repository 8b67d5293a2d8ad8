//! The live dashboard at `/ui`: one HTML page (plain HTML, CSS and JS, embedded in the binary)
//! that reads the API of the agent serving it: hosts by segment with their state and capacity,
//! the instances on each, the timeline of recoveries with each step's timing, membership
//! health, and (in the sandbox) chaos buttons and the clock app's customer view. Updates come
//! from the event stream (`/v1/events`) and a one-second poll of what hosts report; the page
//! never reloads. `?sandbox=URL` and `?clock=URL` enable the sandbox's panels.
//!
//! With API tokens, `/ui/login` takes a token in a form and sets it as an `HttpOnly`,
//! `SameSite=Strict` cookie (a token never travels in a URL). The cookie authorizes reads
//! only (`node::http::auth`), so another site cannot make a logged-in browser change anything.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use node::http::auth::{self, Auth};

const PAGE: &str = include_str!("dashboard/index.html");

pub fn router(auth: Auth) -> Router {
    Router::new()
        .route("/ui", get(page))
        .route("/ui/", get(page))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .with_state(auth)
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

fn form(status: StatusCode, note: &str) -> Response {
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Buoy: log in</title>
<style>body{{font:15px system-ui,sans-serif;margin:4em auto;max-width:28em}}input{{width:100%;font:inherit;padding:.4em}}</style></head>
<body><h1>Buoy</h1><p>{note}</p>
<form method="post" action="/ui/login"><label>API token<br><input name="token" type="password" autocomplete="current-password" autofocus></label>
<p><button type="submit">Log in</button></p></form></body></html>"#
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// `GET /ui/login`.
async fn login_form() -> Response {
    form(
        StatusCode::OK,
        "This cluster's API needs a token (a read token is enough to watch).",
    )
}

/// A request from a page of another origin (its `Origin` names another host than `Host`).
fn cross_site(headers: &HeaderMap) -> bool {
    let get = |h| headers.get(h).and_then(|v| v.to_str().ok());
    match (get(header::ORIGIN), get(header::HOST)) {
        (Some(origin), Some(host)) => origin.split("://").nth(1) != Some(host),
        (Some(_), None) => true,
        _ => false,
    }
}

/// `POST /ui/login` with the form's `token`: sets the login cookie and goes to `/ui`.
async fn login(State(auth): State<Auth>, headers: HeaderMap, body: Bytes) -> Response {
    if cross_site(&headers) {
        return form(
            StatusCode::FORBIDDEN,
            "Refused: this form was sent from another site.",
        );
    }
    if !auth.required() {
        return redirect(None);
    }
    let token = String::from_utf8_lossy(&body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("token=").map(auth::percent_decode))
        .unwrap_or_default();
    if !auth.knows(&token) {
        return form(StatusCode::UNAUTHORIZED, "Unknown token: try again.");
    }
    redirect(Some(auth::login_cookie_header(Some(&token))))
}

/// `POST /ui/logout`: forgets the cookie.
async fn logout(headers: HeaderMap) -> Response {
    if cross_site(&headers) {
        return form(
            StatusCode::FORBIDDEN,
            "Refused: this form was sent from another site.",
        );
    }
    redirect(Some(auth::login_cookie_header(None)))
}

fn redirect(cookie: Option<String>) -> Response {
    let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response();
    if let Some(c) = cookie.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}
