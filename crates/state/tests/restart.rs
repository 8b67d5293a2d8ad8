//! A server restarted from disk must not serve lease grants from a partly applied state
//! (issue 15, hole 10): `confirm_leadership`, which every grant waits for, returns only once the
//! state machine has applied everything in the log.

use std::time::Duration;

use model::command::{Expect, Object, Op};
use model::segment::{Segment, SegmentSpec};
use model::{ObjectMeta, Timestamp};
use state::data_dir::DataDir;
use state::network::{Rpc, Transport, TransportError};
use state::replica::{Replica, ReplicaConfig};

/// A single server never calls anyone.
#[derive(Clone)]
struct Nobody;

impl Transport for Nobody {
    async fn call(
        &self,
        to: &model::server::ServerNode,
        _: Rpc,
        _: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        Err(TransportError::Unreachable(to.name.clone()))
    }
}

fn segment(i: usize) -> Op {
    let spec = SegmentSpec {
        name: Some(format!("seg-{i}")),
        ..Default::default()
    };
    let meta = ObjectMeta {
        id: format!("s{i}"),
        ..Default::default()
    };
    Op::Put {
        object: Box::new(Object::Segment(
            Segment::create(meta, &spec).expect("a segment"),
        )),
        expect: Expect::Absent,
    }
}

/// Removes the test's directory however the test ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_leadership_is_confirmed_only_from_a_fully_applied_state() {
    let root = std::env::temp_dir().join(format!("buoy-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let _cleanup = RemoveOnDrop(root.clone());
    let me = model::server::ServerNode {
        name: "server-1".into(),
        http: "127.0.0.1:1".into(),
    };
    let config = ReplicaConfig {
        // No snapshot: the restarted state machine is rebuilt by applying the log.
        snapshot_every: 1_000_000,
        ..ReplicaConfig::default()
    };
    let writes = 2_000;
    {
        let dir = DataDir::open(&root).expect("data dir");
        let r = Replica::open(&dir, me.clone(), Nobody, &config)
            .await
            .expect("open");
        r.bootstrap(std::slice::from_ref(&me))
            .await
            .expect("bootstrap");
        let elected = std::time::Instant::now();
        while !r.is_leader() {
            assert!(
                elected.elapsed() < Duration::from_secs(20),
                "a single server never became leader"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for i in 0..writes {
            let _ = r.write(segment(i), Timestamp::now()).await.expect("write");
        }
        r.shutdown().await;
    }
    let dir = DataDir::open(&root).expect("data dir");
    // The first life's log writer thread lets go of the database a moment after shutdown (a
    // restarted server is a new process and never waits for this).
    let opened = std::time::Instant::now();
    let r = loop {
        match Replica::open(&dir, me.clone(), Nobody, &config).await {
            Ok(r) => break r,
            Err(e) if opened.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("reopen: {e}"),
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let term = loop {
        match r.confirm_leadership().await {
            Ok(term) => break term,
            Err(e) if std::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("the restarted server never led: {e}"),
        }
    };
    let segments = r.shared().read(|st| st.segments().count());
    r.shutdown().await;
    assert_eq!(
        segments, writes,
        "leadership (term {term}) was confirmed from a state with {segments} of {writes} writes applied"
    );
}
