//! The record stage: what an entry point writes to the [`UsageLedger`] once a request is
//! answered or has failed. Every entry point (online, batch, deferred on demand) builds its
//! record here, so the publisher's figures mean the same thing whatever served the request.

use std::time::Duration;

use super::{Recorder, Savings, UsageError, UsageLedger, UsageOutcome, UsageRecord, UsageSource};
use crate::batch::{RecordResult, ResultState};
use crate::cache::Tenant;
use crate::catalog::Catalog;
use crate::cost::{PricingMode, Usage};
use crate::label::ErrorLabel;
use crate::service::{Answer, CacheResult, GatewayError, Hop};

/// Which request a record is of: an entry point knows this, the use case does not.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    pub source: UsageSource,
    /// The gateway's request ID online, the record ID in a batch.
    pub request_id: &'a str,
    pub tenant: &'a Tenant,
    pub finished_at_ms: u64,
}

fn throttled(hops: &[Hop]) -> u32 {
    u32::try_from(hops.iter().filter(|h| h.outcome == ErrorLabel::Throttled.as_str()).count()).unwrap_or(u32::MAX)
}

fn calls(hops: &[Hop]) -> u32 {
    u32::try_from(hops.len()).unwrap_or(u32::MAX)
}

/// The record of an answer. `mode` is how it was priced (batch records at batch rates).
pub fn answered(served: Served<'_>, answer: &Answer, catalog: &Catalog, mode: PricingMode) -> UsageRecord {
    let hit = answer.cache.result == CacheResult::Hit;
    let usage = if hit { Usage::default() } else { Usage::from(&answer.response.usage) };
    let spec = catalog.resolve_served(&answer.model_id).ok().map(|(spec, _)| spec);
    let cost_usd = answer.cost_usd.unwrap_or(0.0);
    let quota_tokens = match (&answer.admission, spec) {
        _ if hit => 0,
        (Some(admission), _) => admission.settled_tokens,
        (None, Some(spec)) => spec.quota_tokens(&usage),
        (None, None) => usage.input_tokens + usage.cache_write_input_tokens + usage.output_tokens,
    };
    let on_demand = |id: &str| catalog.cost_of(id, &usage, PricingMode::OnDemand).ok();
    let routing_usd = match &answer.routing {
        // What the strongest tier the request allowed would have cost for the same usage.
        Some(decision) if !hit => decision
            .tiers
            .iter()
            .find(|t| t.tier == decision.max_tier)
            .and_then(|strongest| catalog.cost_of(&strongest.model_id, &usage, mode).ok())
            .map_or(0.0, |strongest| (strongest - cost_usd).max(0.0)),
        _ => 0.0,
    };
    let batch_usd = match mode {
        PricingMode::Batch if !hit => on_demand(&answer.model_id).map_or(0.0, |full| (full - cost_usd).max(0.0)),
        _ => 0.0,
    };
    let admission = answer.admission.as_ref();
    UsageRecord {
        request_id: served.request_id.to_string(),
        at_ms: served.finished_at_ms,
        tenant: served.tenant.as_str().to_string(),
        source: served.source,
        model_id: Some(answer.model_id.clone()),
        tier: spec.map(|s| s.tier),
        quota: if hit { None } else { Some(admission.map_or_else(|| answer.model_id.clone(), |a| a.quota.clone())) },
        outcome: UsageOutcome::Answered,
        cache: Some(answer.cache.result),
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
        cache_read_tokens: usage.cache_read_input_tokens,
        cache_write_tokens: usage.cache_write_input_tokens,
        quota_tokens,
        model_calls: admission.map_or_else(|| calls(&answer.hops), |a| a.calls.max(calls(&answer.hops))),
        throttles_received: throttled(&answer.hops),
        throttles_avoided: u32::from(admission.is_some_and(|a| a.spilled || a.waited_ms > 0)),
        quota_refused: false,
        cost_usd,
        saved: Savings {
            cache_usd: if hit { answer.cache.saved_usd.unwrap_or(0.0) } else { 0.0 },
            routing_usd,
            batch_usd,
        },
        latency_ms: u64::try_from(answer.latency.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The record of a request that failed after `latency`.
pub fn failed(served: Served<'_>, error: &GatewayError, catalog: &Catalog, latency: Duration) -> UsageRecord {
    let hops: &[Hop] = match error {
        GatewayError::FallbackExhausted { hops, .. }
        | GatewayError::DeadlineExceeded { hops, .. }
        | GatewayError::QuotaExhausted { hops, .. } => hops,
        GatewayError::InvalidRequest(_) | GatewayError::UnknownModel(_) | GatewayError::Model(_) => &[],
    };
    let model_id = hops.last().map(|h| h.model_id.clone());
    let tier = model_id.as_deref().and_then(|id| catalog.resolve_served(id).ok()).map(|(spec, _)| spec.tier);
    UsageRecord {
        request_id: served.request_id.to_string(),
        at_ms: served.finished_at_ms,
        tenant: served.tenant.as_str().to_string(),
        source: served.source,
        quota: model_id.clone(),
        model_id,
        tier,
        outcome: UsageOutcome::Failed(error.label()),
        cache: None,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: 0,
        model_calls: calls(hops),
        throttles_received: throttled(hops),
        throttles_avoided: 0,
        quota_refused: matches!(error, GatewayError::QuotaExhausted { .. }),
        cost_usd: 0.0,
        saved: Savings::default(),
        latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
    }
}

/// The record of a batch record's final result, answered by its job or failed for good
/// (`None` while it waits for another attempt, so each line of work counts once). A batch
/// answer spends no on-demand quota and has no request latency; what it saved is the
/// on-demand price less the batch one.
pub fn batch_result(result: &RecordResult, catalog: &Catalog) -> Option<UsageRecord> {
    let model_id = (!result.model_id.is_empty()).then(|| result.model_id.clone());
    let tier = model_id.as_deref().and_then(|id| catalog.resolve_served(id).ok()).map(|(spec, _)| spec.tier);
    let record = UsageRecord {
        request_id: result.record_id.to_string(),
        at_ms: result.stored_at_ms,
        tenant: result.tenant.as_str().to_string(),
        source: UsageSource::Batch,
        model_id,
        tier,
        quota: None,
        outcome: UsageOutcome::Answered,
        cache: None,
        input_tokens: 0,
        output_tokens: 0,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: 0,
        model_calls: 0,
        throttles_received: 0,
        throttles_avoided: 0,
        quota_refused: false,
        cost_usd: 0.0,
        saved: Savings::default(),
        latency_ms: 0,
    };
    match &result.state {
        ResultState::Retrying { .. } => None,
        ResultState::Failed { failure } => Some(UsageRecord { outcome: UsageOutcome::Failed(failure.label), ..record }),
        ResultState::Answered { usage, batch_cost_usd, on_demand_cost_usd, .. } => {
            let cost_usd = batch_cost_usd.unwrap_or(0.0);
            let batch_usd = match (batch_cost_usd, on_demand_cost_usd) {
                (Some(batch), Some(full)) => (full - batch).max(0.0),
                _ => 0.0,
            };
            Some(UsageRecord {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cache_read_tokens: usage.cache_read_input_tokens,
                cache_write_tokens: usage.cache_write_input_tokens,
                model_calls: 1,
                cost_usd,
                saved: Savings { batch_usd, ..Savings::default() },
                ..record
            })
        }
    }
}

/// Writes `record` within `budget`. A request is never failed for its record: a write that
/// fails or takes too long is logged with the record's key and counted by the caller's
/// metrics, and the publisher's figures miss that one request.
pub async fn write<R: Recorder + ?Sized>(ledger: &R, record: &UsageRecord, budget: Duration) -> Result<(), UsageError> {
    let outcome = match tokio::time::timeout(budget, ledger.record(record)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(UsageError::Store(format!("no answer within {} ms", budget.as_millis()))),
    };
    if let Err(e) = &outcome {
        tracing::warn!(
            request_id = %record.request_id,
            source = record.source.as_str(),
            error = %e,
            kind = e.label().as_str(),
            "usage record not written"
        );
    }
    outcome
}

/// No ledger: a gateway deployed without a usage table records nothing.
impl<L: UsageLedger> UsageLedger for Option<L> {
    async fn record(&self, record: &UsageRecord) -> Result<(), UsageError> {
        match self {
            Some(ledger) => ledger.record(record).await,
            None => Ok(()),
        }
    }

    async fn minute(&self, minute: super::Minute) -> Result<super::MinuteUsage, UsageError> {
        match self {
            Some(ledger) => ledger.minute(minute).await,
            None => Ok(super::MinuteUsage::default()),
        }
    }
}
