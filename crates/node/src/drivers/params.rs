//! An instance's driver params, read the same way by every driver: unknown names refused,
//! each bad value named with what was expected.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

/// Why an instance could not be started (or its params are wrong); each names the param.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("param `{param}`: {problem}")]
    Param {
        param: &'static str,
        problem: String,
    },
    #[error("cannot start `{command}`: {reason}")]
    Start { command: String, reason: String },
    #[error("log file {}: {reason}", path.display())]
    Log { path: PathBuf, reason: String },
}

pub fn param_err(param: &'static str, problem: impl Into<String>) -> DriverError {
    DriverError::Param {
        param,
        problem: problem.into(),
    }
}

/// The params of one instance, checked against the names its driver takes.
pub struct Params<'a>(&'a Map<String, Value>);

impl<'a> Params<'a> {
    /// Refuses a param `driver` does not take.
    pub fn check(
        params: &'a Map<String, Value>,
        driver: &str,
        known: &[&str],
    ) -> Result<Self, DriverError> {
        if let Some(unknown) = params.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(param_err(
                "params",
                format!(
                    "unknown param `{unknown}`; the {driver} driver takes {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(Params(params))
    }

    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A non-empty string, if given.
    pub fn text(&self, name: &'static str) -> Result<Option<String>, DriverError> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(other) => Err(param_err(
                name,
                format!("expected a non-empty string, got {other}"),
            )),
        }
    }

    /// A duration as text (`500ms`, `10s`), or `default`.
    pub fn duration(&self, name: &'static str, default: Duration) -> Result<Duration, DriverError> {
        match self.text(name)? {
            None => Ok(default),
            Some(t) => model::duration_text::parse(&t).map_err(|e| param_err(name, e)),
        }
    }

    /// A map of strings (numbers and booleans are turned into text).
    pub fn string_map(&self, name: &'static str) -> Result<BTreeMap<String, String>, DriverError> {
        match self.get(name) {
            None => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok((k.clone(), s.clone())),
                    Value::Number(n) => Ok((k.clone(), n.to_string())),
                    Value::Bool(b) => Ok((k.clone(), b.to_string())),
                    other => Err(param_err(
                        name,
                        format!("`{k}` is {other}; expected a string"),
                    )),
                })
                .collect(),
            Some(other) => Err(param_err(
                name,
                format!("expected a map of strings, got {other}"),
            )),
        }
    }
}
