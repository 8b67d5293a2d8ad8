//! openraft's own storage test suite, run against Buoy's redb log store (with its group-commit
//! writer) and state machine: appends, truncations, purges, log state, votes, snapshots.

use std::path::PathBuf;

use openraft::testing::{StoreBuilder, Suite};
use state::raft::log_store::{LogStore, open_database};
use state::raft::state_machine::StateMachineStore;
use state::raft::types::{StorageError, TypeConfig};

/// A fresh database per test case, removed when the case ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("buoy-suite-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let db = open_database(&dir.join("raft.redb")).expect("open redb");
        let log = LogStore::new(db.clone());
        let sm = StateMachineStore::open(db)?;
        Ok((TempDir(dir), log, sm))
    }
}

#[test]
fn the_log_store_and_state_machine_pass_openraft_storage_suite() {
    Suite::test_all(Builder).expect("openraft storage suite");
}
