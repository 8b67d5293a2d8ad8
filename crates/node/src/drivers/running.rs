//! One started instance, whatever its driver: what the reconciler needs from each (is it up,
//! has it ended and why, stop it gracefully, kill it now, how the watchdog stops it).

use std::path::Path;
use std::time::Duration;

use model::instance::DriverKind;
use serde_json::{Map, Value};

use super::ocf::{OcfResource, OcfSpec, OcfState};
use super::process::{DriverError, Exit, ProcessSpec, RunningProcess};
use super::qemu::{QemuSpec, RunningVm};
use crate::watchdog::protocol::Target;

/// How an instance ended: its exit code when it has one, and the reason in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub code: Option<i32>,
    pub reason: String,
}

fn ended(p: &mut RunningProcess) -> Option<Ended> {
    p.poll_exit().map(|e| Ended {
        code: match e {
            Exit::Code(c) => Some(c),
            Exit::Signal(_) => None,
        },
        reason: e.to_string(),
    })
}

/// How a stop went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopOutcome {
    /// It surely ended: false when an OCF `stop` failed or timed out.
    pub done: bool,
    /// In words, for the log and the report.
    pub how: String,
}

impl std::fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.how)
    }
}

/// A started instance.
pub enum Running {
    Process(RunningProcess),
    Ocf(OcfResource),
    Qemu(RunningVm),
}

impl Running {
    /// Starts instance `name` with `driver` and `params`; `env` is added for processes and
    /// OCF agents; `promotable` makes an OCF resource a promotable copy.
    pub fn start(
        name: &str,
        driver: DriverKind,
        params: &Map<String, Value>,
        env: &[(&str, String)],
        log: &Path,
        promotable: bool,
    ) -> Result<Running, DriverError> {
        match driver {
            DriverKind::Process => {
                let mut spec = ProcessSpec::from_params(params)?;
                for (k, v) in env {
                    spec.env.insert(k.to_string(), v.clone());
                }
                RunningProcess::start(&spec, log).map(Running::Process)
            }
            DriverKind::Ocf => {
                let mut spec = OcfSpec::from_params(params)?;
                spec.extra_env = env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect();
                spec.promotable = promotable;
                OcfResource::launch(spec, name, log).map(Running::Ocf)
            }
            DriverKind::Qemu => {
                let spec = QemuSpec::from_params(params)?;
                RunningVm::start(&spec, &log.with_extension("qmp"), log).map(Running::Qemu)
            }
        }
    }

    /// The process id, for drivers that have one.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Running::Process(p) => Some(p.pid()),
            Running::Qemu(vm) => Some(vm.process.pid()),
            Running::Ocf(_) => None,
        }
    }

    /// A promotable copy's role, from its last monitor.
    pub fn role(&self) -> Option<proto::Role> {
        match self {
            Running::Ocf(r) => r.role(),
            _ => None,
        }
    }

    /// Asks a promotable copy to be promoted or demoted (nothing for other instances).
    pub fn set_promoted(&self, promoted: bool) {
        if let Running::Ocf(r) = self {
            r.set_promoted(promoted);
        }
    }

    /// Fails an OCF resource for `why` once its action under way ends (its agent banned it
    /// from this host); false for other instances, which have no agent to ask for that.
    pub fn ban(&self, why: String) -> bool {
        match self {
            Running::Ocf(r) => {
                r.ban(why);
                true
            }
            _ => false,
        }
    }

    /// Queues an OCF agent's `notify` actions (nothing for other instances).
    pub fn notify(&self, calls: &[proto::NotifyCall]) {
        if let Running::Ocf(r) = self {
            r.notify(calls);
        }
    }

    /// The highest `notify` id an OCF agent ran.
    pub fn notified(&self) -> Option<u64> {
        match self {
            Running::Ocf(r) => r.notified(),
            _ => None,
        }
    }

    /// True once the instance is up (an OCF resource after its first good monitor).
    pub fn is_up(&self) -> bool {
        match self {
            Running::Process(_) | Running::Qemu(_) => true,
            Running::Ocf(r) => r.state() == OcfState::Running,
        }
    }

    /// How it ended, once it has (does not wait).
    pub fn poll_end(&mut self) -> Option<Ended> {
        match self {
            Running::Process(p) => ended(p),
            Running::Qemu(vm) => ended(&mut vm.process).or_else(|| {
                vm.broken().map(|reason| {
                    vm.process.kill();
                    Ended { code: None, reason }
                })
            }),
            Running::Ocf(r) => match r.state() {
                OcfState::Failed { action, code, why } => Some(Ended {
                    code,
                    reason: OcfState::describe(action, code, why.as_deref()),
                }),
                _ => None,
            },
        }
    }

    /// How the watchdog stops it if the agent cannot.
    pub fn watchdog_target(&self) -> Target {
        match self {
            Running::Process(p) => p.watchdog_target(),
            Running::Qemu(vm) => vm.process.watchdog_target(),
            Running::Ocf(r) => {
                let (argv, env) = r.stop_command();
                Target::Exec {
                    argv,
                    env,
                    cgroup: r.cgroup().map(|c| c.path().to_path_buf()),
                }
            }
        }
    }

    /// Stops it gracefully (SIGTERM then SIGKILL after `timeout`; OCF `stop`); says how it
    /// went. A process or a VM always ends (SIGKILL); an OCF resource whose `stop` failed or
    /// timed out may still run.
    pub async fn stop(self, timeout: Duration) -> StopOutcome {
        self.stop_within(timeout, None).await
    }

    /// [`Self::stop`], with an OCF resource's demote and stop cut off after `cut_off` (the
    /// stop grace, after a lease loss): then, as after a failed stop, its cgroup is killed.
    /// Still reported not done: a resource may leave state no kill undoes (an address).
    pub async fn stop_within(self, timeout: Duration, cut_off: Option<Duration>) -> StopOutcome {
        match self {
            Running::Process(mut p) => {
                let exit = p.stop(timeout).await;
                // A member stuck in the kernel (D state) outlives SIGKILL: not stopped yet.
                let done = p.all_gone(Duration::from_secs(5)).await;
                StopOutcome {
                    done,
                    how: if done {
                        exit.to_string()
                    } else {
                        format!("{exit}; processes of its cgroup outlived SIGKILL for 5 s")
                    },
                }
            }
            Running::Qemu(vm) => StopOutcome {
                done: true,
                how: vm.stop().await,
            },
            Running::Ocf(r) => {
                let (code, note) = r.stop(cut_off).await;
                let how = OcfState::describe("stop", code, None);
                StopOutcome {
                    done: code == Some(0),
                    how: match note {
                        Some(n) => format!("{how}; {n}"),
                        None => how,
                    },
                }
            }
        }
    }

    /// After its main process ended: kills whatever it left behind in its cgroup.
    pub fn kill_leftovers(&self) {
        match self {
            Running::Process(p) => p.kill_leftovers(),
            Running::Qemu(vm) => vm.process.kill_leftovers(),
            Running::Ocf(_) => {}
        }
    }

    /// Stops it at once (self-fencing): SIGKILL for processes; `stop` for OCF resources,
    /// run in the background (it is the only way an agent stops its resource).
    pub fn kill(self) {
        match self {
            Running::Process(mut p) => p.kill(),
            Running::Qemu(mut vm) => vm.process.kill(),
            Running::Ocf(r) => {
                tokio::spawn(r.stop(None));
            }
        }
    }
}
