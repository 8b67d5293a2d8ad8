//! Why the cluster state refused a change. Each message names the object and says what to do.

use serde::{Deserialize, Serialize};

use crate::object::Kind;

/// A rejected command. Returned to the client through Raft, so it is serializable.
#[derive(
    Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum StateError {
    /// A field has a bad value; `field` is its path in the request body (`health_checks[0].port`).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{kind} `{id}` does not exist")]
    NotFound { kind: Kind, id: String },
    /// The request is well-formed (it matches the API's schema) but cannot apply: it refers
    /// to an object that does not exist, or breaks a rule between objects or fields. HTTP 422.
    #[error("{field}: {message}")]
    Unprocessable { field: String, message: String },
    #[error("a {kind} named `{name}` already exists (names are unique)")]
    NameTaken { kind: Kind, name: String },
    #[error("{kind} `{id}` already exists")]
    IdTaken { kind: Kind, id: String },
    #[error(
        "{kind} `{id}` is at version {actual}, not {expected}: someone changed it; read it again and retry"
    )]
    VersionMismatch {
        kind: Kind,
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("{kind} `{id}` is still used by {by}; remove or move those first")]
    InUse { kind: Kind, id: String, by: String },
    /// The change conflicts with the current state in another way (a duplicate notification).
    #[error("{message}")]
    Conflict { message: String },
}

impl StateError {
    /// An invalid-field error.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        StateError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A well-formed request that cannot apply to the current state (HTTP 422).
    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> Self {
        StateError::Unprocessable {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The field this error is about, if any (the API puts it in its error body).
    pub fn field(&self) -> Option<&str> {
        match self {
            StateError::Invalid { field, .. } | StateError::Unprocessable { field, .. } => {
                Some(field)
            }
            StateError::NameTaken { .. } => Some("name"),
            StateError::VersionMismatch { .. } => Some("version"),
            _ => None,
        }
    }
}
