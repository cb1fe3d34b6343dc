//! The one place where failures become HTTP statuses.

use std::time::Duration;

use gateway_core::identity::IdentityError;
use gateway_core::ports::InvokeError;
use gateway_core::request::RequestError;
use gateway_core::routing::RouteError;
use gateway_core::service::GatewayError;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for `{0}`; the API serves POST /v1/converse")]
    NotFound(String),
    #[error("method {0} is not allowed on /v1/converse; use POST")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Routing(#[from] RouteError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl From<http_support::RouteMismatch> for ApiError {
    fn from(mismatch: http_support::RouteMismatch) -> Self {
        match mismatch {
            http_support::RouteMismatch::NotFound(path) => ApiError::NotFound(path),
            http_support::RouteMismatch::MethodNotAllowed(method) => ApiError::MethodNotAllowed(method),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(e: InvokeError) -> Self {
        ApiError::Gateway(GatewayError::Model(e))
    }
}

impl ApiError {
    /// Callers' mistakes are 4xx; Bedrock's trouble is 429 or 5xx; never a 500 for bad input.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Request(_) | ApiError::Routing(_) => StatusCode::BAD_REQUEST,
            ApiError::Identity(IdentityError::Unauthenticated { .. }) => StatusCode::UNAUTHORIZED,
            ApiError::Identity(IdentityError::InvalidTenantHeader { .. }) => StatusCode::BAD_REQUEST,
            ApiError::Gateway(GatewayError::InvalidRequest(_) | GatewayError::UnknownModel(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Gateway(GatewayError::DeadlineExceeded { .. }) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Gateway(GatewayError::Model(e) | GatewayError::FallbackExhausted { source: e, .. }) => match e {
                InvokeError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
                InvokeError::Rejected { .. } => StatusCode::BAD_REQUEST,
                InvokeError::ModelNotReady { .. } | InvokeError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
                InvokeError::ModelTimeout { .. } | InvokeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                // The caller cannot fix these: the deployment (IAM, model access) or Bedrock must.
                InvokeError::AccessDenied { .. }
                | InvokeError::ModelNotFound { .. }
                | InvokeError::ModelFailed { .. }
                | InvokeError::Internal { .. }
                | InvokeError::Transport(_)
                | InvokeError::BadResponse(_) => StatusCode::BAD_GATEWAY,
            },
        }
    }

    /// Stable machine-readable error type for the JSON body.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Request(RequestError::MalformedJson(_))
            | ApiError::Gateway(GatewayError::InvalidRequest(RequestError::MalformedJson(_))) => "malformed_json",
            ApiError::Request(RequestError::Invalid { .. })
            | ApiError::Gateway(GatewayError::InvalidRequest(RequestError::Invalid { .. })) => "invalid_request",
            ApiError::Identity(IdentityError::Unauthenticated { .. }) => "unauthenticated",
            ApiError::Identity(IdentityError::InvalidTenantHeader { .. }) => "invalid_request",
            ApiError::Routing(RouteError::InvalidOverride { .. }) => "invalid_routing",
            ApiError::Gateway(GatewayError::UnknownModel(_)) => "unknown_model",
            ApiError::Gateway(GatewayError::DeadlineExceeded { .. }) => "deadline_exceeded",
            ApiError::Gateway(GatewayError::Model(e) | GatewayError::FallbackExhausted { source: e, .. }) => match e {
                InvokeError::Throttled { .. } => "throttled",
                InvokeError::Rejected { .. } => "invalid_request",
                InvokeError::AccessDenied { .. } => "upstream_access_denied",
                InvokeError::ModelNotFound { .. } => "upstream_model_not_found",
                InvokeError::ModelNotReady { .. } => "model_not_ready",
                InvokeError::ModelFailed { .. } => "model_error",
                InvokeError::ModelTimeout { .. } => "model_timeout",
                InvokeError::Unavailable { .. } => "upstream_unavailable",
                InvokeError::Internal { .. } => "upstream_error",
                InvokeError::Timeout(_) => "upstream_timeout",
                InvokeError::Transport(_) => "upstream_unreachable",
                InvokeError::BadResponse(_) => "upstream_bad_response",
            },
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Request(e) | ApiError::Gateway(GatewayError::InvalidRequest(e)) => e.field(),
            ApiError::Identity(e) => e.field(),
            ApiError::Routing(e) => Some(e.field()),
            ApiError::Gateway(GatewayError::UnknownModel(_)) => Some("modelId"),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::Gateway(error) => match error.invoke_error() {
                Some(InvokeError::Throttled { retry_after, .. }) => *retry_after,
                _ => None,
            },
            _ => None,
        }
    }

    /// Label for the error metric; `None` for requests that never reached the use case.
    pub fn metric_label(&self) -> Option<&'static str> {
        match self {
            ApiError::NotFound(_) | ApiError::MethodNotAllowed(_) => None,
            _ => Some(self.error_type()),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let mut error = http_support::error_object(self.error_type(), self.to_string(), self.field(), request_id);
        if let ApiError::Gateway(
            GatewayError::FallbackExhausted { hops, .. } | GatewayError::DeadlineExceeded { hops, .. },
        ) = &self
        {
            error.insert("hops".into(), serde_json::to_value(hops).unwrap_or_default());
        }
        let retry_after = self.retry_after().map(|d| d.as_secs().max(1).to_string());
        let mut headers: Vec<(&'static str, &str)> = Vec::new();
        if let Some(seconds) = &retry_after {
            headers.push(("retry-after", seconds));
        }
        if matches!(self, ApiError::MethodNotAllowed(_)) {
            headers.push(("allow", "POST"));
        }
        http_support::error_response(self.status(), error, &headers)
    }
}
