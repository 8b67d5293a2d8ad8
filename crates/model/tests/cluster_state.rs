//! The state machine as a specification: what each command does, and invariants that hold
//! after any sequence of commands.

use model::attribute::{AttributeKey, AttributeScope};
use model::host::{Host, HostSpec};
use model::instance::{Instance, InstanceSpec};
use model::notification::{Notification, NotificationSpec};
use model::placement::{Epoch, Placement, PlacementSpec};
use model::segment::{Segment, SegmentSpec};
use model::{
    Action, ClusterState, Command, Expect, Kind, Object, ObjectMeta, Op, Outcome, StateError,
    Timestamp,
};
use proptest::prelude::*;

fn meta(id: &str) -> ObjectMeta {
    ObjectMeta {
        id: id.into(),
        ..Default::default()
    }
}

fn at(s: u64) -> Timestamp {
    Timestamp::from_unix_millis(1_800_000_000_000 + s * 1000)
}

fn segment(id: &str, name: &str) -> Object {
    let spec = SegmentSpec {
        name: Some(name.into()),
        ..Default::default()
    };
    Object::Segment(Segment::create(meta(id), &spec).unwrap())
}

fn host(id: &str, name: &str, seg: &str) -> Object {
    let spec = HostSpec {
        name: Some(name.into()),
        ..Default::default()
    };
    Object::Host(Host::create(meta(id), &spec, seg.into()).unwrap())
}

fn instance(id: &str, name: &str, seg: &str) -> Object {
    let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
        "name": name, "driver": "process", "params": {"command": "sleep", "args": ["1000"]}
    }))
    .unwrap();
    Object::Instance(Instance::create(meta(id), &spec, seg.into()).unwrap())
}

fn put(
    s: &mut ClusterState,
    index: u64,
    object: Object,
    expect: Expect,
) -> Result<Object, StateError> {
    let cmd = Command {
        at: at(index),
        op: Op::Put {
            object: Box::new(object),
            expect,
        },
    };
    s.apply(&cmd)
        .0
        .map(|o| o.expect("a put returns the stored object"))
}

fn delete(
    s: &mut ClusterState,
    index: u64,
    kind: Kind,
    id: &str,
    version: Option<u64>,
) -> Result<(), StateError> {
    let cmd = Command {
        at: at(index),
        op: Op::Delete {
            kind,
            id: id.into(),
            version,
        },
    };
    s.apply(&cmd).0.map(|_| ())
}

