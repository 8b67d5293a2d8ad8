//! Host identity: each host proves its name on every call it makes to the control plane, and
//! the control plane proves itself in every answer.
//!
//! The servers hold the **cluster secret** (32 random bytes, `buoy credential secret FILE`).
//! A host's **credential** is `HMAC-SHA256(secret, "buoy host key v1" 0 name)`: bound to its
//! name, issued by anyone holding the secret (`buoy credential issue NAME`), and recomputed
//! by a server from the name alone, so no table of credentials is replicated. A host holds its
//! own credential only: it cannot compute another host's, nor the secret.
//!
//! A host's request carries its name, a wall-clock time, a fresh nonce and a MAC over them and
//! the method, path and body ([`HostKey::sign`]); the key itself never travels, so whoever
//! receives a request (a relaying server, or an impostor that claims the server role in
//! gossip) learns nothing it can reuse but the request itself. The answer carries a MAC over
//! the nonce, the status and the body under the same key ([`sign_answer`]): only a holder of
//! the cluster secret can make it, so a host obeys no grant an impostor wrote. A server
//! refuses a request older or newer than [`MAX_SKEW`] or not newer than the last one it took
//! from that host ([`Verifier`]), so a captured renewal cannot be replayed to keep a dead
//! host's lease beyond that window.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use ring::hmac;
use serde::{Deserialize, Serialize};
use swim::keyring::Key;
use thiserror::Error;

use crate::secret_file::{self, SecretFileError};

/// The request headers of a host's signed call, and the answer's.
pub const HOST_HEADER: &str = "x-buoy-host";
pub const TIME_HEADER: &str = "x-buoy-time";
pub const NONCE_HEADER: &str = "x-buoy-nonce";
pub const MAC_HEADER: &str = "x-buoy-mac";
/// Every header of a signature.
pub const SIGNATURE_HEADERS: [&str; 4] = [HOST_HEADER, TIME_HEADER, NONCE_HEADER, MAC_HEADER];

/// How far a request's time may be from the server's clock.
pub const MAX_SKEW_MS: u64 = 30_000;

/// Why identity material could not be loaded.
#[derive(Debug, Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{path}: {why}")]
    Invalid { path: String, why: String },
}

/// The servers' secret every host credential derives from.
pub struct ClusterSecret(Key);

impl ClusterSecret {
    /// A new random secret.
    pub fn generate() -> std::io::Result<ClusterSecret> {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(ClusterSecret(Key::from_bytes(b)))
    }

    /// Reads a secret file (64 hex characters), refused when others can read it.
    pub fn load(path: &Path) -> Result<ClusterSecret, IdentityError> {
        let text = secret_file::read(path, "cluster secret file")?;
        Key::from_hex(&text)
            .map(ClusterSecret)
            .map_err(|e| IdentityError::Invalid {
                path: path.display().to_string(),
                why: format!("{e} (create one with `buoy credential secret FILE`)"),
            })
    }

    /// The file's text.
    pub fn to_file_text(&self) -> String {
        format!("{}\n", self.0.to_hex())
    }

    /// The credential of host `name`.
    pub fn host_key(&self, name: &str) -> HostKey {
        self.derive(b"buoy host key v1\0", name)
    }

    /// The key server `name` signs its Raft calls with. It derives from the secret under
    /// another label than host credentials, so no host credential can stand in for it.
    pub fn server_key(&self, name: &str) -> HostKey {
        self.derive(b"buoy server key v1\0", name)
    }

    fn derive(&self, label: &[u8], name: &str) -> HostKey {
        let k = hmac::Key::new(hmac::HMAC_SHA256, self.0.bytes());
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(label);
        ctx.update(name.as_bytes());
        let mut raw = [0u8; 32];
        raw.copy_from_slice(ctx.sign().as_ref());
        HostKey::new(name, Key::from_bytes(raw))
    }
}

/// A host's credential file: `{"host": NAME, "key": HEX}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialFile {
    host: String,
    key: String,
}

/// One host's credential: its name and the key bound to it.
#[derive(Clone)]
pub struct HostKey {
    name: String,
    raw: Key,
    key: hmac::Key,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostKey({})", self.name)
    }
}

/// The headers of a signed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub host: String,
    pub time_ms: u64,
    pub nonce: String,
    pub mac: String,
}

