//! The protocol between a host and the control-plane leader, defined once for both sides and
//! the simulator. Plain data: no IO, no tokio.
//!
//! A host sends a [`RenewalRequest`] every renewal period (`POST` [`RENEW_PATH`]); the leader
//! answers with a [`Grant`]: the lease length and, when the state moved, every
//! [`Assignment`] of the host. Each request carries the host's [`Report`] when it changed: the
//! [`Observed`] [`Phase`] of every copy it runs or is still stopping. The leader reads those
//! reports to confirm handoffs (`engine::handoff`) and to see copies that failed.
//!
//! - [`lease`]: renewal request, grant, assignment.
//! - [`attributes`]: a host's calls on the attribute store (the Pacemaker tool shims).
//! - [`report`]: what a host reports about its instances.
//! - [`status`]: a host's read of the cluster's status (`crm_mon`).

pub mod attributes;
pub mod lease;
pub mod report;
pub mod status;

pub use attributes::{ATTRIBUTES_PATH, AttributeAnswer, AttributeCall, AttributeOp};
pub use lease::{
    Assignment, Backend, BackendServer, Grant, NotifyCall, RENEW_PATH, RenewalRequest,
};
pub use report::{Observed, Phase, Report, Role};
pub use status::{
    ClusterStatus, CopyRole, CopyStatus, NodeStatus, ResourceStatus, STATUS_PATH, StatusCall,
};
