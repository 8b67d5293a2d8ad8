//! Pacemaker's notification lists for a clone's `notify` action: around each start, stop,
//! promote and demote, every active copy's agent is told (pre, then post) which copies act
//! and how the clone stands, in `OCF_RESKEY_CRM_meta_notify_*` variables
//! (`../shared/OCF-CONTRACT.md`, section 3). Lists are space-separated, a copy `RSC:N`
//! paired by position with its node; an empty list is a single space, as Pacemaker sends it.
//! Pure: the leader builds them, the hosts pass them to the agents.

use std::collections::BTreeMap;

/// The operation a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Start,
    Stop,
    Promote,
    Demote,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Promote => "promote",
            Operation::Demote => "demote",
        }
    }
}

/// Before or after the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    Pre,
    Post,
}

/// One copy of the clone as the notification describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    pub replica: u32,
    /// The node (host name) it runs on, or is placed on.
    pub node: String,
    /// Running (any role).
    pub active: bool,
    pub promoted: bool,
}

/// The `notify` action's variables for resource `resource`: `copies` is the clone before the
/// operation, `acting` the replicas the operation acts on, `nodes` every node of the
/// cluster.
pub fn variables(
    resource: &str,
    when: When,
    op: Operation,
    copies: &[Copy],
    acting: &[u32],
    nodes: &[String],
) -> BTreeMap<String, String> {
    let key = |k: &str| format!("OCF_RESKEY_CRM_meta_notify_{k}");
    let id = |c: &Copy| format!("{resource}:{}", c.replica);
    let list = |items: Vec<String>| {
        if items.is_empty() {
            " ".to_string()
        } else {
            items.join(" ")
        }
    };
    let mut out = BTreeMap::new();
    let mut pair = |name: &str, chosen: Vec<&Copy>| {
        out.insert(
            key(&format!("{name}_resource")),
            list(chosen.iter().map(|c| id(c)).collect()),
        );
        out.insert(
            key(&format!("{name}_uname")),
            list(chosen.iter().map(|c| c.node.clone()).collect()),
        );
    };
    let mut sorted: Vec<&Copy> = copies.iter().collect();
    sorted.sort_by_key(|c| c.replica);
    let of = |pick: &dyn Fn(&Copy) -> bool| {
        sorted
            .iter()
            .copied()
            .filter(|c| pick(c))
            .collect::<Vec<_>>()
    };
    // A copy moving between nodes shows twice with one replica number: the one acting is
    // the one running before a stop or after a start (and either for a role change).
    let running_then = match (op, when) {
        (Operation::Start, When::Pre) | (Operation::Stop, When::Post) => Some(false),
        (Operation::Start, When::Post) | (Operation::Stop, When::Pre) => Some(true),
        _ => None,
    };
    let acts = |c: &Copy| acting.contains(&c.replica) && running_then.is_none_or(|r| r == c.active);
    for o in [
        Operation::Start,
        Operation::Stop,
        Operation::Promote,
        Operation::Demote,
    ] {
        pair(o.as_str(), if o == op { of(&acts) } else { Vec::new() });
    }
    pair("active", of(&|c| c.active));
    let promoted = of(&|c| c.active && c.promoted);
    let unpromoted = of(&|c| c.active && !c.promoted);
    pair("promoted", promoted.clone());
    pair("master", promoted);
    pair("unpromoted", unpromoted.clone());
    pair("slave", unpromoted);
    let inactive: Vec<String> = of(&|c| !c.active).iter().map(|c| id(c)).collect();
    out.insert(key("inactive_resource"), list(inactive));
    let mut all: Vec<String> = nodes.to_vec();
    all.sort();
    all.dedup();
    out.insert(key("all_uname"), list(all.clone()));
    out.insert(key("available_uname"), list(all));
    let (t, o) = (
        match when {
            When::Pre => "pre",
            When::Post => "post",
        },
        op.as_str(),
    );
    out.insert(key("type"), t.into());
    out.insert(key("operation"), o.into());
    out.insert(key("key_type"), t.into());
    out.insert(key("key_operation"), o.into());
    out
}

/// What changed in a clone between two looks at its running copies (replica -> node): the
/// replicas that stopped, with the node they ran on, and those that started, with theirs. A
/// copy that moved to another node counts as both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub stopped: Vec<(u32, String)>,
    pub started: Vec<(u32, String)>,
}

/// The [`Lifecycle`] from `before` to `now`.
pub fn lifecycle(before: &BTreeMap<u32, String>, now: &BTreeMap<u32, String>) -> Lifecycle {
    let gone = |a: &BTreeMap<u32, String>, b: &BTreeMap<u32, String>| {
        a.iter()
            .filter(|(r, n)| b.get(r) != Some(n))
            .map(|(r, n)| (*r, n.clone()))
            .collect()
    };
    Lifecycle {
        stopped: gone(before, now),
        started: gone(now, before),
    }
}

