//! One closed minute of usage turned into datums. Pure: the same records, quotas and Bedrock
//! figures always give the same datums in the same order.

use std::collections::BTreeMap;

use super::datum::MetricDatum;
use super::{BedrockMinute, PublisherConfig};
use crate::catalog::Quota;
use crate::metrics::Unit;
use crate::service::CacheResult;
use crate::usage::{Minute, MinuteUsage, UsageOutcome, UsageRecord, UsageSource};

/// The bucket of tenants beyond the configured limit.
pub const OTHER_TENANT: &str = "other";
/// Records without a resolved model (refused before one was chosen).
pub const NO_MODEL: &str = "none";

#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Totals {
    requests: f64,
    errors: f64,
    input_tokens: f64,
    output_tokens: f64,
    cost_usd: f64,
}

impl Totals {
    fn add(&mut self, record: &UsageRecord) {
        self.requests += 1.0;
        if matches!(record.outcome, UsageOutcome::Failed(_)) {
            self.errors += 1.0;
        }
        self.input_tokens += (record.input_tokens + record.cache_read_tokens + record.cache_write_tokens) as f64;
        self.output_tokens += record.output_tokens as f64;
        self.cost_usd += record.cost_usd;
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct QuotaUse {
    tokens: f64,
    calls: f64,
}

/// The datums of `minute`. `quotas` maps a quota's canonical ID (the ID Bedrock is called
/// with, as records name it) to its applied limits.
pub fn minute_datums(
    minute: Minute,
    usage: &MinuteUsage,
    quotas: &BTreeMap<String, Quota>,
    bedrock: &[BedrockMinute],
    config: &PublisherConfig,
) -> Vec<MetricDatum> {
    let at = minute.start_ms();
    let records = &usage.records;
    let mut all = Totals::default();
    let mut by_model: BTreeMap<(&str, &str), Totals> = BTreeMap::new();
    let mut by_tier: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, Totals> = BTreeMap::new();
    let mut by_quota: BTreeMap<&str, QuotaUse> = BTreeMap::new();
    let (mut hits, mut misses, mut goodput) = (0.0, 0.0, 0.0);
    let (mut avoided, mut received, mut refused) = (0.0, 0.0, 0.0);
    let (mut saved_cache, mut saved_routing, mut saved_batch) = (0.0, 0.0, 0.0);
    let mut latencies: BTreeMap<u64, f64> = BTreeMap::new();
    for record in records {
        all.add(record);
        let model = record.model_id.as_deref().unwrap_or(NO_MODEL);
        by_model.entry((model, record.source.as_str())).or_default().add(record);
        if let Some(tier) = record.tier {
            by_tier.entry(tier.as_str()).or_default().add(record);
        }
        by_tenant.entry(record.tenant.as_str()).or_default().add(record);
        if let Some(quota) = &record.quota {
            let used = by_quota.entry(quota.as_str()).or_default();
            used.tokens += record.quota_tokens as f64;
            used.calls += f64::from(record.model_calls);
        }
        match record.cache {
            Some(CacheResult::Hit) => hits += 1.0,
            Some(CacheResult::Miss) => misses += 1.0,
            _ => {}
        }
        if record.outcome == UsageOutcome::Answered {
            goodput += record.output_tokens as f64;
            // A batch answer waited for its job, hours perhaps: no request latency to speak of.
            if record.source != UsageSource::Batch {
                *latencies.entry(record.latency_ms).or_default() += 1.0;
            }
        }
        avoided += f64::from(record.throttles_avoided);
        received += f64::from(record.throttles_received);
        refused += if record.quota_refused { 1.0 } else { 0.0 };
        saved_cache += record.saved.cache_usd;
        saved_routing += record.saved.routing_usd;
        saved_batch += record.saved.batch_usd;
    }

    let mut datums = Vec::new();
    let single = |name, unit, value| MetricDatum::single(name, unit, at, value);
    datums.extend(totals(&all, &[], at));
    datums.push(single("CacheHits", Unit::Count, hits));
    datums.push(single("CacheMisses", Unit::Count, misses));
    if hits + misses > 0.0 {
        datums.push(single("CacheHitRate", Unit::Percent, 100.0 * hits / (hits + misses)));
    }
    datums.push(single("GoodputTokens", Unit::Count, goodput));
    datums.push(single("ThrottlesAvoided", Unit::Count, avoided));
    datums.push(single("ThrottlesReceived", Unit::Count, received));
    datums.push(single("QuotaRefusals", Unit::Count, refused));
    datums.push(single("SavedUsd", Unit::None, saved_cache + saved_routing + saved_batch));
    for (source, usd) in [("cache", saved_cache), ("routing", saved_routing), ("batch", saved_batch)] {
        datums.push(single("SavedUsd", Unit::None, usd).with("SavingsSource", source));
    }
    datums.push(single("UsageRecordsUnreadable", Unit::Count, usage.unreadable as f64));
    let weighted: Vec<(f64, f64)> = latencies.iter().map(|(ms, count)| (*ms as f64, *count)).collect();
    if !weighted.is_empty() {
        datums.extend(MetricDatum::distribution("Latency", Unit::Milliseconds, at, &[], &weighted));
    }
    for ((model, source), t) in &by_model {
        let dimensions = [("ModelId", (*model).to_string()), ("Source", (*source).to_string())];
        datums.extend(totals(t, &dimensions, at));
    }
    for (tier, t) in &by_tier {
        datums.extend(totals(t, &[("Tier", (*tier).to_string())], at));
    }
    for (tenant, t) in bounded_tenants(&by_tenant, config.tenant_limit) {
        let dimensions = [("Tenant", tenant)];
        datums.push(MetricDatum::single("Requests", Unit::Count, at, t.requests).with_all(&dimensions));
        datums.push(MetricDatum::single("CostUsd", Unit::None, at, t.cost_usd).with_all(&dimensions));
    }
    datums.extend(quota_datums(&by_quota, quotas, bedrock, at));
    datums
}

fn totals(t: &Totals, dimensions: &[(&'static str, String)], at: u64) -> Vec<MetricDatum> {
    [
        ("Requests", Unit::Count, t.requests),
        ("Errors", Unit::Count, t.errors),
        ("InputTokens", Unit::Count, t.input_tokens),
        ("OutputTokens", Unit::Count, t.output_tokens),
        ("CostUsd", Unit::None, t.cost_usd),
    ]
    .into_iter()
    .map(|(name, unit, value)| MetricDatum::single(name, unit, at, value).with_all(dimensions))
    .collect()
}

/// The `limit` costliest tenants by name, the rest summed under [`OTHER_TENANT`]: a tenant
/// dimension is one custom metric per value, so its cardinality is the bill's.
fn bounded_tenants(by_tenant: &BTreeMap<&str, Totals>, limit: usize) -> Vec<(String, Totals)> {
    let mut ranked: Vec<(&str, Totals)> = by_tenant.iter().map(|(t, totals)| (*t, *totals)).collect();
    ranked.sort_by(|a, b| {
        b.1.cost_usd.total_cmp(&a.1.cost_usd).then(b.1.requests.total_cmp(&a.1.requests)).then(a.0.cmp(b.0))
    });
    let mut named: Vec<(String, Totals)> = Vec::new();
    let mut other: Option<Totals> = None;
    for (index, (tenant, totals)) in ranked.into_iter().enumerate() {
        if index < limit && tenant != OTHER_TENANT {
            named.push((tenant.to_string(), totals));
        } else {
            let sum = other.get_or_insert_with(Totals::default);
            sum.requests += totals.requests;
            sum.errors += totals.errors;
            sum.input_tokens += totals.input_tokens;
            sum.output_tokens += totals.output_tokens;
            sum.cost_usd += totals.cost_usd;
        }
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.extend(other.map(|t| (OTHER_TENANT.to_string(), t)));
    named
}

/// Per quota with traffic this minute (the gateway's or, from Bedrock's own metrics,
/// anyone's): tokens and requests counted against it, and how much of the applied limit
/// that is. Bedrock's figures count every caller of the account, the gateway's only its own;
/// utilisation is taken from whichever is larger, so traffic around the gateway shows.
fn quota_datums(
    by_quota: &BTreeMap<&str, QuotaUse>,
    quotas: &BTreeMap<String, Quota>,
    bedrock: &[BedrockMinute],
    at: u64,
) -> Vec<MetricDatum> {
    let bedrock: BTreeMap<&str, &BedrockMinute> = bedrock.iter().map(|b| (b.model_id.as_str(), b)).collect();
    let mut ids: Vec<&str> = by_quota.keys().copied().collect();
    ids.extend(bedrock.iter().filter(|(_, b)| b.invocations > 0.0 || b.throttles > 0.0).map(|(id, _)| *id));
    ids.sort_unstable();
    ids.dedup();
    let mut datums = Vec::new();
    for id in ids {
        let dimensions = [("Quota", id.to_string())];
        let gateway = by_quota.get(id).copied().unwrap_or_default();
        let account = bedrock.get(id);
        let tokens = account.map_or(0.0, |b| b.input_tokens + b.output_tokens).max(gateway.tokens);
        let requests = account.map_or(0.0, |b| b.invocations).max(gateway.calls);
        let d = |name, unit, value| MetricDatum::single(name, unit, at, value).with_all(&dimensions);
        datums.push(d("QuotaTokens", Unit::Count, gateway.tokens));
        datums.push(d("QuotaRequests", Unit::Count, gateway.calls));
        if let Some(b) = account {
            datums.push(d("BedrockInvocations", Unit::Count, b.invocations));
            datums.push(d("BedrockThrottles", Unit::Count, b.throttles));
            datums.push(d("BedrockTokens", Unit::Count, b.input_tokens + b.output_tokens));
        }
        if let Some(quota) = quotas.get(id) {
            if quota.tpm > 0 {
                datums.push(d("TpmUtilization", Unit::Percent, 100.0 * tokens / quota.tpm as f64));
            }
            if let Some(rpm) = quota.rpm_limit().filter(|rpm| *rpm > 0) {
                datums.push(d("RpmUtilization", Unit::Percent, 100.0 * requests / rpm as f64));
            }
        }
    }
    datums
}

impl MetricDatum {
    fn with_all(mut self, dimensions: &[(&'static str, String)]) -> Self {
        self.dimensions.extend(dimensions.iter().cloned());
        self
    }
}
