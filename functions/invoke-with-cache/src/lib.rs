//! invoke-with-cache: `POST /v1/converse` over API Gateway HTTP API (payload v2).
//!
//! This crate only translates: HTTP request → [`ConverseCall`], [`Answer`] or error → HTTP
//! response. Every rule (model resolution, cache policy, pricing) lives in `gateway-core`.

mod error;

use gateway_core::cache::{CacheOptions, Tenant};
use gateway_core::metrics::InvocationMetrics;
use gateway_core::ports::{CacheStore, ModelInvoker};
use gateway_core::request::ConverseRequest;
use gateway_core::routing::RouteOverrides;
use gateway_core::service::{Answer, ConverseCall, Gateway};
use http_support::{header, json_response, request_id};
use lambda_http::http::{Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Error, Request, RequestExt, Response};

pub use http_support::init_tracing;

pub use error::ApiError;

const ROUTE: &str = "/v1/converse";
const METRICS_NAMESPACE: &str = "BedrockGateway";
const FUNCTION_NAME: &str = "invoke-with-cache";

#[derive(Debug)]
pub struct Handler<S, M> {
    gateway: Gateway<S, M>,
    trust_tenant_header: bool,
}

impl<S: CacheStore, M: ModelInvoker> Handler<S, M> {
    pub fn new(gateway: Gateway<S, M>, trust_tenant_header: bool) -> Self {
        Handler { gateway, trust_tenant_header }
    }

    /// Never fails: every error becomes an HTTP response, so the runtime never sees a panic
    /// or an unhandled error for a caller's mistake.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
        let request_id = request_id(&request);
        let response = match self.converse(&request).await {
            Ok(answer) => {
                emit_metrics(&InvocationMetrics::from_answer(&answer, self.gateway.catalog()));
                success(&answer)
            }
            Err(error) => {
                if let Some(label) = error.metric_label() {
                    emit_metrics(&InvocationMetrics::from_error(label));
                }
                if error.status().is_server_error() {
                    tracing::error!(error = %error, source = ?std::error::Error::source(&error), request_id, "request failed");
                } else {
                    tracing::info!(error = %error, request_id, "request rejected");
                }
                error.into_response(&request_id)
            }
        };
        Ok(response)
    }

    async fn converse(&self, request: &Request) -> Result<Answer, ApiError> {
        let path = request.raw_http_path();
        if !path.ends_with(ROUTE) {
            return Err(ApiError::NotFound(path.to_owned()));
        }
        if request.method() != Method::POST {
            return Err(ApiError::MethodNotAllowed(request.method().to_string()));
        }
        let headers = request.headers();
        let call = ConverseCall {
            request: ConverseRequest::from_json(request.body().as_ref())?,
            tenant: Tenant::resolve(
                authenticated_identity(request),
                header(headers, "x-tenant-id"),
                self.trust_tenant_header,
            )?,
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

/// The caller identity API Gateway has verified: a JWT subject or an IAM principal.
fn authenticated_identity(request: &Request) -> Option<String> {
    let RequestContext::ApiGatewayV2(context) = request.request_context_ref()? else {
        return None;
    };
    let authorizer = context.authorizer.as_ref()?;
    if let Some(jwt) = &authorizer.jwt {
        let issuer = jwt.claims.get("iss").map_or("", String::as_str);
        if let Some(sub) = jwt.claims.get("sub") {
            return Some(format!("jwt:{issuer}|{sub}"));
        }
    }
    let iam = authorizer.iam.as_ref()?;
    iam.user_arn.as_ref().or(iam.caller_id.as_ref()).map(|principal| format!("iam:{principal}"))
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
    }
    let tier = answer.routing.as_ref().map(|d| d.tier.as_str());
    let mut headers = vec![("x-cache", answer.cache.result.as_str())];
    if let Some(tier) = tier {
        headers.push(("x-route-tier", tier));
    }
    json_response(StatusCode::OK, &body, &headers)
}

/// One CloudWatch Embedded Metric Format line per request on stdout: CloudWatch turns it
/// into metrics without a PutMetricData call on the request path.
fn emit_metrics(metrics: &InvocationMetrics) {
    let now_ms = http_support::now_ms();
    println!("{}", metrics.to_emf(METRICS_NAMESPACE, FUNCTION_NAME, now_ms));
}
