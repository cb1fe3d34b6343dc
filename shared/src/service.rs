//! The invoke-with-cache use case: one Converse request in, one priced answer out.
//!
//! 1. Resolve `modelId` (tier name, model ID, profile or ARN) through the catalog and check
//!    the request against that model's limits.
//! 2. Decide what the request may do with the cache (mode, sampling, TTL).
//! 3. On a read, look the key up; a live entry is a HIT and costs nothing.
//! 4. Otherwise call Bedrock, price the call from the model that served it, and store the
//!    answer when the policy allows. Storing happens before the reply because Lambda may
//!    freeze the environment as soon as the handler returns.
//!
//! Cache failures never fail a request: the answer is served from Bedrock and the error is
//! reported alongside it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::cache::{self, BypassReason, CacheEntry, CacheKey, CacheOptions, CacheSettings, Tenant};
use crate::catalog::{Catalog, ResolveError, Target, Tier};
use crate::cost::{PricingMode, Usage};
use crate::ports::{CacheStore, InvokeError, ModelInvoker, PutOutcome};
use crate::request::{ConverseRequest, ConverseResponse, RequestError};

/// Deployer settings the use case needs (a subset of [`crate::config::GatewayConfig`]).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub cache: CacheSettings,
    /// Bedrock ID each tier name resolves to.
    pub tier_models: BTreeMap<Tier, String>,
    /// Suggested wait for callers when Bedrock keeps throttling; Bedrock sends none itself.
    pub throttle_retry_after: Duration,
}

impl GatewaySettings {
    /// Tier mapping from the catalog's defaults, with the other settings at their defaults.
    pub fn from_catalog(catalog: &Catalog) -> Self {
        GatewaySettings {
            cache: CacheSettings::default(),
            tier_models: Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect(),
            throttle_retry_after: Duration::from_secs(10),
        }
    }
}

/// One call of the use case, already translated from the transport.
#[derive(Debug, Clone)]
pub struct ConverseCall {
    pub request: ConverseRequest,
    pub tenant: Tenant,
    pub cache: CacheOptions,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Bypass => "BYPASS",
        }
    }
}