#[test]
fn create_sets_version_one_and_timestamps_update_bumps_the_version() {
    let mut s = ClusterState::default();
    let created = put(&mut s, 1, segment("s1", "zone-a"), Expect::Absent).unwrap();
    assert_eq!(created.meta().version, 1);
    assert_eq!(created.meta().created_at, at(1));
    let Object::Segment(mut seg) = created else {
        unreachable!()
    };
    seg.description = "rack 3".into();
    let updated = put(&mut s, 2, Object::Segment(seg.clone()), Expect::Version(1)).unwrap();
    assert_eq!(updated.meta().version, 2);
    assert_eq!(updated.meta().created_at, at(1));
    assert_eq!(updated.meta().updated_at, at(2));
    // A second writer that read version 1 loses.
    let e = put(&mut s, 3, Object::Segment(seg), Expect::Version(1)).unwrap_err();
    assert!(
        matches!(
            e,
            StateError::VersionMismatch {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(s.segment("s1").unwrap().description, "rack 3");
}

#[test]
fn names_are_unique_per_kind_and_free_again_after_rename_or_delete() {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "zone-a"), Expect::Absent).unwrap();
    let e = put(&mut s, 2, segment("s2", "zone-a"), Expect::Absent).unwrap_err();
    assert!(matches!(
        e,
        StateError::NameTaken {
            kind: Kind::Segment,
            ..
        }
    ));
    // A host may share a segment's name: names are per kind.
    put(&mut s, 3, host("h1", "zone-a", "s1"), Expect::Absent).unwrap();
    let mut renamed = segment("s1", "zone-b");
    if let Object::Segment(seg) = &mut renamed {
        seg.meta.version = 1;
    }
    put(&mut s, 4, renamed, Expect::Version(1)).unwrap();
    put(&mut s, 5, segment("s2", "zone-a"), Expect::Absent).unwrap();
    assert_eq!(s.resolve(Kind::Segment, "zone-b").as_deref(), Some("s1"));
    assert_eq!(s.resolve(Kind::Segment, "zone-a").as_deref(), Some("s2"));
    assert_eq!(s.resolve(Kind::Segment, "s2").as_deref(), Some("s2"));
}

#[test]
fn references_must_exist_and_block_deletes() {
    let mut s = ClusterState::default();
    let e = put(&mut s, 1, host("h1", "node-1", "nope"), Expect::Absent).unwrap_err();
    assert_eq!(e.field(), Some("segment"));
    put(&mut s, 2, segment("s1", "zone-a"), Expect::Absent).unwrap();
    put(&mut s, 3, host("h1", "node-1", "s1"), Expect::Absent).unwrap();
    put(&mut s, 4, instance("i1", "web", "s1"), Expect::Absent).unwrap();
    let e = delete(&mut s, 5, Kind::Segment, "s1", None).unwrap_err();
    assert!(e.to_string().contains("1 host(s) and 1 instance(s)"), "{e}");
    let e = delete(&mut s, 6, Kind::Host, "h1", Some(7)).unwrap_err();
    assert!(matches!(e, StateError::VersionMismatch { .. }));
    delete(&mut s, 7, Kind::Host, "h1", Some(1)).unwrap();
    delete(&mut s, 8, Kind::Instance, "i1", None).unwrap();
    delete(&mut s, 9, Kind::Segment, "s1", None).unwrap();
    assert_eq!(s.segments().count(), 0);
    let e = delete(&mut s, 10, Kind::Segment, "s1", None).unwrap_err();
    assert!(matches!(e, StateError::NotFound { .. }));
}

#[test]
fn notifications_get_serials_hosts_and_refuse_duplicates_and_maintenance() {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "zone-a"), Expect::Absent).unwrap();
    put(&mut s, 2, host("h1", "node-1", "s1"), Expect::Absent).unwrap();
    let report = |id: &str, host: &str, t: &str| {
        let spec: NotificationSpec = serde_json::from_value(serde_json::json!({
            "type": "COMPUTE_HOST", "hostname": host, "generated_time": t,
            "payload": {"event": "STOPPED"}
        }))
        .unwrap();
        Object::Notification(Notification::create(meta(id), 0, &spec).unwrap())
    };
    let Object::Notification(n) = put(
        &mut s,
        3,
        report("n1", "node-1", "2026-11-21T10:00:00Z"),
        Expect::Absent,
    )
    .unwrap() else {
        unreachable!()
    };
    assert_eq!(
        (n.serial, n.source_host.as_deref(), n.segment.as_deref()),
        (1, Some("h1"), Some("s1"))
    );
    let e = put(
        &mut s,
        4,
        report("n2", "node-1", "2026-11-21T10:01:00Z"),
        Expect::Absent,
    )
    .unwrap_err();
    assert!(
        matches!(e, StateError::Conflict { .. }) && e.to_string().contains("duplicate"),
        "{e}"
    );
    let Object::Notification(n3) = put(
        &mut s,
        5,
        report("n3", "node-1", "2026-11-21T10:05:00Z"),
        Expect::Absent,
    )
    .unwrap() else {
        unreachable!()
    };
    assert_eq!(n3.serial, 2);
    let Some(Object::Host(mut h)) = s.get(Kind::Host, "h1") else {
        unreachable!()
    };
    h.on_maintenance = true;
    put(&mut s, 6, Object::Host(h), Expect::Version(1)).unwrap();
    let e = put(
        &mut s,
        7,
        report("n4", "node-1", "2026-11-21T11:00:00Z"),
        Expect::Absent,
    )
    .unwrap_err();
    assert!(e.to_string().contains("maintenance"), "{e}");
}

fn placement(id: &str, instance: &str, replica: u32, host: &str) -> Object {
    let spec = PlacementSpec {
        replica: Some(replica),
        ..Default::default()
    };
    Object::Placement(Placement::create(meta(id), &spec, instance.into(), host.into()).unwrap())
}

fn epoch(o: &Object) -> Epoch {
    match o {
        Object::Placement(p) => p.epoch,
        other => panic!("not a placement: {other:?}"),
    }
}

