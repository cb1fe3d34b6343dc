//! The one place where failures become HTTP statuses.

use gateway_core::catalog::{CatalogError, ResolveError};
use gateway_core::config::ConfigError;
use gateway_core::request::RequestError;
use gateway_core::routing::RouteError;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no route for `{0}`; the API serves POST /v1/route")]
    NotFound(String),
    #[error("method {0} is not allowed on /v1/route; use POST")]
    MethodNotAllowed(String),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error(transparent)]
    Routing(#[from] RouteError),
    #[error(transparent)]
    UnknownModel(#[from] ResolveError),
}

impl From<http_support::RouteMismatch> for ApiError {
    fn from(mismatch: http_support::RouteMismatch) -> Self {
        match mismatch {
            http_support::RouteMismatch::NotFound(path) => ApiError::NotFound(path),
            http_support::RouteMismatch::MethodNotAllowed(method) => ApiError::MethodNotAllowed(method),
        }
    }
}

impl ApiError {
    /// Every failure here is the caller's: the function invokes nothing that could fail.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Request(_) | ApiError::Routing(_) | ApiError::UnknownModel(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Stable machine-readable error type for the JSON body, the same as invoke-with-cache's.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::Request(RequestError::MalformedJson(_)) => "malformed_json",
            ApiError::Request(RequestError::Invalid { .. }) => "invalid_request",
            ApiError::Routing(RouteError::InvalidOverride { .. }) => "invalid_routing",
            ApiError::UnknownModel(_) => "unknown_model",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Request(e) => e.field(),
            ApiError::Routing(e) => Some(e.field()),
            ApiError::UnknownModel(_) => Some("modelId"),
            ApiError::NotFound(_) | ApiError::MethodNotAllowed(_) => None,
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let error = http_support::error_object(self.error_type(), self.to_string(), self.field(), request_id);
        let headers: &[(&'static str, &str)] =
            if matches!(self, ApiError::MethodNotAllowed(_)) { &[("allow", "POST")] } else { &[] };
        http_support::error_response(self.status(), error, headers)
    }
}

/// Why a cold start could not build the router; the runtime reports it and the function
/// never serves a request with a half-read configuration.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("router configuration is invalid: {}", with_sources(.0))]
    Config(#[from] ConfigError),
    #[error("model catalog cannot be loaded: {}", with_sources(.0))]
    Catalog(#[from] CatalogError),
}

/// An error and its causes on one line (`cannot read catalog file x: No such file ...`).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
