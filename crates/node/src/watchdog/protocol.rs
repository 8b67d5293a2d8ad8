//! What the agent tells its watchdog, one JSON object per line over a unix socket. Deadlines
//! are on the clock both share, CLOCK_BOOTTIME ([`crate::clock`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How to make one tracked thing stop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// SIGKILL to a process group (the process driver's instances, where there is no cgroup).
    ProcessGroup(i32),
    /// `cgroup.kill` on an instance's cgroup (everything it started), and SIGKILL to its
    /// process group.
    Cgroup { path: std::path::PathBuf, pgid: i32 },
    /// SIGKILL to one process (a QEMU virtual machine).
    Process(i32),
    /// Run a command and wait for it (an OCF agent's `stop`), inside `cgroup` if given, for
    /// at most the stop grace; then kill whatever is left in `cgroup` (the agent and all it
    /// started).
    Exec {
        argv: Vec<String>,
        #[serde(default)]
        env: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cgroup: Option<std::path::PathBuf>,
    },
}

/// One message from the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Kill everything tracked at this CLOCK_BOOTTIME time (nanoseconds) unless moved
    /// (sent at every lease renewal), cutting off stop commands after `stop_grace_ms`.
    Arm {
        deadline_ns: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_grace_ms: Option<u64>,
    },
    /// Replace the whole state: the deadline (none: nothing to enforce), the stop grace and
    /// what runs here (sent when an instance starts or stops, and after every reconnection).
    Sync {
        deadline_ns: Option<u64>,
        tracked: BTreeMap<String, Target>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stop_grace_ms: Option<u64>,
    },
    /// Answer with a [`Status`] line.
    Status,
}

/// The watchdog's state, as `Status` reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub deadline_ns: Option<u64>,
    pub tracked: BTreeMap<String, Target>,
    /// How many times the deadline passed and the watchdog killed what it tracked.
    pub fired: u64,
    /// Kills under way (an OCF `stop` may run for its whole timeout): until they are done,
    /// what they stop may still run, so the agent starts nothing (rule S1).
    #[serde(default)]
    pub killing: u32,
    /// How long a stop command may run once the deadline passed (the lease's stop grace);
    /// none: 20 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_unknown_fields_are_refused() {
        let r = Request::Sync {
            deadline_ns: Some(7),
            tracked: [("web".to_string(), Target::ProcessGroup(42))].into(),
            stop_grace_ms: None,
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"sync":{"deadline_ns":7,"tracked":{"web":{"process_group":42}}}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&line).unwrap(), r);
        assert!(serde_json::from_str::<Request>(r#"{"arm":{"deadline":1}}"#).is_err());
    }
}
