//! Per-request figures in CloudWatch Embedded Metric Format (EMF).
//!
//! Functions print one EMF line per request; CloudWatch Logs extracts the metrics, so the
//! request path makes no PutMetricData call. Dimensions are kept to the function and the
//! tier: a model-ID or tenant dimension would multiply custom-metric cost.

mod emf;
pub mod publish;

pub use emf::{EmfDocument, Unit};
use serde_json::Value;

use crate::admission::AdmissionMode;
use crate::catalog::Catalog;
use crate::cost::Usage;
use crate::label::ErrorLabel;
use crate::service::{AdmissionSummary, Answer, CacheResult, WriteReport};

/// The namespace of every figure the gateway writes, per request (EMF) or per minute (the
/// metrics publisher).
pub const NAMESPACE: &str = "BedrockGateway";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct InvocationMetrics {
    pub tier: Option<String>,
    pub model_id: Option<String>,
    pub cache_result: Option<CacheResult>,
    pub cache_too_large: bool,
    pub cache_error: bool,
    pub cost_usd: f64,
    pub saved_usd: f64,
    pub latency_ms: f64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Whether the router chose the model (`modelId: "auto"`).
    pub routed: bool,
    /// Model calls that failed before one answered (throttled or unavailable models).
    pub fallback_hops: u64,
    /// What quota admission did, when it is on and a model was called.
    pub admission: Option<AdmissionSummary>,
    /// Low-cardinality error label when the request failed.
    pub error: Option<&'static str>,
    /// Streamed answers only: from the request's start to the first content sent.
    pub time_to_first_token_ms: Option<f64>,
    /// Streamed answers only: output tokens per second after the first one.
    pub output_tokens_per_second: Option<f64>,
}

impl InvocationMetrics {
    pub fn from_answer(answer: &Answer, catalog: &Catalog) -> Self {
        let hit = answer.cache.result == CacheResult::Hit;
        let usage = if hit { Usage::default() } else { Usage::from(&answer.response.usage) };
        InvocationMetrics {
            tier: catalog.resolve_served(&answer.model_id).ok().map(|(spec, _)| spec.tier.to_string()),
            model_id: Some(answer.model_id.clone()),
            cache_result: Some(answer.cache.result),
            cache_too_large: matches!(answer.cache.write, Some(WriteReport::TooLarge { .. })),
            cache_error: answer.cache.error.is_some(),
            cost_usd: answer.cost_usd.unwrap_or(0.0),
            saved_usd: answer.cache.saved_usd.unwrap_or(0.0),
            latency_ms: answer.latency.as_secs_f64() * 1000.0,
            input_tokens: usage.input_tokens + usage.cache_read_input_tokens + usage.cache_write_input_tokens,
            output_tokens: usage.output_tokens,
            routed: answer.routing.is_some(),
            fallback_hops: answer.hops.len().saturating_sub(1) as u64,
            admission: answer.admission.clone(),
            error: None,
            time_to_first_token_ms: None,
            output_tokens_per_second: None,
        }
    }

    /// The figures of a streamed answer; one that failed after its first byte counts as an
    /// error with what it cost.
    pub fn from_stream(end: &crate::service::StreamEnd, catalog: &Catalog) -> Self {
        InvocationMetrics {
            time_to_first_token_ms: end.time_to_first_token.map(|d| d.as_secs_f64() * 1000.0),
            output_tokens_per_second: end.output_tokens_per_second,
            error: end.ending.label().map(ErrorLabel::as_str),
            ..InvocationMetrics::from_answer(&end.answer, catalog)
        }
    }

    pub fn from_error(label: &'static str) -> Self {
        InvocationMetrics { error: Some(label), ..InvocationMetrics::default() }
    }