#[test]
fn placements_get_a_new_epoch_on_every_move_and_respect_replicas_and_segments() {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "zone-a"), Expect::Absent).unwrap();
    put(&mut s, 2, segment("s2", "zone-b"), Expect::Absent).unwrap();
    for (i, (id, name, seg)) in [("h1", "n1", "s1"), ("h2", "n2", "s1"), ("h3", "n3", "s2")]
        .into_iter()
        .enumerate()
    {
        put(&mut s, 3 + i as u64, host(id, name, seg), Expect::Absent).unwrap();
    }
    put(&mut s, 6, instance("i1", "web", "s1"), Expect::Absent).unwrap();

    let p = put(&mut s, 7, placement("p1", "i1", 0, "h1"), Expect::Absent).unwrap();
    assert_eq!(epoch(&p), Epoch(1));
    // Same host: the epoch stays; another host: a new, higher one.
    let p = put(
        &mut s,
        8,
        placement("p1", "i1", 0, "h1"),
        Expect::Version(1),
    )
    .unwrap();
    assert_eq!(epoch(&p), Epoch(1));
    let p = put(
        &mut s,
        9,
        placement("p1", "i1", 0, "h2"),
        Expect::Version(2),
    )
    .unwrap();
    assert_eq!(epoch(&p), Epoch(2));
    // The move records the host left and its epoch: the copy there must stop first.
    let Object::Placement(moved) = &p else {
        unreachable!()
    };
    assert_eq!(moved.handoffs.len(), 1);
    assert_eq!(
        (moved.handoffs[0].host.as_str(), moved.handoffs[0].epoch),
        ("h1", Epoch(1))
    );
    assert_eq!(moved.handoffs[0].change, s.change_index());
    // Moving again before the first handoff was cleared keeps both hosts to confirm.
    let p = put(
        &mut s,
        9,
        placement("p1", "i1", 0, "h1"),
        Expect::Version(3),
    )
    .unwrap();
    let Object::Placement(back) = &p else {
        unreachable!()
    };
    assert_eq!(back.epoch, Epoch(3));
    let left: Vec<(&str, Epoch)> = back
        .handoffs
        .iter()
        .map(|h| (h.host.as_str(), h.epoch))
        .collect();
    assert_eq!(left, [("h1", Epoch(1)), ("h2", Epoch(2))]);
    // The leader clears the list once confirmed (same host: the epoch stays).
    let mut cleared = back.clone();
    cleared.handoffs.clear();
    let p = put(&mut s, 9, Object::Placement(cleared), Expect::Version(4)).unwrap();
    assert_eq!(epoch(&p), Epoch(3));
    let p = put(
        &mut s,
        9,
        placement("p1", "i1", 0, "h2"),
        Expect::Version(5),
    )
    .unwrap();
    assert_eq!(epoch(&p), Epoch(4));

    let err = |r: Result<Object, StateError>| r.unwrap_err().to_string();
    let e = err(put(
        &mut s,
        10,
        placement("p2", "i1", 0, "h1"),
        Expect::Absent,
    ));
    assert!(e.contains("already placed (placement `p1`)"), "{e}");
    let e = err(put(
        &mut s,
        10,
        placement("p2", "i1", 1, "h1"),
        Expect::Absent,
    ));
    assert!(e.contains("has 1 copy: replica must be below 1"), "{e}");
    let e = err(put(
        &mut s,
        10,
        placement("p2", "i1", 0, "h3"),
        Expect::Absent,
    ));
    assert!(e.contains("not in the segment"), "{e}");
    let e = err(put(
        &mut s,
        10,
        placement("p2", "nope", 0, "h1"),
        Expect::Absent,
    ));
    assert!(e.contains("instance `nope` does not exist"), "{e}");

    // A placed host cannot be deleted; deleting the instance removes its placements.
    let e = delete(&mut s, 11, Kind::Host, "h2", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("placed instance"), "{e}");
    delete(&mut s, 12, Kind::Instance, "i1", None).unwrap();
    assert_eq!(s.placements().count(), 0);
    delete(&mut s, 13, Kind::Host, "h2", None).unwrap();
    // Epochs are never reused, even after the placement is gone.
    put(&mut s, 14, instance("i2", "db", "s1"), Expect::Absent).unwrap();
    let p = put(&mut s, 15, placement("p3", "i2", 0, "h1"), Expect::Absent).unwrap();
    assert_eq!(epoch(&p), Epoch(5));
}

#[test]
fn refused_commands_change_nothing_and_report_no_change() {
    let mut s = ClusterState::default();
    let before = s.clone();
    let cmd = Command {
        at: at(1),
        op: Op::Put {
            object: Box::new(host("h1", "node-1", "missing")),
            expect: Expect::Absent,
        },
    };
    let (outcome, change) = s.apply(&cmd);
    assert!(outcome.is_err() && change.is_none());
    assert_eq!(s, before);
    let (outcome, change) = s.apply(&Command {
        at: at(2),
        op: Op::Noop,
    });
    assert_eq!(outcome, Ok(None));
    assert!(change.is_none());
}

// ----- any sequence of commands -----

#[derive(Clone, Debug)]
enum Step {
    CreateSegment(u8, u8),
    CreateHost(u8, u8, u8),
    CreateInstance(u8, u8, u8),
    Rename(u8, u8, u8),
    Delete(u8, u8, Option<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u8..4, 0u8..4).prop_map(|(i, n)| Step::CreateSegment(i, n)),
        (0u8..6, 0u8..6, 0u8..4).prop_map(|(i, n, s)| Step::CreateHost(i, n, s)),
        (0u8..6, 0u8..6, 0u8..4).prop_map(|(i, n, s)| Step::CreateInstance(i, n, s)),
        (0u8..3, 0u8..6, 0u8..6).prop_map(|(k, i, n)| Step::Rename(k, i, n)),
        (0u8..3, 0u8..6, proptest::option::of(1u8..4)).prop_map(|(k, i, v)| Step::Delete(k, i, v)),
    ]
}

