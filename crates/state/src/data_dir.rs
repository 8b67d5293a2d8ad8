//! The server's data directory: a version file and the redb database. A directory written by
//! a different layout version is refused rather than misread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The layout this build reads and writes.
pub const LAYOUT_VERSION: u32 = 1;
const VERSION_FILE: &str = "BUOY_DATA_VERSION";

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "data dir {path} has layout version {found}, this build reads version {LAYOUT_VERSION}: use a matching buoy or a fresh directory"
    )]
    WrongVersion { path: PathBuf, found: String },
}

/// A checked data directory.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Opens `root`, creating it (and its version file) when new.
    pub fn open(root: &Path) -> Result<DataDir, DataDirError> {
        let io_err = |source| DataDirError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io_err)?;
        let version = root.join(VERSION_FILE);
        match fs::read_to_string(&version) {
            Ok(found) if found.trim() == LAYOUT_VERSION.to_string() => {}
            Ok(found) => {
                return Err(DataDirError::WrongVersion {
                    path: root.to_path_buf(),
                    found: found.trim().to_string(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::write(&version, format!("{LAYOUT_VERSION}\n")).map_err(io_err)?;
            }
            Err(e) => return Err(io_err(e)),
        }
        Ok(DataDir {
            root: root.to_path_buf(),
        })
    }

    /// The redb file holding the Raft log, vote and snapshots.
    pub fn raft_db(&self) -> PathBuf {
        self.root.join("raft.redb")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_of_another_layout_is_refused() {
        let dir = std::env::temp_dir().join(format!("buoy-datadir-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let d = DataDir::open(&dir).unwrap();
        assert!(d.raft_db().starts_with(&dir));
        assert!(
            DataDir::open(&dir).is_ok(),
            "reopening the same layout works"
        );
        fs::write(dir.join(VERSION_FILE), "99\n").unwrap();
        let e = DataDir::open(&dir).unwrap_err().to_string();
        assert!(e.contains("layout version 99"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
