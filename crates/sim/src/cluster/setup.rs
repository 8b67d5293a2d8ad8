//! The cluster a run starts with: one segment, the hosts and the `single` instances, through
//! the real state machine (placements come from the recovery loop's first plan).

use std::collections::BTreeMap;
use std::time::Duration;

use model::host::{Host, HostSpec};
use model::instance::{Instance, InstanceSpec};
use model::segment::{Segment, SegmentSpec};
use model::{ClusterState, Command, Expect, Object, ObjectMeta, Op, Timestamp};
use swim::Rng;

use super::ClusterScenario;
use super::host::Driver;

pub const SEGMENT: &str = "seg";

pub fn host_name(i: usize) -> String {
    format!("host-{i:03}")
}

pub fn host_id(i: usize) -> String {
    format!("h{i}")
}

fn meta(id: String) -> ObjectMeta {
    ObjectMeta {
        id,
        ..Default::default()
    }
}

fn put(st: &mut ClusterState, object: Object) {
    let cmd = Command {
        at: Timestamp::from_unix_millis(1_800_000_000_000),
        op: Op::Put {
            object: Box::new(object),
            expect: Expect::Absent,
        },
    };
    let (outcome, _) = st.apply(&cmd);
    if let Err(e) = outcome {
        panic!("the simulated cluster's own setup was refused: {e}");
    }
}

/// The starting state, and how each instance's processes stop (a fifth are OCF resources).
pub fn cluster_state(
    sc: &ClusterScenario,
    rng: &mut Rng,
) -> (ClusterState, BTreeMap<String, Driver>) {
    let mut st = ClusterState::default();
    let spec = SegmentSpec {
        name: Some(SEGMENT.into()),
        auto_rejoin: Some(true),
        ..Default::default()
    };
    put(
        &mut st,
        Object::Segment(Segment::create(meta(SEGMENT.into()), &spec).expect("a valid segment")),
    );
    // Room for at least twice the instances, so that losing hosts never leaves one unplaced.
    let per_host = (2 * sc.instances).div_ceil(sc.hosts.max(1)).max(4) as u64;
    for i in 0..sc.hosts {
        let spec: HostSpec = serde_json::from_value(serde_json::json!({
            "name": host_name(i),
            "capacity": {"cpu": per_host, "memory_mb": per_host * 1024},
        }))
        .expect("a valid host spec");
        put(
            &mut st,
            Object::Host(
                Host::create(meta(host_id(i)), &spec, SEGMENT.into()).expect("a valid host"),
            ),
        );
    }
    let mut drivers = BTreeMap::new();
    for k in 0..sc.instances {
        let ocf = rng.chance(0.2);
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "name": format!("inst-{k:04}"),
            "driver": if ocf { "ocf" } else { "process" },
            "params": if ocf {
                serde_json::json!({"agent": "ocf:heartbeat:Dummy"})
            } else {
                serde_json::json!({"command": "/bin/sleep", "args": ["infinity"]})
            },
            "cpu": 1,
            "memory_mb": 1024,
            "priority": rng.below(1000),
        }))
        .expect("a valid instance spec");
        let id = format!("i{k}");
        put(
            &mut st,
            Object::Instance(
                Instance::create(meta(id.clone()), &spec, SEGMENT.into())
                    .expect("a valid instance"),
            ),
        );
        drivers.insert(
            id,
            if ocf {
                Driver::Ocf {
                    timeout: Duration::from_secs(5),
                }
            } else {
                Driver::Process
            },
        );
    }
    (st, drivers)
}
