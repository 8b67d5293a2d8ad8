//! The `ocf` driver: runs an OCF resource agent (the Pacemaker standard; Debian's
//! `resource-agents` installs 141 of them) by the OCF rules: `meta-data` (it must describe
//! itself), `validate-all`, a probe (`monitor` with interval 0: a resource already running is
//! taken over), `start` where it is not running, then `monitor` on its interval; `stop` to
//! stop. The instance's params become `OCF_RESKEY_*`.
//!
//! Params: `agent` (`heartbeat:Dummy`, or `ocf:heartbeat:Dummy`), `params` (map of strings),
//! `monitor_interval` (default 10s), `promoted_monitor_interval` (a promotable copy's monitor
//! while promoted; default `monitor_interval`), `timeout` (per action, default 20s), `ocf_root`
//! (default /usr/lib/ocf).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};

use super::log_file::{DEFAULT_CAP, LogFile};
use super::params::{DriverError, Params, param_err};
use crate::cgroup::Cgroup;

const PARAMS: [&str; 6] = [
    "agent",
    "params",
    "monitor_interval",
    "promoted_monitor_interval",
    "timeout",
    "ocf_root",
];

/// The meaning of an OCF exit code, for the operator.
pub fn meaning(code: i32) -> &'static str {
    match code {
        0 => "success",
        1 => "generic error",
        2 => "invalid arguments",
        3 => "action not implemented",
        4 => "insufficient permissions",
        5 => "not installed (a program it needs is missing)",
        6 => "not configured (the params are wrong)",
        7 => "not running",
        8 => "running as promoted",
        9 => "failed as promoted",
        _ => "unknown exit code",
    }
}

/// Which agent to run and how, read from the instance's params.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OcfSpec {
    pub ocf_root: PathBuf,
    pub provider: String,
    pub agent_type: String,
    pub params: BTreeMap<String, String>,
    pub monitor_interval: Duration,
    /// The monitor's interval while a promotable copy is promoted (Pacemaker's monitor
    /// operation with `role=Promoted`).
    pub promoted_monitor_interval: Duration,
    pub timeout: Duration,
    /// What the agent's host adds to every action's environment (the shims' directory, the
    /// clone's meta attributes...): see [`clone_meta`].
    pub extra_env: BTreeMap<String, String>,
    /// A promotable copy: the monitor reports the role (0 unpromoted, 8 promoted), and the
    /// copy is promoted and demoted as [`OcfResource::set_promoted`] says.
    pub promotable: bool,
    /// The cgroup every action runs in (set by [`OcfResource::launch`] where cgroup v2 is
    /// available): the agent and whatever it starts (a database's server), so that a stop
    /// cut off after the stop grace can kill all of it.
    pub cgroup: Option<PathBuf>,
}

/// The Pacemaker feature set the agents are told they run under (Pacemaker 2.1.5, Debian 12):
/// at 3.10.0 or above they publish scores with `crm_attribute -p`.
pub const CRM_FEATURE_SET: &str = "3.16.1";

/// The meta attributes Pacemaker gives an agent of a clone or promotable clone, for copy
/// `replica` of `replicas` on node `node`.
pub fn clone_meta(
    node: &str,
    mode: model::instance::Mode,
    replica: u32,
    replicas: u32,
    promoted_max: u32,
    notify: bool,
) -> Vec<(String, String)> {
    let meta = |k: &str, v: String| (format!("OCF_RESKEY_CRM_meta_{k}"), v);
    let mut env = vec![
        meta("on_node", node.to_string()),
        meta("on_node_uuid", node.to_string()),
    ];
    if mode.is_clone() {
        env.extend([
            meta("clone", replica.to_string()),
            meta("clone_max", replicas.to_string()),
            meta("clone_node_max", "1".into()),
            meta("globally_unique", "false".into()),
            meta("notify", notify.to_string()),
        ]);
    }
    if mode == model::instance::Mode::Promotable {
        env.extend([
            meta("promotable", "true".into()),
            meta("promoted_max", promoted_max.to_string()),
            meta("promoted_node_max", "1".into()),
            meta("master_max", promoted_max.to_string()),
            meta("master_node_max", "1".into()),
        ]);
    }
    env
}

