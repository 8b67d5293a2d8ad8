//! Scale policies: an instance's replica count kept between a minimum and a maximum and
//! moved by alerts (Prometheus Alertmanager's webhook; the server parses it into
//! [`Alert`]s). A rule matches an alert when every label of its matcher has that value in
//! the alert's labels; while any alert a rule matches fires, the rule adds its step to the
//! count the operator set. The count goes up at once; when alerts resolve it comes back down
//! only after the cool-down since the last change (no flapping). Pure: the leader feeds it
//! the alerts and the time, and records each [`Decision`] with its reason.

use std::collections::{BTreeMap, BTreeSet};

use model::Timestamp;
use model::instance::Instance;
use model::scale::{MAX_FIRING, ScaleEvent, Scaling};

/// Adds `step` copies while an alert matching `matchers` fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub matchers: BTreeMap<String, String>,
    pub step: u32,
}

/// An instance's scaling: `replicas` as the operator set it, its bounds, its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub replicas: u32,
    pub min: u32,
    pub max: u32,
    pub rules: Vec<Rule>,
    pub cooldown_ms: u64,
}

/// One alert of a webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    /// Alertmanager's fingerprint: the same alert across webhooks.
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// Firing (else resolved).
    pub firing: bool,
}

/// The alerts firing for one instance: fingerprint -> the rule it matched.
pub type Firing = BTreeMap<String, String>;

/// What an alert did to `firing`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// It fires, under this rule (it did not before).
    Fires(String),
    /// It resolved, under this rule.
    Resolved(String),
    /// No rule matches it.
    Unmatched,
    /// Nothing new (fired again, or resolved an alert not firing).
    Unchanged,
}

impl Policy {
    /// The first rule that matches `alert`.
    pub fn rule_for(&self, alert: &Alert) -> Option<&Rule> {
        self.rules.iter().find(|r| {
            r.matchers
                .iter()
                .all(|(k, v)| alert.labels.get(k) == Some(v))
        })
    }

    /// Takes `alert` into `firing`; what it did.
    pub fn take(&self, firing: &mut Firing, alert: &Alert) -> Effect {
        let Some(rule) = self.rule_for(alert) else {
            return Effect::Unmatched;
        };
        match (alert.firing, firing.contains_key(&alert.fingerprint)) {
            (true, false) => {
                firing.insert(alert.fingerprint.clone(), rule.name.clone());
                Effect::Fires(rule.name.clone())
            }
            (false, true) => {
                firing.remove(&alert.fingerprint);
                Effect::Resolved(rule.name.clone())
            }
            _ => Effect::Unchanged,
        }
    }

    /// The count `firing` calls for: the operator's, plus the step of every rule with an
    /// alert firing, within the bounds.
    pub fn wanted(&self, firing: &Firing) -> u32 {
        let active: BTreeSet<&String> = firing.values().collect();
        let added: u32 = self
            .rules
            .iter()
            .filter(|r| active.contains(&r.name))
            .map(|r| r.step)
            .sum();
        self.replicas
            .saturating_add(added)
            .clamp(self.min, self.max)
    }

    /// The change to make now from `current` copies, if any: up at once, down only once
    /// `cooldown_ms` passed since `last_change_ms`.
    pub fn decide(
        &self,
        current: u32,
        firing: &Firing,
        now_ms: u64,
        last_change_ms: Option<u64>,
    ) -> Option<Decision> {
        let to = self.wanted(firing);
        let rules: BTreeSet<&String> = firing.values().collect();
        let why = if rules.is_empty() {
            "no alert fires".to_string()
        } else {
            let names: Vec<&str> = rules.iter().map(|s| s.as_str()).collect();
            format!("alerts fire for rule(s) {}", names.join(", "))
        };
        if to > current {
            return Some(Decision {
                from: current,
                to,
                why,
            });
        }
        let cooled = last_change_ms.is_none_or(|t| now_ms.saturating_sub(t) >= self.cooldown_ms);
        (to < current && cooled).then(|| Decision {
            from: current,
            to,
            why: format!("{why}; cool-down over"),
        })
    }
}

/// A change of an instance's replica count, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub from: u32,
    pub to: u32,
    pub why: String,
}

