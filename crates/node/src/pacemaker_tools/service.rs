//! The agent's side of the Pacemaker tool shims: a Unix socket in the agent's data directory
//! (only the agent's user can connect: the file's mode is the authentication), where the
//! `buoy` shims (`crm_attribute`, `crm_master`, `attrd_updater`, `crm_node`, `crm_mon`,
//! `pacemakerd`, `cibadmin`, `crm_resource`, installed by
//! [`install`]) send the command line an OCF agent ran. The agent reads it with the parsers of
//! this module, makes the call on the attribute store as this host (signed with its
//! credential, answered by the leader after the write is committed), and sends back what the
//! shim prints and its exit code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderValue};
use model::attribute::{AttributeKey, AttributeScope};
use proto::{
    ATTRIBUTES_PATH, AttributeAnswer, AttributeCall, AttributeOp, ClusterStatus, STATUS_PATH,
    StatusCall,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tracing::{info, warn};

use super::attribute::{self, Defaults, Op, Request, Scope};
use super::crm_node::{Member, crm_node};
use super::{Answer, EXIT_USAGE};
use super::{cibadmin, crm_mon, crm_resource};
use crate::gossip::runtime::Shared;
use crate::http::client::HttpClient;
use crate::identity::{self, HostKey};
use crate::servers::ServerDirectory;

/// The tools the shims stand in for.
pub const TOOLS: [&str; 8] = [
    "crm_attribute",
    "crm_master",
    "attrd_updater",
    "crm_node",
    "crm_mon",
    "pacemakerd",
    "cibadmin",
    "crm_resource",
];
/// The variable that tells a shim where the agent's socket is.
pub const SOCKET_ENV: &str = "BUOY_TOOLS_SOCKET";
/// The longest call a shim may send.
const MAX_CALL_BYTES: u64 = 64 * 1024;
/// How long one call may take, leader election included.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// `CRM_EX_ERROR`: the call could not be made.
const EXIT_ERROR: i32 = 1;

/// What a shim sends: the tool, its arguments, and the defaults its environment gives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimCall {
    pub tool: String,
    pub args: Vec<String>,
    /// `OCF_RESOURCE_INSTANCE`.
    pub resource: Option<String>,
    /// `OCF_RESKEY_CRM_meta_on_node`.
    pub node: Option<String>,
}

/// Bans an OCF resource's copy from this host: the instance's name, or why not.
pub type BanFn = dyn Fn(&str) -> Result<String, String> + Send + Sync;

/// Answers the shims of this host.
pub struct ToolService {
    /// This host's name.
    pub me: String,
    pub client: HttpClient,
    pub servers: ServerDirectory,
    pub gossip: Arc<Shared>,
    /// Signs the calls (`None` with `--unsafe-no-host-identity`: `token` is sent instead).
    pub credential: Option<HostKey>,
    pub token: Option<String>,
    /// Whether this host's partition holds a quorum (it holds its lease).
    pub quorate: Box<dyn Fn() -> bool + Send + Sync>,
    /// Bans an OCF resource's copy from this host (`crm_resource -B`): the supervisor's
    /// [`crate::supervisor::reconciler::Supervisor::ban`].
    pub ban: Box<BanFn>,
    /// The time of the last signed call (each is newer than the one before); held for the
    /// whole call, so calls reach the leader in the order they were signed.
    pub last_signed_ms: tokio::sync::Mutex<u64>,
}

