//! API calls that need the control-plane leader (everything under the state API) are answered
//! by the leader: any other agent relays the request to it, body and answer streamed through.
//! A client agent relays to a live server, which relays to its leader: at most two hops.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::control_plane::ControlPlane;
use node::http::error::error;

const HOPS: &str = "x-buoy-forwarded";

/// How long a call waits for a leader to be known (an election, or a server that has not yet
/// heard from the new leader) before it is refused: elections take a second or two.
const LEADER_WAIT: Duration = Duration::from_secs(3);

/// Middleware: runs the handler on the leader, relays the request everywhere else.
pub async fn to_leader(State(cp): State<Arc<ControlPlane>>, req: Request, next: Next) -> Response {
    let hops = hops(&req);
    let deadline = tokio::time::Instant::now() + LEADER_WAIT;
    loop {
        if cp.is_leader() {
            return next.run(req).await;
        }
        if hops >= 2 {
            return no_leader(&cp);
        }
        if let Some(target) = cp.forward_target() {
            return relay(&cp, &target, hops + 1, req).await;
        }
        if tokio::time::Instant::now() >= deadline {
            return no_leader(&cp);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many agents already relayed this request.
fn hops(req: &Request) -> u32 {
    req.headers()
        .get(HOPS)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

fn no_leader(cp: &ControlPlane) -> Response {
    let why = if cp.replica.is_some() {
        "this server has known no control-plane leader for 3 s: the servers are electing one, or fewer than --bootstrap-expect servers have met"
    } else {
        "no control-plane server is reachable from this agent: start one with `buoy agent --server` and join it"
    };
    error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", why, None)
}

async fn relay(cp: &ControlPlane, target: &str, hops: u32, req: Request) -> Response {
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    relay_as(cp, target, &path, hops, None, req).await
}

/// Relays `req` to the agent at `target` (its HTTP address) as a request for `path`: for calls
/// only that agent can answer (an instance's log on the host that runs it), with the headers
/// `proof` (the control plane's signature for that host: [`ControlPlane::sign_call`]).
pub async fn relay_to(
    cp: &ControlPlane,
    target: &str,
    path: &str,
    proof: Option<&node::identity::Signature>,
    req: Request,
) -> Response {
    let hops = hops(&req);
    if hops >= 2 {
        return error(
            StatusCode::LOOP_DETECTED,
            "relay_loop",
            "this request was relayed too many times",
            None,
        );
    }
    relay_as(cp, target, path, hops + 1, proof, req).await
}

async fn relay_as(
    cp: &ControlPlane,
    target: &str,
    path: &str,
    hops: u32,
    proof: Option<&node::identity::Signature>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let url = cp.client.url(target, path);
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONNECTION);
    headers.insert(HOPS, HeaderValue::from(hops));
    // A call relayed to a host carries only the proof given here, not a signature the caller
    // sent along. A call forwarded to the leader (a host's signed renewal) keeps its own.
    if let Some(sig) = proof {
        for h in node::identity::SIGNATURE_HEADERS {
            headers.remove(h);
        }
        sig.insert_into(&mut headers);
    }
    match cp
        .client
        .send(parts.method, &url, &headers, body, Duration::from_secs(30))
        .await
    {
        Ok(answer) => {
            let mut resp = Response::new(Body::new(answer.body));
            *resp.status_mut() = answer.status;
            let h = resp.headers_mut();
            for (k, v) in &answer.headers {
                if k != axum::http::header::CONNECTION && k != axum::http::header::TRANSFER_ENCODING
                {
                    h.append(k, v.clone());
                }
            }
            resp
        }
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader_unreachable",
            &format!("cannot relay to the agent at {target}: {e}; retry shortly"),
            None,
        )
        .into_response(),
    }
}

/// Relays a request to any live server (for calls any server can answer, like status).
pub async fn to_any_server(cp: &ControlPlane, req: Request) -> Response {
    let hops = hops(&req);
    match cp.servers.live_servers().first().filter(|_| hops < 2) {
        Some(s) => relay(cp, &s.http.clone(), hops + 1, req).await,
        None => no_leader(cp),
    }
}
