//! An instance: what Buoy keeps available (a process, a QEMU VM, an OCF resource agent), with
//! what it needs, how it may be placed, and how it is restarted and health-checked.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::constraint::{Colocation, GroupMember, StartAfter};
use crate::error::StateError;
use crate::health::HealthCheck;
use crate::host::check_labels;
use crate::object::{ObjectMeta, check_dns_like_name, check_name};
use crate::resources::Cpu;
use crate::segment::set;

/// Which driver runs the instance; its parameters live in `params`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriverKind {
    Process,
    Qemu,
    Ocf,
}

/// Active-passive or active-active.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// One copy; never on two hosts at once (rule S1).
    #[default]
    Single,
    /// `replicas` copies on distinct hosts.
    Clone,
    /// `replicas` copies on distinct hosts, at most `promoted_max` of them promoted (a
    /// primary and its replicas): Pacemaker's promotable clone, for OCF agents that implement
    /// `promote` and `demote`. The copies with the highest promotion scores (set by the
    /// agents) are promoted, each under a promotion grant (rule S1 for the promoted role).
    Promotable,
}

impl Mode {
    /// Several copies on distinct hosts (`clone` and `promotable`).
    pub fn is_clone(self) -> bool {
        matches!(self, Mode::Clone | Mode::Promotable)
    }
}

/// What the operator wants.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DesiredState {
    #[default]
    Started,
    /// Placed but not running.
    Stopped,
    /// Neither placed nor recovered.
    Disabled,
}

/// A stored instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Instance {
    #[serde(flatten)]
    pub meta: ObjectMeta,
    pub name: String,
    /// Id of its segment.
    pub segment: String,
    pub driver: DriverKind,
    /// Driver parameters (`command`, `kernel`, `agent`...), checked by the driver on the host.
    pub params: serde_json::Map<String, serde_json::Value>,
    pub cpu: Cpu,
    pub memory_mb: u64,
    /// 0 to 1000; higher recovers first.
    pub priority: u16,
    pub mode: Mode,
    /// Copies wanted: 1 for `single`.
    pub replicas: u32,
    /// Instances sharing a group never share a host.
    pub anti_affinity: Option<String>,
    /// Labels a host must carry to run it.
    pub host_labels: BTreeMap<String, String>,
    pub desired_state: DesiredState,
    /// At most this many restarts in place within `restart_window`; then it is moved.
    pub max_restarts: u32,
    #[serde(with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub restart_window: Duration,
    pub health_checks: Vec<HealthCheck>,
    /// How long a host where a copy failed is avoided for it (0s: until `buoy instance
    /// reset`). A copy that failed on every usable host is blocked that long.
    #[serde(default, with = "crate::duration_text")]
    #[schemars(with = "String")]
    pub failure_timeout: Duration,
    /// `promotable`: at most this many copies promoted at once (default 1).
    #[serde(default = "one")]
    pub promoted_max: u32,
    /// Run the agents' `notify` action around starts, stops, promotions and demotions, with
    /// Pacemaker's lists (`clone` and `promotable` OCF instances).
    #[serde(default)]
    pub notify: bool,
    /// `promotable`: the host (by name) whose copy the operator wants promoted: once that
    /// copy is ready (unpromoted, with a promotion score above 0), another promoted copy is
    /// demoted and this one promoted (`buoy instance promote NAME --host HOST`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_promoted: Option<String>,
    /// Run on the host of another instance (of its promoted copy). `single` instances only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub colocated_with: Option<Colocation>,
    /// Start only once these instances run (or are promoted); with a colocation, their copy
    /// on this host counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub start_after: Vec<StartAfter>,
    /// The group it belongs to, and its place there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupMember>,
    /// Spread the copies over zones (`clone` and `promotable` instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<crate::spread::Spread>,
    /// Scale the copy count between bounds on alerts (`clone` and `promotable` instances).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Box<crate::scale::Scale>>,
    /// What the scale policy did (kept by the leader; read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Box<crate::scale::Scaling>>,
    /// Its copies run HAProxy, driven through this admin socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<Box<crate::balancer::LoadBalancer>>,
    /// Its running copies are the servers of a backend of this load balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balancer: Option<Box<crate::balancer::BalancerLink>>,
}

fn one() -> u32 {
    1
}