impl ToolService {
    /// What the shim prints for `call`.
    pub async fn answer(&self, call: ShimCall) -> Answer {
        let defaults = Defaults {
            resource: call.resource.clone(),
            node: call.node.clone().unwrap_or_else(|| self.me.clone()),
        };
        let parsed = match call.tool.as_str() {
            "crm_attribute" => attribute::crm_attribute(&call.args, &defaults),
            "crm_master" => attribute::crm_master(&call.args, &defaults),
            "attrd_updater" => attribute::attrd_updater(&call.args, &defaults),
            "crm_node" => {
                let members = self.gossip.read(|sw| {
                    sw.members()
                        .iter()
                        .map(|m| Member {
                            name: m.name().to_string(),
                            up: matches!(
                                m.state,
                                swim::MemberState::Alive | swim::MemberState::Suspect
                            ),
                        })
                        .collect::<Vec<_>>()
                });
                return match crm_node(&call.args, &self.me, &members, (self.quorate)()) {
                    Ok(a) => a,
                    Err(e) => usage(&e.to_string()),
                };
            }
            "pacemakerd" => return crm_mon::pacemakerd(&call.args),
            "crm_mon" => {
                let req = match crm_mon::parse(&call.args) {
                    Ok(r) => r,
                    Err(e) => return usage(&e.to_string()),
                };
                let command = format!("crm_mon {}", call.args.join(" "));
                return match self.cluster_status().await {
                    Ok(st) => crm_mon::render(req, &st, command.trim()),
                    Err(why) => failed("crm_mon", &why),
                };
            }
            "crm_resource" => {
                let ban = match crm_resource::parse(&call.args) {
                    Ok(b) => b,
                    Err(e) => return usage(&e.to_string()),
                };
                let node = ban.node.unwrap_or_else(|| defaults.node.clone());
                if node != self.me {
                    return failed(
                        "crm_resource",
                        &format!(
                            "{} may ban copies from itself only, not from `{node}`",
                            self.me
                        ),
                    );
                }
                return match (self.ban)(&ban.resource) {
                    Ok(name) => {
                        info!(instance = %name, "an OCF agent banned its copy from this host");
                        Answer::default()
                    }
                    Err(why) => failed("crm_resource", &why),
                };
            }
            "cibadmin" => {
                let req = match cibadmin::parse(&call.args) {
                    Ok(r) => r,
                    Err(e) => return usage(&e.to_string()),
                };
                return match self.cluster_status().await {
                    Ok(st) => cibadmin::render(&req, &st),
                    Err(why) => failed("cibadmin", &why),
                };
            }
            other => return usage(&format!("{other}: not a tool Buoy provides")),
        };
        let req = match parsed {
            Ok(r) => r,
            Err(e) => return usage(&e.to_string()),
        };
        match self.send(&req).await {
            Ok(value) => attribute::answer(&req, value.as_deref()),
            Err(why) => failed(&call.tool, &why),
        }
    }

    /// The cluster's status as the leader sees it (`crm_mon`, `cibadmin`).
    async fn cluster_status(&self) -> Result<ClusterStatus, String> {
        let ask = StatusCall {
            host: self.me.clone(),
        };
        let body = serde_json::to_vec(&ask).unwrap_or_default();
        let bytes = self.call_leader(STATUS_PATH, body).await?;
        serde_json::from_slice::<ClusterStatus>(&bytes).map_err(|e| format!("not a status: {e}"))
    }

