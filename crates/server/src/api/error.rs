//! Why an API call failed: the HTTP status and the `{"error": {...}}` body, and how refused
//! commands and replica errors map to them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::{Kind, StateError};
use state::replica::ReplicaError;

use node::http::error::error;

/// Why a call failed: becomes the HTTP status and the `{"error": {...}}` body.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        field: Option<&str>,
    ) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            field: field.map(String::from),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message, self.field.as_deref())
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Maps a refused command to its HTTP status and error body.
pub fn state_error(e: &StateError) -> ApiError {
    let (status, code) = match e {
        StateError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        StateError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
        StateError::Unprocessable { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
        StateError::VersionMismatch { .. } => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
        StateError::NameTaken { .. } | StateError::IdTaken { .. } => {
            (StatusCode::CONFLICT, "already_exists")
        }
        StateError::InUse { .. } => (StatusCode::CONFLICT, "in_use"),
        StateError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
    };
    ApiError::new(status, code, e.to_string(), e.field())
}

pub fn replica_error(e: ReplicaError) -> ApiError {
    let code = match e {
        ReplicaError::NotLeader { .. } => "not_leader",
        _ => "unavailable",
    };
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        format!("{e}; retry shortly"),
        None,
    )
}

pub fn bad_request(field: Option<&str>, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid", message, field)
}

pub fn not_found(kind: Kind, id: &str) -> ApiError {
    state_error(&StateError::NotFound {
        kind,
        id: id.to_string(),
    })
}
