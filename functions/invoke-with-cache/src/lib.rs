//! invoke-with-cache: `POST /v1/converse` and `GET /v1/requests/{id}` over API Gateway HTTP
//! API (payload v2).
//!
//! This crate only translates: HTTP request → [`ConverseCall`], [`Answer`], deferral or
//! error → HTTP response. Every rule (tenants, model resolution, cache policy, pricing,
//! what may be deferred) lives in `gateway-core`; the handler only extracts the authorizer's
//! claims and the raw headers.
//!
//! `x-defer: true` on a Converse request lets it wait for a batch job at the batch price:
//! a cache HIT is still answered at once, anything else is validated as online and answered
//! `202 Accepted` with the request's status URL, which `GET /v1/requests/{id}` serves.

mod dialect;
mod error;
pub mod streaming;

use std::time::SystemTime;

use gateway_core::batch::defer::{DeferPorts, Deferral, NoBatchTable, StatusReport};
use gateway_core::batch::{RequestStatuses, SubmittedRecord};
use gateway_core::cache::{CacheOptions, Tenant};
use gateway_core::compat::openai;
use gateway_core::metrics::InvocationMetrics;
use gateway_core::ports::Ports;
use gateway_core::request::{ConverseRequest, RequestError};
use gateway_core::routing::RouteOverrides;
use gateway_core::service::{Answer, ConverseCall, Gateway, Origin};
use gateway_core::usage::UsageSource;
use http_support::{DEFER_HEADER, Route, header, json_response, request_id};
use lambda_http::http::{HeaderMap, StatusCode};
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub use http_support::init_tracing;

pub use dialect::Dialect;
pub use error::ApiError;

const CONVERSE: Route = Route::post("/v1/converse");
const REQUEST_STATUS: Route = Route::get("/v1/requests/{id}");
// Both functions serve these; invoke-stream streams them when asked.
const CHAT_COMPLETIONS: Route = Route::post("/v1/chat/completions");
const MESSAGES: Route = Route::post("/v1/messages");
const MODELS: Route = Route::get("/v1/models");
const ROUTES: [Route; 5] = [CONVERSE, REQUEST_STATUS, CHAT_COMPLETIONS, MESSAGES, MODELS];
/// Where a request's status is served, under the stage the caller used.
const STATUS_PATH: &str = "/v1/requests/";
const FUNCTION_NAME: &str = "invoke-with-cache";

/// The handler, generic over the gateway's ports and the batch table's. Without a batch
/// table (`B` left at [`NoBatchTable`]) a deferrable request is a 400 and every request ID
/// is unknown.
#[derive(Debug)]
pub struct Handler<P, B = NoBatchTable> {
    gateway: Gateway<P>,
    batch: Option<B>,
    log_request_bodies: bool,
}

/// What a served request answers.
enum Reply {
    Answer(Box<Answer>),
    /// An answer to a request in OpenAI's or Anthropic's API.
    Spoken {
        answer: Box<Answer>,
        dialect: Dialect,
    },
    Models(serde_json::Value),
    Deferred {
        record: Box<SubmittedRecord>,
        status_url: String,
    },
    Status(Box<StatusReport>),
}

impl<P: Ports> Handler<P> {
    pub fn new(gateway: Gateway<P>) -> Self {
        Handler { gateway, batch: None, log_request_bodies: false }
    }
}

impl<P: Ports, B: DeferPorts> Handler<P, B> {
    /// Defers `x-defer: true` requests into `batch` and serves their statuses from it.
    pub fn with_batch<T: DeferPorts>(self, batch: T) -> Handler<P, T> {
        Handler { gateway: self.gateway, batch: Some(batch), log_request_bodies: self.log_request_bodies }
    }

    /// Logs every request body at debug level (`LOG_REQUEST_BODIES`), and says so now.
    pub fn with_body_logging(mut self, enabled: bool) -> Self {
        http_support::announce_body_logging(enabled);
        self.log_request_bodies = enabled;
        self
    }

