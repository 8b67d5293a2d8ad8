//! What a host reports about the copies it runs: the input of the leader's handoff and
//! failure checks.

use model::Timestamp;
use model::placement::Epoch;
use serde::{Deserialize, Serialize};

/// An instance's state on its host, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Starting,
    Running,
    /// Exited; restarting after the backoff.
    Restarting,
    /// No longer placed here: being stopped (the copy may still run).
    Stopping,
    Stopped,
    /// Past its restart budget, or it cannot start: the recovery engine may move it.
    Failed,
    /// Its stop failed or timed out: it may still run. The host fences itself (it stops
    /// renewing its lease and leaves the cluster; its watchdog acts at the lease's end), so the
    /// copy runs elsewhere only once that lease is over or a fence device confirmed the host
    /// off (Pacemaker's rule for failed stops).
    StopFailed,
}

impl Phase {
    /// Whether a copy in this phase may still be running (everything but stopped and failed).
    pub fn may_run(self) -> bool {
        !matches!(self, Phase::Stopped | Phase::Failed)
    }
}

/// What a host reports about one placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub placement: String,
    pub instance: String,
    pub name: String,
    pub epoch: Epoch,
    pub phase: Phase,
    pub since: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub restarts: u32,
    /// A promotable copy's role, from its agent's last monitor (`None` for other copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// The highest `notify` action id its agent ran (`None`: none yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<u64>,
}

/// The role of a promotable copy that runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The monitor returned 0.
    Unpromoted,
    /// The monitor returned 8.
    Promoted,
}

/// What a host reports with each renewal: the change index of the assignments it has
/// applied, and its instances (a copy no longer placed here stays listed, `stopping`, until it
/// is gone: the leader waits for that before starting it elsewhere).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub applied: Option<u64>,
    pub instances: Vec<Observed>,
}

impl Observed {
    /// Copy `placement` of instance `instance` (named `name`) at `epoch`, in `phase`, with
    /// nothing else known yet.
    pub fn new(placement: &str, instance: &str, name: &str, epoch: Epoch, phase: Phase) -> Self {
        Observed {
            placement: placement.to_string(),
            instance: instance.to_string(),
            name: name.to_string(),
            epoch,
            phase,
            since: Timestamp::now(),
            pid: None,
            reason: None,
            exit_code: None,
            restarts: 0,
            role: None,
            notified: None,
        }
    }
}

impl Report {
    /// Whether this report still shows the copy of `placement` at `epoch` or older as
    /// possibly running.
    pub fn may_run(&self, placement: &str, epoch: Epoch) -> bool {
        self.instances
            .iter()
            .any(|o| o.phase.may_run() && o.placement == placement && o.epoch <= epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(phase: Phase, epoch: u64) -> Report {
        Report {
            applied: Some(7),
            instances: vec![Observed::new("p1", "i1", "web", Epoch(epoch), phase)],
        }
    }

    #[test]
    fn a_copy_may_run_until_it_is_stopped_or_failed() {
        for phase in [
            Phase::Starting,
            Phase::Running,
            Phase::Restarting,
            Phase::Stopping,
            Phase::StopFailed,
        ] {
            assert!(report(phase, 4).may_run("p1", Epoch(4)), "{phase:?}");
        }
        for phase in [Phase::Stopped, Phase::Failed] {
            assert!(!report(phase, 4).may_run("p1", Epoch(4)), "{phase:?}");
        }
    }

    #[test]
    fn only_the_same_placement_at_the_same_or_an_older_epoch_counts() {
        let r = report(Phase::Running, 4);
        assert!(r.may_run("p1", Epoch(5)));
        assert!(
            !r.may_run("p1", Epoch(3)),
            "a newer copy is not the old one"
        );
        assert!(!r.may_run("p2", Epoch(4)));
    }
}
