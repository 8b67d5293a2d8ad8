//! Buoy's data model: segments, hosts, instances, placements and notifications, and the
//! deterministic state machine that applies commands to them. Plain data and pure functions:
//! no openraft, no redb, no tokio (`state` replicates this model with Raft; `engine` and
//! `proto` use its types).
//!
//! - [`ClusterState`] is pure: `apply(index, command)` -> outcome + change.
//! - The object modules (`segment`, `host`, `instance`, `notification`, `placement`) hold
//!   each type with its spec (what clients may set) and its validation.
//! - [`attribute`]: the node attributes and cluster properties OCF agents keep (Pacemaker's).
//! - [`constraint`]: colocation and ordering between instances.
//! - [`promotion`]: which copies of a promotable instance may act as promoted.

pub mod attribute;
pub mod balancer;
pub mod capacity;
pub mod cluster_state;
pub mod command;
pub mod constraint;
pub mod duration_text;
pub mod error;
pub mod health;
pub mod host;
pub mod instance;
pub mod lease_settings;
pub mod notification;
pub mod object;
pub mod placement;
pub mod promotion;
pub mod resources;
pub mod scale;
pub mod segment;
pub mod server;
pub mod spread;
pub mod timestamp;

pub use cluster_state::ClusterState;
pub use command::{Action, Change, Command, Expect, Object, Op, Outcome};
pub use error::StateError;
pub use lease_settings::LeaseSettings;
pub use object::{Kind, ObjectMeta};
pub use timestamp::Timestamp;
