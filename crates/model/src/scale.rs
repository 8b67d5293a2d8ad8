//! Scale policies of a `clone` or `promotable` instance: its copy count kept between a
//! minimum and a maximum and moved by alerts (Prometheus Alertmanager's webhooks), and the
//! record of what the policy did. The operator sets [`Scale`]; the leader keeps
//! [`Scaling`], the count in force and why (`engine::scaling` decides).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;
use crate::timestamp::Timestamp;

/// The most decisions and alert changes kept per instance (the oldest go first).
pub const MAX_EVENTS: usize = 20;

/// The most alerts tracked as firing per instance.
pub const MAX_FIRING: usize = 100;

/// "Keep between `min_replicas` and `max_replicas` copies; add `step` while an alert matching
/// a rule fires; come back down `cooldown` after the last change."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scale {
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: u32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: u32,
    /// How long after the last change a count may go down again (default 5m).
    #[serde(default = "five_minutes", with = "crate::duration_text")]
    #[schemars(with = "String", extend("pattern" = crate::duration_text::PATTERN))]
    pub cooldown: Duration,
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub rules: Vec<ScaleRule>,
}

/// "While an alert whose labels include `match` fires, add `step` copies."
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRule {
    #[schemars(extend("pattern" = crate::object::NAME_PATTERN))]
    pub name: String,
    /// Label values the alert must carry (e.g. `{"alertname": "HighLatency"}`).
    #[serde(rename = "match")]
    #[schemars(
        length(min = 1, max = 16),
        extend("propertyNames" = {"maxLength": 128}),
        extend("additionalProperties" = {"type": "string", "maxLength": 1024})
    )]
    pub matchers: BTreeMap<String, String>,
    #[schemars(range(min = 1, max = 1000))]
    pub step: u32,
}

fn five_minutes() -> Duration {
    Duration::from_secs(300)
}

/// What the scale policy did: the count in force, the alerts firing, the last changes.
/// Kept by the leader; a client cannot set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Scaling {
    /// The copies wanted now (the instance's `replicas` when no alert moved it).
    pub replicas: u32,
    /// Alerts firing: Alertmanager's fingerprint -> the rule it matched.
    #[serde(default)]
    pub firing: BTreeMap<String, String>,
    /// When the count last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Timestamp>,
    /// The latest decisions and alert changes, oldest first.
    #[serde(default)]
    pub events: Vec<ScaleEvent>,
}

/// One thing the scale policy did, and who caused it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ScaleEvent {
    pub at: Timestamp,
    /// `fired`, `resolved` (an alert, under `rule`) or `scaled` (from -> to).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The alert's `alertname` label and fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    /// Who: the Alertmanager receiver, or `buoy` for its own decisions (cool-downs).
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<u32>,
    pub why: String,
}

impl Scale {
    /// Checks the bounds and rules (`promoted_max`: a promotable instance keeps at least
    /// that many copies).
    pub fn validate(&self, promoted_max: Option<u32>) -> Result<(), StateError> {
        if !(1..=1000).contains(&self.min_replicas) {
            return Err(StateError::invalid(
                "scale.min_replicas",
                "must be 1 to 1000",
            ));
        }
        if !(self.min_replicas..=1000).contains(&self.max_replicas) {
            return Err(StateError::invalid(
                "scale.max_replicas",
                format!("must be min_replicas ({}) to 1000", self.min_replicas),
            ));
        }
        if let Some(p) = promoted_max
            && self.min_replicas < p
        {
            return Err(StateError::unprocessable(
                "scale.min_replicas",
                format!("must be at least promoted_max ({p})"),
            ));
        }
        if self.rules.len() > 16 {
            return Err(StateError::invalid("scale.rules", "at most 16 rules"));
        }
        for (i, r) in self.rules.iter().enumerate() {
            let at = format!("scale.rules[{i}]");
            crate::object::check_name(&format!("{at}.name"), &r.name)?;
            if self.rules[..i].iter().any(|o| o.name == r.name) {
                return Err(StateError::invalid(
                    format!("{at}.name"),
                    format!("`{}` names two rules", r.name),
                ));
            }
            if r.matchers.is_empty() || r.matchers.len() > 16 {
                return Err(StateError::invalid(
                    format!("{at}.match"),
                    "1 to 16 labels the alert must carry",
                ));
            }
            if r.matchers
                .iter()
                .any(|(k, v)| k.chars().count() > 128 || v.chars().count() > 1024)
            {
                return Err(StateError::invalid(
                    format!("{at}.match"),
                    "label names up to 128 characters, values up to 1024",
                ));
            }
            if !(1..=1000).contains(&r.step) {
                return Err(StateError::invalid(
                    format!("{at}.step"),
                    "must be 1 to 1000",
                ));
            }
        }
        Ok(())
    }
}

