//! Constraints between instances (Pacemaker's colocation and ordering): an instance runs on
//! the host of another (of its promoted copy, with `promoted`), and starts only once others
//! run (or are promoted). A virtual IP colocated with a database's promoted copy and ordered
//! after its promotion follows the primary. Instances are named by name.
//!
//! A group (Pacemaker's group: a filesystem, an address, a service) is an ordered list of
//! `single` instances that run together: each member names its group and its place in it
//! ([`GroupMember`]). Every member after the first is colocated with the first and starts
//! after the one before it; a member that fails past its budget moves the whole group, and
//! a host stops the members it loses in reverse order.

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::object::check_dns_like_name;

/// "Run on the same host as `instance`" (as its promoted copy, with `promoted`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Colocation {
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub instance: String,
    /// With the promoted copy of a promotable instance.
    #[serde(default)]
    pub promoted: bool,
}

/// "Start only once `instance` runs and is healthy" (once promoted, with `promoted`).
/// Mandatory by default: the instance stops when the other stops running (or is demoted).
/// An optional one only waits while the other is starting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartAfter {
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub instance: String,
    #[serde(default)]
    pub promoted: bool,
    #[serde(default)]
    pub optional: bool,
}

/// An instance's place in a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub name: String,
    /// Members start in increasing order (ties by instance name) and stop in reverse.
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub order: u32,
}

/// The most `start_after` entries an instance may have.
pub const MAX_START_AFTER: usize = 16;

/// Checks instance `me`'s constraints on their own (the instances named may come later).
pub fn validate(
    me: &str,
    colocated_with: Option<&Colocation>,
    start_after: &[StartAfter],
) -> Result<(), StateError> {
    if let Some(c) = colocated_with {
        check_dns_like_name("colocated_with.instance", &c.instance)?;
        if c.instance == me {
            return Err(StateError::unprocessable(
                "colocated_with.instance",
                "an instance cannot be colocated with itself",
            ));
        }
    }
    if start_after.len() > MAX_START_AFTER {
        return Err(StateError::invalid(
            "start_after",
            format!("at most {MAX_START_AFTER} entries"),
        ));
    }
    for (i, o) in start_after.iter().enumerate() {
        check_dns_like_name(&format!("start_after[{i}].instance"), &o.instance)?;
        if o.instance == me {
            return Err(StateError::unprocessable(
                format!("start_after[{i}].instance"),
                "an instance cannot start after itself",
            ));
        }
    }
    Ok(())
}