/// What happened to the answer on the way back into the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum WriteReport {
    Stored {
        bytes: usize,
    },
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// The answer is incomplete or malformed (e.g. a guardrail intervened) and is not worth repeating.
    NotCacheable,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheReport {
    pub result: CacheResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass_reason: Option<BypassReason>,
    /// On a hit: what the original call cost, and so what this one saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteReport>,
    /// A cache failure that the request survived, e.g. `read failed (throttled): ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The priced answer to one call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: ConverseResponse,
    /// The `modelId` as the caller gave it.
    pub requested_model: String,
    /// The Bedrock ID that produced the answer (a router's choice when a router served it).
    pub model_id: String,
    /// What this call cost: 0 on a hit; `None` when the serving model is not in the catalog.
    pub cost_usd: Option<f64>,
    pub latency: Duration,
    pub cache: CacheReport,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    #[error(transparent)]
    UnknownModel(#[from] ResolveError),
    #[error(transparent)]
    Model(#[from] InvokeError),
}

/// The use case, generic over its ports so tests can run it on fakes.
#[derive(Debug)]
pub struct Gateway<S, M> {
    catalog: Arc<Catalog>,
    settings: GatewaySettings,
    store: S,
    invoker: M,
}

impl<S: CacheStore, M: ModelInvoker> Gateway<S, M> {
    pub fn new(catalog: Arc<Catalog>, settings: GatewaySettings, store: S, invoker: M) -> Self {
        Gateway { catalog, settings, store, invoker }
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub async fn converse(&self, call: ConverseCall) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let ConverseCall { mut request, tenant, cache: options } = call;
        let requested_model = request.model_id.take().ok_or_else(|| {
            RequestError::invalid(
                "modelId",
                "is required: a tier (haiku, sonnet, opus), a model ID, an inference profile or an ARN",
            )
        })?;
        let target = self.resolve(&requested_model)?;
        // The key names the model itself, so a tier name, a profile ID, another geography's
        // profile and an ARN of the same model share entries: the weights answering are the same.
        let (invoke_id, key_model) = match &target {
            Target::Model(m) => {
                check_model_limits(&request, m.spec.max_output_tokens, &m.spec.display_name)?;
                (m.invoke_id.clone(), m.spec.model_id.clone())
            }
            Target::PromptRouter { arn } => (arn.clone(), arn.clone()),
        };
        let decision = self.settings.cache.decide(&options, &request)?;
        let key = CacheKey::compute(&tenant, &key_model, &request);
        let mut report = CacheReport {
            result: if decision.read { CacheResult::Miss } else { CacheResult::Bypass },
            key: Some(key.to_hex()),
            bypass_reason: decision.bypass,
            saved_usd: None,
            age_seconds: None,
            ttl_seconds: Some(decision.ttl.as_secs()),
            write: None,
            error: None,
        };

        if decision.read {
            let now = SystemTime::now();
            match self.store.get(&key, now).await {
                Ok(Some(entry)) => {
                    report.result = CacheResult::Hit;
                    report.saved_usd = Some(entry.cost_usd);
                    report.age_seconds = now.duration_since(entry.created_at).ok().map(|d| d.as_secs());
                    report.ttl_seconds = entry.expires_at.duration_since(now).ok().map(|d| d.as_secs());
                    return Ok(Answer {
                        response: entry.response,
                        requested_model,
                        model_id: entry.model_id,
                        cost_usd: Some(0.0),
                        latency: started.elapsed(),
                        cache: report,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.label(), "cache read failed; serving from Bedrock");
                    report.error = Some(format!("read failed ({}): {e}", e.label()));
                }
            }
        }

        let mut response = self.invoker.converse(&invoke_id, &request).await.map_err(|e| self.with_retry_hint(e))?;
        let model_id = response.invoked_model_id().map_or_else(|| invoke_id.clone(), str::to_owned);
        let cost_usd = match self.catalog.cost_of(&model_id, &Usage::from(&response.usage), PricingMode::OnDemand) {
            Ok(cost) => Some(cost),
            Err(e) => {
                tracing::warn!(model_id, error = %e, "served by a model outside the catalog; cost unknown");
                None
            }
        };

        if decision.write {
            report.write = Some(if !cache::is_cacheable(&response) {
                WriteReport::NotCacheable
            } else {
                let now = SystemTime::now();
                // The answer moves into the entry for the write and back out: no copy.
                let entry = CacheEntry {
                    key,
                    response,
                    model_id: model_id.clone(),
                    cost_usd: cost_usd.unwrap_or(0.0),
                    created_at: now,
                    expires_at: now + decision.ttl,
                };
                let outcome = self.store.put(&entry).await;
                response = entry.response;
                match outcome {
                    Ok(PutOutcome::Stored { bytes }) => WriteReport::Stored { bytes },
                    Ok(PutOutcome::TooLarge { bytes, limit }) => {
                        tracing::info!(bytes, limit, "answer too large to cache");
                        WriteReport::TooLarge { bytes, limit }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, kind = e.label(), "cache write failed");
                        let write_error = format!("write failed ({}): {e}", e.label());
                        report.error = Some(match report.error.take() {
                            Some(read_error) => format!("{read_error}; {write_error}"),
                            None => write_error,
                        });
                        WriteReport::Failed
                    }
                }
            });
        }

        Ok(Answer { response, requested_model, model_id, cost_usd, latency: started.elapsed(), cache: report })
    }

    fn resolve(&self, requested: &str) -> Result<Target<'_>, ResolveError> {
        let id = match requested.parse::<Tier>() {
            Ok(tier) => self.settings.tier_models.get(&tier).map_or(requested, String::as_str),
            Err(()) => requested,
        };
        self.catalog.resolve(id)
    }

    fn with_retry_hint(&self, error: InvokeError) -> InvokeError {
        match error {
            InvokeError::Throttled { message, retry_after: None } => {
                InvokeError::Throttled { message, retry_after: Some(self.settings.throttle_retry_after) }
            }
            other => other,
        }
    }
}

fn check_model_limits(request: &ConverseRequest, max_output: u32, model: &str) -> Result<(), RequestError> {
    match request.max_tokens() {
        Some(n) if n > max_output => Err(RequestError::invalid(
            "inferenceConfig.maxTokens",
            format!("{n} exceeds {model}'s maximum output of {max_output} tokens"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheMode;
    use crate::testing::{FakeInvoker, InMemoryCacheStore};

    fn gateway() -> Gateway<InMemoryCacheStore, FakeInvoker> {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings = GatewaySettings::from_catalog(&catalog);
        Gateway::new(catalog, settings, InMemoryCacheStore::default(), FakeInvoker::default())
    }

    fn call(tenant: &str, body: serde_json::Value) -> ConverseCall {
        ConverseCall {
            request: ConverseRequest::from_json(body.to_string().as_bytes()).unwrap(),
            tenant: Tenant::new(tenant),
            cache: CacheOptions::default(),
        }
    }

    fn body(model: &str, text: &str) -> serde_json::Value {
        serde_json::json!({
            "modelId": model,
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"temperature": 0, "maxTokens": 200}
        })
    }

    #[tokio::test]
    async fn a_repeat_is_a_hit_that_saves_the_first_calls_cost() {
        let g = gateway();
        let first = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(first.cache.result, CacheResult::Miss);
        assert!(matches!(first.cache.write, Some(WriteReport::Stored { .. })));
        let cost = first.cost_usd.unwrap();
        assert!(cost > 0.0);
        assert_eq!(first.model_id, "us.anthropic.claude-haiku-4-5-20251001-v1:0");

        // The same model named by its profile ID is the same request.
        let second = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "hello"))).await.unwrap();
        assert_eq!(second.cache.result, CacheResult::Hit);
        assert_eq!(second.cache.saved_usd, Some(cost));
        assert_eq!(second.cost_usd, Some(0.0));
        assert_eq!(second.response, first.response);
        let arn =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0";
        assert_eq!(g.converse(call("a", body(arn, "hello"))).await.unwrap().cache.result, CacheResult::Hit);
        assert_eq!(g.invoker.calls(), 1);
        let sonnet = g.converse(call("a", body("sonnet", "hello"))).await.unwrap();
        assert_eq!(sonnet.cache.result, CacheResult::Miss, "another model is another answer");
    }

    #[tokio::test]
    async fn tenants_do_not_share_entries() {
        let g = gateway();
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        let other = g.converse(call("b", body("haiku", "hello"))).await.unwrap();
        assert_eq!(other.cache.result, CacheResult::Miss);
        assert_eq!(g.invoker.calls(), 2);
    }

    #[tokio::test]
    async fn an_expired_entry_is_a_miss() {
        let g = gateway();
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        g.store.expire_all();
        let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(again.cache.result, CacheResult::Miss);
    }

    #[tokio::test]
    async fn cache_failures_are_reported_but_never_fail_the_request() {
        let g = gateway();
        g.store.fail_reads(true);
        g.store.fail_writes(true);
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Miss);
        assert_eq!(answer.cache.write, Some(WriteReport::Failed));
        let error = answer.cache.error.unwrap();
        assert!(error.contains("read failed") && error.contains("write failed"), "{error}");
    }

    #[tokio::test]
    async fn oversized_answers_are_served_but_not_stored() {
        let g = gateway();
        g.store.set_item_limit(10);
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert!(matches!(answer.cache.write, Some(WriteReport::TooLarge { limit: 10, .. })));
        let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(again.cache.result, CacheResult::Miss);
    }

    #[tokio::test]
    async fn modes_and_sampling_control_reads_and_writes() {
        let g = gateway();
        let mut sampled = call("a", body("haiku", "hi"));
        sampled.request.inference_config = None;
        let answer = g.converse(sampled.clone()).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Bypass);
        assert_eq!(answer.cache.bypass_reason, Some(BypassReason::Sampling));

        let mut read_only = call("a", body("haiku", "hi"));
        read_only.cache.mode = Some(CacheMode::ReadOnly);
        assert_eq!(g.converse(read_only.clone()).await.unwrap().cache.write, None);
        assert_eq!(g.converse(read_only).await.unwrap().cache.result, CacheResult::Miss);

        let mut refresh = call("a", body("haiku", "hi"));
        refresh.cache.mode = Some(CacheMode::WriteOnly);
        let refreshed = g.converse(refresh).await.unwrap();
        assert_eq!(refreshed.cache.result, CacheResult::Bypass);
        assert!(matches!(refreshed.cache.write, Some(WriteReport::Stored { .. })));
        assert_eq!(g.converse(call("a", body("haiku", "hi"))).await.unwrap().cache.result, CacheResult::Hit);
    }

    #[tokio::test]
    async fn caller_mistakes_are_request_errors() {
        let g = gateway();
        let err = g.converse(call("a", body("gpt-4o", "hi"))).await.unwrap_err();
        assert!(matches!(err, GatewayError::UnknownModel(_)));

        let mut too_long = call("a", body("haiku", "hi"));
        too_long.request.inference_config.as_mut().unwrap().max_tokens = Some(1_000_000);
        let err = g.converse(too_long).await.unwrap_err();
        assert!(matches!(&err, GatewayError::InvalidRequest(e) if e.field() == Some("inferenceConfig.maxTokens")));

        let mut no_model = call("a", body("haiku", "hi"));
        no_model.request.model_id = None;
        assert!(matches!(g.converse(no_model).await.unwrap_err(), GatewayError::InvalidRequest(_)));
        assert_eq!(g.invoker.calls(), 0);
    }

    #[tokio::test]
    async fn throttling_carries_a_retry_hint_and_is_not_cached() {
        let g = gateway();
        g.invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
        let err = g.converse(call("a", body("haiku", "hi"))).await.unwrap_err();
        assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })));
        assert_eq!(g.store.len(), 0);
    }

    #[tokio::test]
    async fn prompt_router_calls_are_priced_by_the_invoked_model() {
        let g = gateway();
        let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        g.invoker.route_to(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
        );
        let answer = g.converse(call("a", body(router, "hi"))).await.unwrap();
        assert!(answer.model_id.ends_with("us.anthropic.claude-3-5-haiku-20241022-v1:0"));
        let usage = Usage::from(&answer.response.usage);
        let expected = (usage.input_tokens as f64 * 0.8 + usage.output_tokens as f64 * 4.0) / 1e6;
        assert!((answer.cost_usd.unwrap() - expected).abs() < 1e-15);
    }
}