impl Scaling {
    /// Appends `event`, keeping the last [`MAX_EVENTS`].
    pub fn record(&mut self, event: ScaleEvent) {
        self.events.push(event);
        let over = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..over);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(json: &str) -> Scale {
        serde_json::from_str(json).unwrap()
    }

    /// The document says what validation takes: label names up to 128 characters, values up
    /// to 1024, counted as characters (a value of 1024 four-byte characters is taken).
    #[test]
    fn match_limits_are_in_the_document_and_counted_in_characters() {
        let schema = serde_json::to_value(schemars::schema_for!(ScaleRule)).unwrap();
        let m = &schema["properties"]["match"];
        assert_eq!(m["propertyNames"]["maxLength"], 128, "{m}");
        assert_eq!(m["additionalProperties"]["maxLength"], 1024, "{m}");
        let rule = |k: &str, v: &str| {
            let mut s = scale(
                r#"{"min_replicas":2,"max_replicas":4,"rules":[{"name":"lat","match":{"a":"b"},"step":1}]}"#,
            );
            s.rules[0].matchers = [(k.to_string(), v.to_string())].into();
            s.validate(None)
        };
        assert!(rule("a", &"\u{1d413}".repeat(1024)).is_ok());
        assert!(rule("a", &"x".repeat(1025)).is_err());
        assert!(rule(&"\u{1d413}".repeat(128), "b").is_ok());
        assert!(rule(&"k".repeat(129), "b").is_err());
    }

    #[test]
    fn bounds_and_rules_are_checked_with_the_field_named() {
        let ok = scale(
            r#"{"min_replicas":2,"max_replicas":4,"rules":[{"name":"lat","match":{"alertname":"A"},"step":1}]}"#,
        );
        assert_eq!(ok.cooldown, Duration::from_secs(300));
        ok.validate(None).unwrap();
        let field =
            |s: Scale, p: Option<u32>| s.validate(p).unwrap_err().field().unwrap().to_string();
        assert_eq!(
            field(scale(r#"{"min_replicas":3,"max_replicas":2}"#), None),
            "scale.max_replicas"
        );
        assert_eq!(
            field(scale(r#"{"min_replicas":1,"max_replicas":2}"#), Some(2)),
            "scale.min_replicas"
        );
        assert_eq!(
            field(
                scale(
                    r#"{"min_replicas":1,"max_replicas":2,"rules":[{"name":"a","match":{},"step":1}]}"#
                ),
                None
            ),
            "scale.rules[0].match"
        );
        assert_eq!(
            field(
                scale(
                    r#"{"min_replicas":1,"max_replicas":2,"rules":[{"name":"a","match":{"x":"y"},"step":1},{"name":"a","match":{"x":"z"},"step":1}]}"#
                ),
                None
            ),
            "scale.rules[1].name"
        );
        let mut s = Scaling::default();
        for n in 0..30 {
            s.record(ScaleEvent {
                at: Timestamp::from_unix_millis(n),
                kind: "fired".into(),
                rule: None,
                alert: None,
                by: "t".into(),
                from: None,
                to: None,
                why: String::new(),
            });
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events[0].at.unix_millis(), 10, "the oldest go first");
    }
}
