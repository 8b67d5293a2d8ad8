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
    /// Prometheus Alertmanager's webhook (`POST` [`ALERTS_PATH`]) and nothing else: the token
    /// to give Alertmanager, so that its configuration holds no admin token.
    Alerts,
    /// Everything.
    Admin,
}

/// The one route an `alerts` token may call.
pub const ALERTS_PATH: &str = "/v1/alertmanager/webhook";

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

    /// Whether tokens are required at all.
    pub fn required(&self) -> bool {
        self.tokens.is_some()
    }

    /// Whether `token` is one of the configured tokens.
    pub fn knows(&self, token: &str) -> bool {
        self.tokens
            .as_ref()
            .is_some_and(|t| t.contains_key(&digest(token.trim())))
    }

    /// Checks a request's token: `Authorization: Bearer T` or Masakari's `X-Auth-Token: T`;
    /// or, for reads only, the dashboard's login cookie ([`LOGIN_COOKIE`]). A cookie never
    /// authorizes a change, so no other site can make a logged-in browser change anything.
    fn check(&self, req: &Request) -> Result<(), Denied> {
        let Some(tokens) = &self.tokens else {
            return Ok(());
        };
        let reading = matches!(*req.method(), Method::GET | Method::HEAD);
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .or_else(|| {
                req.headers()
                    .get("x-auth-token")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .or_else(|| login_cookie(req.headers()).filter(|_| reading));
        let Some(presented) = presented else {
            return Err(Denied::NoToken);
        };
        match tokens.get(&digest(presented.trim())) {
            None => Err(Denied::UnknownToken),
            Some(Role::Read) if !matches!(*req.method(), Method::GET | Method::HEAD) => {
                Err(Denied::ReadOnly)
            }
            Some(Role::Alerts)
                if !(req.method() == Method::POST && req.uri().path() == ALERTS_PATH) =>
            {
                Err(Denied::AlertsOnly)
            }
            Some(_) => Ok(()),
        }
    }
}

/// The cookie the dashboard's login sets: the token, percent-encoded; `HttpOnly` (no script
/// reads it) and `SameSite=Strict` (no other site's page sends it).
pub const LOGIN_COOKIE: &str = "buoy_token";

/// The `Set-Cookie` value that logs a browser in with `token` (or out, with `None`).
pub fn login_cookie_header(token: Option<&str>) -> String {
    match token {
        Some(t) => format!(
            "{LOGIN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200",
            percent_encode(t)
        ),
        None => format!("{LOGIN_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    }
}

/// The token in the request's login cookie, if any.
fn login_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == LOGIN_COOKIE).then(|| percent_decode(v))
        })
        .filter(|t| !t.is_empty())
}

/// Every byte but ASCII letters, digits, `-`, `_` and `.` as `%XX`.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Undoes [`percent_encode`] (and `+` as a space, as forms send it).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(x) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(x);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a request was turned away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Denied {
    NoToken,
    UnknownToken,
    ReadOnly,
    AlertsOnly,
}

impl Denied {
    fn status(self) -> StatusCode {
        match self {
            Denied::NoToken | Denied::UnknownToken => StatusCode::UNAUTHORIZED,
            Denied::ReadOnly | Denied::AlertsOnly => StatusCode::FORBIDDEN,
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
            Denied::AlertsOnly => (
                "forbidden",
                "this token only posts Alertmanager webhooks (POST /v1/alertmanager/webhook)",
            ),
        };
        error(self.status(), code, message, None)
    }
}

/// Middleware: lets the request through only with a valid token (when tokens are configured).
/// A call signed with a host credential (`x-buoy-host`) is refused here whatever the tokens:
/// a host's credential renews that host's lease and nothing else.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if let Some(host) = req
        .headers()
        .get(crate::identity::HOST_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        return error(
            StatusCode::FORBIDDEN,
            "forbidden",
            &format!(
                "this call is signed with host `{host}`'s credential, which only renews that host's lease: the API needs an operator's token (Authorization: Bearer TOKEN)"
            ),
            None,
        );
    }
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
            (digest("alerts-token-0123456789"), Role::Alerts),
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
    fn an_alerts_token_posts_webhooks_and_nothing_else() {
        let a = auth();
        let call = |method: &str, path: &str| {
            let r = Request::builder()
                .method(method)
                .uri(path)
                .header("authorization", "Bearer alerts-token-0123456789")
                .body(Body::empty())
                .unwrap();
            a.check(&r).err().map(Denied::status)
        };
        assert_eq!(call("POST", ALERTS_PATH), None);
        assert_eq!(call("GET", ALERTS_PATH), Some(StatusCode::FORBIDDEN));
        assert_eq!(call("GET", "/v1/segments"), Some(StatusCode::FORBIDDEN));
        assert_eq!(call("POST", "/v1/instances"), Some(StatusCode::FORBIDDEN));
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
