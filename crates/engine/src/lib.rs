//! Buoy's decision logic as pure state machines: input = what happened + the current time,
//! output = what to do. No tokio, no clock, no IO; the agent drives these, and the simulator
//! can too.
//!
//! - [`host_lease`]: a host's own view of its lease: when to renew, until when it may run
//!   instances (rule S1).
//! - [`assignment_floor`]: which grants a host takes assignments from (never from a state
//!   older than one it acted on).
//! - [`lease_table`]: the leader's soft-state view of every host's lease.
//! - [`member_down`]: when gossip counts a registered host down.
//! - [`stop_budget`]: which hosts may still be stopping copies past their lease (the stop grace).
//! - [`failures`]: where a copy failed, so that recovery avoids those hosts and never loops.
//! - [`handoff`]: when a copy that moved between live hosts may start on the new one.
//! - [`grant`]: what a lease grant assigns to a host.
//! - [`plan_input`]: the planner's view of the replicated state.
//! - [`planner`]: where the instances of failed hosts (and failed instances) go.
//! - [`constraints`]: where a colocated instance may run, and whether an instance's start
//!   conditions hold.
//! - [`notify`]: Pacemaker's notification lists for a clone's `notify` action.
//! - [`balance`]: which copies a load balancer's backends hold.
//! - [`respread`]: which copy moves when a spread instance's zones drifted apart.
//! - [`scaling`]: a clone's copy count moved by alerts within its bounds.
//! - [`promotion`]: which copies of a promotable instance to promote and demote, and when a
//!   promotion may be granted (rule S1 for the promoted role).

pub mod assignment_floor;
pub mod balance;
pub mod constraints;
pub mod failures;
pub mod grant;
pub mod handoff;
pub mod host_lease;
pub mod lease_table;
pub mod member_down;
pub mod notify;
pub mod plan_input;
pub mod planner;
pub mod promotion;
pub mod respread;
pub mod scaling;
pub mod stop_budget;
#[cfg(test)]
mod test_state;

pub use swim::Instant;
