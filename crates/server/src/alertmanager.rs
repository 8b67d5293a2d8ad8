//! Prometheus Alertmanager's webhook (its `webhook_config` receiver, payload version 4),
//! read into the alerts the scale policies take (`engine::scaling`). Fields Alertmanager may
//! add later are ignored; a payload of another version, a malformed alert or an oversized
//! list is refused with the field named.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The most alerts one webhook may carry (Alertmanager's `max_alerts` defaults to all; a
/// receiver should set it).
pub const MAX_ALERTS: usize = 1000;

/// A webhook as Alertmanager posts it (the fields Buoy reads; others are ignored).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    #[schemars(extend("enum" = ["4"]))]
    pub version: String,
    /// The receiver's name in Alertmanager's configuration: who asked.
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_key: String,
    #[schemars(length(max = 1000))]
    pub alerts: Vec<WebhookAlert>,
}

/// One alert of a webhook.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WebhookAlert {
    #[schemars(extend("enum" = ["firing", "resolved"]))]
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[schemars(length(min = 1, max = 64))]
    pub fingerprint: String,
    #[serde(default, rename = "startsAt")]
    pub starts_at: String,
}

/// Why a webhook was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct WebhookError {
    pub field: String,
    pub message: String,
}

fn refuse(field: impl Into<String>, message: impl Into<String>) -> WebhookError {
    WebhookError {
        field: field.into(),
        message: message.into(),
    }
}

/// Reads a webhook body: who sent it (the receiver) and its alerts.
pub fn parse(body: &[u8]) -> Result<(String, Vec<engine::scaling::Alert>), WebhookError> {
    let hook: Webhook = serde_json::from_slice(body)
        .map_err(|e| refuse("body", format!("not an Alertmanager webhook: {e}")))?;
    if hook.version != "4" {
        return Err(refuse(
            "version",
            format!(
                "payload version `{}`; Buoy reads version 4 (Alertmanager 0.x)",
                hook.version
            ),
        ));
    }
    if hook.alerts.len() > MAX_ALERTS {
        return Err(refuse(
            "alerts",
            format!(
                "{} alerts; at most {MAX_ALERTS} (set max_alerts in the receiver)",
                hook.alerts.len()
            ),
        ));
    }
    let mut out = Vec::with_capacity(hook.alerts.len());
    for (i, a) in hook.alerts.into_iter().enumerate() {
        let firing = match a.status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => {
                return Err(refuse(
                    format!("alerts[{i}].status"),
                    format!("`{other}`: firing or resolved"),
                ));
            }
        };
        // Characters, as the document's maxLength counts them (not bytes).
        if a.fingerprint.is_empty() || a.fingerprint.chars().count() > 64 {
            return Err(refuse(
                format!("alerts[{i}].fingerprint"),
                "1 to 64 characters, as Alertmanager sends it",
            ));
        }
        out.push(engine::scaling::Alert {
            fingerprint: a.fingerprint,
            labels: a.labels,
            firing,
        });
    }
    Ok((hook.receiver, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload as Alertmanager 0.25 posts it (its documented fields, and one it may add).
    const HOOK: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"HighLatency\"}", "truncatedAlerts": 0,
      "status": "firing", "receiver": "buoy",
      "groupLabels": {"alertname": "HighLatency"},
      "commonLabels": {"alertname": "HighLatency", "service": "web"},
      "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "HighLatency", "service": "web"},
         "annotations": {"summary": "p99 over 1 s"}, "startsAt": "2026-12-03T10:00:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph",
         "fingerprint": "c6d4e8ef7f2b6a01", "someNewField": 1},
        {"status": "resolved", "labels": {"alertname": "HighLoad"},
         "startsAt": "2026-12-03T09:00:00Z", "fingerprint": "0a1b2c3d4e5f6071"}
      ]
    }"#;

    #[test]
    fn a_webhook_is_read_into_alerts_and_bad_ones_say_which_field() {
        let (receiver, alerts) = parse(HOOK.as_bytes()).unwrap();
        assert_eq!(receiver, "buoy");
        assert_eq!(alerts.len(), 2);
        assert!(alerts[0].firing && !alerts[1].firing);
        assert_eq!(alerts[0].labels["service"], "web");
        assert_eq!(alerts[1].fingerprint, "0a1b2c3d4e5f6071");

        let field = |body: String| parse(body.as_bytes()).unwrap_err().field;
        assert_eq!(
            field(HOOK.replace(r#""version": "4""#, r#""version": "3""#)),
            "version"
        );
        assert_eq!(
            field(HOOK.replace(r#""status": "resolved""#, r#""status": "gone""#)),
            "alerts[1].status"
        );
        assert_eq!(
            field(HOOK.replace(
                r#""fingerprint": "0a1b2c3d4e5f6071""#,
                r#""fingerprint": """#
            )),
            "alerts[1].fingerprint"
        );
        // The document's maxLength counts characters: 64 four-byte ones are taken, 65 not
        // (found by Schemathesis: bytes were counted).
        let wide = |n: usize| {
            HOOK.replace(
                r#""fingerprint": "0a1b2c3d4e5f6071""#,
                &format!(r#""fingerprint": "{}""#, "\u{1d413}".repeat(n)),
            )
        };
        assert!(parse(wide(64).as_bytes()).is_ok());
        assert_eq!(field(wide(65)), "alerts[1].fingerprint");
        assert_eq!(field("[1, 2]".to_string()), "body");
        assert_eq!(field("{".to_string()), "body");
        let many: Vec<String> = (0..=MAX_ALERTS)
            .map(|i| format!(r#"{{"status":"firing","fingerprint":"f{i}"}}"#))
            .collect();
        assert_eq!(
            field(format!(
                r#"{{"version":"4","alerts":[{}]}}"#,
                many.join(",")
            )),
            "alerts"
        );
    }
}