    /// Makes `req` on the attribute store; the value after it.
    async fn send(&self, req: &Request) -> Result<Option<String>, String> {
        let call = AttributeCall {
            host: self.me.clone(),
            key: key_of(req),
            op: match &req.op {
                Op::Query => AttributeOp::Query,
                Op::Update(v) => AttributeOp::Set(v.clone()),
                Op::Delete => AttributeOp::Delete,
            },
        };
        let body = serde_json::to_vec(&call).map_err(|e| e.to_string())?;
        let bytes = self.call_leader(ATTRIBUTES_PATH, body).await?;
        serde_json::from_slice::<AttributeAnswer>(&bytes)
            .map(|a| a.value)
            .map_err(|e| {
                format!(
                    "not an attribute answer ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
    }

    /// Posts `body` to `path` on the control plane as this host (signed), trying every
    /// server until one answers or the call's time is up; the answer's body.
    async fn call_leader(&self, path: &str, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let mut last_signed = self.last_signed_ms.lock().await;
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        let mut why = "no control-plane server is known to this host".to_string();
        loop {
            for target in self.servers.servers_to_try() {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                let mut headers = HeaderMap::new();
                let mut nonce = None;
                if let Some(key) = &self.credential {
                    let time_ms = identity::wall_ms().max(*last_signed + 1);
                    *last_signed = time_ms;
                    let n = identity::nonce();
                    key.sign("POST", path, time_ms, &n, &body)
                        .insert_into(&mut headers);
                    nonce = Some(n);
                } else if let Some(t) = &self.token
                    && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
                {
                    headers.insert(hyper::header::AUTHORIZATION, v);
                }
                let url = self.client.url(&target.http, path);
                let (status, answer_headers, bytes) = match self
                    .client
                    .post_json(&url, body.clone(), headers, left)
                    .await
                {
                    Ok(a) => a,
                    Err(e) => {
                        why = format!("server `{}` did not answer: {e}", target.name);
                        continue;
                    }
                };
                if let (Some(key), Some(nonce)) = (&self.credential, &nonce)
                    && !key.answer_is_signed(nonce, status.as_u16(), &bytes, &answer_headers)
                {
                    why = format!(
                        "the answer of `{}` is not signed by the control plane",
                        target.name
                    );
                    continue;
                }
                let text = String::from_utf8_lossy(&bytes);
                if status.is_success() {
                    return Ok(bytes.to_vec());
                }
                if status.is_client_error() {
                    // Refused on its merits (not allowed, invalid): no other server says else.
                    return Err(message_of(&text));
                }
                why = format!("server `{}`: {}", target.name, message_of(&text));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("cannot reach the control plane: {why}"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Serves the shims on `path` until the agent ends. The socket is made readable and
    /// writable by the agent's user only.
    pub async fn serve(self: Arc<Self>, path: PathBuf) -> std::io::Result<()> {
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        info!(socket = %path.display(), "Pacemaker tool shims served");
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!(error = %e, "a tool shim could not connect");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let me = self.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                let mut reader =
                    BufReader::new(tokio::io::AsyncReadExt::take(read, MAX_CALL_BYTES));
                let answer = match reader.read_line(&mut line).await {
                    Ok(_) => match serde_json::from_str::<ShimCall>(&line) {
                        Ok(call) => me.answer(call).await,
                        Err(e) => usage(&format!("not a shim call: {e}")),
                    },
                    Err(e) => usage(&format!("cannot read the call: {e}")),
                };
                let mut out = serde_json::to_vec(&answer).unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
            });
        }
    }
}

/// The store's key for a tool's request.
fn key_of(req: &Request) -> AttributeKey {
    AttributeKey {
        scope: match req.scope {
            Scope::Status => AttributeScope::Status,
            Scope::Nodes => AttributeScope::Nodes,
            Scope::CrmConfig => AttributeScope::CrmConfig,
        },
        node: req.node.clone(),
        set: req.set.clone(),
        name: req.name.clone(),
    }
}

/// The `message` of an API error body, or the body.
fn message_of(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| text.trim().to_string())
}

/// What a shim prints when its call could not be made.
fn failed(tool: &str, why: &str) -> Answer {
    Answer {
        stdout: String::new(),
        stderr: format!("{tool}: {why}\n"),
        exit_code: EXIT_ERROR,
    }
}

fn usage(problem: &str) -> Answer {
    Answer {
        stdout: String::new(),
        stderr: format!("{problem}\n"),
        exit_code: EXIT_USAGE,
    }
}

/// Puts the shims in `dir` (made if missing): one link per tool to `exe`, the `buoy` binary,
/// which acts as the tool its name says.
pub fn install(dir: &Path, exe: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for tool in TOOLS {
        // Made aside, then renamed over the old one: never a moment without the tool, and
        // two agents sharing a data directory cannot trip over each other.
        let fresh = dir.join(format!(".{tool}.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        std::os::unix::fs::symlink(exe, &fresh)?;
        std::fs::rename(&fresh, dir.join(tool))?;
    }
    Ok(())
}

/// A shim's side: sends the command line to the agent at `socket`; what to print and the
/// exit code.
pub fn call_agent(socket: &Path, call: &ShimCall) -> Answer {
    use std::io::{BufRead, Write};
    let fail = |why: String| Answer {
        stdout: String::new(),
        stderr: format!("{} (Buoy's shim): {why}\n", call.tool),
        exit_code: EXIT_ERROR,
    };
    let mut stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) => {
            return fail(format!(
                "cannot reach the Buoy agent at {}: {e} (is `buoy agent` running on this host?)",
                socket.display()
            ));
        }
    };
    let _ = stream.set_read_timeout(Some(CALL_TIMEOUT + Duration::from_secs(5)));
    let mut line = serde_json::to_vec(call).unwrap_or_default();
    line.push(b'\n');
    if let Err(e) = stream.write_all(&line) {
        return fail(format!("cannot send the call: {e}"));
    }
    let mut answer = String::new();
    if let Err(e) = std::io::BufReader::new(stream).read_line(&mut answer) {
        return fail(format!("no answer from the agent: {e}"));
    }
    serde_json::from_str(&answer).unwrap_or_else(|e| fail(format!("a bad answer ({e}): {answer}")))
}