/// The fields a client may set on an instance (create: `name`, `segment`, `driver` required).
/// Read-only fields (`id`, `version`, timestamps) are taken out by the API before decoding.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub name: Option<String>,
    /// The segment's name or id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<DriverKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Cpu>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 67108864))]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub priority: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: Option<u32>,
    /// `null` removes it from its group.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<String>", extend("pattern" = crate::object::NAME_PATTERN))]
    pub anti_affinity: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("propertyNames" = {"pattern": crate::object::LABEL_KEY_PATTERN}, "additionalProperties" = {"type": "string", "pattern": crate::object::LABEL_VALUE_PATTERN}))]
    pub host_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_state: Option<DesiredState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration_text::option"
    )]
    #[schemars(with = "Option<String>", extend("pattern" = crate::duration_text::PATTERN))]
    pub restart_window: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub health_checks: Option<Vec<HealthCheck>>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::duration_text::option"
    )]
    #[schemars(with = "Option<String>", extend("pattern" = crate::duration_text::PATTERN))]
    pub failure_timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub promoted_max: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<bool>,
    /// `null` clears it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<String>", extend("pattern" = crate::object::DNS_NAME_PATTERN))]
    pub preferred_promoted: Option<Option<String>>,
    /// `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<Colocation>")]
    pub colocated_with: Option<Option<Colocation>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    pub start_after: Option<Vec<StartAfter>>,
    /// `null` takes it out of its group.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<GroupMember>")]
    pub group: Option<Option<GroupMember>>,
    /// `null` stops spreading.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<crate::spread::Spread>")]
    pub spread: Option<Option<crate::spread::Spread>>,
    /// `null` removes the policy (the count goes back to `replicas`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<crate::scale::Scale>")]
    pub scale: Option<Option<Box<crate::scale::Scale>>>,
    /// `null` removes it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<crate::balancer::LoadBalancer>")]
    pub load_balancer: Option<Option<Box<crate::balancer::LoadBalancer>>>,
    /// `null` takes its copies out of the load balancer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::host::some_or_null"
    )]
    #[schemars(with = "Option<crate::balancer::BalancerLink>")]
    pub balancer: Option<Option<Box<crate::balancer::BalancerLink>>>,
}

impl Instance {
    /// The copies wanted now: 1 for `single`; for a clone `replicas`, or the count its scale
    /// policy set, within the policy's bounds.
    pub fn copies(&self) -> u32 {
        if !self.mode.is_clone() {
            return 1;
        }
        match &self.scale {
            None => self.replicas,
            Some(s) => self
                .scaling
                .as_ref()
                .map_or(self.replicas, |now| now.replicas)
                .clamp(s.min_replicas, s.max_replicas),
        }
    }

    /// A new instance from a create request; `segment` is the resolved segment id.
    pub fn create(
        meta: ObjectMeta,
        spec: &InstanceSpec,
        segment: String,
    ) -> Result<Instance, StateError> {
        let Some(name) = spec.name.clone() else {
            return Err(StateError::invalid("name", "is required"));
        };
        let Some(driver) = spec.driver else {
            return Err(StateError::invalid(
                "driver",
                "is required: one of process, qemu, ocf",
            ));
        };
        let mut i = Instance {
            meta,
            name,
            segment,
            driver,
            params: serde_json::Map::new(),
            cpu: Cpu(0),
            memory_mb: 0,
            priority: 500,
            mode: Mode::Single,
            replicas: 1,
            anti_affinity: None,
            host_labels: BTreeMap::new(),
            desired_state: DesiredState::Started,
            max_restarts: 3,
            restart_window: Duration::from_secs(300),
            health_checks: Vec::new(),
            failure_timeout: Duration::ZERO,
            promoted_max: 1,
            notify: false,
            preferred_promoted: None,
            colocated_with: None,
            start_after: Vec::new(),
            group: None,
            spread: None,
            scale: None,
            scaling: None,
            load_balancer: None,
            balancer: None,
        };
        i.update(spec, None)?;
        Ok(i)
    }