fn kind(k: u8) -> Kind {
    [Kind::Segment, Kind::Host, Kind::Instance][k as usize % 3]
}

/// The final state, each command's outcome, and the log indexes of the changes reported.
fn run(steps: &[Step]) -> (ClusterState, Vec<Outcome>, Vec<u64>) {
    let mut s = ClusterState::default();
    let mut outcomes = Vec::new();
    let mut change_indexes = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        let index = n as u64 + 1;
        let op = match st {
            Step::CreateSegment(i, name) => Op::Put {
                object: Box::new(segment(&format!("s{i}"), &format!("seg-{name}"))),
                expect: Expect::Absent,
            },
            Step::CreateHost(i, name, seg) => Op::Put {
                object: Box::new(host(
                    &format!("h{i}"),
                    &format!("node-{name}"),
                    &format!("s{seg}"),
                )),
                expect: Expect::Absent,
            },
            Step::CreateInstance(i, name, seg) => Op::Put {
                object: Box::new(instance(
                    &format!("i{i}"),
                    &format!("app-{name}"),
                    &format!("s{seg}"),
                )),
                expect: Expect::Absent,
            },
            Step::Rename(k, i, name) => {
                let prefix = ["s", "h", "i"][*k as usize % 3];
                match s.get(kind(*k), &format!("{prefix}{i}")) {
                    Some(mut o) => {
                        let version = o.meta().version;
                        match &mut o {
                            Object::Segment(x) => x.name = format!("seg-{name}"),
                            Object::Host(x) => x.name = format!("node-{name}"),
                            Object::Instance(x) => x.name = format!("app-{name}"),
                            Object::Notification(_) | Object::Placement(_) => {}
                        }
                        Op::Put {
                            object: Box::new(o),
                            expect: Expect::Version(version),
                        }
                    }
                    None => Op::Noop,
                }
            }
            Step::Delete(k, i, v) => {
                let prefix = ["s", "h", "i"][*k as usize % 3];
                Op::Delete {
                    kind: kind(*k),
                    id: format!("{prefix}{i}"),
                    version: v.map(u64::from),
                }
            }
        };
        let (outcome, change) = s.apply(&Command { at: at(index), op });
        if let Some(c) = change {
            change_indexes.push(c.index);
            assert!(matches!(
                c.action,
                Action::Created | Action::Updated | Action::Deleted
            ));
        }
        outcomes.push(outcome);
    }
    (s, outcomes, change_indexes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_history_keeps_names_unique_references_valid_and_replays_identically(
        steps in proptest::collection::vec(step(), 0..60)
    ) {
        let (s, outcomes, changes) = run(&steps);
        // Deterministic: the same commands give the same state and the same answers.
        let (again, outcomes_again, _) = run(&steps);
        prop_assert_eq!(&s, &again);
        prop_assert_eq!(outcomes, outcomes_again);
        // Snapshots restore the same state, name index included.
        let restored = ClusterState::from_bytes(&s.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(&restored, &s);
        for seg in s.segments() {
            prop_assert_eq!(restored.resolve(Kind::Segment, &seg.name), Some(seg.meta.id.clone()));
        }
        // Names unique per kind.
        let mut names: Vec<(Kind, &str)> = s.segments().map(|x| (Kind::Segment, x.name.as_str()))
            .chain(s.hosts().map(|x| (Kind::Host, x.name.as_str())))
            .chain(s.instances().map(|x| (Kind::Instance, x.name.as_str())))
            .collect();
        let total = names.len();
        names.sort();
        names.dedup();
        prop_assert_eq!(names.len(), total);
        // Every host and instance is in an existing segment.
        for h in s.hosts() {
            prop_assert!(s.segment(&h.segment).is_some());
        }
        for i in s.instances() {
            prop_assert!(s.segment(&i.segment).is_some());
            prop_assert!(i.meta.version >= 1);
        }
        // Changes are numbered 1, 2, 3... with no gap.
        prop_assert!(changes.iter().enumerate().all(|(i, c)| *c == i as u64 + 1));
        prop_assert_eq!(s.change_index(), changes.len() as u64);
    }
}

fn sized(o: Object, cpu: f64, memory_mb: u64) -> Object {
    match o {
        Object::Host(mut h) => {
            h.capacity.cpu = model::resources::Cpu::from_cores(cpu).unwrap();
            h.capacity.memory_mb = memory_mb;
            Object::Host(h)
        }
        Object::Instance(mut i) => {
            i.cpu = model::resources::Cpu::from_cores(cpu).unwrap();
            i.memory_mb = memory_mb;
            Object::Instance(i)
        }
        other => other,
    }
}

#[test]
fn admission_control_keeps_room_for_losing_the_largest_hosts() {
    let mut s = ClusterState::default();
    let Object::Segment(mut seg) = segment("s1", "zone-a") else {
        unreachable!()
    };
    seg.tolerate_host_failures = 1;
    put(&mut s, 1, Object::Segment(seg), Expect::Absent).unwrap();
    // Three hosts: 8 + 4 + 4 cores, 16 + 8 + 8 GB. Losing the largest leaves 8 cores, 16 GB.
    put(
        &mut s,
        2,
        sized(host("h1", "n1", "s1"), 8.0, 16384),
        Expect::Absent,
    )
    .unwrap();
    put(
        &mut s,
        3,
        sized(host("h2", "n2", "s1"), 4.0, 8192),
        Expect::Absent,
    )
    .unwrap();
    put(
        &mut s,
        4,
        sized(host("h3", "n3", "s1"), 4.0, 8192),
        Expect::Absent,
    )
    .unwrap();
    let h = model::capacity::headroom(&s, "s1", None).unwrap();
    assert_eq!(
        (h.capacity.cpu_millis, h.reserve.cpu_millis),
        (16_000, 8_000)
    );
    assert_eq!((h.capacity.memory_mb, h.reserve.memory_mb), (32768, 16384));

    put(
        &mut s,
        5,
        sized(instance("i1", "a", "s1"), 4.0, 8192),
        Expect::Absent,
    )
    .unwrap();
    put(
        &mut s,
        6,
        sized(instance("i2", "b", "s1"), 4.0, 8192),
        Expect::Absent,
    )
    .unwrap();
    // A third would not fit after losing h1: refused, saying why and what to do.
    let e = put(
        &mut s,
        7,
        sized(instance("i3", "c", "s1"), 1.0, 1024),
        Expect::Absent,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("admission control") && e.contains("8 cpu, 16384 MB for 9 cpu, 17408 MB"),
        "{e}"
    );
    // Growing an instance is refused the same way; shrinking always passes.
    let e = put(
        &mut s,
        8,
        sized(instance("i2", "b", "s1"), 5.0, 8192),
        Expect::Version(1),
    );
    assert!(e.is_err());
    put(
        &mut s,
        9,
        sized(instance("i2", "b", "s1"), 2.0, 4096),
        Expect::Version(1),
    )
    .unwrap();
    put(
        &mut s,
        10,
        sized(instance("i3", "c", "s1"), 1.0, 1024),
        Expect::Absent,
    )
    .unwrap();
    let h = model::capacity::headroom(&s, "s1", None).unwrap();
    assert_eq!((h.headroom.cpu_millis, h.headroom.memory_mb), (1_000, 3072));
    // A stopped instance needs nothing.
    let Object::Instance(mut big) = sized(instance("i4", "d", "s1"), 64.0, 65536) else {
        unreachable!()
    };
    big.desired_state = model::instance::DesiredState::Stopped;
    put(&mut s, 11, Object::Instance(big), Expect::Absent).unwrap();
}

#[test]
fn list_order_is_by_name_per_kind_and_resumes_after_a_marker() {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s-3", "charlie"), Expect::Absent).unwrap();
    put(&mut s, 2, segment("s-1", "bravo"), Expect::Absent).unwrap();
    put(&mut s, 3, segment("s-2", "alpha"), Expect::Absent).unwrap();
    // Hosts share the name index; they must not show up among segments.
    put(&mut s, 4, host("h-1", "aaa", "s-1"), Expect::Absent).unwrap();
    put(&mut s, 5, host("h-2", "zzz", "s-1"), Expect::Absent).unwrap();
    let order = |after: Option<&str>, kind: Kind| -> Option<Vec<String>> {
        s.ids_in_list_order(kind, after)
            .map(|ids| ids.map(String::from).collect())
    };
    assert_eq!(order(None, Kind::Segment).unwrap(), ["s-2", "s-1", "s-3"]);
    assert_eq!(order(Some("s-2"), Kind::Segment).unwrap(), ["s-1", "s-3"]);
    assert_eq!(
        order(Some("s-3"), Kind::Segment).unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(order(None, Kind::Host).unwrap(), ["h-1", "h-2"]);
    assert_eq!(order(None, Kind::Instance).unwrap(), Vec::<String>::new());
    assert!(
        order(Some("nope"), Kind::Segment).is_none(),
        "unknown marker"
    );
    assert!(
        order(Some("h-1"), Kind::Segment).is_none(),
        "a host's id is no segment marker"
    );

    // A rename moves the object in the order.
    put(&mut s, 6, segment("s-3", "aardvark"), Expect::Version(1)).unwrap();
    let order = |s: &ClusterState, after: Option<&str>| -> Vec<String> {
        s.ids_in_list_order(Kind::Segment, after)
            .unwrap()
            .map(String::from)
            .collect()
    };
    assert_eq!(order(&s, None), ["s-3", "s-2", "s-1"]);
    delete(&mut s, 7, Kind::Segment, "s-2", None).unwrap();
    assert_eq!(order(&s, Some("s-3")), ["s-1"]);
}

/// Segment `s1` with hosts `h1` (`n1`) and `h2` (`n2`), and instance `web` placed on `h1`
/// (placement `p1`, returned); the next command index is 6.
fn web_on_h1() -> (ClusterState, Object) {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "zone-a"), Expect::Absent).unwrap();
    put(&mut s, 2, host("h1", "n1", "s1"), Expect::Absent).unwrap();
    put(&mut s, 3, host("h2", "n2", "s1"), Expect::Absent).unwrap();
    put(&mut s, 4, instance("i1", "web", "s1"), Expect::Absent).unwrap();
    let p = put(&mut s, 5, placement("p1", "i1", 0, "h1"), Expect::Absent).unwrap();
    (s, p)
}