impl Signature {
    /// Puts the signature's headers on a request (its values are hex, digits and names, which
    /// are valid header values; a name that is not is left out and the check fails there).
    pub fn insert_into(&self, headers: &mut axum::http::HeaderMap) {
        for (name, value) in self.headers() {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }

    /// As (name, value) header pairs.
    pub fn headers(&self) -> [(&'static str, String); 4] {
        [
            (HOST_HEADER, self.host.clone()),
            (TIME_HEADER, self.time_ms.to_string()),
            (NONCE_HEADER, self.nonce.clone()),
            (MAC_HEADER, self.mac.clone()),
        ]
    }
}

impl HostKey {
    fn new(name: &str, raw: Key) -> HostKey {
        HostKey {
            name: name.to_string(),
            key: hmac::Key::new(hmac::HMAC_SHA256, raw.bytes()),
            raw,
        }
    }

    /// The host this credential names.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads a credential file written by `buoy credential issue`; refused when others can
    /// read it or when it names another host than `expected` (this agent's `--name`).
    pub fn load(path: &Path, expected: &str) -> Result<HostKey, IdentityError> {
        let key = HostKey::read(path, expected)?;
        if key.name != expected {
            return Err(IdentityError::Invalid {
                path: path.display().to_string(),
                why: format!(
                    "this credential is host `{}`'s, and this agent is `{expected}`: issue one for `{expected}`",
                    key.name
                ),
            });
        }
        Ok(key)
    }

    /// Reads a credential file whatever host it names (the CLI signing a call to that host's
    /// own routes); refused when others can read it.
    pub fn load_any(path: &Path) -> Result<HostKey, IdentityError> {
        HostKey::read(path, "HOST")
    }

    fn read(path: &Path, expected: &str) -> Result<HostKey, IdentityError> {
        let invalid = |why: String| IdentityError::Invalid {
            path: path.display().to_string(),
            why,
        };
        let text = secret_file::read(path, "host credential file")?;
        let f: CredentialFile = serde_json::from_str(&text).map_err(|e| {
            invalid(format!(
                "not a host credential ({e}); issue one with `buoy credential issue {expected} --cluster-secret FILE --out FILE`"
            ))
        })?;
        let raw = Key::from_hex(&f.key).map_err(|e| invalid(e.to_string()))?;
        Ok(HostKey::new(&f.host, raw))
    }

    /// The credential file's text.
    pub fn to_file_text(&self) -> String {
        let f = CredentialFile {
            host: self.name.clone(),
            key: self.raw.to_hex(),
        };
        serde_json::to_string_pretty(&f).unwrap_or_default() + "\n"
    }

    /// Signs a request: `nonce` must be fresh (random) for each request.
    pub fn sign(
        &self,
        method: &str,
        path: &str,
        time_ms: u64,
        nonce: &str,
        body: &[u8],
    ) -> Signature {
        Signature {
            host: self.name.clone(),
            time_ms,
            nonce: nonce.to_string(),
            mac: hex(hmac::sign(
                &self.key,
                &request_input(method, path, &self.name, time_ms, nonce, body),
            )
            .as_ref()),
        }
    }

    /// Signs, as server `server`, a call to the host this credential belongs to (a server
    /// derives any host's key from the cluster secret: [`Verifier::host_key`]). Only that host
    /// and the servers hold the key, and the label keeps it apart from the host's own requests.
    pub fn sign_call(
        &self,
        server: &str,
        method: &str,
        path: &str,
        time_ms: u64,
        nonce: &str,
        body: &[u8],
    ) -> Signature {
        Signature {
            host: server.to_string(),
            time_ms,
            nonce: nonce.to_string(),
            mac: hex(hmac::sign(
                &self.key,
                &call_input(method, path, server, time_ms, nonce, body),
            )
            .as_ref()),
        }
    }

    /// [`HostKey::sign_call`] now, with a fresh nonce: what a relaying server, the CLI and the
    /// lab's tools send.
    pub fn sign_call_now(&self, signer: &str, method: &str, path: &str, body: &[u8]) -> Signature {
        self.sign_call(signer, method, path, wall_ms(), &nonce(), body)
    }

    /// Checks, on the host, a call the control plane signed for it with
    /// [`HostKey::sign_call`] and received at `now_ms`; the server that made it. Like a Raft
    /// call, only the time window bounds a replay (these calls are reads).
    pub fn verify_call(
        &self,
        sig: Option<&Signature>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<String, Refused> {
        let sig = sig.ok_or(Refused::NotFromControlPlane)?;
        let input = call_input(method, path, &sig.host, sig.time_ms, &sig.nonce, body);
        check(self, sig, &input, now_ms).map_err(|e| match e {
            Refused::BadMac(_) => Refused::NotFromControlPlane,
            e => e,
        })?;
        Ok(sig.host.clone())
    }

    /// Whether `mac` is the control plane's MAC of an answer to the request signed with
    /// `nonce`: only a holder of the cluster secret can have made it.
    pub fn answer_is_genuine(&self, nonce: &str, status: u16, body: &[u8], mac: &str) -> bool {
        let Some(mac) = unhex(mac) else {
            return false;
        };
        hmac::verify(&self.key, &answer_input(nonce, status, body), &mac).is_ok()
    }

    /// [`Self::answer_is_genuine`] with the MAC read from the answer's headers.
    pub fn answer_is_signed(
        &self,
        nonce: &str,
        status: u16,
        body: &[u8],
        headers: &axum::http::HeaderMap,
    ) -> bool {
        let mac = headers
            .get(MAC_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.answer_is_genuine(nonce, status, body, mac)
    }

    /// The MAC a server puts on its answer to a request signed with `nonce`.
    pub fn sign_answer(&self, nonce: &str, status: u16, body: &[u8]) -> String {
        hex(hmac::sign(&self.key, &answer_input(nonce, status, body)).as_ref())
    }

    /// A server's proof, to the holder of this credential, that it is server `server`
    /// answering at `http`, for the challenge `nonce`: made with this host's key, which a
    /// server derives from the cluster secret and nobody else but the host holds.
    pub fn sign_server_proof(&self, server: &str, http: &str, nonce: &str) -> String {
        hex(hmac::sign(&self.key, &proof_input(server, http, nonce)).as_ref())
    }

    /// Whether `mac` proves that `server` at `http` holds the cluster secret (see
    /// [`HostKey::sign_server_proof`]).
    pub fn server_proof_is_genuine(
        &self,
        server: &str,
        http: &str,
        nonce: &str,
        mac: &str,
    ) -> bool {
        let Some(mac) = unhex(mac) else {
            return false;
        };
        hmac::verify(&self.key, &proof_input(server, http, nonce), &mac).is_ok()
    }
}

fn proof_input(server: &str, http: &str, nonce: &str) -> Vec<u8> {
    format!("buoy server proof v1\0{server}\0{http}\0{nonce}").into_bytes()
}

fn request_input(
    method: &str,
    path: &str,
    host: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    signed_input("buoy request v1", method, path, host, time_ms, nonce, body)
}

fn signed_input(
    label: &str,
    method: &str,
    path: &str,
    host: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut v = Vec::with_capacity(64 + body.len());
    for part in [label, method, path, host, &time_ms.to_string(), nonce] {
        v.extend_from_slice(part.as_bytes());
        v.push(0);
    }
    v.extend_from_slice(body);
    v
}

fn call_input(
    method: &str,
    path: &str,
    server: &str,
    time_ms: u64,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    // The same fields as a host's request under another label: neither passes for the other.
    signed_input("buoy call v1", method, path, server, time_ms, nonce, body)
}

fn answer_input(nonce: &str, status: u16, body: &[u8]) -> Vec<u8> {
    let mut v = format!("buoy answer v1\0{nonce}\0{status}\0").into_bytes();
    v.extend_from_slice(body);
    v
}

/// The wall clock in milliseconds since the Unix epoch: the time a signature carries and a
/// server checks it against.
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A random nonce for one request.
pub fn nonce() -> String {
    let mut b = [0u8; 16];
    // Without randomness a nonce still differs by time; the MAC is what protects.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        b.copy_from_slice(&t.to_le_bytes());
    }
    hex(&b)
}

/// Why a server refused a host's signed request.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refused {
    #[error(
        "this call must be signed with the host's credential (headers {HOST_HEADER}, {TIME_HEADER}, {NONCE_HEADER}, {MAC_HEADER}); start the agent with --credential FILE"
    )]
    Unsigned,
    #[error(
        "the signature of host `{0}` is not valid: its credential was not issued from this cluster's secret, or the request was altered"
    )]
    BadMac(String),
    #[error(
        "the request of host `{host}` is {skew_ms} ms away from this server's clock (at most {MAX_SKEW_MS} ms): synchronise the clocks (NTP)"
    )]
    Skew { host: String, skew_ms: u64 },
    #[error("a request of host `{0}` was replayed (not newer than the last one taken)")]
    Replayed(String),
    #[error(
        "`{0}` signed this call without a server key: only servers, which hold the cluster secret (--cluster-secret), may make it"
    )]
    NotAServer(String),
    #[error(
        "this host answers its own routes only to calls signed with its credential: ask a server (it relays what an operator's token allows, e.g. GET /v1/instances/ID/logs), or run the CLI on this host with --credential FILE (BUOY_CREDENTIAL)"
    )]
    NotFromControlPlane,
}