    /// Applies the fields `spec` sets (with `segment` resolved to an id), then checks.
    pub fn update(
        &mut self,
        spec: &InstanceSpec,
        segment: Option<String>,
    ) -> Result<(), StateError> {
        let mut next = self.clone();
        set(&mut next.name, &spec.name);
        set(&mut next.segment, &segment);
        set(&mut next.driver, &spec.driver);
        set(&mut next.params, &spec.params);
        set(&mut next.cpu, &spec.cpu);
        set(&mut next.memory_mb, &spec.memory_mb);
        set(&mut next.priority, &spec.priority);
        set(&mut next.mode, &spec.mode);
        set(&mut next.replicas, &spec.replicas);
        set(&mut next.anti_affinity, &spec.anti_affinity);
        set(&mut next.host_labels, &spec.host_labels);
        set(&mut next.desired_state, &spec.desired_state);
        set(&mut next.max_restarts, &spec.max_restarts);
        set(&mut next.restart_window, &spec.restart_window);
        set(&mut next.health_checks, &spec.health_checks);
        set(&mut next.failure_timeout, &spec.failure_timeout);
        set(&mut next.promoted_max, &spec.promoted_max);
        set(&mut next.notify, &spec.notify);
        set(&mut next.preferred_promoted, &spec.preferred_promoted);
        set(&mut next.colocated_with, &spec.colocated_with);
        set(&mut next.start_after, &spec.start_after);
        set(&mut next.group, &spec.group);
        set(&mut next.spread, &spec.spread);
        set(&mut next.scale, &spec.scale);
        set(&mut next.load_balancer, &spec.load_balancer);
        set(&mut next.balancer, &spec.balancer);
        if next.scale.is_none() {
            next.scaling = None;
        }
        if next.mode == Mode::Single && spec.replicas.is_none() {
            next.replicas = 1;
        }
        next.validate()?;
        // Checked where a client sets it, not in `validate`: the state machine validates every
        // stored object, and a rule added later must not refuse entries already committed.
        if next.driver == DriverKind::Process
            && (spec.params.is_some() || spec.driver.is_some())
            && let Some(command) = next.params.get("command").and_then(|v| v.as_str())
        {
            check_command(command)?;
        }
        *self = next;
        Ok(())
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), StateError> {
        check_dns_like_name("name", &self.name)?;
        if self.priority > 1000 {
            return Err(StateError::invalid(
                "priority",
                format!("{} is out of range: expected 0 to 1000", self.priority),
            ));
        }
        if self.memory_mb > 64 * 1024 * 1024 {
            return Err(StateError::invalid("memory_mb", "must be at most 64 TiB"));
        }
        match self.mode {
            Mode::Single if self.replicas != 1 => {
                return Err(StateError::unprocessable(
                    "replicas",
                    "must be 1 for mode single (use mode clone for several copies)",
                ));
            }
            Mode::Clone | Mode::Promotable if !(1..=1000).contains(&self.replicas) => {
                return Err(StateError::unprocessable(
                    "replicas",
                    "must be 1 to 1000 for modes clone and promotable",
                ));
            }
            _ => {}
        }
        if self.mode == Mode::Promotable {
            if self.driver != DriverKind::Ocf {
                return Err(StateError::unprocessable(
                    "mode",
                    "promotable needs the ocf driver: an OCF agent that implements promote and demote",
                ));
            }
            if !(1..=self.replicas).contains(&self.promoted_max) {
                return Err(StateError::unprocessable(
                    "promoted_max",
                    format!("must be 1 to replicas ({})", self.replicas),
                ));
            }
        }
        if let Some(g) = &self.anti_affinity {
            check_name("anti_affinity", g)?;
        }
        if let Some(h) = &self.preferred_promoted {
            check_dns_like_name("preferred_promoted", h)?;
            if self.mode != Mode::Promotable {
                return Err(StateError::unprocessable(
                    "preferred_promoted",
                    "only a promotable instance has a promoted copy to prefer",
                ));
            }
        }
        crate::constraint::validate(&self.name, self.colocated_with.as_ref(), &self.start_after)?;
        if let Some(g) = &self.group {
            check_dns_like_name("group.name", &g.name)?;
            if self.mode != Mode::Single || self.colocated_with.is_some() {
                return Err(StateError::unprocessable(
                    "group",
                    "a group's members are single instances that follow the group, not another instance",
                ));
            }
            if g.order > 1000 {
                return Err(StateError::invalid("group.order", "must be 0 to 1000"));
            }
        }
        if self.colocated_with.is_some() && self.mode != Mode::Single {
            return Err(StateError::unprocessable(
                "colocated_with",
                "only a single instance follows another (a clone's copies spread over hosts)",
            ));
        }
        check_labels("host_labels", &self.host_labels)?;
        if let Some(spread) = &self.spread {
            if !self.mode.is_clone() {
                return Err(StateError::unprocessable(
                    "spread",
                    "only the copies of a clone or promotable instance spread over zones",
                ));
            }
            spread.validate()?;
        }
        if let Some(scale) = &self.scale {
            if !self.mode.is_clone() {
                return Err(StateError::unprocessable(
                    "scale",
                    "only a clone or promotable instance scales its copy count",
                ));
            }
            scale.validate((self.mode == Mode::Promotable).then_some(self.promoted_max))?;
        }
        if let Some(lb) = &self.load_balancer {
            lb.validate()?;
        }
        if let Some(link) = &self.balancer {
            link.validate(&self.name)?;
        }
        if self.restart_window.is_zero() && self.max_restarts > 0 {
            return Err(StateError::unprocessable(
                "restart_window",
                "must be longer than 0s when max_restarts is above 0",
            ));
        }
        self.check_params()?;
        if self.health_checks.len() > 16 {
            return Err(StateError::invalid(
                "health_checks",
                "at most 16 checks per instance",
            ));
        }
        for (i, c) in self.health_checks.iter().enumerate() {
            c.validate(&format!("health_checks[{i}]"))?;
        }
        Ok(())
    }