/// Rule S1 (issue 15, hole 1): deleting the host a copy is moving away from would let the
/// handoff count it as gone while it may still be stopping the copy, so the new host would
/// start a second one. The delete is refused until the handoff is cleared.
#[test]
fn a_host_a_copy_is_still_leaving_cannot_be_deleted() {
    let (mut s, _) = web_on_h1();
    let moved = put(
        &mut s,
        6,
        placement("p1", "i1", 0, "h2"),
        Expect::Version(1),
    )
    .unwrap();

    let refused = delete(&mut s, 7, Kind::Host, "h1", None).unwrap_err();
    let message = refused.to_string();
    assert!(
        matches!(refused, StateError::Conflict { .. }),
        "{refused:?}"
    );
    assert!(
        message.contains("n1") && message.contains("web") && message.contains("buoy fence n1"),
        "{message}"
    );
    assert!(s.host("h1").is_some());

    // Once the leader cleared the confirmed handoff, the host can go.
    let Object::Placement(mut cleared) = moved else {
        unreachable!()
    };
    cleared.handoffs.clear();
    put(&mut s, 8, Object::Placement(cleared), Expect::Version(2)).unwrap();
    delete(&mut s, 9, Kind::Host, "h1", None).unwrap();
    assert!(s.host("h1").is_none());
}