impl OcfSpec {
    /// Reads and checks the params of an `ocf` instance (the agent file must exist).
    pub fn from_params(params: &Map<String, Value>) -> Result<Self, DriverError> {
        let p = Params::check(params, "ocf", &PARAMS)?;
        let agent = p.text("agent")?.ok_or_else(|| {
            param_err(
                "agent",
                "missing: the resource agent, e.g. \"heartbeat:Dummy\"",
            )
        })?;
        let parts: Vec<&str> = agent.split(':').collect();
        let (provider, agent_type) = match parts.as_slice() {
            ["ocf", p, t] | [p, t] if !p.is_empty() && !t.is_empty() => (p, t),
            _ => {
                return Err(param_err(
                    "agent",
                    format!("`{agent}`: expected PROVIDER:TYPE, e.g. heartbeat:IPaddr2"),
                ));
            }
        };
        let agent_params = p.string_map("params")?;
        let monitor_interval = p.duration("monitor_interval", Duration::from_secs(10))?;
        let spec = OcfSpec {
            ocf_root: PathBuf::from(p.text("ocf_root")?.as_deref().unwrap_or("/usr/lib/ocf")),
            provider: provider.to_string(),
            agent_type: agent_type.to_string(),
            params: agent_params,
            monitor_interval,
            promoted_monitor_interval: p.duration("promoted_monitor_interval", monitor_interval)?,
            timeout: p.duration("timeout", Duration::from_secs(20))?,
            extra_env: BTreeMap::new(),
            promotable: false,
            cgroup: None,
        };
        for (name, interval) in [
            ("monitor_interval", spec.monitor_interval),
            ("promoted_monitor_interval", spec.promoted_monitor_interval),
        ] {
            if interval.is_zero() {
                return Err(param_err(
                    name,
                    "must be above 0 (an interval of 0 is Pacemaker's probe, which Buoy runs itself before each start)",
                ));
            }
        }
        if !spec.agent_path().is_file() {
            return Err(param_err(
                "agent",
                format!(
                    "no OCF agent at {} (install Debian's resource-agents, or check the name)",
                    spec.agent_path().display()
                ),
            ));
        }
        Ok(spec)
    }

    /// The spec a recurring monitor runs with, for a copy last seen in `role`: a promotable
    /// copy's monitor has the interval of its role and says the role in
    /// `OCF_RESKEY_CRM_meta_role`, as Pacemaker's role-specific monitors do.
    pub fn monitor_for(&self, role: Option<proto::Role>) -> OcfSpec {
        let mut spec = self.clone();
        if self.promotable {
            let promoted = role == Some(proto::Role::Promoted);
            if promoted {
                spec.monitor_interval = self.promoted_monitor_interval;
            }
            spec.extra_env.insert(
                "OCF_RESKEY_CRM_meta_role".into(),
                if promoted { "Promoted" } else { "Unpromoted" }.into(),
            );
        }
        spec
    }

    /// The agent's executable.
    pub fn agent_path(&self) -> PathBuf {
        self.ocf_root
            .join("resource.d")
            .join(&self.provider)
            .join(&self.agent_type)
    }

    /// The environment of `action`, for resource `instance` (OCF 1.1, as Pacemaker sets it).
    pub fn env(&self, instance: &str, action: &str) -> BTreeMap<String, String> {
        let interval = if action == "monitor" {
            self.monitor_interval.as_millis()
        } else {
            0
        };
        let mut env = BTreeMap::from([
            ("OCF_ROOT".to_string(), self.ocf_root.display().to_string()),
            ("OCF_RA_VERSION_MAJOR".to_string(), "1".to_string()),
            ("OCF_RA_VERSION_MINOR".to_string(), "1".to_string()),
            ("OCF_RESOURCE_INSTANCE".to_string(), instance.to_string()),
            ("OCF_RESOURCE_TYPE".to_string(), self.agent_type.clone()),
            ("OCF_RESOURCE_PROVIDER".to_string(), self.provider.clone()),
            (
                "OCF_EXIT_REASON_PREFIX".to_string(),
                "ocf-exit-reason:".to_string(),
            ),
            (
                "OCF_RESKEY_crm_feature_set".to_string(),
                CRM_FEATURE_SET.to_string(),
            ),
            (
                "OCF_RESKEY_CRM_meta_timeout".to_string(),
                self.timeout.as_millis().to_string(),
            ),
            (
                "OCF_RESKEY_CRM_meta_interval".to_string(),
                interval.to_string(),
            ),
            ("OCF_RESKEY_CRM_meta_name".to_string(), action.to_string()),
        ]);
        for (k, v) in &self.extra_env {
            env.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.params {
            env.insert(format!("OCF_RESKEY_{k}"), v.clone());
        }
        env
    }
}

/// Runs one action; returns its exit code (`None` when it timed out or could not run).
pub async fn run_action(
    spec: &OcfSpec,
    instance: &str,
    action: &str,
    log: &Mutex<LogFile>,
) -> Option<i32> {
    run_action_why(spec, instance, action, log).await.0
}

/// The last `ocf-exit-reason:` line an agent wrote (OCF's way to say why it failed).
fn exit_reason(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr)
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("ocf-exit-reason:"))
        .map(|r| r.trim().chars().take(300).collect())
        .filter(|r: &String| !r.is_empty())
}