    /// Never fails: every error becomes an HTTP response, so the runtime never sees a panic
    /// or an unhandled error for a caller's mistake.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
        let request_id = request_id(&request);
        http_support::log_body(self.log_request_bodies, &request, &request_id);
        let response = match self.serve(&request, &request_id).await {
            Ok(Reply::Answer(answer)) => {
                emit_metrics(&InvocationMetrics::from_answer(&answer, self.gateway.catalog()), FUNCTION_NAME);
                success(&answer)
            }
            Ok(Reply::Spoken { answer, dialect }) => {
                emit_metrics(&InvocationMetrics::from_answer(&answer, self.gateway.catalog()), FUNCTION_NAME);
                let body = dialect.answer_body(&answer, &request_id, http_support::now_ms() / 1000);
                json_response(StatusCode::OK, &body, &borrowed(&answer_headers(&answer)))
            }
            Ok(Reply::Models(body)) => json_response(StatusCode::OK, &body, &[]),
            Ok(Reply::Deferred { record, status_url }) => {
                tracing::info!(
                    request_id,
                    deferred_id = record.record_id.request_id(),
                    model = record.model_id.as_str(),
                    "request deferred to a batch job"
                );
                accepted(&record, &status_url)
            }
            Ok(Reply::Status(report)) => {
                json_response(StatusCode::OK, &serde_json::to_value(&*report).unwrap_or_default(), &[])
            }
            Err(error) => {
                if let Some(label) = error.metric_label() {
                    emit_metrics(&InvocationMetrics::from_error(label.as_str()), FUNCTION_NAME);
                }
                let status = error.status().as_u16();
                if error.status().is_server_error() {
                    // Upstream failures: their text comes from AWS, not from the request.
                    tracing::error!(error = %error, source = ?std::error::Error::source(&error), status, request_id, "request failed");
                } else {
                    // A rejection's message may name a caller-chosen key or model; the label
                    // and status are enough to count and alert on, the caller gets the rest.
                    tracing::info!(error = error.label().as_str(), status, request_id, "request rejected");
                    if self.log_request_bodies {
                        tracing::debug!(error = %error, request_id, "rejection detail");
                    }
                }
                error.into_dialect_response(dialect_of(&request), &request_id)
            }
        };
        Ok(response)
    }

    async fn serve(&self, request: &Request, request_id: &str) -> Result<Reply, ApiError> {
        let matched = http_support::select_route(request, &ROUTES)?;
        let headers = request.headers();
        let tenant = caller_tenant(&self.gateway, request)?;
        let origin = || Origin { source: UsageSource::Online, request_id: request_id.to_string() };
        match (ROUTES[matched.index], matched.parameter) {
            (REQUEST_STATUS, id) => self.status(&tenant, id.unwrap_or_default()).await.map(Reply::Status),
            (MODELS, _) => Ok(Reply::Models(openai::models(self.gateway.catalog(), http_support::now_ms() / 1000))),
            (CHAT_COMPLETIONS | MESSAGES, _) => {
                let dialect = dialect_of(request);
                let parsed = dialect.parse(request.body().as_ref())?;
                if parsed.stream {
                    return Err(ApiError::StreamingElsewhere);
                }
                let call = converse_call(&self.gateway, request, parsed.request, tenant)?;
                let answer = self.gateway.converse_and_record(call, &origin()).await?;
                Ok(Reply::Spoken { answer: Box::new(answer), dialect })
            }
            _ => self.converse(request, headers, tenant, request_id).await,
        }
    }

    async fn converse(
        &self,
        request: &Request,
        headers: &HeaderMap,
        tenant: Tenant,
        request_id: &str,
    ) -> Result<Reply, ApiError> {
        let call = converse_call(&self.gateway, request, ConverseRequest::from_json(request.body().as_ref())?, tenant)?;
        if !deferrable(headers)? {
            let origin = Origin { source: UsageSource::Online, request_id: request_id.to_string() };
            return Ok(Reply::Answer(Box::new(self.gateway.converse_and_record(call, &origin).await?)));
        }
        let batch = self.batch.as_ref().ok_or_else(|| {
            RequestError::invalid(
                DEFER_HEADER,
                "this deployment has no batch table, so requests cannot be deferred; send it without x-defer",
            )
        })?;
        let tenant = call.tenant.clone();
        match self.gateway.defer(call, batch.pending(), SystemTime::now()).await? {
            Deferral::Answered(answer) => {
                let origin = Origin { source: UsageSource::Online, request_id: request_id.to_string() };
                self.gateway.record_answer(&answer, &tenant, &origin).await;
                Ok(Reply::Answer(answer))
            }
            Deferral::Enqueued(record) => {
                let status_url = status_url(request, record.record_id.request_id());
                Ok(Reply::Deferred { record, status_url })
            }
        }
    }

    async fn status(&self, tenant: &Tenant, id: &str) -> Result<Box<StatusReport>, ApiError> {
        let unknown = || ApiError::UnknownRequest(id.to_owned());
        // Nothing this gateway issued looks otherwise; no need to ask the table.
        if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(unknown());
        }
        let batch = self.batch.as_ref().ok_or_else(unknown)?;
        match batch.statuses().status(tenant, id).await? {
            Some(status) => Ok(Box::new(StatusReport::new(status))),
            None => Err(unknown()),
        }
    }
}