    /// The parameters each driver cannot start without (and what can be told wrong before
    /// any host tries).
    fn check_params(&self) -> Result<(), StateError> {
        let text = |key: &str| self.params.get(key).and_then(|v| v.as_str());
        match self.driver {
            DriverKind::Process => {
                if text("command").is_none_or(|c| c.trim().is_empty()) {
                    return Err(StateError::unprocessable(
                        "params.command",
                        "the process driver needs a command (a string)",
                    ));
                }
            }
            DriverKind::Qemu => {
                if text("disk").is_none() && text("kernel").is_none() {
                    return Err(StateError::unprocessable(
                        "params",
                        "the qemu driver needs `disk` (an image path) or `kernel` (+ `initrd`)",
                    ));
                }
            }
            DriverKind::Ocf => {
                let agent = text("agent").unwrap_or_default();
                // `ocf:PROVIDER:TYPE`, or `PROVIDER:TYPE` for short.
                let parts: Vec<&str> = agent.trim_start_matches("ocf:").split(':').collect();
                let well_formed = parts.len() == 2
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
                    });
                if !well_formed {
                    return Err(StateError::unprocessable(
                        "params.agent",
                        format!(
                            "`{agent}` is not an OCF agent name like ocf:heartbeat:Dummy or heartbeat:Dummy"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A process command is one program: an absolute path, or a name looked up on the host's
/// `PATH`. A command line with arguments never starts on any host, so it is refused here with
/// the fix (issue 16: the README's own example looped forever on this).
fn check_command(command: &str) -> Result<(), StateError> {
    let fix = |why: String| {
        let mut words = command.split_whitespace();
        let program = words.next().unwrap_or_default();
        let args: Vec<String> = words.map(|w| format!("{w:?}")).collect();
        StateError::unprocessable(
            "params.command",
            format!(
                "`{command}` {why}: give one program in `command` (an absolute path or a name on PATH) and its arguments in `args`, e.g. --set params.command={program} --set 'params.args=[{}]'",
                args.join(",")
            ),
        )
    };
    if command.starts_with('/') {
        return Ok(());
    }
    if command.chars().any(char::is_whitespace) {
        return Err(fix("has spaces".into()));
    }
    if command.contains('/') {
        return Err(fix(
            "is a relative path, which depends on the agent's directory".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> InstanceSpec {
        serde_json::from_str(json).unwrap()
    }

    fn create(json: &str) -> Result<Instance, StateError> {
        Instance::create(ObjectMeta::default(), &spec(json), "seg".into())
    }

    #[test]
    fn a_process_instance_gets_sane_defaults() {
        let i =
            create(r#"{"name":"web","driver":"process","params":{"command":"sleep"}}"#).unwrap();
        assert_eq!(i.mode, Mode::Single);
        assert_eq!(i.replicas, 1);
        assert_eq!(i.priority, 500);
        assert_eq!(i.restart_window, Duration::from_secs(300));
        assert_eq!(i.desired_state, DesiredState::Started);
        let out = serde_json::to_value(&i).unwrap();
        assert_eq!(out["restart_window"], "5m");
    }

    #[test]
    fn a_clone_spreads_over_a_label_checked_with_its_skew() {
        let base = r#""name":"web","driver":"process","params":{"command":"sleep"}"#;
        let i = create(&format!(
            r#"{{{base},"mode":"clone","replicas":6,"spread":{{}}}}"#
        ))
        .unwrap();
        let s = i.spread.unwrap();
        assert_eq!((s.label.as_str(), s.max_skew), ("zone", 1), "defaults");
        let e = create(&format!(r#"{{{base},"spread":{{"label":"zone"}}}}"#)).unwrap_err();
        assert_eq!(
            e.field(),
            Some("spread"),
            "a single instance has nothing to spread"
        );
        for (bad, field) in [
            (r#"{"label":""}"#, "spread.label"),
            (r#"{"max_skew":0}"#, "spread.max_skew"),
        ] {
            let e = create(&format!(
                r#"{{{base},"mode":"clone","replicas":2,"spread":{bad}}}"#
            ))
            .unwrap_err();
            assert_eq!(e.field(), Some(field), "{bad}");
        }
        // `null` stops spreading.
        let mut i = create(&format!(
            r#"{{{base},"mode":"clone","replicas":2,"spread":{{}}}}"#
        ))
        .unwrap();
        i.update(&spec(r#"{"spread":null}"#), None).unwrap();
        assert_eq!(i.spread, None);
    }

    #[test]
    fn each_driver_insists_on_its_parameters() {
        let e = create(r#"{"name":"a","driver":"process"}"#).unwrap_err();
        assert_eq!(e.field(), Some("params.command"));
        let e = create(r#"{"name":"a","driver":"ocf","params":{"agent":"Dummy"}}"#).unwrap_err();
        assert_eq!(e.field(), Some("params.agent"));
        assert!(
            create(r#"{"name":"a","driver":"ocf","params":{"agent":"ocf:heartbeat:Dummy"}}"#)
                .is_ok()
        );
        let e = create(r#"{"name":"a","driver":"qemu"}"#).unwrap_err();
        assert_eq!(e.field(), Some("params"));
        let e = create(r#"{"name":"a"}"#).unwrap_err();
        assert_eq!(e.field(), Some("driver"));
    }

    /// Issue 16: the README's `params.command="python3 -m http.server"` never started on any
    /// host, and recovery moved it between hosts forever. It is refused with the fix.
    #[test]
    fn a_command_line_is_refused_with_the_fix() {
        let e = create(
            r#"{"name":"a","driver":"process","params":{"command":"python3 -m http.server"}}"#,
        )
        .unwrap_err();
        assert_eq!(e.field(), Some("params.command"));
        let text = e.to_string();
        assert!(
            text.contains("has spaces")
                && text.contains(
                    r#"--set params.command=python3 --set 'params.args=["-m","http.server"]'"#
                ),
            "{text}"
        );
        let e = create(r#"{"name":"a","driver":"process","params":{"command":"bin/app"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("relative path"), "{e}");
        for ok in ["python3", "/usr/bin/python3", "/opt/my app/run"] {
            let json =
                format!(r#"{{"name":"a","driver":"process","params":{{"command":"{ok}"}}}}"#);
            assert!(create(&json).is_ok(), "{ok}");
        }
    }

    #[test]
    fn replicas_follow_the_mode() {
        let base = r#""name":"a","driver":"process","params":{"command":"x"}"#;
        let e = create(&format!("{{{base},\"replicas\":3}}")).unwrap_err();
        assert_eq!(e.field(), Some("replicas"));
        let i = create(&format!("{{{base},\"mode\":\"clone\",\"replicas\":3}}")).unwrap();
        assert_eq!(i.replicas, 3);
        let e = create(&format!("{{{base},\"mode\":\"clone\",\"replicas\":0}}")).unwrap_err();
        assert_eq!(e.field(), Some("replicas"));
        let e = create(&format!("{{{base},\"priority\":1001}}")).unwrap_err();
        assert_eq!(e.field(), Some("priority"));
    }

    #[test]
    fn bad_values_are_refused_when_decoding() {
        for (json, field) in [
            (r#"{"driver":"docker"}"#, "docker"),
            (r#"{"restart_window":"5"}"#, "duration"),
            (r#"{"cpu":-1}"#, "CPU"),
            (r#"{"replica":2}"#, "replica"),
            (r#"{"priority":-1}"#, "-1"),
        ] {
            let e = serde_json::from_str::<InstanceSpec>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains(field), "{json}: {e}");
        }
    }
}