/// Runs one action; returns its exit code and the exit reason the agent gave, if any.
pub async fn run_action_why(
    spec: &OcfSpec,
    instance: &str,
    action: &str,
    log: &Mutex<LogFile>,
) -> (Option<i32>, Option<String>) {
    // A monitor with interval 0 is Pacemaker's probe: logged as one.
    let label = if action == "monitor" && spec.monitor_interval.is_zero() {
        "probe"
    } else {
        action
    };
    let mut cmd = tokio::process::Command::new(spec.agent_path());
    cmd.arg(action)
        .envs(spec.env(instance, action))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cg) = spec.cgroup.as_ref().filter(|c| c.is_dir()) {
        let _ = crate::cgroup::join_on_start(&mut cmd, &cg.join("cgroup.procs"));
    }
    let child = cmd.spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            let _ = log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(format!("ocf {label}: cannot run the agent: {e}\n").as_bytes());
            return (None, None);
        }
    };
    let out = tokio::time::timeout(spec.timeout, exit_and_output(&mut child)).await;
    let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
    match out {
        Ok(Ok(o)) => {
            if action == "meta-data" {
                // The agent's self-description (XML): proof it speaks OCF, not log material.
                let _ = l
                    .append(format!("ocf meta-data: {} bytes of XML\n", o.stdout.len()).as_bytes());
            } else {
                let _ = l.append(&o.stdout);
            }
            let _ = l.append(&o.stderr);
            let code = o.status.code();
            if label != "monitor" || code != Some(0) {
                let _ = l.append(
                    format!(
                        "ocf {label}: {}\n",
                        code.map_or("killed by a signal".into(), |c| format!(
                            "exit {c} ({})",
                            meaning(c)
                        ))
                    )
                    .as_bytes(),
                );
            }
            (code, exit_reason(&o.stderr))
        }
        _ => {
            let _ =
                l.append(format!("ocf {label}: timed out after {:?}\n", spec.timeout).as_bytes());
            (None, None)
        }
    }
}

/// Waits for `child` to exit and returns its status and what it wrote. The action is over
/// when the agent exits, not when its output pipes close: a daemon it started in the
/// background (`su -c "mysqld_safe ..." &`) may hold them open for its whole life, as it would
/// under Pacemaker, whose executor also goes by the exit. What the pipes hold is read for a
/// moment after the exit, then the readers are dropped.
async fn exit_and_output(
    child: &mut tokio::process::Child,
) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncReadExt;
    fn reader(
        pipe: Option<impl tokio::io::AsyncRead + Unpin + Send + 'static>,
    ) -> (Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let into = buf.clone();
        let task = tokio::spawn(async move {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk).await {
                if n == 0 {
                    return;
                }
                let mut b = into.lock().unwrap_or_else(|p| p.into_inner());
                if b.len() < 1 << 20 {
                    b.extend_from_slice(&chunk[..n]);
                }
            }
        });
        (buf, task)
    }
    /// Ends the readers if the action is given up (timed out): a daemon holding the pipes
    /// would keep them alive for its whole life.
    struct AbortOnDrop(Vec<tokio::task::AbortHandle>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            for h in &self.0 {
                h.abort();
            }
        }
    }
    let (out, out_task) = reader(child.stdout.take());
    let (err, err_task) = reader(child.stderr.take());
    let _readers = AbortOnDrop(vec![out_task.abort_handle(), err_task.abort_handle()]);
    let status = child.wait().await?;
    for task in [out_task, err_task] {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_millis(200), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    let take =
        |b: &Arc<Mutex<Vec<u8>>>| std::mem::take(&mut *b.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(std::process::Output {
        status,
        stdout: take(&out),
        stderr: take(&err),
    })
}

/// Where a resource stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OcfState {
    Starting,
    Running,
    /// An action failed: which one, its exit code (none: timed out) and the reason the agent
    /// gave (`ocf-exit-reason:`).
    Failed {
        action: &'static str,
        code: Option<i32>,
        why: Option<String>,
    },
}

