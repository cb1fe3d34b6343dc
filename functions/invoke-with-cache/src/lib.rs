//! invoke-with-cache: `POST /v1/converse` over API Gateway HTTP API (payload v2).
//!
//! This crate only translates: HTTP request → [`ConverseCall`], [`Answer`] or error → HTTP
//! response. Every rule (tenants, model resolution, cache policy, pricing) lives in
//! `gateway-core`; the handler only extracts the authorizer's claims and the raw headers.

mod error;

use gateway_core::cache::CacheOptions;
use gateway_core::metrics::InvocationMetrics;
use gateway_core::ports::Ports;
use gateway_core::request::ConverseRequest;
use gateway_core::routing::RouteOverrides;
use gateway_core::service::{Answer, ConverseCall, Gateway};
use http_support::{header, json_response, request_id};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub use http_support::init_tracing;

pub use error::ApiError;

const ROUTE: &str = "/v1/converse";
const METRICS_NAMESPACE: &str = "BedrockGateway";
const FUNCTION_NAME: &str = "invoke-with-cache";

#[derive(Debug)]
pub struct Handler<P> {
    gateway: Gateway<P>,
    log_request_bodies: bool,
}

impl<P: Ports> Handler<P> {
    pub fn new(gateway: Gateway<P>) -> Self {
        Handler { gateway, log_request_bodies: false }
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
        let response = match self.converse(&request).await {
            Ok(answer) => {
                emit_metrics(&InvocationMetrics::from_answer(&answer, self.gateway.catalog()));
                success(&answer)
            }
            Err(error) => {
                if let Some(label) = error.metric_label() {
                    emit_metrics(&InvocationMetrics::from_error(label.as_str()));
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
                error.into_response(&request_id)
            }
        };
        Ok(response)
    }

    async fn converse(&self, request: &Request) -> Result<Answer, ApiError> {
        http_support::check_route(request, ROUTE)?;
        let headers = request.headers();
        http_support::check_gateway_headers(headers)?;
        let tenant = self
            .gateway
            .settings()
            .tenants
            .tenant(http_support::authentication(request), http_support::tenant_header(headers))?;
        let call = ConverseCall {
            request: ConverseRequest::from_json(request.body().as_ref())?,
            tenant,
            cache: CacheOptions::parse(
                header(headers, "x-cache-mode"),
                header(headers, "x-cache-ttl"),
                header(headers, "x-cache-allow-sampling"),
            )?,
            routing: RouteOverrides::from_headers(|name| header(headers, name))?,
            deadline: self.gateway.settings().budgets.deadline(request.lambda_context_ref().map(|c| c.deadline())),
        };
        Ok(self.gateway.converse(call).await?)
    }
}

fn success(answer: &Answer) -> Response<Body> {
    let mut body = serde_json::to_value(&answer.response).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("modelId".into(), answer.model_id.clone().into());
        map.insert("requestedModelId".into(), answer.requested_model.clone().into());
        map.insert("costUsd".into(), answer.cost_usd.into());
        map.insert("latencyMs".into(), (answer.latency.as_millis() as u64).into());
        map.insert("cache".into(), serde_json::to_value(&answer.cache).unwrap_or_default());
        if let Some(decision) = &answer.routing {
            map.insert("routing".into(), serde_json::to_value(decision).unwrap_or_default());
        }
        if !answer.hops.is_empty() {
            map.insert("hops".into(), serde_json::to_value(&answer.hops).unwrap_or_default());
        }
        if let Some(admission) = &answer.admission {
            map.insert("admission".into(), serde_json::to_value(admission).unwrap_or_default());
        }
    }
    let tier = answer.routing.as_ref().map(|d| d.tier.as_str());
    let mut headers = vec![("x-cache", answer.cache.result.as_str())];
    if let Some(tier) = tier {
        headers.push(("x-route-tier", tier));
    }
    let waited;
    if let Some(admission) = &answer.admission {
        waited = admission.waited_ms.to_string();
        headers.push(("x-quota-mode", admission.mode.as_str()));
        headers.push(("x-quota-waited-ms", &waited));
        if admission.spilled {
            headers.push(("x-quota-spilled", "true"));
        }
    }
    json_response(StatusCode::OK, &body, &headers)
}

/// One CloudWatch Embedded Metric Format line per request on stdout: CloudWatch turns it
/// into metrics without a PutMetricData call on the request path.
fn emit_metrics(metrics: &InvocationMetrics) {
    let now_ms = http_support::now_ms();
    println!("{}", metrics.to_emf(METRICS_NAMESPACE, FUNCTION_NAME, now_ms));
}
