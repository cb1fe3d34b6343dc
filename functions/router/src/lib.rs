//! router: `POST /v1/route` over API Gateway HTTP API (payload v2).
//!
//! Returns the routing decision for a Converse request without invoking a model, for dry runs
//! and dashboards. This crate only translates: HTTP request → [`ConverseRequest`] and
//! [`RouteOverrides`], [`RouteDecision`] or error → HTTP response. The policy, the model and
//! model resolution live in `gateway-core`, shared with invoke-with-cache's `"auto"` routing.

mod error;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::catalog::{Catalog, Target, Tier};
use gateway_core::config::RoutingConfig;
use gateway_core::date::Date;
use gateway_core::metrics::{self, EmfDocument, Unit};
use gateway_core::request::{self, ConverseRequest};
use gateway_core::routing::{RouteDecision, RouteOverrides, Router};
use gateway_core::service::AUTO_MODEL;
use http_support::{header, json_response, request_id};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Error, Request, Response};

pub use http_support::init_tracing;
use serde_json::Value;

pub use error::{ApiError, StartupError};

const ROUTE: &str = "/v1/route";
const FUNCTION_NAME: &str = "router";

#[derive(Debug)]
pub struct Handler {
    router: Router,
    catalog: Arc<Catalog>,
    default_model: Option<String>,
    log_request_bodies: bool,
}

/// A request's outcome: what the router decided, and the model the caller named instead.
#[derive(Debug)]
struct Routed {
    decision: RouteDecision,
    decision_time: Duration,
    requested_model: String,
    forced: Option<Forced>,
}

/// A concrete `modelId`: the gateway would call this model and skip routing.
#[derive(Debug)]
struct Forced {
    /// What Bedrock would be called with (a tier name mapped, anything else as given).
    model_id: String,
    /// `None` for a Bedrock prompt router, which picks its model itself.
    tier: Option<Tier>,
}

impl Handler {
    /// `default_model` stands in for a missing `modelId`, as `DEFAULT_MODEL_ID` does in
    /// invoke-with-cache; without one a missing `modelId` is a 400 there and here alike.
    pub fn new(router: Router, catalog: Arc<Catalog>, default_model: Option<String>) -> Self {
        Handler { router, catalog, default_model, log_request_bodies: false }
    }

    /// Logs every request body at debug level (`LOG_REQUEST_BODIES`), and says so now.
    pub fn with_body_logging(mut self, enabled: bool) -> Self {
        http_support::announce_body_logging(enabled);
        self.log_request_bodies = enabled;
        self
    }

    /// Loads the catalog and builds the router once per cold start; a bad setting fails here
    /// rather than on every request.
    pub fn from_config(config: &RoutingConfig) -> Result<Self, StartupError> {
        let catalog = Arc::new(Catalog::load(config.catalog_path.as_deref())?);
        let router = config.router(Arc::clone(&catalog))?;
        Ok(Handler::new(router, catalog, config.default_model.clone()).with_body_logging(config.log_request_bodies))
    }

    /// Never fails: every error becomes an HTTP response, so the runtime never sees a panic
    /// or an unhandled error for a caller's mistake.
    pub async fn handle(&self, request: Request) -> Result<Response<Body>, Error> {
        let request_id = request_id(&request);
        http_support::log_body(self.log_request_bodies, &request, &request_id);
        let response = match self.route(&request) {
            Ok(routed) => {
                emit_metrics(&routed);
                success(&routed)
            }
            Err(error) => {
                // A rejection's message may name a caller-chosen key or model; the label and
                // status are enough to count and alert on, the caller gets the rest.
                tracing::info!(
                    error = error.label().as_str(),
                    status = error.status().as_u16(),
                    request_id,
                    "request rejected"
                );
                if self.log_request_bodies {
                    tracing::debug!(error = %error, request_id, "rejection detail");
                }
                error.into_response(&request_id)
            }
        };
        Ok(response)
    }

    fn route(&self, request: &Request) -> Result<Routed, ApiError> {
        http_support::check_route(request, ROUTE)?;
        let headers = request.headers();
        http_support::check_gateway_headers(headers)?;
        let converse = ConverseRequest::from_json(request.body().as_ref())?;
        let overrides = RouteOverrides::from_headers(|name| header(headers, name))?;
        let requested_model = request::requested_model(converse.model_id.clone(), self.default_model.as_deref())?;
        let forced =
            if requested_model.eq_ignore_ascii_case(AUTO_MODEL) { None } else { Some(self.resolve(&requested_model)?) };
        let started = Instant::now();
        let decision = self.router.decide(&converse, &overrides);
        let decision_time = started.elapsed();
        Ok(Routed { decision, decision_time, requested_model, forced })
    }