impl Policy {
    /// The policy of instance `i` (none without `scale`).
    pub fn of(i: &Instance) -> Option<Policy> {
        let s = i.scale.as_ref()?;
        Some(Policy {
            replicas: i.replicas,
            min: s.min_replicas,
            max: s.max_replicas,
            rules: s
                .rules
                .iter()
                .map(|r| Rule {
                    name: r.name.clone(),
                    matchers: r.matchers.clone(),
                    step: r.step,
                })
                .collect(),
            cooldown_ms: s.cooldown.as_millis() as u64,
        })
    }
}

/// What a webhook did to one instance.
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    /// The instance with its new `scaling` (to write), if anything changed.
    pub instance: Option<Instance>,
    /// Alerts a rule of this instance matched.
    pub matched: usize,
    /// The count change, if any.
    pub decision: Option<Decision>,
}

/// Takes a webhook's `alerts` (sent by `by`, Alertmanager's receiver) into instance `i` at
/// `now`: the alerts its rules match fire or resolve, and the count follows
/// ([`Policy::decide`]). Each change is recorded in `scaling.events`.
pub fn on_alerts(i: &Instance, alerts: &[Alert], by: &str, now: Timestamp) -> Applied {
    let Some(policy) = Policy::of(i) else {
        return Applied {
            instance: None,
            matched: 0,
            decision: None,
        };
    };
    let before = current(i);
    let mut scaling = before.clone();
    let mut matched = 0;
    for a in alerts {
        if policy.rule_for(a).is_none() {
            continue;
        }
        matched += 1;
        if a.firing
            && scaling.firing.len() >= MAX_FIRING
            && !scaling.firing.contains_key(&a.fingerprint)
        {
            let e = event(
                now,
                "ignored",
                None,
                Some(a),
                by,
                format!("more than {MAX_FIRING} alerts fire for this instance"),
            );
            // Once per alert: Alertmanager repeats its webhooks, and each repeat would
            // otherwise write the record again.
            if !scaling
                .events
                .iter()
                .any(|x| x.kind == "ignored" && x.alert == e.alert)
            {
                scaling.record(e);
            }
            continue;
        }
        match policy.take(&mut scaling.firing, a) {
            Effect::Fires(rule) => scaling.record(event(
                now,
                "fired",
                Some(rule),
                Some(a),
                by,
                "alert fires".into(),
            )),
            Effect::Resolved(rule) => scaling.record(event(
                now,
                "resolved",
                Some(rule),
                Some(a),
                by,
                "alert resolved".into(),
            )),
            Effect::Unmatched | Effect::Unchanged => {}
        }
    }
    if matched == 0 {
        // Not this instance's alerts: its own changes (a cool-down) are the tick's, not
        // this receiver's.
        return Applied {
            instance: None,
            matched,
            decision: None,
        };
    }
    let decision = decide(&policy, &mut scaling, by, now);
    Applied {
        instance: changed(i, before, scaling),
        matched,
        decision,
    }
}

/// The leader's periodic look at instance `i`: a count due to come down after its
/// cool-down, or moved by the operator's `replicas` or bounds.
pub fn on_tick(i: &Instance, now: Timestamp) -> Option<(Instance, Decision)> {
    let policy = Policy::of(i)?;
    let before = current(i);
    let mut scaling = before.clone();
    let d = decide(&policy, &mut scaling, "buoy", now)?;
    Some((changed(i, before, scaling)?, d))
}

/// `i`'s scaling record, or a fresh one at its count.
fn current(i: &Instance) -> Scaling {
    let mut s = i.scaling.as_deref().cloned().unwrap_or_default();
    s.replicas = i.copies();
    s
}

fn decide(policy: &Policy, scaling: &mut Scaling, by: &str, now: Timestamp) -> Option<Decision> {
    let d = policy.decide(
        scaling.replicas,
        &scaling.firing,
        now.unix_millis(),
        scaling.last_change.map(Timestamp::unix_millis),
    )?;
    scaling.replicas = d.to;
    scaling.last_change = Some(now);
    let mut e = event(now, "scaled", None, None, by, d.why.clone());
    e.from = Some(d.from);
    e.to = Some(d.to);
    scaling.record(e);
    Some(d)
}