    /// The EMF document, one JSON object ready to print on its own line.
    pub fn to_emf(&self, namespace: &str, function: &str, timestamp_ms: u64) -> Value {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        let mut doc = EmfDocument::new(namespace, timestamp_ms);
        doc.property("Function", function).dimension_set(&["Function"]).dimension_set(&["Function", "Tier"]);
        if let Some(tier) = &self.tier {
            doc.property("Tier", tier.clone());
        }
        // Searchable in Logs Insights, but not a dimension.
        if let Some(model) = &self.model_id {
            doc.property("ModelId", model.clone());
        }
        doc.metric("Requests", Unit::Count, 1.0);
        match self.error {
            Some(label) => {
                doc.property("ErrorType", label);
                doc.metric("Errors", Unit::Count, 1.0);
                doc.metric("Throttles", Unit::Count, flag(label == "throttled"));
                // Refused by admission before Bedrock was called: the 429s Bedrock did not send.
                doc.metric("QuotaRefusals", Unit::Count, flag(label == ErrorLabel::QuotaExhausted.as_str()));
                // A stream cut after its first byte was still billed for what it generated.
                if self.cost_usd > 0.0 {
                    doc.metric("CostUsd", Unit::None, self.cost_usd);
                }
            }
            None => {
                doc.metric("Errors", Unit::Count, 0.0)
                    .metric("CacheHits", Unit::Count, flag(self.cache_result == Some(CacheResult::Hit)))
                    .metric("CacheMisses", Unit::Count, flag(self.cache_result == Some(CacheResult::Miss)))
                    .metric("CacheBypasses", Unit::Count, flag(self.cache_result == Some(CacheResult::Bypass)))
                    .metric("CacheTooLarge", Unit::Count, flag(self.cache_too_large))
                    .metric("CacheErrors", Unit::Count, flag(self.cache_error))
                    .metric("CostUsd", Unit::None, self.cost_usd)
                    .metric("SavedUsd", Unit::None, self.saved_usd)
                    .metric("Latency", Unit::Milliseconds, self.latency_ms)
                    .metric("InputTokens", Unit::Count, self.input_tokens as f64)
                    .metric("OutputTokens", Unit::Count, self.output_tokens as f64)
                    .metric("RoutedRequests", Unit::Count, flag(self.routed))
                    .metric("FallbackHops", Unit::Count, self.fallback_hops as f64);
                if let Some(admission) = &self.admission {
                    doc.metric("QuotaWaitMs", Unit::Milliseconds, admission.waited_ms as f64)
                        .metric("QuotaWaited", Unit::Count, flag(admission.waited_ms > 0))
                        .metric("QuotaSpills", Unit::Count, flag(admission.spilled))
                        .metric("QuotaDegraded", Unit::Count, flag(admission.mode == AdmissionMode::Degraded))
                        .metric("QuotaReservedTokens", Unit::Count, admission.reserved_tokens as f64)
                        .metric("QuotaSettledTokens", Unit::Count, admission.settled_tokens as f64);
                }
            }
        }
        if let Some(ttft) = self.time_to_first_token_ms {
            doc.metric("TimeToFirstToken", Unit::Milliseconds, ttft);
        }
        if let Some(rate) = self.output_tokens_per_second {
            doc.metric("OutputTokensPerSecond", Unit::CountPerSecond, rate);
        }
        doc.to_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn emf_declares_every_metric_it_sets() {
        let m = InvocationMetrics {
            tier: Some("haiku".into()),
            cache_result: Some(CacheResult::Hit),
            saved_usd: 0.5,
            ..InvocationMetrics::default()
        };
        let doc = m.to_emf("NS", "fn", 42);
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "NS");
        assert_eq!(doc["_aws"]["Timestamp"], 42);
        for def in directive["Metrics"].as_array().unwrap() {
            let name = def["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "{name} declared but not set");
        }
        assert_eq!(doc["CacheHits"], 1.0);
        assert_eq!(doc["SavedUsd"], 0.5);
        assert_eq!(directive["Dimensions"], json!([["Function"], ["Function", "Tier"]]));
    }

    #[test]
    fn errors_count_throttles_separately() {
        let doc = InvocationMetrics::from_error("throttled").to_emf("NS", "fn", 0);
        assert_eq!((doc["Errors"].as_f64(), doc["Throttles"].as_f64()), (Some(1.0), Some(1.0)));
        assert_eq!(doc["ErrorType"], "throttled");
        assert_eq!(doc["QuotaRefusals"], 0.0);
        let refused = InvocationMetrics::from_error(ErrorLabel::QuotaExhausted.as_str()).to_emf("NS", "fn", 0);
        assert_eq!((refused["Throttles"].as_f64(), refused["QuotaRefusals"].as_f64()), (Some(0.0), Some(1.0)));
    }

    #[test]
    fn an_admitted_answer_reports_its_wait_spill_and_mode() {
        let admission = AdmissionSummary {
            quota: "us.anthropic.claude-haiku-4-5-20251001-v1:0".into(),
            mode: AdmissionMode::Degraded,
            reserved_tokens: 1_200,
            settled_tokens: 900,
            waited_ms: 35,
            spilled: true,
            calls: 1,
        };
        let doc =
            InvocationMetrics { admission: Some(admission), ..InvocationMetrics::default() }.to_emf("NS", "fn", 0);
        let declared: Vec<&str> = doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["Name"].as_str().unwrap())
            .collect();
        for name in ["QuotaWaitMs", "QuotaWaited", "QuotaSpills", "QuotaDegraded", "QuotaSettledTokens"] {
            assert!(declared.contains(&name), "{name} not declared");
        }
        assert_eq!((doc["QuotaWaitMs"].as_f64(), doc["QuotaSpills"].as_f64()), (Some(35.0), Some(1.0)));
        assert_eq!((doc["QuotaDegraded"].as_f64(), doc["QuotaSettledTokens"].as_f64()), (Some(1.0), Some(900.0)));
        let off = InvocationMetrics::default().to_emf("NS", "fn", 0);
        assert!(off.get("QuotaWaitMs").is_none(), "no admission, no quota figures");
    }
}
