//! The one place where failures become HTTP statuses.

use gateway_core::admission::Limit;
use gateway_core::batch::BatchError;
use gateway_core::batch::defer::DeferError;
use gateway_core::compat::CompatError;
use gateway_core::identity::IdentityError;
use gateway_core::label::ErrorLabel;
use gateway_core::ports::InvokeError;
use gateway_core::request::RequestError;
use gateway_core::routing::RouteError;
use gateway_core::service::GatewayError;
use http_support::BoundaryError;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Response};

use crate::dialect::Dialect;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Boundary(#[from] BoundaryError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// `GET /v1/requests/{id}` for an ID this caller never received (or another tenant's).
    #[error("no deferred request `{0}` is known for this caller")]
    UnknownRequest(String),
    /// The batch table failed to queue a deferred request or to say where one stands.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A body in OpenAI's or Anthropic's shape that does not map onto Converse.
    #[error(transparent)]
    Compat(#[from] CompatError),
    /// `stream: true` on an endpoint that answers whole (API Gateway's HTTP API cannot stream).
    #[error("this endpoint answers whole; send `stream: true` to the gateway's streaming URL")]
    StreamingElsewhere,
}

impl From<DeferError> for ApiError {
    fn from(e: DeferError) -> Self {
        match e {
            DeferError::Gateway(e) => ApiError::Gateway(e),
            DeferError::Enqueue(e) => ApiError::Batch(e),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        ApiError::Boundary(e.into())
    }
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        ApiError::Boundary(e.into())
    }
}

impl From<RouteError> for ApiError {
    fn from(e: RouteError) -> Self {
        ApiError::Boundary(e.into())
    }
}

impl ApiError {
    /// Callers' mistakes are 4xx; Bedrock's trouble is 429 or 5xx; never a 500 for bad input.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Boundary(e) => e.status(),
            ApiError::UnknownRequest(_) => StatusCode::NOT_FOUND,
            ApiError::Compat(_) | ApiError::StreamingElsewhere => StatusCode::BAD_REQUEST,
            // The batch table is AWS's: never the caller's fault.
            ApiError::Batch(e) => match e {
                BatchError::Throttled(_) => StatusCode::SERVICE_UNAVAILABLE,
                BatchError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                BatchError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
                BatchError::Store(_) | BatchError::Read { .. } | BatchError::Remote { .. } => StatusCode::BAD_GATEWAY,
            },
            ApiError::Gateway(GatewayError::InvalidRequest(_) | GatewayError::UnknownModel(_)) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Gateway(GatewayError::DeadlineExceeded { .. }) => StatusCode::GATEWAY_TIMEOUT,
            // Waiting cannot help a reservation larger than the whole quota: a smaller
            // `maxTokens` or prompt can.
            ApiError::Gateway(GatewayError::QuotaExhausted { refusal, .. }) => match refusal.limit {
                Limit::TooLarge => StatusCode::BAD_REQUEST,
                Limit::Requests | Limit::Tokens => StatusCode::TOO_MANY_REQUESTS,
            },
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

    /// The failure's label: the body's `type`, the log's `error`, the metric's `ErrorType`.
    pub fn label(&self) -> ErrorLabel {
        match self {
            ApiError::Boundary(e) => e.label(),
            ApiError::Gateway(e) => e.label(),
            ApiError::UnknownRequest(_) => ErrorLabel::NotFound,
            ApiError::Batch(e) => e.label(),
            ApiError::Compat(e) => e.label(),
            ApiError::StreamingElsewhere => ErrorLabel::InvalidRequest,
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Boundary(e) => e.field(),
            ApiError::UnknownRequest(_) | ApiError::Batch(_) => None,
            ApiError::Compat(e) => e.param(),
            ApiError::StreamingElsewhere => Some("stream"),
            ApiError::Gateway(GatewayError::InvalidRequest(e)) => e.field(),
            ApiError::Gateway(GatewayError::UnknownModel(_)) => Some("modelId"),
            ApiError::Gateway(
                GatewayError::Model(_)
                | GatewayError::FallbackExhausted { .. }
                | GatewayError::DeadlineExceeded { .. }
                | GatewayError::QuotaExhausted { .. },
            ) => None,
        }
    }

    /// Label for the error metric; `None` for requests that never reached the use case.
    pub fn metric_label(&self) -> Option<ErrorLabel> {
        match self {
            // A status lookup invokes nothing: an unknown ID is no invocation error.
            ApiError::Boundary(e) if !e.reached_endpoint() => None,
            ApiError::UnknownRequest(_) => None,
            ApiError::Boundary(_)
            | ApiError::Gateway(_)
            | ApiError::Batch(_)
            | ApiError::Compat(_)
            | ApiError::StreamingElsewhere => Some(self.label()),
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Body> {
        self.into_dialect_response(Dialect::Converse, request_id)
    }

    /// The error response in the caller's API: its status and headers (`retry-after`) are
    /// the same in every dialect, only the body's shape differs.
    pub fn into_dialect_response(self, dialect: Dialect, request_id: &str) -> Response<Body> {
        let mut error = http_support::error_object(self.label(), self.to_string(), self.field(), request_id);
        let retry_after;
        let mut headers: Vec<(&'static str, &str)> = Vec::new();
        match &self {
            ApiError::Boundary(e) => headers.extend_from_slice(e.headers()),
            ApiError::UnknownRequest(_) | ApiError::Batch(_) | ApiError::Compat(_) | ApiError::StreamingElsewhere => {}
            ApiError::Gateway(e) => {
                if let GatewayError::FallbackExhausted { hops, .. }
                | GatewayError::DeadlineExceeded { hops, .. }
                | GatewayError::QuotaExhausted { hops, .. } = e
                {
                    error.insert("hops".into(), serde_json::to_value(hops).unwrap_or_default());
                }
                let admission_wait = match e {
                    GatewayError::QuotaExhausted { refusal, .. } => {
                        error.insert("quota".into(), refusal.key.to_string().into());
                        error.insert("limit".into(), refusal.limit.as_str().into());
                        error.insert("retryAfterMs".into(), (refusal.retry_after.as_millis() as u64).into());
                        error.insert("waitedMs".into(), (refusal.waited.as_millis() as u64).into());
                        Some(refusal.retry_after).filter(|_| refusal.limit != Limit::TooLarge)
                    }
                    _ => None,
                };
                // Retry-After is whole seconds: round up, so a caller who honours it finds room.
                retry_after = admission_wait
                    .map(|d| d.as_secs_f64().ceil().max(1.0) as u64)
                    .or_else(|| e.invoke_error().and_then(InvokeError::retry_after).map(|d| d.as_secs().max(1)))
                    .map(|s| s.to_string());
                if let Some(seconds) = &retry_after {
                    headers.push(("retry-after", seconds));
                }
            }
        }
        let status = self.status();
        match dialect.error_body(status.as_u16(), self.label(), &self.to_string(), self.field(), request_id) {
            Some(body) => http_support::json_response(status, &body, &headers),
            None => http_support::error_response(status, error, &headers),
        }
    }
}
