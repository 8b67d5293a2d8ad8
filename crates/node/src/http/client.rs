//! The agent's outgoing HTTP: pooled HTTP/1.1 connections to other agents, for Raft RPCs and
//! for forwarding API calls to the leader; over TLS when the agent has `--tls-ca`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing listens there, the address is unreachable, or the TLS handshake failed.
    #[error("cannot connect to {0}")]
    Connect(String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    #[error("{0}")]
    Other(String),
}

/// A pooled client (cheap to clone).
#[derive(Clone)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Body>,
    /// `https` when the agents of this cluster speak TLS, else `http`.
    scheme: &'static str,
}

/// The innermost cause of `e` (a refused connection, a certificate the CA does not vouch for).
fn source_text(e: &dyn std::error::Error) -> Option<String> {
    let mut cause = e.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(cause.to_string())
}

/// An answer, body still streaming.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: hyper::body::Incoming,
}

impl HttpClient {
    /// A client for plain HTTP, or for HTTPS checked against the CA bundle in `tls`.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        http.set_nodelay(true);
        http.enforce_http(false);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let config = match tls {
            Some(c) => (*c).clone(),
            // Never used for an https URL: this client only builds http ones.
            None => rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { inner, scheme }
    }

    /// The URL of `path` on the agent whose API listens on `addr` (`host:port`).
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// Sends `method url` with `headers` and `body`; the answer's head must come within
    /// `timeout`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &HeaderMap,
        body: Body,
        timeout: Duration,
    ) -> Result<Answer, HttpError> {
        let mut req = Request::builder()
            .method(method)
            .uri(url)
            .body(body)
            .map_err(|e| HttpError::Other(format!("bad request to {url}: {e}")))?;
        req.headers_mut().extend(headers.clone());
        match tokio::time::timeout(timeout, self.inner.request(req)).await {
            Err(_) => Err(HttpError::Timeout(url.to_string(), timeout)),
            Ok(Err(e)) if e.is_connect() => Err(HttpError::Connect(match source_text(&e) {
                Some(why) => format!("{url} ({why})"),
                None => url.to_string(),
            })),
            Ok(Err(e)) => Err(HttpError::Other(format!("{url}: {e}"))),
            Ok(Ok(resp)) => {
                let (parts, body) = resp.into_parts();
                Ok(Answer {
                    status: parts.status,
                    headers: parts.headers,
                    body,
                })
            }
        }
    }

    /// `POST url` with a byte body (and a bearer token); returns status and the whole answer.
    pub async fn post_bytes(
        &self,
        url: &str,
        body: Vec<u8>,
        token: Option<&str>,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let mut headers = HeaderMap::new();
        if let Some(t) = token
            && let Ok(v) = hyper::header::HeaderValue::from_str(&format!("Bearer {t}"))
        {
            headers.insert(hyper::header::AUTHORIZATION, v);
        }
        let (status, _, bytes) = self.post_json(url, body, headers, timeout).await?;
        Ok((status, bytes))
    }

    /// `POST url` with a JSON body and `headers`; returns status, headers and the whole answer.
    pub async fn post_json(
        &self,
        url: &str,
        body: Vec<u8>,
        mut headers: HeaderMap,
        timeout: Duration,
    ) -> Result<(StatusCode, HeaderMap, Bytes), HttpError> {
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        let answer = self
            .send(Method::POST, url, &headers, Body::from(body), timeout)
            .await?;
        // An answer is capped like a request: a peer cannot make this agent buffer without end.
        let limited = http_body_util::Limited::new(answer.body, super::limits::RAFT_BODY);
        let bytes = tokio::time::timeout(timeout, limited.collect())
            .await
            .map_err(|_| HttpError::Timeout(url.to_string(), timeout))?
            .map_err(|e| HttpError::Other(format!("{url}: {e}")))?
            .to_bytes();
        Ok((answer.status, answer.headers, bytes))
    }
}
