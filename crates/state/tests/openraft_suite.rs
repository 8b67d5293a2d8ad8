//! openraft's own storage test suite, run against Buoy's redb log store (with its group-commit
//! writer) and state machine: appends, truncations, purges, log state, votes, snapshots.

use std::path::PathBuf;

use openraft::testing::{StoreBuilder, Suite};
use state::disk_io::DiskIo;
use state::log_store::{LogStore, open_database};
use state::state_machine::StateMachineStore;
use state::types::{StorageError, TypeConfig};

/// A fresh database per test case, removed when the case ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Builds stores whose disk work runs where `.0` says.
struct Builder(DiskIo);

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("buoy-suite-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = open_database(&dir.join("raft.redb")).expect("open redb");
        let log = LogStore::new(db.clone(), self.0).expect("log writer");
        let sm = StateMachineStore::open(db, self.0)?;
        Ok((TempDir(dir), log, sm))
    }
}

#[test]
fn the_log_store_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(Builder(DiskIo::Threads))
        .expect("openraft storage suite (disk work on threads)");
}

#[test]
fn the_stores_pass_openraft_storage_suite_with_disk_work_on_the_runtime_too() {
    Suite::test_all(Builder(DiskIo::Runtime))
        .expect("openraft storage suite (disk work on the runtime)");
}
