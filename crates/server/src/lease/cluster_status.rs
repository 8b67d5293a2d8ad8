//! `POST /internal/status` (a [`StatusCall`], signed by the host that asks) -> the
//! [`ClusterStatus`] the leader sees: what `crm_mon` and `cibadmin -Q` print to the resource
//! agents. Hosts are
//! online while they hold their lease and are not marked failed; a copy's role is the one its
//! host last reported, and a copy on a host that is not online counts as stopped (its last
//! report is history: a dead primary must not look promoted to the replicas).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use model::ClusterState;
use model::attribute::AttributeScope;
use model::instance::{DriverKind, Instance, Mode};
use node::http::error::error;
use proto::{
    ClusterStatus, CopyRole, CopyStatus, NodeStatus, Phase, ResourceStatus, STATUS_PATH, StatusCall,
};

use super::grants::LeaseGrants;
use super::routes::{LeaseApi, host_call};

/// `POST /internal/status`.
pub async fn status(State(api): State<LeaseApi>, headers: HeaderMap, body: Bytes) -> Response {
    host_call(
        api.verifier.as_deref(),
        &headers,
        STATUS_PATH,
        &body,
        "a status call",
        |call: &StatusCall| call.host.clone(),
        async |_| {
            let Some(grants) = &api.grants else {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no_leader",
                    "this agent is not a control-plane server",
                    None,
                );
            };
            match grants.cluster_status().await {
                Ok(s) => Json(s).into_response(),
                Err(why) => error(StatusCode::SERVICE_UNAVAILABLE, "no_leader", &why, None),
            }
        },
    )
    .await
}

/// The agent an instance runs, as `crm_mon` names it.
fn agent_of(i: &Instance) -> String {
    match i.driver {
        DriverKind::Ocf => {
            let a = i.params.get("agent").and_then(|v| v.as_str()).unwrap_or("");
            if a.starts_with("ocf:") {
                a.to_string()
            } else {
                format!("ocf:{a}")
            }
        }
        other => serde_json::to_value(other)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    }
}

impl LeaseGrants {
    /// The cluster's status after a read barrier (so it holds what this host wrote before).
    pub async fn cluster_status(&self) -> Result<ClusterStatus, String> {
        self.replica
            .read_barrier()
            .await
            .map_err(|e| format!("cannot read the committed state: {e}"))?;
        let now = self.gossip.now();
        let leader = self.gossip.read(|sw| sw.me().name().to_string());
        Ok(self.replica.shared().read(|st: &ClusterState| {
            let mut nodes: Vec<NodeStatus> = st
                .hosts()
                .map(|h| NodeStatus {
                    name: h.name.clone(),
                    online: !h.failed && !h.fenced && self.holds_lease(&h.name, now),
                    unclean: h.failed || h.fenced,
                    ..NodeStatus::default()
                })
                .collect();
            let index: std::collections::HashMap<String, usize> = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect();
            for a in st.attributes() {
                let Some(&i) = a.key.node.as_ref().and_then(|n| index.get(n)) else {
                    continue;
                };
                let n = &mut nodes[i];
                let kept = match a.key.scope {
                    AttributeScope::Status => &mut n.transient,
                    AttributeScope::Nodes => &mut n.permanent,
                    AttributeScope::CrmConfig => continue,
                };
                kept.insert(a.key.name.clone(), a.value.clone());
            }
            let online = |host_id: &str| {
                st.host(host_id)
                    .and_then(|h| nodes.iter().find(|n| n.name == h.name))
                    .is_some_and(|n| n.online)
            };
            let resources = st
                .instances()
                .map(|i| {
                    let mut placements: Vec<_> = st
                        .placements()
                        .filter(|p| p.instance == i.meta.id)
                        .collect();
                    placements.sort_by_key(|p| p.replica);
                    let promotable = i.mode == Mode::Promotable;
                    let copies = placements
                        .iter()
                        .map(|p| {
                            let name = st.host(&p.host).map(|h| h.name.clone());
                            let observed = name
                                .as_deref()
                                .filter(|_| online(&p.host))
                                .and_then(|n| self.observed(n, &p.meta.id, p.epoch));
                            let role = match &observed {
                                Some(o) if o.role == Some(proto::Role::Promoted) => {
                                    CopyRole::Promoted
                                }
                                Some(o) if o.phase.may_run() && promotable => CopyRole::Unpromoted,
                                Some(o) if o.phase.may_run() => CopyRole::Started,
                                _ => CopyRole::Stopped,
                            };
                            CopyStatus {
                                replica: p.replica,
                                node: name.filter(|_| role != CopyRole::Stopped),
                                role,
                                failed: observed.is_some_and(|o| {
                                    matches!(o.phase, Phase::Failed | Phase::StopFailed)
                                }),
                            }
                        })
                        .collect();
                    ResourceStatus {
                        name: i.name.clone(),
                        agent: agent_of(i),
                        promotable,
                        clone: i.mode.is_clone(),
                        copies,
                    }
                })
                .collect();
            ClusterStatus {
                leader,
                quorate: true,
                nodes,
                resources,
            }
        }))
    }
}