/// Rule S1 (issue 15, hole 3): a host marked failed may be alive and renewing (waiting for
/// `buoy host enable`); a copy placed or moved onto it would run there, and a later move away
/// would be confirmed by the flag alone. Nothing may be placed onto a failed host.
#[test]
fn nothing_is_placed_onto_a_failed_host() {
    let (mut s, _) = web_on_h1();
    let Some(Object::Host(mut h2)) = s.get(Kind::Host, "h2") else {
        unreachable!()
    };
    h2.failed = true;
    put(&mut s, 6, Object::Host(h2), Expect::Version(1)).unwrap();

    let refused = put(
        &mut s,
        7,
        placement("p1", "i1", 0, "h2"),
        Expect::Version(1),
    )
    .unwrap_err();
    assert!(
        refused.to_string().contains("n2") && refused.to_string().contains("buoy host enable n2"),
        "{refused}"
    );
    put(&mut s, 8, instance("i2", "db", "s1"), Expect::Absent).unwrap();
    assert!(put(&mut s, 9, placement("p2", "i2", 0, "h2"), Expect::Absent).is_err());
    // What already runs there may still be updated in place (the leader clears handoffs).
    put(
        &mut s,
        10,
        placement("p1", "i1", 0, "h1"),
        Expect::Version(1),
    )
    .unwrap();
}

/// Rule S1 (issue 15, hole 2): a placement deleted while its host may still run the copy, then
/// placed again (the recovery loop re-places a started instance at once), must wait for the
/// old copy like a move does: the new placement inherits a handoff naming the old host, epoch
/// and placement.
#[test]
fn a_placement_made_after_a_delete_waits_for_the_old_copy() {
    let (mut s, old) = web_on_h1();
    delete(&mut s, 6, Kind::Placement, "p1", None).unwrap();
    let deleted_at = s.change_index();

    let Object::Placement(new) =
        put(&mut s, 7, placement("p2", "i1", 0, "h2"), Expect::Absent).unwrap()
    else {
        unreachable!()
    };
    assert!(new.epoch > epoch(&old));
    let left: Vec<(&str, Epoch, Option<&str>, u64)> = new
        .handoffs
        .iter()
        .map(|h| (h.host.as_str(), h.epoch, h.placement.as_deref(), h.change))
        .collect();
    assert_eq!(left, [("h1", epoch(&old), Some("p1"), deleted_at)]);
    // The host it may still run on cannot be deleted meanwhile (hole 1).
    assert!(delete(&mut s, 8, Kind::Host, "h1", None).is_err());

    // Inherited once: another placement of another replica starts clean.
    delete(&mut s, 9, Kind::Placement, "p2", None).unwrap();
    delete(&mut s, 10, Kind::Instance, "i1", None).unwrap();
    put(&mut s, 11, instance("i2", "db", "s1"), Expect::Absent).unwrap();
    let Object::Placement(fresh) =
        put(&mut s, 12, placement("p3", "i2", 0, "h2"), Expect::Absent).unwrap()
    else {
        unreachable!()
    };
    assert!(fresh.handoffs.is_empty());
    // Deleting the instance dropped what its deleted placements left behind.
    delete(&mut s, 13, Kind::Host, "h1", None).unwrap();
}

