//! An instance's output log: appended to a file under the data dir, capped in size. When the
//! file passes the cap it becomes `NAME.log.1` (replacing the previous one) and a new file
//! starts, so an instance never uses more than twice the cap on disk.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The default size cap of one log file.
pub const DEFAULT_CAP: u64 = 10 * 1024 * 1024;

/// A size-capped, rotated log file.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    file: File,
    size: u64,
    cap: u64,
}

impl LogFile {
    /// Opens `path` for appending (creating its directory), rotating at `cap` bytes.
    pub fn open(path: &Path, cap: u64) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
            cap: cap.max(1),
        })
    }

    /// The rotated previous file of `path`.
    pub fn previous(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `bytes`, rotating first when they would pass the cap.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.cap {
            self.file.flush()?;
            std::fs::rename(&self.path, Self::previous(&self.path))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            self.size = 0;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_at_its_cap_and_keeps_one_previous_file() {
        let dir = std::env::temp_dir().join(format!("buoy-logfile-{}", std::process::id()));
        let path = dir.join("web.log");
        let mut log = LogFile::open(&path, 100).unwrap();
        for i in 0..30 {
            log.append(format!("line {i:02}\n").as_bytes()).unwrap();
        }
        let current = std::fs::read_to_string(&path).unwrap();
        let previous = std::fs::read_to_string(LogFile::previous(&path)).unwrap();
        assert!(current.len() <= 100 && previous.len() <= 100);
        assert!(current.ends_with("line 29\n"), "{current}");
        // The two files hold the most recent lines, in order, without a gap.
        let both = format!("{previous}{current}");
        let first: usize = both[5..7].parse().unwrap();
        let expected: String = (first..30).map(|i| format!("line {i:02}\n")).collect();
        assert_eq!(both, expected);
        // Reopening continues the current file and its size.
        drop(log);
        let mut log = LogFile::open(&path, 100).unwrap();
        log.append(b"again\n").unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        let _ = std::fs::remove_dir_all(dir);
    }
}
