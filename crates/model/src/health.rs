//! Health checks an instance declares, run by the supervisor on its host beside the driver's own
//! status.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::StateError;

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// A TCP connection to `host:port` opens.
    Tcp {
        #[serde(default = "localhost")]
        host: String,
        #[schemars(range(min = 1))]
        port: u16,
    },
    /// `GET http://host:port/path` answers with a status in `expect_status` (`200-399`).
    Http {
        #[serde(default = "localhost")]
        host: String,
        #[schemars(range(min = 1))]
        port: u16,
        #[serde(default = "root")]
        #[schemars(extend("pattern" = "^/"))]
        path: String,
        /// A status or an inclusive range (the first at most the second).
        #[serde(default = "ok_statuses")]
        #[schemars(extend("pattern" = "^[1-5][0-9]{2}(-[1-5][0-9]{2})?$"))]
        expect_status: String,
    },
    /// The command exits 0.
    Exec {
        #[schemars(length(min = 1))]
        command: Vec<String>,
    },
}

fn localhost() -> String {
    "127.0.0.1".into()
}
fn root() -> String {
    "/".into()
}
fn ok_statuses() -> String {
    "200-399".into()
}

/// One check with its timing. (Unknown fields are refused by [`Probe`], which receives every
/// field this struct does not know.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HealthCheck {
    #[serde(flatten)]
    pub probe: Probe,
    #[serde(default = "ten_seconds", with = "crate::duration_text")]
    #[schemars(with = "String", extend("pattern" = crate::duration_text::PATTERN))]
    pub interval: Duration,
    #[serde(default = "two_seconds", with = "crate::duration_text")]
    #[schemars(with = "String", extend("pattern" = crate::duration_text::PATTERN))]
    pub timeout: Duration,
    /// Consecutive failures before the instance counts as failed.
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: u32,
}

fn ten_seconds() -> Duration {
    Duration::from_secs(10)
}
fn two_seconds() -> Duration {
    Duration::from_secs(2)
}
fn three() -> u32 {
    3
}

impl HealthCheck {
    /// Checks the values; `field` is this check's path in the request.
    pub fn validate(&self, field: &str) -> Result<(), StateError> {
        if self.interval < Duration::from_millis(100) {
            return Err(StateError::unprocessable(
                format!("{field}.interval"),
                "must be at least 100ms",
            ));
        }
        if self.timeout.is_zero() || self.timeout > self.interval {
            return Err(StateError::unprocessable(
                format!("{field}.timeout"),
                "must be above 0 and at most the interval",
            ));
        }
        if !(1..=100).contains(&self.failure_threshold) {
            return Err(StateError::invalid(
                format!("{field}.failure_threshold"),
                "must be 1 to 100",
            ));
        }
        match &self.probe {
            Probe::Tcp { port: 0, .. } | Probe::Http { port: 0, .. } => Err(StateError::invalid(
                format!("{field}.port"),
                "must be 1 to 65535",
            )),
            Probe::Http {
                path,
                expect_status,
                ..
            } => {
                if !path.starts_with('/') {
                    return Err(StateError::invalid(
                        format!("{field}.path"),
                        "must start with '/'",
                    ));
                }
                status_range(expect_status).map(|_| ()).ok_or_else(|| {
                    StateError::unprocessable(
                        format!("{field}.expect_status"),
                        format!("`{expect_status}` is not a status or range like 200 or 200-399"),
                    )
                })
            }
            Probe::Exec { command } if command.is_empty() || command[0].is_empty() => Err(
                StateError::unprocessable(format!("{field}.command"), "must name a program to run"),
            ),
            _ => Ok(()),
        }
    }
}

/// Parses `200` or `200-399` into an inclusive range of HTTP statuses.
pub fn status_range(s: &str) -> Option<(u16, u16)> {
    let parse = |t: &str| t.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
    let (lo, hi) = match s.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => (parse(s)?, parse(s)?),
    };
    (lo <= hi).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_with_defaults_and_are_validated() {
        let c: HealthCheck = serde_json::from_str(r#"{"type":"http","port":8080}"#).unwrap();
        assert_eq!(c.interval, Duration::from_secs(10));
        assert!(
            matches!(&c.probe, Probe::Http { path, expect_status, .. } if path == "/" && expect_status == "200-399")
        );
        assert!(c.validate("h").is_ok());
        let c: HealthCheck = serde_json::from_str(r#"{"type":"tcp","port":0}"#).unwrap();
        assert_eq!(c.validate("h").unwrap_err().field(), Some("h.port"));
        let c: HealthCheck =
            serde_json::from_str(r#"{"type":"http","port":80,"expect_status":"500-200"}"#).unwrap();
        assert_eq!(
            c.validate("h").unwrap_err().field(),
            Some("h.expect_status")
        );
        let c: HealthCheck = serde_json::from_str(
            r#"{"type":"exec","command":["true"],"interval":"1s","timeout":"2s"}"#,
        )
        .unwrap();
        assert_eq!(c.validate("h").unwrap_err().field(), Some("h.timeout"));
        assert!(serde_json::from_str::<HealthCheck>(r#"{"type":"ping"}"#).is_err());
        let e = serde_json::from_str::<HealthCheck>(r#"{"type":"tcp","port":1,"colour":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn status_ranges() {
        assert_eq!(status_range("200"), Some((200, 200)));
        assert_eq!(status_range("200-399"), Some((200, 399)));
        assert_eq!(status_range("399-200"), None);
        assert_eq!(status_range("abc"), None);
        assert_eq!(status_range("700"), None);
    }
}
