//! What a load balancer's backends should hold: for each instance that names it
//! (`balancer`), the copies that run now, at their hosts' addresses. The leader computes it
//! from the state and the hosts' reports and ships it with the balancer's copies
//! (`proto::Assignment::backends`); each of those hosts brings its HAProxy there
//! (`node::balancer`). A copy that starts joins only once its host reports it running
//! (health checks passed); a copy that moves or stops leaves at once, and HAProxy drains it.

use model::ClusterState;
use model::instance::{DesiredState, Instance};
use model::placement::Placement;
use proto::{Backend, BackendServer};

/// Whether some instance names `lb` as its load balancer.
pub fn is_balancer(st: &ClusterState, lb: &Instance) -> bool {
    lb.load_balancer.is_some()
        && st
            .instances()
            .any(|i| i.balancer.as_ref().is_some_and(|b| b.instance == lb.name))
}

/// The backends of load balancer `lb`: one per instance naming it, with its copies that
/// `running` says run at their epoch, each at `address(host id)`. Sorted by name.
pub fn backends(
    st: &ClusterState,
    lb: &Instance,
    running: impl Fn(&Placement) -> bool,
    address: impl Fn(&str) -> Option<String>,
) -> Vec<Backend> {
    if lb.load_balancer.is_none() {
        return Vec::new();
    }
    let mut out: Vec<Backend> = Vec::new();
    for i in st.instances() {
        let Some(link) = i.balancer.as_ref().filter(|b| b.instance == lb.name) else {
            continue;
        };
        let mut servers: Vec<BackendServer> = if i.desired_state == DesiredState::Started {
            st.placements()
                .filter(|p| p.instance == i.meta.id && p.handoffs.is_empty() && running(p))
                .filter_map(|p| {
                    Some(BackendServer {
                        name: format!("{}-{}", i.name, p.replica),
                        addr: address(&p.host)?,
                        port: link.port,
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        servers.sort_by(|a, b| a.name.cmp(&b.name));
        match out.iter_mut().find(|b| b.name == link.backend) {
            // Two instances in one backend: their servers side by side.
            Some(b) => b.servers.extend(servers),
            None => out.push(Backend {
                name: link.backend.clone(),
                servers,
            }),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_state::{meta, put, segment_with_hosts};
    use model::instance::InstanceSpec;
    use model::placement::PlacementSpec;
    use model::{Command, Expect, Object, Op, Timestamp};
    use serde_json::json;

    fn instance(st: &mut ClusterState, spec: serde_json::Value) {
        let name = spec["name"].as_str().unwrap().to_string();
        let spec: InstanceSpec = serde_json::from_value(spec).unwrap();
        put(
            st,
            Object::Instance(Instance::create(meta(&name), &spec, "s1".into()).unwrap()),
        );
    }

    fn place(st: &mut ClusterState, instance: &str, replica: u32, host: &str) -> Placement {
        let spec: PlacementSpec = serde_json::from_value(json!({"replica": replica})).unwrap();
        let p = Placement::create(
            meta(&format!("p-{instance}-{replica}")),
            &spec,
            instance.into(),
            host.into(),
        )
        .unwrap();
        let Object::Placement(p) = put(st, Object::Placement(p)) else {
            unreachable!()
        };
        p
    }

    #[test]
    fn a_backend_holds_the_running_copies_at_their_hosts_addresses() {
        let mut st = ClusterState::default();
        segment_with_hosts(&mut st, &["h1", "h2", "h3"]);
        instance(
            &mut st,
            json!({"name": "lb", "driver": "process", "mode": "clone", "replicas": 2,
                   "params": {"command": "haproxy"},
                   "load_balancer": {"admin_socket": "/run/{host}.sock"}}),
        );
        instance(
            &mut st,
            json!({"name": "web", "driver": "process", "mode": "clone", "replicas": 3,
                   "params": {"command": "web"},
                   "balancer": {"instance": "lb", "backend": "be", "port": 8080}}),
        );
        let lb = st.instance("lb").unwrap().clone();
        assert!(is_balancer(&st, &lb));
        assert!(!is_balancer(&st, st.instance("web").unwrap()));
        let address = |h: &str| (h != "h3").then(|| format!("10.0.0.{}", &h[1..]));
        // Nothing placed: the backend exists, empty (its servers are deleted).
        let b = backends(&st, &lb, |_| true, address);
        assert_eq!((b.len(), b[0].name.as_str()), (1, "be"));
        assert!(b[0].servers.is_empty());
        let p0 = place(&mut st, "web", 0, "h1");
        let p1 = place(&mut st, "web", 1, "h2");
        place(&mut st, "web", 2, "h3");
        // Copy 1 is still starting; copy 2's host has no address (not in gossip).
        let b = backends(&st, &lb, |p| p.meta.id != p1.meta.id, address);
        let names: Vec<(&str, &str, u16)> = b[0]
            .servers
            .iter()
            .map(|s| (s.name.as_str(), s.addr.as_str(), s.port))
            .collect();
        assert_eq!(names, [("web-0", "10.0.0.1", 8080)]);
        assert_eq!(p0.replica, 0);
        let all = backends(&st, &lb, |_| true, address);
        assert_eq!(all[0].servers.len(), 2);
        // Stopped: no server.
        let mut web = st.instance("web").unwrap().clone();
        web.desired_state = DesiredState::Stopped;
        let cmd = Command {
            at: Timestamp::from_unix_millis(1_800_000_000_001),
            op: Op::Put {
                expect: Expect::Version(web.meta.version),
                object: Box::new(Object::Instance(web)),
            },
        };
        st.apply(&cmd).0.unwrap();
        assert!(backends(&st, &lb, |_| true, address)[0].servers.is_empty());
    }
}
