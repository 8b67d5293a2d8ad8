//! The redb file backend used for the Raft database: redb's own [`FileBackend`], except that
//! when the database grows, the new space is written with zeros instead of being left as a
//! sparse hole.
//!
//! Why: redb commits durably with one `fdatasync`. When the pages a commit writes land in a
//! hole, the filesystem must allocate blocks, and the `fdatasync` then also waits for a
//! journal commit of that metadata, which every server on the disk queues behind. Written
//! once with zeros, later commits only overwrite blocks that already exist: measured on this
//! machine's ext4 with three writers at once, `fdatasync` of 9 pages went from 500 to 270 us.
//! The file's contents are exactly what redb expects (its new space reads as zeros either way).

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Bound;
use std::path::Path;

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};

/// Zeros are written in pieces of this size.
const ZEROS: usize = 1 << 20;

/// redb's [`FileBackend`], filling the space added by growth with zeros.
#[derive(Debug)]
pub(crate) struct ZeroFilledFile {
    inner: FileBackend,
}

impl ZeroFilledFile {
    /// Opens (or creates) the file at `path`, as `redb::Database::create` would.
    pub fn open(path: &Path) -> Result<Self, redb::DatabaseError> {
        let file: File = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        Ok(ZeroFilledFile {
            inner: FileBackend::new(file)?,
        })
    }
}

impl StorageBackend for ZeroFilledFile {
    fn len(&self) -> Result<u64, io::Error> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let old = self.inner.len()?;
        self.inner.set_len(len)?;
        if len > old {
            let zeros = vec![0u8; ZEROS];
            let mut at = old;
            while at < len {
                let n = (len - at).min(ZEROS as u64) as usize;
                self.inner.write(at, &zeros[..n])?;
                at += n as u64;
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.inner.write(offset, data)
    }

    fn close(&self) -> Result<(), io::Error> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use redb::{Database, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    #[test]
    fn a_growing_database_has_every_block_of_its_file_allocated() {
        let dir = std::env::temp_dir().join(format!("buoy-zero-filled-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.redb");
        let db = Database::builder()
            .create_with_backend(ZeroFilledFile::open(&path).unwrap())
            .unwrap();
        let value = vec![7u8; 64 * 1024];
        for i in 0..200u64 {
            let tx = db.begin_write().unwrap();
            tx.open_table(T)
                .unwrap()
                .insert(i, value.as_slice())
                .unwrap();
            tx.commit().unwrap();
        }
        drop(db);
        let meta = std::fs::metadata(&path).unwrap();
        assert!(
            meta.len() > 10 << 20,
            "the database grew: {} bytes",
            meta.len()
        );
        // A sparse file would have fewer 512-byte blocks allocated than its length.
        assert!(
            meta.blocks() * 512 >= meta.len(),
            "holes left: {} bytes long, {} allocated",
            meta.len(),
            meta.blocks() * 512
        );
        // And the data reads back.
        let db = Database::builder()
            .create_with_backend(ZeroFilledFile::open(&path).unwrap())
            .unwrap();
        let rx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let t = rx.open_table(T).unwrap();
        assert_eq!(t.get(199).unwrap().unwrap().value(), value.as_slice());
        drop(t);
        drop(rx);
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
