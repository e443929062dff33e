//! The error a request ends with, from the core (auth, the supervisor) and the handlers alike.
//!
//! Policy: a 4xx carries a message for the person or program that sent the request; internal
//! errors are logged once here with their cause and shown to the client only as "Internal
//! Server Error". The HTTP layer turns it into JupyterHub's error body `{"status", "message"}`
//! (`web/respond.rs`); this module knows the status code, not the web framework.

use http::StatusCode;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Extra headers such as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    /// Logs the cause and hides it from the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
    pub fn missing_credentials() -> Self {
        Self::forbidden("Missing or invalid credentials.")
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if crate::db::is_unavailable(&e) {
            return crate::db::Unavailable(e).into();
        }
        ApiError::internal(format!("database: {e}"))
    }
}

/// A database restart or failover: 503 with `Retry-After`, so that clients come back rather
/// than give up; the request changed nothing the client was told about.
impl From<crate::db::Unavailable> for ApiError {
    fn from(e: crate::db::Unavailable) -> Self {
        tracing::warn!(error = %e, "answered 503: the database is not reachable");
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::db::UNAVAILABLE_MESSAGE,
        );
        err.retry_after = Some(crate::db::RETRY_AFTER_SECS);
        err
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
