//! How an agent tells a real control-plane server from a member that only claims the role in
//! gossip: it challenges the claimed server, which must answer with a MAC under the
//! challenger's own credential (see [`HostKey::sign_server_proof`]). Only a holder of the
//! cluster secret can compute another agent's credential, so a member that holds the gossip
//! key, or any host credential, still cannot pass. An agent sends its API relays and bootstrap
//! votes only to servers that passed (the `servers` module keeps the list).
//!
//! `POST /internal/server/proof` with `{"for": AGENT, "nonce": HEX}` answers
//! `{"server": NAME, "http": ADDR, "mac": HEX}`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::server::ServerNode;
use serde::{Deserialize, Serialize};

use crate::http::client::HttpClient;
use crate::http::error::error;
use crate::identity::{self, HostKey, Verifier};

/// The route.
pub const PATH: &str = "/internal/server/proof";

/// A challenge.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    /// The challenging agent: the proof is made with its credential.
    #[serde(rename = "for")]
    for_agent: String,
    nonce: String,
}

/// A server's answer.
#[derive(Serialize, Deserialize)]
struct Proof {
    server: String,
    http: String,
    mac: String,
}

/// What a server needs to prove itself.
#[derive(Clone)]
pub struct Prover {
    pub verifier: Arc<Verifier>,
    pub me: ServerNode,
}

async fn answer(State(prover): State<Option<Prover>>, body: axum::body::Bytes) -> Response {
    let Some(p) = prover else {
        return error(
            StatusCode::NOT_FOUND,
            "not_a_server",
            "this agent holds no cluster secret: it is not a control-plane server",
            None,
        );
    };
    let Ok(c) = serde_json::from_slice::<Challenge>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "expected {\"for\": AGENT, \"nonce\": HEX}",
            None,
        );
    };
    if c.nonce.len() < 16 || c.nonce.len() > 128 || c.for_agent.len() > 256 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the nonce must be 16 to 128 characters and the agent's name at most 256",
            None,
        );
    }
    let mac = p
        .verifier
        .host_key(&c.for_agent)
        .sign_server_proof(&p.me.name, &p.me.http, &c.nonce);
    Json(Proof {
        server: p.me.name,
        http: p.me.http,
        mac,
    })
    .into_response()
}

/// The proof route: answers on servers, 404 elsewhere.
pub fn router(prover: Option<Prover>) -> axum::Router {
    axum::Router::new()
        .route(PATH, axum::routing::post(answer))
        .with_state(prover)
}

/// Challenges `claimed` with this agent's credential `key`: `Ok` only when it proves it holds
/// the cluster secret, under the name and address gossip gave for it.
pub async fn challenge(
    client: &HttpClient,
    claimed: &ServerNode,
    key: &HostKey,
    timeout: Duration,
) -> Result<(), String> {
    let nonce = identity::nonce();
    let body = serde_json::to_vec(&Challenge {
        for_agent: key.name().to_string(),
        nonce: nonce.clone(),
    })
    .map_err(|e| e.to_string())?;
    let url = client.url(&claimed.http, PATH);
    let (status, _, bytes) = client
        .post_json(&url, body, HeaderMap::new(), timeout)
        .await
        .map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
    }
    let proof: Proof =
        serde_json::from_slice(&bytes).map_err(|e| format!("{url}: not a proof ({e})"))?;
    if proof.server != claimed.name || proof.http != claimed.http {
        return Err(format!(
            "{url} answered as `{}` at {}, not as the `{}` gossip announced",
            proof.server, proof.http, claimed.name
        ));
    }
    if !key.server_proof_is_genuine(&claimed.name, &claimed.http, &nonce, &proof.mac) {
        return Err(format!(
            "{url}: the proof is not made with this cluster's secret"
        ));
    }
    Ok(())
}