fn changed(i: &Instance, before: Scaling, after: Scaling) -> Option<Instance> {
    if i.scaling.is_some() && after == before {
        return None;
    }
    if i.scaling.is_none() && after.events.is_empty() {
        return None;
    }
    let mut next = i.clone();
    next.scaling = Some(Box::new(after));
    Some(next)
}

fn event(
    at: Timestamp,
    kind: &str,
    rule: Option<String>,
    alert: Option<&Alert>,
    by: &str,
    why: String,
) -> ScaleEvent {
    ScaleEvent {
        at,
        kind: kind.into(),
        rule,
        alert: alert.map(|a| {
            let name = a.labels.get("alertname").map_or("?", String::as_str);
            format!("{name} ({})", a.fingerprint)
        }),
        by: by.into(),
        from: None,
        to: None,
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            replicas: 3,
            min: 2,
            max: 6,
            rules: vec![
                Rule {
                    name: "latency".into(),
                    matchers: [("alertname".to_string(), "HighLatency".to_string())].into(),
                    step: 2,
                },
                Rule {
                    name: "load".into(),
                    matchers: [("alertname".to_string(), "HighLoad".to_string())].into(),
                    step: 3,
                },
            ],
            cooldown_ms: 60_000,
        }
    }

    fn alert(fp: &str, name: &str, firing: bool) -> Alert {
        Alert {
            fingerprint: fp.into(),
            labels: [
                ("alertname".to_string(), name.to_string()),
                ("instance".to_string(), "web".to_string()),
            ]
            .into(),
            firing,
        }
    }

    #[test]
    fn firing_alerts_scale_up_at_once_within_the_maximum() {
        let p = policy();
        let mut firing = Firing::new();
        assert_eq!(
            p.take(&mut firing, &alert("a", "HighLatency", true)),
            Effect::Fires("latency".into())
        );
        // The same rule twice counts once; a repeat changes nothing.
        assert_eq!(
            p.take(&mut firing, &alert("b", "HighLatency", true)),
            Effect::Fires("latency".into())
        );
        assert_eq!(
            p.take(&mut firing, &alert("a", "HighLatency", true)),
            Effect::Unchanged
        );
        assert_eq!(p.wanted(&firing), 5);
        let d = p
            .decide(3, &firing, 1_000, Some(900))
            .expect("up at once, cool-down or not");
        assert_eq!((d.from, d.to), (3, 5));
        assert!(d.why.contains("latency"), "{}", d.why);
        // Both rules: 3 + 2 + 3 = 8, held at the maximum.
        p.take(&mut firing, &alert("c", "HighLoad", true));
        assert_eq!(p.wanted(&firing), 6);
        assert_eq!(
            p.take(&mut firing, &alert("d", "DiskFull", true)),
            Effect::Unmatched
        );
    }

    #[test]
    fn resolved_alerts_scale_down_only_after_the_cool_down() {
        let p = policy();
        let mut firing = Firing::new();
        p.take(&mut firing, &alert("a", "HighLatency", true));
        assert_eq!(
            p.take(&mut firing, &alert("a", "HighLatency", false)),
            Effect::Resolved("latency".into())
        );
        assert_eq!(
            p.take(&mut firing, &alert("a", "HighLatency", false)),
            Effect::Unchanged
        );
        assert_eq!(p.decide(5, &firing, 30_000, Some(0)), None, "cooling down");
        let d = p
            .decide(5, &firing, 60_000, Some(0))
            .expect("cool-down over");
        assert_eq!((d.from, d.to), (5, 3));
        assert_eq!(p.decide(3, &firing, 60_000, Some(0)), None, "in place");
        // Never under the minimum, whatever the operator's count.
        let low = Policy {
            replicas: 1,
            ..policy()
        };
        assert_eq!(low.wanted(&Firing::new()), 2);
    }

    fn web() -> Instance {
        let spec: model::instance::InstanceSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "driver": "process", "mode": "clone", "replicas": 3,
            "params": {"command": "sleep", "args": ["100"]},
            "scale": {"min_replicas": 2, "max_replicas": 5, "cooldown": "1m",
                      "rules": [{"name": "latency", "match": {"alertname": "HighLatency"}, "step": 2}]}
        }))
        .unwrap();
        Instance::create(model::ObjectMeta::default(), &spec, "seg".into()).unwrap()
    }

    #[test]
    fn a_webhook_scales_the_instance_and_records_who_and_why() {
        let i = web();
        assert_eq!(i.copies(), 3);
        let t0 = Timestamp::from_unix_millis(1_000_000);
        let fire = [
            alert("a", "HighLatency", true),
            alert("z", "DiskFull", true),
        ];
        let out = on_alerts(&i, &fire, "ops", t0);
        assert_eq!(out.matched, 1, "DiskFull matches no rule");
        let d = out.decision.expect("scaled up");
        assert_eq!((d.from, d.to), (3, 5));
        let i = out.instance.expect("changed");
        assert_eq!(i.copies(), 5);
        let s = i.scaling.as_ref().unwrap();
        let kinds: Vec<&str> = s.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["fired", "scaled"]);
        assert_eq!(s.events[1].by, "ops");
        assert!(
            s.events[0]
                .alert
                .as_deref()
                .unwrap()
                .contains("HighLatency")
        );
        // The same webhook again (Alertmanager repeats): nothing to write.
        assert!(on_alerts(&i, &fire, "ops", t0).instance.is_none());
        // Resolved: recorded, but the count waits for the cool-down.
        let out = on_alerts(&i, &[alert("a", "HighLatency", false)], "ops", t0);
        assert!(out.decision.is_none());
        let i = out.instance.expect("the resolution is recorded");
        assert_eq!(i.copies(), 5);
        assert!(on_tick(&i, Timestamp::from_unix_millis(1_030_000)).is_none());
        // Another instance's alert does not bring this one's cool-down decision with it.
        let other = on_alerts(
            &i,
            &[alert("x", "DiskFull", true)],
            "ops",
            Timestamp::from_unix_millis(1_060_000),
        );
        assert!(other.instance.is_none() && other.decision.is_none());
        let (i, d) = on_tick(&i, Timestamp::from_unix_millis(1_060_000)).expect("cooled");
        assert_eq!((d.from, d.to), (5, 3));
        assert_eq!(i.copies(), 3);
        assert_eq!(
            i.scaling.as_ref().unwrap().events.last().unwrap().by,
            "buoy"
        );
        assert!(on_tick(&i, Timestamp::from_unix_millis(2_000_000)).is_none());
    }

    #[test]
    fn alerts_over_the_bound_are_recorded_once_and_repeats_write_nothing() {
        let i = web();
        let t0 = Timestamp::from_unix_millis(1_000_000);
        let many: Vec<Alert> = (0..=MAX_FIRING)
            .map(|n| {
                let mut a = alert(&format!("f{n}"), "HighLatency", true);
                a.labels.insert("pod".into(), n.to_string());
                a
            })
            .collect();
        let i = on_alerts(&i, &many, "ops", t0).instance.expect("changed");
        let s = i.scaling.as_ref().unwrap();
        assert_eq!(s.firing.len(), MAX_FIRING);
        let ignored: Vec<&ScaleEvent> = s.events.iter().filter(|e| e.kind == "ignored").collect();
        assert_eq!(ignored.len(), 1, "{ignored:?}");
        assert!(
            ignored[0]
                .alert
                .as_deref()
                .unwrap()
                .contains(&format!("f{MAX_FIRING}"))
        );
        // Alertmanager repeats the webhook: nothing new to write.
        let again = on_alerts(&i, &many, "ops", Timestamp::from_unix_millis(1_010_000));
        assert!(
            again.instance.is_none(),
            "{:?}",
            again.instance.map(|i| i.scaling)
        );
    }

    #[test]
    fn without_a_policy_nothing_changes() {
        let mut i = web();
        i.scale = None;
        let out = on_alerts(
            &i,
            &[alert("a", "HighLatency", true)],
            "ops",
            Timestamp::now(),
        );
        assert!(out.instance.is_none() && out.decision.is_none());
        assert!(on_tick(&i, Timestamp::now()).is_none());
    }
}
