//! The one place where failures become HTTP statuses.

use gateway_core::catalog::{CatalogError, ResolveError};
use gateway_core::config::ConfigError;
use gateway_core::label::ErrorLabel;
use gateway_core::request::RequestError;
use gateway_core::routing::RouteError;
use http_support::BoundaryError;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Boundary(#[from] BoundaryError),
    #[error(transparent)]
    UnknownModel(#[from] ResolveError),
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::Boundary(e.into())
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        ApiError::Boundary(e.into())
    }
}

impl ApiError {
    /// Every failure here is the caller's: the function invokes nothing that could fail.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Boundary(e) => e.status(),
            ApiError::UnknownModel(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The failure's label, the same vocabulary as invoke-with-cache's.
    pub fn label(&self) -> ErrorLabel {
        match self {
            ApiError::Boundary(e) => e.label(),
            ApiError::UnknownModel(e) => e.label(),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Boundary(e) => e.field(),
            ApiError::UnknownModel(_) => Some("modelId"),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        let error = http_support::error_object(self.label(), self.to_string(), self.field(), request_id);
        let headers = match &self {
            ApiError::Boundary(e) => e.headers(),
            ApiError::UnknownModel(_) => &[],
        };
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
