//! Errors answered to HTTP clients: a status code and a one-line JSON message.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deepdream::Error;

/// An error answered as `{"error": "…"}` with its status code.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// What went wrong, for a person.
    pub message: String,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400: the request cannot be parsed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404: no such thing.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: well-formed, but the values cannot work (unknown layer, bad numbers).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl From<Error> for ApiError {
    /// Library errors about the request's values are 422; the rest are the server's fault.
    fn from(error: Error) -> Self {
        let status = match error {
            Error::UnknownModel { .. }
            | Error::UnknownLayer { .. }
            | Error::UnknownChannel { .. }
            | Error::UnknownClass { .. }
            | Error::NoClassifier { .. }
            | Error::OverMemoryBudget { .. }
            | Error::InvalidParameter(_)
            | Error::ImageTooSmall { .. }
            | Error::ImageData(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, error.to_string())
    }
}

/// The result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