/// Whether `inst` announces its copies' starts and stops (`notify` on a clone).
pub fn announces(inst: &model::instance::Instance) -> bool {
    inst.notify && inst.mode.is_clone()
}

/// The copies host `host` (an id) reports running that `st` no longer places there at that
/// epoch (moved away, restarted in place, or removed), of instances that [`announces`]: the
/// leader lets them run until every active copy was told of their stop (pre-stop).
pub fn departing<'a>(
    st: &model::ClusterState,
    host: &str,
    report: &'a proto::Report,
) -> impl Iterator<Item = &'a proto::Observed> {
    report.instances.iter().filter(move |o| {
        o.phase == proto::Phase::Running
            && st.instance(&o.instance).is_some_and(announces)
            && !st
                .placements()
                .any(|p| p.meta.id == o.placement && p.host == host && p.epoch == o.epoch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(replica: u32, node: &str, active: bool, promoted: bool) -> Copy {
        Copy {
            replica,
            node: node.into(),
            active,
            promoted,
        }
    }

    /// A pre-promote of copy 2 on node3 while copy 0 (node1) is unpromoted and copy 1 is
    /// stopped: the lists a pgsql or PAF agent parses.
    #[test]
    fn the_lists_pair_copies_with_nodes_and_send_a_space_when_empty() {
        let copies = [
            copy(0, "node1", true, false),
            copy(2, "node3", true, false),
            copy(1, "node2", false, false),
        ];
        let nodes = ["node2".to_string(), "node1".into(), "node3".into()];
        let v = variables("db", When::Pre, Operation::Promote, &copies, &[2], &nodes);
        let get = |k: &str| v[&format!("OCF_RESKEY_CRM_meta_notify_{k}")].as_str();
        assert_eq!(get("type"), "pre");
        assert_eq!(get("operation"), "promote");
        assert_eq!(get("promote_resource"), "db:2");
        assert_eq!(get("promote_uname"), "node3");
        assert_eq!(get("start_resource"), " ");
        assert_eq!(get("demote_uname"), " ");
        assert_eq!(get("active_resource"), "db:0 db:2");
        assert_eq!(get("active_uname"), "node1 node3");
        assert_eq!(get("inactive_resource"), "db:1");
        assert_eq!(get("master_uname"), " ");
        assert_eq!(get("promoted_resource"), " ");
        assert_eq!(get("slave_uname"), "node1 node3");
        assert_eq!(get("unpromoted_resource"), "db:0 db:2");
        assert_eq!(get("all_uname"), "node1 node2 node3");
    }

    /// A copy moving from node1 to node2 keeps its replica number: the pre-stop names the
    /// node it leaves, the pre-start the node it goes to.
    #[test]
    fn a_moving_copy_is_named_where_it_acts() {
        let copies = [
            copy(0, "node1", true, false),
            copy(0, "node2", false, false),
            copy(1, "node3", true, true),
        ];
        let nodes = ["node1".to_string(), "node2".into(), "node3".into()];
        let get = |v: &BTreeMap<String, String>, k: &str| {
            v[&format!("OCF_RESKEY_CRM_meta_notify_{k}")].clone()
        };
        let stop = variables("db", When::Pre, Operation::Stop, &copies, &[0], &nodes);
        assert_eq!(get(&stop, "stop_uname"), "node1");
        assert_eq!(get(&stop, "active_uname"), "node1 node3");
        let start = variables("db", When::Pre, Operation::Start, &copies, &[0], &nodes);
        assert_eq!(get(&start, "start_uname"), "node2");
        let post = variables("db", When::Post, Operation::Stop, &copies, &[0], &nodes);
        assert_eq!(get(&post, "stop_uname"), "node2", "the copy not running");
    }

    #[test]
    fn starts_stops_and_moves_are_told_apart() {
        let map = |pairs: &[(u32, &str)]| -> BTreeMap<u32, String> {
            pairs.iter().map(|(r, n)| (*r, n.to_string())).collect()
        };
        let before = map(&[(0, "h1"), (1, "h2"), (2, "h3")]);
        let now = map(&[(0, "h1"), (2, "h4"), (3, "h5")]);
        assert_eq!(
            lifecycle(&before, &now),
            Lifecycle {
                stopped: vec![(1, "h2".into()), (2, "h3".into())],
                started: vec![(2, "h4".into()), (3, "h5".into())],
            }
        );
        assert_eq!(lifecycle(&now, &now), Lifecycle::default());
    }
}
