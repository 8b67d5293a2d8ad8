//! API tokens: with a tokens file configured, every control-plane call (the `/v1` state API,
//! the Masakari-compatible API, Raft RPCs between servers, key reload and the fault filter)
//! needs a bearer token; read-only tokens may only read. Without one the API is open, as on a
//! laptop sandbox. Health, members and metrics stay open for monitoring.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde::Deserialize;

use super::error::error;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// GET only.
    Read,
    /// Everything.
    Admin,
}

/// The tokens file: `{"tokens": [{"token": "...", "role": "admin"}, ...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    role: Role,
}

/// The configured tokens, kept as SHA-256 digests: a presented token is hashed and the digest
/// looked up, so how long a lookup takes says nothing about the tokens themselves. `None`
/// inside means the API is open.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Option<Arc<HashMap<Digest, Role>>>,
    /// One admin token in clear, for this server's own Raft RPCs.
    admin: Option<String>,
}

type Digest = [u8; 32];

fn digest(token: &str) -> Digest {
    let mut d = [0u8; 32];
    d.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    d
}

impl Auth {
    /// An open API (no tokens file).
    pub fn open() -> Self {
        Auth::default()
    }

    /// Reads a tokens file; tokens must be at least 16 characters.
    pub fn load(path: &Path) -> Result<Auth> {
        let text = crate::secret_file::read(path, "tokens file")?;
        let file: TokensFile = serde_json::from_str(&text).with_context(|| {
            format!(
                "tokens file {} must be JSON like {{\"tokens\": [{{\"token\": \"...\", \"role\": \"admin\"}}]}} (roles: admin, read)",
                path.display()
            )
        })?;
        let mut tokens = HashMap::new();
        let mut admin = None;
        for (i, t) in file.tokens.into_iter().enumerate() {
            if t.token.len() < 16 || t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                bail!(
                    "tokens file {}: token #{} must be at least 16 characters without spaces",
                    path.display(),
                    i + 1
                );
            }
            if t.role == Role::Admin && admin.is_none() {
                admin = Some(t.token.clone());
            }
            tokens.insert(digest(&t.token), t.role);
        }
        if tokens.is_empty() {
            bail!("tokens file {} lists no token", path.display());
        }
        Ok(Auth {
            tokens: Some(Arc::new(tokens)),
            admin,
        })
    }

    /// A token with the admin role, for this server's own Raft RPCs.
    pub fn admin_token(&self) -> Option<String> {
        self.admin.clone()
    }

    /// Checks a request's token: `Authorization: Bearer T` or Masakari's `X-Auth-Token: T`.
    fn check(&self, req: &Request) -> Result<(), Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| {
                req.headers()
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
            });
        let Some(presented) = presented else {
            return Err(Denied::NoToken);
        };
        match tokens.get(&digest(presented.trim())) {
            None => Err(Denied::UnknownToken),
            Some(Role::Read) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
                Err(Denied::ReadOnly)
            }
            Some(_) => Ok(()),
        }
    }
}

/// Why a request was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Denied {
    NoToken,
    UnknownToken,
    ReadOnly,
}

impl Denied {
    fn status(self) -> StatusCode {
        match self {
            Denied::NoToken | Denied::UnknownToken => StatusCode::UNAUTHORIZED,
            Denied::ReadOnly => StatusCode::FORBIDDEN,
        }
    }

    fn response(self) -> Response {
        let (code, message) = match self {
            Denied::NoToken => (
                "unauthorized",
                "this API needs a token: send `Authorization: Bearer TOKEN` (buoy --token, or BUOY_TOKEN)",
            ),
            Denied::UnknownToken => ("unauthorized", "unknown token"),
            Denied::ReadOnly => (
                "forbidden",
                "this token is read-only: changes need an admin token",
            ),
        };
        error(self.status(), code, message, None)
    }
}

/// Middleware: lets the request through only with a valid token (when tokens are configured).
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    match auth.check(&req) {
        Ok(()) => next.run(req).await,
        Err(denied) => denied.response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn auth() -> Auth {
        let tokens = [
            (digest("admin-token-0123456789"), Role::Admin),
            (digest("read-token-0123456789"), Role::Read),
        ];
        Auth {
            tokens: Some(Arc::new(tokens.into_iter().collect())),
            admin: Some("admin-token-0123456789".into()),
        }
    }

    fn req(method: &str, header: Option<(&str, &str)>) -> Request {
        let mut b = Request::builder().method(method).uri("/v1/segments");
        if let Some((k, v)) = header {
            b = b.header(k, v);
        }
        b.body(Body::empty()).unwrap()
    }

    #[test]
    fn tokens_gate_reads_and_writes_by_role() {
        let a = auth();
        let status = |r: Result<(), Denied>| r.err().map(Denied::status);
        assert_eq!(
            status(a.check(&req("GET", None))),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(a.check(&req(
                "GET",
                Some(("authorization", "Bearer nope-nope-nope-nope"))
            ))),
            Some(StatusCode::UNAUTHORIZED)
        );
        assert_eq!(
            status(a.check(&req(
                "GET",
                Some(("authorization", "Bearer read-token-0123456789"))
            ))),
            None
        );
        assert_eq!(
            status(a.check(&req(
                "POST",
                Some(("authorization", "Bearer read-token-0123456789"))
            ))),
            Some(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            status(a.check(&req(
                "POST",
                Some(("x-auth-token", "admin-token-0123456789"))
            ))),
            None
        );
        assert_eq!(status(Auth::open().check(&req("POST", None))), None);
        assert_eq!(a.admin_token().as_deref(), Some("admin-token-0123456789"));
    }

    #[test]
    fn bad_tokens_files_are_refused_with_the_reason() {
        let dir = std::env::temp_dir().join(format!("buoy-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.json");
        for (text, want) in [
            (
                "{\"tokens\": [{\"token\": \"short\", \"role\": \"admin\"}]}",
                "at least 16",
            ),
            (
                "{\"tokens\": [{\"token\": \"0123456789abcdefg\", \"role\": \"root\"}]}",
                "roles: admin, read",
            ),
            ("{\"tokens\": []}", "no token"),
        ] {
            std::fs::write(&p, text).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
            let e = format!("{:#}", Auth::load(&p).err().unwrap());
            assert!(e.contains(want), "{text}: {e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
