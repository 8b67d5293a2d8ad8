//! Files that hold secrets (the cluster secret, a host's credential, API tokens, the gossip
//! keyring): read only when no other user can read them, and written readable by the owner
//! alone.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use thiserror::Error;

/// Why a secret file was refused.
#[derive(Debug, Error)]
pub enum SecretFileError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{what} {path} can be read by other users (mode {mode:o}): run `chmod 600 {path}` (and make it owned by the user Buoy runs as)"
    )]
    Readable {
        what: &'static str,
        path: String,
        mode: u32,
    },
    #[error("cannot write {what} {path}: {source}")]
    Write {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
}

/// Reads `path`, refusing it when its group or others may read or write it.
pub fn read(path: &Path, what: &'static str) -> Result<String, SecretFileError> {
    let io = |source| SecretFileError::Read {
        what,
        path: path.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::Readable {
            what,
            path: path.display().to_string(),
            mode,
        });
    }
    std::fs::read_to_string(path).map_err(io)
}

/// Writes `text` to a new file `path` readable by its owner only; an existing file is kept.
pub fn write_new(path: &Path, text: &str, what: &'static str) -> Result<(), SecretFileError> {
    let io = |source| SecretFileError::Write {
        what,
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_others_can_read_is_refused_naming_the_fix() {
        let dir = std::env::temp_dir().join(format!("buoy-secret-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s");
        write_new(&p, "x", "cluster secret").unwrap();
        assert_eq!(read(&p, "cluster secret").unwrap(), "x");
        assert!(write_new(&p, "y", "cluster secret").is_err(), "kept");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read(&p, "cluster secret").unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(
            e.contains("chmod 600") && e.contains("cluster secret"),
            "{e}"
        );
    }
}