fn attr(scope: AttributeScope, node: Option<&str>, name: &str) -> AttributeKey {
    AttributeKey {
        scope,
        node: node.map(str::to_string),
        set: None,
        name: name.into(),
    }
}

fn set_attr(st: &mut ClusterState, s: u64, key: &AttributeKey, value: Option<&str>) -> Outcome {
    let cmd = Command {
        at: at(s),
        op: Op::SetAttribute {
            key: key.clone(),
            value: value.map(str::to_string),
        },
    };
    let (outcome, change) = st.apply(&cmd);
    assert!(
        change.is_none(),
        "attributes are not objects of the change feed"
    );
    outcome
}

#[test]
fn attributes_are_read_back_as_written_and_transient_ones_go_with_their_node() {
    use AttributeScope::*;
    let mut st = ClusterState::default();
    let h1_score = attr(Status, Some("h1"), "master-db");
    set_attr(&mut st, 1, &h1_score, Some("1000")).unwrap();
    set_attr(&mut st, 1, &attr(Nodes, Some("h2"), "master-db"), Some("5")).unwrap();
    set_attr(
        &mut st,
        1,
        &attr(Status, Some("h2"), "master-db"),
        Some("-INFINITY"),
    )
    .unwrap();
    set_attr(
        &mut st,
        1,
        &attr(Status, Some("h3"), "master-db"),
        Some("soon"),
    )
    .unwrap();
    let read = st.attribute(&h1_score).unwrap();
    assert_eq!((read.value.as_str(), read.updated_at), ("1000", at(1)));
    // h2's transient score wins over its permanent one; an unreadable score counts for nothing.
    let scores: Vec<(String, i64)> = st.promotion_scores("db").into_iter().collect();
    assert_eq!(
        scores,
        [
            ("h1".to_string(), 1000),
            ("h2".to_string(), -model::attribute::INFINITY_SCORE)
        ]
    );
    // h2 restarted: its transient attributes go, its permanent one stays.
    let (out, _) = st.apply(&Command {
        at: at(2),
        op: Op::ClearNodeAttributes { node: "h2".into() },
    });
    out.unwrap();
    assert_eq!(st.promotion_scores("db").get("h2"), Some(&5));
    assert!(st.attribute(&h1_score).is_some());
    // A delete, and the same state from the same commands after a snapshot round trip.
    set_attr(&mut st, 3, &h1_score, None).unwrap();
    assert!(st.attribute(&h1_score).is_none());
    let back = ClusterState::from_bytes(&st.to_bytes().unwrap()).unwrap();
    assert_eq!(
        back.attributes().collect::<Vec<_>>(),
        st.attributes().collect::<Vec<_>>()
    );
}

#[test]
fn bad_attributes_are_refused_and_the_store_is_bounded() {
    use AttributeScope::*;
    let mut st = ClusterState::default();
    let e = set_attr(&mut st, 1, &attr(Status, None, "x"), Some("1")).unwrap_err();
    assert!(e.to_string().starts_with("node"), "{e}");
    let big = "v".repeat(model::attribute::MAX_VALUE_BYTES + 1);
    assert!(set_attr(&mut st, 1, &attr(Nodes, Some("h1"), "x"), Some(&big)).is_err());
    for i in 0..model::attribute::MAX_ATTRIBUTES {
        set_attr(
            &mut st,
            1,
            &attr(Nodes, Some("h1"), &format!("a{i}")),
            Some("1"),
        )
        .unwrap();
    }
    let e = set_attr(&mut st, 1, &attr(Nodes, Some("h1"), "one-more"), Some("1")).unwrap_err();
    assert!(e.to_string().contains("full"), "{e}");
    // Updating one that exists still works when full.
    set_attr(&mut st, 2, &attr(Nodes, Some("h1"), "a0"), Some("2")).unwrap();
}