impl OcfState {
    /// The failure, as the operator reads it.
    pub fn describe(action: &str, code: Option<i32>, why: Option<&str>) -> String {
        let what = match code {
            Some(c) => format!("ocf {action} returned {c} ({})", meaning(c)),
            None => format!("ocf {action} timed out or could not run"),
        };
        match why {
            Some(w) => format!("{what}: {w}"),
            None => what,
        }
    }
}

/// A resource started by its agent and monitored on its interval; a promotable one is also
/// promoted and demoted as asked.
pub struct OcfResource {
    spec: OcfSpec,
    instance: String,
    log: Arc<Mutex<LogFile>>,
    state: Arc<Mutex<OcfState>>,
    roles: Arc<Roles>,
    task: tokio::task::JoinHandle<()>,
    /// Where its actions run (none without cgroup v2: then what the agent started is
    /// beyond reach once a stop fails).
    cgroup: Option<Cgroup>,
}

/// A promotable copy's role: the one asked for and the one its last monitor reported.
#[derive(Default)]
struct Roles {
    want_promoted: std::sync::atomic::AtomicBool,
    /// From the last monitor: `None` before the first.
    role: Mutex<Option<proto::Role>>,
    /// Wakes the monitor loop when the role asked for changes, or a notification comes.
    changed: tokio::sync::Notify,
    /// `notify` actions to run, in order, and the highest id run so far.
    notices: Mutex<(std::collections::VecDeque<proto::NotifyCall>, Option<u64>)>,
    /// Why its agent banned it from this host: the action under way ends, then the resource
    /// is failed and nothing else runs.
    banned: Mutex<Option<String>>,
}