/// The API a request speaks, from its path: the error of a request that fails before its
/// route is matched still comes in the shape its client reads.
fn dialect_of(request: &Request) -> Dialect {
    match http_support::route_path(request) {
        "/v1/chat/completions" | "/v1/models" => Dialect::OpenAi,
        "/v1/messages" => Dialect::Anthropic,
        _ => Dialect::Converse,
    }
}

/// The caller's tenant, once the gateway headers are known to be well formed.
fn caller_tenant<P: Ports>(gateway: &Gateway<P>, request: &Request) -> Result<Tenant, ApiError> {
    let headers = request.headers();
    http_support::check_gateway_headers(headers)?;
    Ok(gateway
        .settings()
        .tenants
        .tenant(http_support::authentication(request), http_support::tenant_header(headers))?)
}

/// The use case's call for a Converse request, whatever API it was spoken in: the cache and
/// routing headers and the deadline are the same on every route.
fn converse_call<P: Ports>(
    gateway: &Gateway<P>,
    request: &Request,
    body: ConverseRequest,
    tenant: Tenant,
) -> Result<ConverseCall, ApiError> {
    let headers = request.headers();
    Ok(ConverseCall {
        request: body,
        tenant,
        cache: CacheOptions::parse(
            header(headers, "x-cache-mode"),
            header(headers, "x-cache-ttl"),
            header(headers, "x-cache-allow-sampling"),
        )?,
        routing: RouteOverrides::from_headers(|name| header(headers, name))?,
        deadline: gateway.settings().budgets.deadline(request.lambda_context_ref().map(|c| c.deadline())),
    })
}

/// `x-defer`: `true` or `false` (the default).
fn deferrable(headers: &HeaderMap) -> Result<bool, RequestError> {
    match header(headers, DEFER_HEADER) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(RequestError::invalid(DEFER_HEADER, "must be true or false")),
    }
}

/// `/v1/requests/<id>` under the stage the request came through, so that a caller behind a
/// named stage can follow it as it is.
fn status_url(request: &Request, id: &str) -> String {
    let stage = request.raw_http_path().strip_suffix(http_support::route_path(request)).unwrap_or("");
    format!("{stage}{STATUS_PATH}{id}")
}

fn accepted(record: &SubmittedRecord, status_url: &str) -> Response<Body> {
    let body = serde_json::json!({
        "requestId": record.record_id.request_id(),
        "status": "pending",
        "statusUrl": status_url,
        "modelId": record.model_id,
        "attempt": record.record_id.attempt(),
    });
    json_response(StatusCode::ACCEPTED, &body, &[("location", status_url)])
}

fn success(answer: &Answer) -> Response<Body> {
    json_response(StatusCode::OK, &dialect::converse_body(answer), &borrowed(&answer_headers(answer)))
}

fn borrowed<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    headers.iter().map(|(name, value)| (*name, value.as_str())).collect()
}

/// Which of the caller's sampling parameters the answering model was not sent; in a header so
/// that every dialect's callers (OpenAI and Anthropic bodies have no place for it) can see it.
pub(crate) const SAMPLING_OMITTED: &str = "x-sampling-omitted";

/// The gateway's headers on every answer, whatever its body's shape.
fn answer_headers(answer: &Answer) -> Vec<(&'static str, String)> {
    let mut headers = vec![("x-cache", answer.cache.result.as_str().to_owned())];
    if let Some(decision) = &answer.routing {
        headers.push(("x-route-tier", decision.tier.as_str().to_owned()));
    }
    if !answer.omitted().is_empty() {
        headers.push((SAMPLING_OMITTED, answer.omitted().join(",")));
    }
    if let Some(admission) = &answer.admission {
        headers.push(("x-quota-mode", admission.mode.as_str().to_owned()));
        headers.push(("x-quota-waited-ms", admission.waited_ms.to_string()));
        if admission.spilled {
            headers.push(("x-quota-spilled", "true".to_owned()));
        }
    }
    headers
}

/// One CloudWatch Embedded Metric Format line per request on stdout: CloudWatch turns it
/// into metrics without a PutMetricData call on the request path.
fn emit_metrics(metrics: &InvocationMetrics, function: &str) {
    println!("{}", metrics.to_emf(gateway_core::metrics::NAMESPACE, function, http_support::now_ms()));
}
