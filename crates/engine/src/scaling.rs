//! Scale policies: an instance's replica count kept between a minimum and a maximum and
//! moved by alerts (Prometheus Alertmanager's webhook; the server parses it into
//! [`Alert`]s). A rule matches an alert when every label of its matcher has that value in
//! the alert's labels; while any alert a rule matches fires, the rule adds its step to the
//! count the operator set. The count goes up at once; when alerts resolve it comes back down
//! only after the cool-down since the last change (no flapping). Pure: the leader feeds it
//! the alerts and the time, and records each [`Decision`] with its reason.

use std::collections::{BTreeMap, BTreeSet};

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
}