#[test]
fn a_host_writes_its_own_attributes_and_peers_scores_only_for_what_it_runs() {
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "seg"), Expect::Absent).unwrap();
    put(&mut s, 2, host("h1", "node1", "s1"), Expect::Absent).unwrap();
    put(&mut s, 3, host("h2", "node2", "s1"), Expect::Absent).unwrap();
    put(&mut s, 4, instance("i1", "db", "s1"), Expect::Absent).unwrap();
    put(&mut s, 5, instance("i2", "web", "s1"), Expect::Absent).unwrap();
    put(&mut s, 6, placement("p1", "i1", 0, "h1"), Expect::Absent).unwrap();
    let own = attr(AttributeScope::Status, Some("node1"), "anything");
    assert_eq!(s.may_write_attribute("node1", &own), Ok(()));
    // node1 runs `db`: it may set node2's score for it (galera does), not for `web`.
    let peer_db = attr(AttributeScope::Status, Some("node2"), "master-db");
    assert_eq!(s.may_write_attribute("node1", &peer_db), Ok(()));
    let peer_web = attr(AttributeScope::Status, Some("node2"), "master-web");
    assert!(
        s.may_write_attribute("node1", &peer_web)
            .unwrap_err()
            .contains("master-web")
    );
    // Another node's attributes named after `db` (pgsql marks its peers' data status), not
    // others, nor anything for a host running nothing.
    let peer_db_status = attr(AttributeScope::Nodes, Some("node2"), "db-data-status");
    assert_eq!(s.may_write_attribute("node1", &peer_db_status), Ok(()));
    for other in ["web-data-status", "dbx-status", "position", "db"] {
        let peer_other = attr(AttributeScope::Nodes, Some("node2"), other);
        assert!(
            s.may_write_attribute("node1", &peer_other).is_err(),
            "{other}"
        );
    }
    let from_node2 = attr(AttributeScope::Status, Some("node1"), "master-db");
    assert!(s.may_write_attribute("node2", &from_node2).is_err());
    // Cluster properties named after what it runs.
    let prop = attr(AttributeScope::CrmConfig, None, "db_REPL_INFO");
    assert_eq!(s.may_write_attribute("node1", &prop), Ok(()));
    assert!(
        s.may_write_attribute("node2", &prop)
            .unwrap_err()
            .contains("db_REPL_INFO")
    );
}

fn promotable(id: &str, name: &str, seg: &str, replicas: u32) -> Object {
    let Object::Instance(mut i) = instance(id, name, seg) else {
        unreachable!()
    };
    i.driver = model::instance::DriverKind::Ocf;
    i.params = serde_json::json!({"agent": "heartbeat:Stateful"})
        .as_object()
        .cloned()
        .unwrap();
    i.mode = model::instance::Mode::Promotable;
    i.replicas = replicas;
    Object::Instance(i)
}

fn promotion(st: &mut ClusterState, s: u64, step: model::promotion::PromotionStep) -> Outcome {
    let cmd = Command {
        at: at(s),
        op: Op::Promotion {
            instance: "i1".into(),
            step,
        },
    };
    st.apply(&cmd).0
}

/// Rule S1 for the promoted role, in the state machine itself: never more grants than
/// `promoted_max`, revoked ones included, and each grant a new epoch.
#[test]
fn promotion_grants_never_exceed_promoted_max_and_each_gets_a_new_epoch() {
    use model::promotion::PromotionStep::{Grant, Release, Revoke};
    let mut s = ClusterState::default();
    put(&mut s, 1, segment("s1", "seg"), Expect::Absent).unwrap();
    put(&mut s, 2, host("h1", "node1", "s1"), Expect::Absent).unwrap();
    put(&mut s, 3, host("h2", "node2", "s1"), Expect::Absent).unwrap();
    put(&mut s, 4, promotable("i1", "db", "s1", 2), Expect::Absent).unwrap();
    put(&mut s, 5, placement("p0", "i1", 0, "h1"), Expect::Absent).unwrap();
    put(&mut s, 6, placement("p1", "i1", 1, "h2"), Expect::Absent).unwrap();
    let grant = |replica: u32, host: &str| Grant {
        replica,
        host: host.into(),
    };
    // Not placed there.
    assert!(promotion(&mut s, 7, grant(0, "h2")).is_err());
    let index = s.change_index();
    promotion(&mut s, 8, grant(0, "h1")).unwrap();
    assert_eq!(s.change_index(), index + 1, "hosts hear of it");
    assert_eq!(s.promotion_grants("i1")[0].epoch, 1);
    // promoted_max 1: no second grant, not even once the first is revoked.
    assert!(promotion(&mut s, 9, grant(1, "h2")).is_err());
    promotion(&mut s, 10, Revoke { replica: 0 }).unwrap();
    assert!(s.promotion_grants("i1")[0].revoked);
    assert!(promotion(&mut s, 11, grant(1, "h2")).is_err());
    promotion(&mut s, 12, Release { replica: 0 }).unwrap();
    promotion(&mut s, 13, grant(1, "h2")).unwrap();
    assert_eq!(s.promotion_grants("i1")[0].epoch, 2, "never reused");
    // The grants go with the instance.
    delete(&mut s, 14, Kind::Instance, "i1", None).unwrap();
    assert!(s.promotion_grants("i1").is_empty());
    // A clone takes no grant; promotable needs ocf and promoted_max <= replicas.
    let Object::Instance(mut bad) = promotable("i9", "x", "s1", 2) else {
        unreachable!()
    };
    bad.promoted_max = 3;
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("promoted_max")
    );
}
