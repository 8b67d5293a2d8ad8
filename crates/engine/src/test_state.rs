//! Building a replicated state in unit tests: objects put as the state machine applies them.

use model::host::{Host, HostSpec};
use model::segment::{Segment, SegmentSpec};
use model::{ClusterState, Command, Expect, Object, ObjectMeta, Op, Timestamp};

/// Metadata with a chosen id (the tests name objects by it).
pub fn meta(id: &str) -> ObjectMeta {
    ObjectMeta {
        id: id.into(),
        ..Default::default()
    }
}

/// Applies the creation of `o`; the object as stored.
pub fn put(st: &mut ClusterState, o: Object) -> Object {
    let cmd = Command {
        at: Timestamp::from_unix_millis(1_800_000_000_000),
        op: Op::Put {
            object: Box::new(o),
            expect: Expect::Absent,
        },
    };
    st.apply(&cmd)
        .0
        .expect("a test's object is valid and its id new")
        .expect("a put returns the object stored")
}

/// Segment `s1` with `hosts` (each host's id is its name).
pub fn segment_with_hosts(st: &mut ClusterState, hosts: &[&str]) {
    let seg = SegmentSpec {
        name: Some("s".into()),
        ..Default::default()
    };
    put(
        st,
        Object::Segment(Segment::create(meta("s1"), &seg).expect("segment `s` is valid")),
    );
    for h in hosts {
        let spec = HostSpec {
            name: Some(h.to_string()),
            ..Default::default()
        };
        put(
            st,
            Object::Host(
                Host::create(meta(h), &spec, "s1".into()).expect("a test host name is valid"),
            ),
        );
    }
}
