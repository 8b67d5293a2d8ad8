//! How much a request may send: every body is capped before anything is allocated for it, by
//! route. A body that declares more (`Content-Length`) is refused at once with 413 and the
//! limit; a streamed one is cut off where it passes the limit (413 too).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::Limited;

use super::error::error;

/// The API's objects (segments, hosts, instances...): far above any real one.
pub const API_BODY: usize = 1 << 20;
/// A lease renewal carries the host's report: room for thousands of copies.
pub const RENEWAL_BODY: usize = 8 << 20;
/// Raft RPCs between servers: batches of entries and snapshot chunks.
pub const RAFT_BODY: usize = 64 << 20;

/// The body limit of a route.
pub fn body_limit(path: &str) -> usize {
    if path.starts_with("/internal/raft/") {
        RAFT_BODY
    } else if path.starts_with("/internal/") {
        RENEWAL_BODY
    } else {
        API_BODY
    }
}

/// Middleware: refuses a body over its route's limit.
pub async fn limit_bodies(req: Request, next: Next) -> Response {
    let limit = body_limit(req.uri().path());
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared
        && len > limit as u64
    {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "{} takes a body of at most {} bytes; this one declares {len}",
                req.uri().path(),
                limit
            ),
            None,
        );
    }
    let (parts, body) = req.into_parts();
    next.run(Request::from_parts(
        parts,
        Body::new(Limited::new(body, limit)),
    ))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_has_its_limit() {
        assert_eq!(body_limit("/v1/segments"), API_BODY);
        assert_eq!(body_limit("/internal/lease"), RENEWAL_BODY);
        assert_eq!(body_limit("/internal/raft/append"), RAFT_BODY);
    }
}
