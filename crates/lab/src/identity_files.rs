//! The identity files of a cluster the lab starts on this machine: one cluster secret for its
//! servers, a credential per host (`node::identity`) and the gossip keyring, made in the
//! cluster's directory.

use std::path::Path;

use anyhow::{Context, Result};
use node::identity::ClusterSecret;
use node::secret_file;

/// The flags that give agent `name` its identity: the cluster secret for a server, its own
/// credential for a host. Both files are made in `dir` when missing.
pub fn agent_args(dir: &Path, name: &str, server: bool) -> Result<Vec<String>> {
    let secret = dir.join("cluster.secret");
    if !secret.exists() {
        let s = ClusterSecret::generate().context("no OS randomness")?;
        secret_file::write_new(&secret, &s.to_file_text(), "cluster secret file")?;
    }
    if server {
        return Ok(vec!["--cluster-secret".into(), path(&secret)]);
    }
    let cred = dir.join(format!("{name}.cred"));
    if !cred.exists() {
        let key = ClusterSecret::load(&secret)?.host_key(name);
        secret_file::write_new(&cred, &key.to_file_text(), "host credential file")?;
    }
    Ok(vec!["--credential".into(), path(&cred)])
}

/// The headers that sign `method path` with `body` for agent `name`'s own routes
/// (`node::http::host_gate`), as the lab's tools call them: with that host's credential,
/// derived from the cluster secret in `dir`. None when `dir` holds no secret (identity off).
pub fn sign_for(
    dir: &Path,
    name: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    let Ok(secret) = ClusterSecret::load(&dir.join("cluster.secret")) else {
        return Vec::new();
    };
    let sig = secret
        .host_key(name)
        .sign_call_now("lab", method, path, body);
    sig.headers().into_iter().collect()
}

/// The flags that encrypt an agent's gossip with the cluster's keyring (made in `dir` when
/// missing).
pub fn keyring_args(dir: &Path) -> Result<Vec<String>> {
    let file = dir.join("keyring.json");
    if !file.exists() {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        let key = swim::keyring::Key::from_bytes(b).to_hex();
        secret_file::write_new(
            &file,
            &format!("{{\"keys\": [\"{key}\"]}}\n"),
            "keyring file",
        )?;
    }
    Ok(vec!["--keyring".into(), path(&file)])
}

fn path(p: &Path) -> String {
    p.display().to_string()
}