impl Roles {
    fn role(&self) -> Option<proto::Role> {
        *self.role.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl OcfResource {
    /// Validates and starts the resource in the background, then monitors it.
    pub fn launch(mut spec: OcfSpec, instance: &str, log: &Path) -> Result<Self, DriverError> {
        let log_file = LogFile::open(log, DEFAULT_CAP).map_err(|e| DriverError::Log {
            path: log.to_path_buf(),
            reason: e.to_string(),
        })?;
        let name = log
            .file_stem()
            .map_or(instance.into(), |s| s.to_string_lossy().into_owned());
        let cgroup = Cgroup::create(&name).map_err(|e| DriverError::Start {
            command: spec.agent_path().display().to_string(),
            reason: format!("cannot create its cgroup: {e}"),
        })?;
        spec.cgroup = cgroup.as_ref().map(|c| c.path().to_path_buf());
        let log = Arc::new(Mutex::new(log_file));
        let state = Arc::new(Mutex::new(OcfState::Starting));
        let roles = Arc::new(Roles::default());
        let task = tokio::spawn(lifecycle(
            spec.clone(),
            instance.to_string(),
            log.clone(),
            state.clone(),
            roles.clone(),
        ));
        Ok(OcfResource {
            spec,
            instance: instance.to_string(),
            log,
            state,
            roles,
            task,
            cgroup,
        })
    }

    pub fn state(&self) -> OcfState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A promotable copy's role, as its last monitor reported it.
    pub fn role(&self) -> Option<proto::Role> {
        self.spec.promotable.then(|| self.roles.role()).flatten()
    }

    /// Fails the resource for `why` (its agent banned it from this host) once the action
    /// under way (the one that asked) ends; the supervisor then stops it as after any
    /// failure.
    pub fn ban(&self, why: String) {
        *self.roles.banned.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        self.roles.changed.notify_one();
    }

    /// Asks a promotable copy to be promoted (`true`, under a promotion grant) or not.
    pub fn set_promoted(&self, promoted: bool) {
        use std::sync::atomic::Ordering;
        if self.roles.want_promoted.swap(promoted, Ordering::SeqCst) != promoted {
            self.roles.changed.notify_one();
        }
    }

    /// Queues the `notify` actions of `calls` not run or queued yet (by id).
    pub fn notify(&self, calls: &[proto::NotifyCall]) {
        let mut n = self.roles.notices.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest = n.0.back().map(|c| c.id).max(n.1);
        let mut added = false;
        for c in calls {
            if newest.is_none_or(|i| c.id > i) {
                n.0.push_back(c.clone());
                newest = Some(c.id);
                added = true;
            }
        }
        drop(n);
        if added {
            self.roles.changed.notify_one();
        }
    }

    /// The highest `notify` id its agent ran.
    pub fn notified(&self) -> Option<u64> {
        self.roles
            .notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .1
    }

    /// Its cgroup, if it has one.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The command that stops it, for the watchdog: a promotable copy is demoted first (an
    /// agent such as Stateful refuses to stop a promoted copy).
    pub fn stop_command(&self) -> (Vec<String>, BTreeMap<String, String>) {
        let agent = self.spec.agent_path().display().to_string();
        let argv = if self.spec.promotable {
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "\"$0\" demote; exec \"$0\" stop".into(),
                agent,
            ]
        } else {
            vec![agent, "stop".into()]
        };
        (argv, self.spec.env(&self.instance, "stop"))
    }

    /// Stops monitoring, demotes a promoted copy (Pacemaker demotes before it stops), and runs
    /// `stop`; returns its exit code. With `cut_off` (after a lease loss: the stop grace),
    /// demote and stop together get that long; past it, or when the stop failed, everything
    /// in the resource's cgroup is killed (the second value says so). The cgroup goes once
    /// empty.
    pub async fn stop(self, cut_off: Option<Duration>) -> (Option<i32>, Option<String>) {
        self.task.abort();
        let run = async {
            if self.spec.promotable && self.roles.role() != Some(proto::Role::Unpromoted) {
                // Promoted, or unknown (a promote may have been cut short): demote first; a
                // failed demote is for `stop` to settle.
                run_action(&self.spec, &self.instance, "demote", &self.log).await;
            }
            run_action(&self.spec, &self.instance, "stop", &self.log).await
        };
        let (code, cut) = match cut_off {
            Some(limit) => match tokio::time::timeout(limit, run).await {
                Ok(code) => (code, false),
                Err(_) => (None, true),
            },
            None => (run.await, false),
        };
        let mut note = None;
        if let Some(cg) = &self.cgroup {
            let left = cg.populated();
            if left || code != Some(0) {
                cg.kill();
            }
            let emptied = cg.remove(Duration::from_secs(5)).await;
            let what = match (cut, left) {
                (true, _) => Some(format!(
                    "cut off after the stop grace ({} ms): its cgroup killed",
                    cut_off.unwrap_or_default().as_millis()
                )),
                (false, true) => Some("what it left running was killed (its cgroup)".to_string()),
                _ => None,
            };
            note = match (what, emptied) {
                (Some(w), true) => Some(w),
                (Some(w), false) => Some(format!("{w}; processes outlived SIGKILL for 5 s")),
                (None, true) => None,
                (None, false) => Some("processes of its cgroup outlived SIGKILL for 5 s".into()),
            };
            let _ = self.log.lock().unwrap_or_else(|p| p.into_inner()).append(
                note.as_deref()
                    .map_or(String::new(), |n| format!("ocf stop: {n}\n"))
                    .as_bytes(),
            );
        } else if cut {
            note = Some(format!(
                "cut off after the stop grace ({} ms); no cgroup: what the agent started may run on",
                cut_off.unwrap_or_default().as_millis()
            ));
        }
        (code, note)
    }
}

/// Appends `line` (about the resource, not from its agent) to its log.
fn note(log: &Mutex<LogFile>, line: &str) {
    let _ = log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .append(format!("buoy: {line}\n").as_bytes());
}

async fn lifecycle(
    spec: OcfSpec,
    instance: String,
    log: Arc<Mutex<LogFile>>,
    state: Arc<Mutex<OcfState>>,
    roles: Arc<Roles>,
) {
    let set = |s: OcfState| *state.lock().unwrap_or_else(|p| p.into_inner()) = s;
    // Banned by its agent during the action just done: failed, and nothing more runs.
    let banned = || {
        let why = roles
            .banned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        why.map(|why| {
            set(OcfState::Failed {
                action: "ban",
                code: None,
                why: Some(why),
            })
        })
        .is_some()
    };
    for action in ["meta-data", "validate-all"] {
        let (code, why) = run_action_why(&spec, &instance, action, &log).await;
        if code != Some(0) {
            set(OcfState::Failed { action, code, why });
            return;
        }
    }
    // Pacemaker's probe: a monitor with interval 0 before the start, so that a resource
    // already running here (started by hand, or left by an earlier agent) is taken over,
    // not started twice. Running (0, or 8: a promoted copy then is demoted below unless it
    // is granted) skips the start; not running (7) starts it; anything else is a failure
    // here, as the start would be.
    let probe = OcfSpec {
        monitor_interval: Duration::ZERO,
        ..spec.clone()
    };
    let (code, why) = run_action_why(&probe, &instance, "monitor", &log).await;
    if banned() {
        return;
    }
    match code {
        Some(7) => {
            let (code, why) = run_action_why(&spec, &instance, "start", &log).await;
            if banned() {
                return;
            }
            if code != Some(0) {
                set(OcfState::Failed {
                    action: "start",
                    code,
                    why,
                });
                return;
            }
        }
        Some(0) => note(
            &log,
            "the probe found it running: taken over, not started again",
        ),
        Some(8) if spec.promotable => note(
            &log,
            "the probe found it running promoted: taken over, not started again",
        ),
        _ => {
            set(OcfState::Failed {
                action: "probe",
                code,
                why,
            });
            return;
        }
    }
    // OCF: a started resource must pass its first monitor. A promotable one reports its role
    // (0 unpromoted, 8 promoted; 9 is a failed promoted copy).
    let mut last_role = None;
    loop {
        let (code, why) =
            run_action_why(&spec.monitor_for(last_role), &instance, "monitor", &log).await;
        if banned() {
            return;
        }
        let role = match code {
            Some(0) => proto::Role::Unpromoted,
            Some(8) if spec.promotable => proto::Role::Promoted,
            _ => {
                set(OcfState::Failed {
                    action: "monitor",
                    code,
                    why,
                });
                return;
            }
        };
        *roles.role.lock().unwrap_or_else(|p| p.into_inner()) = Some(role);
        last_role = Some(role);
        set(OcfState::Running);
        if spec.promotable {
            use std::sync::atomic::Ordering;
            let want = roles.want_promoted.load(Ordering::SeqCst);
            // A role other than the one asked for is corrected: promoted only under a grant.
            let action = match (want, role) {
                (true, proto::Role::Unpromoted) => Some("promote"),
                (false, proto::Role::Promoted) => Some("demote"),
                _ => None,
            };
            if let Some(action) = action {
                let (code, why) = run_action_why(&spec, &instance, action, &log).await;
                if banned() {
                    return;
                }
                if code != Some(0) {
                    set(OcfState::Failed { action, code, why });
                    return;
                }
                continue; // The next monitor reports the new role.
            }
        }
        // Notifications, in order; a failed one is logged and ignored, as Pacemaker does.
        loop {
            let next = roles
                .notices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .0
                .pop_front();
            let Some(call) = next else { break };
            let mut with = spec.clone();
            with.extra_env.extend(call.env.clone());
            run_action(&with, &instance, "notify", &log).await;
            roles.notices.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(call.id);
            if banned() {
                return;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(spec.monitor_for(last_role).monitor_interval) => {}
            _ = roles.changed.notified() => {}
        }
        if banned() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn dummy_installed() -> bool {
        Path::new("/usr/lib/ocf/resource.d/heartbeat/Dummy").is_file()
    }

    /// A directory `buoy-ocf-TAG-PID` and a Dummy resource whose state file `NAME.state` is
    /// in it, monitored every 100 ms; `None` (said loudly) where Dummy is not installed.
    fn dummy(tag: &str, name: &str) -> Option<(PathBuf, PathBuf, OcfSpec)> {
        if !dummy_installed() {
            eprintln!(
                "SKIPPED: ocf:heartbeat:Dummy missing (scripts/setup-test-deps.sh installs resource-agents)"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!("buoy-ocf-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state_file = dir.join(format!("{name}.state"));
        let spec = OcfSpec::from_params(&params(json!({
            "agent": "ocf:heartbeat:Dummy",
            "params": {"state": state_file.display().to_string()},
            "monitor_interval": "100ms"
        })))
        .unwrap();
        Some((dir, state_file, spec))
    }

    /// A spec of agent `test:TYPE` under `root`, read from no params (for tests of one field).
    fn bare_spec(root: &Path, agent_type: &str) -> OcfSpec {
        OcfSpec {
            ocf_root: root.to_path_buf(),
            provider: "test".into(),
            agent_type: agent_type.into(),
            params: BTreeMap::new(),
            monitor_interval: Duration::from_secs(1),
            promoted_monitor_interval: Duration::from_secs(1),
            timeout: Duration::from_secs(20),
            extra_env: BTreeMap::new(),
            promotable: false,
            cgroup: None,
        }
    }

    #[test]
    fn the_agents_last_exit_reason_names_the_failure() {
        let stderr = b"Dec 03 INFO: starting\nocf-exit-reason:first try\nnoise\nocf-exit-reason:My data may be inconsistent. You have to remove /x/PGSQL.lock file to force start.\n";
        let why = exit_reason(stderr);
        assert_eq!(
            why.as_deref(),
            Some(
                "My data may be inconsistent. You have to remove /x/PGSQL.lock file to force start."
            )
        );
        assert_eq!(exit_reason(b"nothing said\n"), None);
        assert_eq!(exit_reason(b"ocf-exit-reason:   \n"), None);
        assert_eq!(
            OcfState::describe("start", Some(1), why.as_deref()),
            format!("ocf start returned 1 (generic error): {}", why.unwrap())
        );
    }

    #[test]
    fn params_are_checked_and_the_agent_must_exist() {
        for (bad, expect) in [
            (json!({}), "param `agent`: missing"),
            (json!({"agent": "Dummy"}), "expected PROVIDER:TYPE"),
            (
                json!({"agent": "x:y", "params": []}),
                "param `params`: expected a map",
            ),
            (
                json!({"agent": "x:y", "timeout": "forever"}),
                "param `timeout`",
            ),
            (
                json!({"agent": "nope:Nothing"}),
                "no OCF agent at /usr/lib/ocf/resource.d/nope/Nothing",
            ),
            (
                json!({"agent": "x:y", "interval": "1s"}),
                "unknown param `interval`",
            ),
            (
                json!({"agent": "x:y", "monitor_interval": "0s"}),
                "param `monitor_interval`: must be above 0",
            ),
        ] {
            let e = OcfSpec::from_params(&params(bad.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(expect), "{bad}: {e}");
        }
        assert_eq!(meaning(7), "not running");
        assert_eq!(meaning(6), "not configured (the params are wrong)");
    }

    #[tokio::test]
    async fn the_dummy_agent_starts_is_monitored_detected_when_gone_and_stops() {
        let Some((dir, state_file, spec)) = dummy("dummy", "d1") else {
            return;
        };
        assert_eq!(
            spec.env("d1", "start")["OCF_RESKEY_state"],
            state_file.display().to_string()
        );
        let r = OcfResource::launch(spec.clone(), "d1", &dir.join("d1.log")).unwrap();
        for _ in 0..100 {
            if r.state() == OcfState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(r.state(), OcfState::Running);
        assert!(
            state_file.exists(),
            "Dummy keeps its state file while running"
        );
        // The resource disappears behind the agent's back: the next monitor says 7.
        std::fs::remove_file(&state_file).unwrap();
        for _ in 0..100 {
            if r.state() != OcfState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            r.state(),
            OcfState::Failed {
                action: "monitor",
                code: Some(7),
                why: Some("No process state file found".into())
            }
        );
        // Start it again, then stop it: stop returns 0 and the state file is gone.
        let r = OcfResource::launch(spec, "d1", &dir.join("d1.log")).unwrap();
        for _ in 0..100 {
            if r.state() == OcfState::Running {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(state_file.exists());
        assert_eq!(r.stop(None).await, (Some(0), None));
        assert!(!state_file.exists());
        let log = std::fs::read_to_string(dir.join("d1.log")).unwrap();
        assert!(log.contains("ocf monitor: exit 7 (not running)"), "{log}");
        assert!(
            log.contains("ocf meta-data: ") && !log.contains("<resource-agent"),
            "{log}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// A promotable copy's monitor runs at its role's interval and names the role; a plain
    /// resource's monitor has neither.
    #[test]
    fn monitors_are_role_specific_for_promotable_copies() {
        let mut s = OcfSpec {
            monitor_interval: Duration::from_secs(11),
            promoted_monitor_interval: Duration::from_secs(10),
            ..bare_spec(Path::new("/nonexistent"), "y")
        };
        let env = |s: &OcfSpec| s.env("db", "monitor");
        let plain = s.monitor_for(Some(proto::Role::Promoted));
        assert_eq!(env(&plain)["OCF_RESKEY_CRM_meta_interval"], "11000");
        assert!(!env(&plain).contains_key("OCF_RESKEY_CRM_meta_role"));
        s.promotable = true;
        let promoted = s.monitor_for(Some(proto::Role::Promoted));
        assert_eq!(env(&promoted)["OCF_RESKEY_CRM_meta_interval"], "10000");
        assert_eq!(env(&promoted)["OCF_RESKEY_CRM_meta_role"], "Promoted");
        for role in [None, Some(proto::Role::Unpromoted)] {
            let m = s.monitor_for(role);
            assert_eq!(env(&m)["OCF_RESKEY_CRM_meta_interval"], "11000");
            assert_eq!(env(&m)["OCF_RESKEY_CRM_meta_role"], "Unpromoted");
        }
        let spec = OcfSpec::from_params(&params(json!({
            "agent": "x:y", "promoted_monitor_interval": "0s"
        })));
        assert!(
            spec.unwrap_err()
                .to_string()
                .contains("param `promoted_monitor_interval`: must be above 0")
        );
    }

    /// Pacemaker's probe: a resource already running where its copy is placed is taken over,
    /// not started again; one that is not running is started. (Without the probe the start
    /// runs in both cases.)
    #[tokio::test]
    async fn a_resource_already_running_is_taken_over_not_started_again() {
        let Some((dir, state_file, spec)) = dummy("probe", "p1") else {
            return;
        };
        let run = |name: &'static str| {
            let (spec, dir) = (spec.clone(), dir.clone());
            async move {
                let r = OcfResource::launch(spec, "p1", &dir.join(name)).unwrap();
                for _ in 0..100 {
                    if r.state() == OcfState::Running {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let state = r.state();
                r.task.abort();
                (state, std::fs::read_to_string(dir.join(name)).unwrap())
            }
        };
        // Not running: probed (7), then started.
        let (state, log) = run("first.log").await;
        assert_eq!(state, OcfState::Running, "{log}");
        assert!(log.contains("ocf probe: exit 7 (not running)"), "{log}");
        assert!(log.contains("ocf start: exit 0"), "{log}");
        // Running already (its state file is there): taken over, no start.
        assert!(state_file.exists());
        let (state, log) = run("second.log").await;
        assert_eq!(state, OcfState::Running, "{log}");
        assert!(log.contains("ocf probe: exit 0"), "{log}");
        assert!(log.contains("taken over, not started again"), "{log}");
        assert!(!log.contains("ocf start:"), "{log}");
        let _ = std::fs::remove_dir_all(dir);
    }

    /// An action that times out while a process it started holds its output open leaves no
    /// reader task behind (before, each such timeout leaked two for the process's life).
    #[tokio::test(flavor = "current_thread")]
    async fn a_timed_out_action_leaves_no_reader_behind() {
        let dir = std::env::temp_dir().join(format!("buoy-ocf-readers-{}", std::process::id()));
        let agent_dir = dir.join("resource.d/test");
        std::fs::create_dir_all(&agent_dir).unwrap();
        let pid_file = dir.join("daemon.pid");
        let script = format!(
            "#!/bin/sh\nsleep 30 &\necho $! > {}\nexec sleep 30\n",
            pid_file.display()
        );
        let agent = agent_dir.join("Holder");
        std::fs::write(&agent, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spec = OcfSpec {
            timeout: Duration::from_millis(300),
            ..bare_spec(&dir, "Holder")
        };
        let metrics = tokio::runtime::Handle::current().metrics();
        let before = metrics.num_alive_tasks();
        let log = Mutex::new(LogFile::open(&dir.join("holder.log"), DEFAULT_CAP).unwrap());
        let (code, _) = run_action_why(&spec, "h1", "start", &log).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = metrics.num_alive_tasks();
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: a plain signal to the process this test's agent started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(code, None, "timed out");
        assert_eq!(after, before, "reader tasks outlived the timed-out action");
    }
}