    /// What invoke-with-cache would call for a concrete `modelId`: tier names through the
    /// deployment's tier mapping, everything else through the catalog.
    fn resolve(&self, requested: &str) -> Result<Forced, ApiError> {
        let id = match requested.parse::<Tier>() {
            Ok(tier) => self.router.tier_model(tier),
            Err(()) => requested,
        };
        Ok(match self.catalog.resolve_callable(id, Date::today())? {
            Target::Model(model) => Forced { model_id: model.invoke_id, tier: Some(model.spec.tier) },
            Target::PromptRouter { arn } => Forced { model_id: arn, tier: None },
        })
    }
}

/// The decision at the top level, plus how long it took and whether the caller's own
/// `modelId` would override it.
fn success(routed: &Routed) -> Response<Body> {
    let mut body = serde_json::to_value(&routed.decision).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("latencyMicros".into(), micros(routed.decision_time).into());
        map.insert("forced".into(), routed.forced.is_some().into());
        map.insert("requestedModelId".into(), routed.requested_model.clone().into());
        if let Some(forced) = &routed.forced {
            map.insert("forcedModelId".into(), forced.model_id.clone().into());
            if let Some(tier) = forced.tier {
                map.insert("forcedTier".into(), tier.as_str().into());
            }
        }
    }
    json_response(StatusCode::OK, &body, &[("x-route-tier", routed.decision.tier.as_str())])
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// One CloudWatch Embedded Metric Format line per decision on stdout: CloudWatch turns it
/// into metrics without a PutMetricData call on the request path.
fn emit_metrics(routed: &Routed) {
    let now_ms = http_support::now_ms();
    println!("{}", decision_emf(&routed.decision, routed.decision_time, routed.forced.is_some(), now_ms));
}

/// The EMF document of one decision, dimensioned by function and by function and tier (as
/// invoke-with-cache's metrics are). Expected costs are left out when the tier's target has no
/// list price (a prompt router).
pub fn decision_emf(decision: &RouteDecision, decision_time: Duration, forced: bool, timestamp_ms: u64) -> Value {
    let mut doc = EmfDocument::new(metrics::NAMESPACE, timestamp_ms);
    doc.property("Function", FUNCTION_NAME).property("Tier", decision.tier.as_str());
    doc.dimension_set(&["Function"]).dimension_set(&["Function", "Tier"]);
    // Searchable in Logs Insights, but not dimensions.
    doc.property("ModelId", decision.model_id.clone()).property("ModelVersion", decision.model_version.clone());
    doc.property("Reason", serde_json::to_value(decision.reason).unwrap_or_default()).property("Forced", forced);
    doc.metric("RoutedRequests", Unit::Count, 1.0);
    if let Some(cost) = decision.expected_cost_usd {
        doc.metric("ExpectedCostUsd", Unit::None, cost);
    }
    if let Some(cost) = decision.strongest_expected_cost_usd {
        doc.metric("StrongestExpectedCostUsd", Unit::None, cost);
    }
    doc.metric("DecisionMicros", Unit::Microseconds, micros(decision_time) as f64);
    doc.to_value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::routing::RouteReason;
    use serde_json::json;

    fn decision(expected: Option<f64>) -> RouteDecision {
        RouteDecision {
            tier: Tier::Sonnet,
            model_id: "us.anthropic.claude-sonnet-4-5-20250929-v1:0".into(),
            reason: RouteReason::PredictedAdequate,
            quality_tolerance: 10.0,
            min_tier: Tier::Haiku,
            max_tier: Tier::Opus,
            model_version: "v1-test".into(),
            estimated_input_tokens: 10,
            expected_output_tokens: 512,
            expected_cost_usd: expected,
            strongest_expected_cost_usd: Some(0.02),
            tiers: Vec::new(),
        }
    }

    #[test]
    fn emf_declares_every_metric_it_sets() {
        let doc = decision_emf(&decision(Some(0.01)), Duration::from_micros(7), false, 42);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "BedrockGateway");
        assert_eq!(directive["Dimensions"], json!([["Function"], ["Function", "Tier"]]));
        assert_eq!(doc["_aws"]["Timestamp"], 42);
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|d| d["Name"].as_str().unwrap()).collect();
        assert_eq!(names, ["RoutedRequests", "ExpectedCostUsd", "StrongestExpectedCostUsd", "DecisionMicros"]);
        for name in names {
            assert!(doc[name].is_number(), "{name} declared but not set");
        }
        assert_eq!((doc["Function"].as_str(), doc["Tier"].as_str()), (Some("router"), Some("sonnet")));
        assert_eq!((doc["DecisionMicros"].as_f64(), doc["Reason"].as_str()), (Some(7.0), Some("predicted_adequate")));
    }

    #[test]
    fn an_unpriced_tier_declares_no_cost() {
        let doc = decision_emf(&decision(None), Duration::ZERO, true, 0);
        let metrics = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].as_array().unwrap();
        assert!(metrics.iter().all(|d| d["Name"] != "ExpectedCostUsd"));
        assert!(doc.get("ExpectedCostUsd").is_none());
        assert_eq!(doc["Forced"], true);
    }
}
