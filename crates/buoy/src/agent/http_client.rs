//! The agent's outgoing HTTP: pooled HTTP/1.1 connections to other agents, for Raft RPCs and
//! for forwarding API calls to the leader.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{HeaderMap, Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Nothing listens there (or the address is unreachable).
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
    inner: Client<HttpConnector, Body>,
}

/// An answer, body still streaming.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: hyper::body::Incoming,
}

impl HttpClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let inner = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient { inner }
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
            Ok(Err(e)) if e.is_connect() => Err(HttpError::Connect(url.to_string())),
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
        headers.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        if let Some(t) = token
            && let Ok(v) = hyper::header::HeaderValue::from_str(&format!("Bearer {t}"))
        {
            headers.insert(hyper::header::AUTHORIZATION, v);
        }
        let answer = self
            .send(Method::POST, url, &headers, Body::from(body), timeout)
            .await?;
        let bytes = tokio::time::timeout(timeout, answer.body.collect())
            .await
            .map_err(|_| HttpError::Timeout(url.to_string(), timeout))?
            .map_err(|e| HttpError::Other(format!("{url}: {e}")))?
            .to_bytes();
        Ok((answer.status, bytes))
    }
}
