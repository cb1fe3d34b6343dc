//! Bedrock's error responses: the status code, the `x-amzn-errortype` header (which the SDKs
//! read first to pick the typed error) and a `{"message": ...}` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Messages as Bedrock words them, so that clients matching on text behave as in production.
pub const INVALID_MODEL: &str = "The provided model identifier is invalid.";
const TOO_MANY_REQUESTS: &str = "Too many requests, please wait before trying again.";
const TOO_MANY_TOKENS: &str = "Too many tokens, please wait before trying again.";
const INTERNAL: &str = "The system encountered an unexpected error during processing. Try your request again.";
const UNAVAILABLE: &str = "Bedrock is unable to process your request.";
const MODEL_TIMEOUT: &str = "Model has timed out in processing the request. Try your request again.";
/// What Bedrock answers a call to a model past its end-of-life date.
pub const END_OF_LIFE: &str =
    "This model version has reached the end of its life. Please refer to the AWS documentation for more details.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Validation(String),
    #[error("{}", TOO_MANY_REQUESTS)]
    TooManyRequests,
    #[error("{}", TOO_MANY_TOKENS)]
    TooManyTokens,
    /// A throttle injected by configuration rather than earned by quota.
    #[error("{}", TOO_MANY_REQUESTS)]
    InjectedThrottling,
    #[error("{}", INTERNAL)]
    InternalServer,
    #[error("{}", UNAVAILABLE)]
    ServiceUnavailable,
    #[error("{}", MODEL_TIMEOUT)]
    ModelTimeout,
    #[error("{0}")]
    UnknownOperation(String),
    #[error("{0}")]
    ResourceNotFound(String),
}

impl ApiError {
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::Validation(message.into())
    }

    /// The exception's shape name, as the SDKs match it.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "ValidationException",
            ApiError::TooManyRequests | ApiError::TooManyTokens | ApiError::InjectedThrottling => "ThrottlingException",
            ApiError::InternalServer => "InternalServerException",
            ApiError::ServiceUnavailable => "ServiceUnavailableException",
            ApiError::ModelTimeout => "ModelTimeoutException",
            ApiError::UnknownOperation(_) => "UnknownOperationException",
            ApiError::ResourceNotFound(_) => "ResourceNotFoundException",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
            ApiError::TooManyRequests | ApiError::TooManyTokens | ApiError::InjectedThrottling => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::UnknownOperation(_) | ApiError::ResourceNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InternalServer => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::ModelTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.to_string() }).to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.error_type()));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_bedrock_status_type_and_message() {
        let r = ApiError::TooManyTokens.into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["x-amzn-errortype"], "ThrottlingException");
        assert_eq!(ApiError::ModelTimeout.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(ApiError::validation("x").error_type(), "ValidationException");
        assert_eq!(ApiError::TooManyTokens.to_string(), TOO_MANY_TOKENS);
    }
}