/// The server side: checks hosts' signatures against the cluster secret, and remembers each
/// host's newest request time per route to refuse replays.
pub struct Verifier {
    secret: ClusterSecret,
    newest: Mutex<HashMap<String, u64>>,
}

impl Verifier {
    pub fn new(secret: ClusterSecret) -> Verifier {
        Verifier {
            secret,
            newest: Mutex::new(HashMap::new()),
        }
    }

    /// The credential of host `name` (a server signs its answers with it).
    pub fn host_key(&self, name: &str) -> HostKey {
        self.secret.host_key(name)
    }

    /// The key server `name` signs its Raft calls with.
    pub fn server_key(&self, name: &str) -> HostKey {
        self.secret.server_key(name)
    }

    /// Checks a server's signed call (a Raft RPC) received at `now_ms`; the server it proves.
    /// Raft takes a message delivered twice as it takes a late one, so only the window of
    /// [`MAX_SKEW_MS`] bounds a replay here, not a per-sender order (its calls run in
    /// parallel).
    pub fn verify_server(
        &self,
        sig: Option<&Signature>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<String, Refused> {
        let sig = sig.ok_or(Refused::Unsigned)?;
        let key = self.secret.server_key(&sig.host);
        let input = request_input(method, path, &sig.host, sig.time_ms, &sig.nonce, body);
        check(&key, sig, &input, now_ms).map_err(|e| match e {
            Refused::BadMac(h) => Refused::NotAServer(h),
            e => e,
        })?;
        Ok(sig.host.clone())
    }

    /// Checks a signed request received at `now_ms` (wall clock); the host it proves.
    pub fn verify(
        &self,
        sig: Option<&Signature>,
        method: &str,
        path: &str,
        body: &[u8],
        now_ms: u64,
    ) -> Result<HostKey, Refused> {
        let sig = sig.ok_or(Refused::Unsigned)?;
        let key = self.secret.host_key(&sig.host);
        let input = request_input(method, path, &sig.host, sig.time_ms, &sig.nonce, body);
        check(&key, sig, &input, now_ms)?;
        let mut newest = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        // Per host and route: a host's renewals and its attribute calls are signed by
        // different tasks, and one must not make the other look replayed.
        let last = newest.entry(format!("{} {path}", sig.host)).or_insert(0);
        if sig.time_ms <= *last {
            return Err(Refused::Replayed(sig.host.clone()));
        }
        *last = sig.time_ms;
        Ok(key)
    }
}

/// Checks `sig`'s MAC of `input` under `key`, and its time against `now_ms`.
fn check(key: &HostKey, sig: &Signature, input: &[u8], now_ms: u64) -> Result<(), Refused> {
    let mac = unhex(&sig.mac).ok_or_else(|| Refused::BadMac(sig.host.clone()))?;
    hmac::verify(&key.key, input, &mac).map_err(|_| Refused::BadMac(sig.host.clone()))?;
    let skew_ms = now_ms.abs_diff(sig.time_ms);
    if skew_ms > MAX_SKEW_MS {
        return Err(Refused::Skew {
            host: sig.host.clone(),
            skew_ms,
        });
    }
    Ok(())
}

/// Reads a signature from request headers (`None` when any is missing or malformed).
pub fn signature_from(get: impl Fn(&str) -> Option<String>) -> Option<Signature> {
    Some(Signature {
        host: get(HOST_HEADER)?,
        time_ms: get(TIME_HEADER)?.parse().ok()?,
        nonce: get(NONCE_HEADER)?,
        mac: get(MAC_HEADER)?,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(b: u8) -> ClusterSecret {
        ClusterSecret(Key::from_bytes([b; 32]))
    }

    #[test]
    fn a_host_takes_only_calls_the_control_plane_signed_for_it() {
        let v = Verifier::new(secret(1));
        let h1 = secret(1).host_key("h1");
        let path = "/v1/supervisor/logs/web?tail=10";
        let call = v
            .host_key("h1")
            .sign_call("s1", "GET", path, 9_000_000, "n", b"");
        assert_eq!(
            h1.verify_call(Some(&call), "GET", path, b"", 9_000_500),
            Ok("s1".into())
        );
        // Signed for another host, by another cluster, or for another path: refused.
        let for_h2 = v
            .host_key("h2")
            .sign_call("s1", "GET", path, 9_000_000, "n", b"");
        let other = secret(2)
            .host_key("h1")
            .sign_call("s1", "GET", path, 9_000_000, "n", b"");
        for bad in [&for_h2, &other] {
            assert_eq!(
                h1.verify_call(Some(bad), "GET", path, b"", 9_000_000),
                Err(Refused::NotFromControlPlane)
            );
        }
        assert!(
            h1.verify_call(Some(&call), "GET", "/v1/lease", b"", 9_000_000)
                .is_err()
        );
        // The host's own request (same key, same fields) is not a call, nor the reverse.
        let own = h1.sign("GET", path, 9_000_000, "n", b"");
        assert!(
            h1.verify_call(Some(&own), "GET", path, b"", 9_000_000)
                .is_err()
        );
        assert!(v.verify(Some(&call), "GET", path, b"", 9_000_000).is_err());
        // Stale or unsigned.
        assert!(matches!(
            h1.verify_call(Some(&call), "GET", path, b"", 9_000_000 + MAX_SKEW_MS + 1),
            Err(Refused::Skew { .. })
        ));
        assert_eq!(
            h1.verify_call(None, "GET", path, b"", 9_000_000),
            Err(Refused::NotFromControlPlane)
        );
    }

    #[test]
    fn a_signed_request_proves_its_host_once() {
        let v = Verifier::new(secret(1));
        let h1 = secret(1).host_key("h1");
        let s = h1.sign("POST", "/internal/lease", 1_000_000, "n1", b"{}");
        let who = v
            .verify(Some(&s), "POST", "/internal/lease", b"{}", 1_000_100)
            .unwrap();
        assert_eq!(who.name(), "h1");
        // The same request again is a replay.
        assert_eq!(
            v.verify(Some(&s), "POST", "/internal/lease", b"{}", 1_000_200)
                .unwrap_err(),
            Refused::Replayed("h1".into())
        );
    }

    #[test]
    fn altered_forged_stale_and_unsigned_requests_are_refused() {
        let v = Verifier::new(secret(1));
        let h1 = secret(1).host_key("h1");
        let s = h1.sign("POST", "/p", 5_000_000, "n", b"body");
        // Another body, path or claimed name.
        assert!(matches!(
            v.verify(Some(&s), "POST", "/p", b"bodx", 5_000_000),
            Err(Refused::BadMac(_))
        ));
        assert!(matches!(
            v.verify(Some(&s), "POST", "/q", b"body", 5_000_000),
            Err(Refused::BadMac(_))
        ));
        let mut as_h2 = s.clone();
        as_h2.host = "h2".into();
        assert!(matches!(
            v.verify(Some(&as_h2), "POST", "/p", b"body", 5_000_000),
            Err(Refused::BadMac(_))
        ));
        // A credential from another cluster's secret.
        let other = secret(2)
            .host_key("h1")
            .sign("POST", "/p", 5_000_000, "n", b"body");
        assert!(matches!(
            v.verify(Some(&other), "POST", "/p", b"body", 5_000_000),
            Err(Refused::BadMac(_))
        ));
        assert!(matches!(
            v.verify(Some(&s), "POST", "/p", b"body", 5_000_000 + MAX_SKEW_MS + 1),
            Err(Refused::Skew { .. })
        ));
        assert_eq!(
            v.verify(None, "POST", "/p", b"body", 5_000_000)
                .unwrap_err(),
            Refused::Unsigned
        );
    }

    #[test]
    fn only_the_secret_s_holder_can_sign_an_answer_a_host_accepts() {
        let h1 = secret(1).host_key("h1");
        let server_side = Verifier::new(secret(1)).host_key("h1");
        let mac = server_side.sign_answer("n", 200, b"grant");
        assert!(h1.answer_is_genuine("n", 200, b"grant", &mac));
        assert!(
            !h1.answer_is_genuine("m", 200, b"grant", &mac),
            "another request's"
        );
        assert!(!h1.answer_is_genuine("n", 200, b"grant!", &mac), "altered");
        let impostor = secret(9).host_key("h1").sign_answer("n", 200, b"grant");
        assert!(!h1.answer_is_genuine("n", 200, b"grant", &impostor));
        // A host cannot sign for another host: its key is not the other's.
        assert_ne!(
            secret(1).host_key("h2").sign_answer("n", 200, b"g"),
            h1.sign_answer("n", 200, b"g")
        );
    }

    #[test]
    fn only_servers_sign_raft_calls_and_prove_themselves() {
        let v = Verifier::new(secret(1));
        let s1 = secret(1).server_key("s1");
        let sig = s1.sign("POST", "/internal/raft/vote", 7_000_000, "n", b"{}");
        assert_eq!(
            v.verify_server(Some(&sig), "POST", "/internal/raft/vote", b"{}", 7_000_000)
                .unwrap(),
            "s1"
        );
        // Delivered twice, as Raft allows; but not outside the window.
        assert!(
            v.verify_server(Some(&sig), "POST", "/internal/raft/vote", b"{}", 7_000_001)
                .is_ok()
        );
        assert!(matches!(
            v.verify_server(
                Some(&sig),
                "POST",
                "/internal/raft/vote",
                b"{}",
                7_000_000 + MAX_SKEW_MS + 1
            ),
            Err(Refused::Skew { .. })
        ));
        // A host's credential, even of a host named like a server, is not a server key.
        let host =
            secret(1)
                .host_key("s1")
                .sign("POST", "/internal/raft/vote", 7_000_000, "n", b"{}");
        assert_eq!(
            v.verify_server(Some(&host), "POST", "/internal/raft/vote", b"{}", 7_000_000)
                .unwrap_err(),
            Refused::NotAServer("s1".into())
        );
        // A server proves itself to host h1 with h1's key; an impostor, or h2, cannot.
        let h1 = secret(1).host_key("h1");
        let proof = v.host_key("h1").sign_server_proof("s1", "127.0.0.1:1", "c");
        assert!(h1.server_proof_is_genuine("s1", "127.0.0.1:1", "c", &proof));
        assert!(
            !h1.server_proof_is_genuine("s1", "127.0.0.1:2", "c", &proof),
            "other address"
        );
        assert!(
            !h1.server_proof_is_genuine("s2", "127.0.0.1:1", "c", &proof),
            "other name"
        );
        assert!(
            !h1.server_proof_is_genuine("s1", "127.0.0.1:1", "d", &proof),
            "other challenge"
        );
        let by_h2 = secret(1)
            .host_key("h2")
            .sign_server_proof("s1", "127.0.0.1:1", "c");
        assert!(!h1.server_proof_is_genuine("s1", "127.0.0.1:1", "c", &by_h2));
    }

    #[test]
    fn credential_files_round_trip_and_name_their_host() {
        let dir = std::env::temp_dir().join(format!("buoy-identity-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("h1.cred");
        let k = secret(3).host_key("h1");
        secret_file::write_new(&p, &k.to_file_text(), "host credential file").unwrap();
        let back = HostKey::load(&p, "h1").unwrap();
        let e = HostKey::load(&p, "h2").unwrap_err().to_string();
        let s = dir.join("secret");
        secret_file::write_new(&s, &secret(3).to_file_text(), "cluster secret file").unwrap();
        let again = ClusterSecret::load(&s).unwrap().host_key("h1");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.raw, k.raw);
        assert_eq!(again.raw, k.raw);
        assert!(e.contains("host `h1`'s") && e.contains("`h2`"), "{e}");
    }
}
