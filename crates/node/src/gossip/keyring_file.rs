//! The keyring file that encrypts gossip: `{"keys": ["<64 hex chars>", ...]}`, the first key
//! encrypts, every key decrypts (so keys can rotate without a cluster-wide stop).

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// The keyring file's contents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringFile {
    pub keys: Vec<String>,
}

/// Reads a keyring file (`{"keys": ["<64 hex chars>", ...]}`, first key primary).
pub fn load_keyring(path: &Path, label: &str) -> Result<swim::keyring::Keyring> {
    let text = crate::secret_file::read(path, "keyring file")?;
    let file: KeyringFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "keyring file {} is not valid JSON of the form {{\"keys\": [\"<64 hex chars>\"]}}",
            path.display()
        )
    })?;
    let keys = file
        .keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            swim::keyring::Key::from_hex(k)
                .with_context(|| format!("keyring file {}: key #{}", path.display(), i + 1))
        })
        .collect::<Result<Vec<_>>>()?;
    swim::keyring::Keyring::new(keys, label)
        .with_context(|| format!("keyring file {}", path.display()))
}
