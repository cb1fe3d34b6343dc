//! [`UsageLedger`] and the publisher's [`PublishLog`] over `aws-sdk-dynamodb`, in one table
//! keyed by `pk` and `sk` (strings), with TTL on `expires_at`.
//!
//! - A usage record: `pk` = `usage#<minute>#<shard>`, `sk` = `<source>#<request ID>`, one
//!   attribute per field. A minute is spread over [`SHARDS`] partition keys by a hash of the
//!   request ID: DynamoDB serves about 1,000 writes a second per key, and a busy minute has
//!   more. Written with `attribute_not_exists`, so a retried write stores nothing twice.
//! - A minute's publish progress: `pk` = `publish#<minute>`, `sk` = `progress`, the number set
//!   `calls` of the PutMetricData calls sent and `done`.
//!
//! Both expire after [`KEEP`]: CloudWatch takes no datum older than two weeks, so nothing
//! older can be published anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::catalog::Tier;
use crate::label::ErrorLabel;
use crate::metrics::publish::{MinuteProgress, PublishLog, PublishLogError};
use crate::service::CacheResult;
use crate::usage::{Minute, MinuteUsage, Savings, UsageError, UsageLedger, UsageOutcome, UsageRecord, UsageSource};

pub const SHARDS: u64 = 16;
pub const KEEP: Duration = Duration::from_secs(15 * 24 * 3600);
const PK: &str = "pk";
const SK: &str = "sk";
const EXPIRES_AT: &str = "expires_at";
const PROGRESS_SK: &str = "progress";
/// BatchGetItem's limit.
const KEYS_PER_BATCH_GET: usize = 100;

#[derive(Debug, Clone)]
pub struct DynamoUsageStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoUsageStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table_name: String) -> Self {
        DynamoUsageStore { client, table: table_name }
    }
}

/// FNV-1a: stable across processes and releases, unlike std's hasher.
fn shard(request_id: &str) -> u64 {
    let hash =
        request_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    hash % SHARDS
}

fn usage_pk(minute: Minute, shard: u64) -> String {
    format!("usage#{}#{shard:02}", minute.0)
}

fn publish_pk(minute: Minute) -> String {
    format!("publish#{}", minute.0)
}

fn expires_at(minute: Minute) -> AttributeValue {
    n((minute.start_ms() / 1_000).saturating_add(KEEP.as_secs()))
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// What the SDK error was, and whether retrying later may help.
fn describe<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    error: &SdkError<E>,
) -> (bool, String) {
    let detail = match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("")),
        None => error.to_string(),
    };
    let throttled = matches!(
        error.code(),
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException")
    );
    (throttled, detail)
}

fn usage_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(error: SdkError<E>) -> UsageError {
    match describe(&error) {
        (true, detail) => UsageError::Throttled(detail),
        (false, detail) => UsageError::Store(detail),
    }
}

fn log_error<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(
    error: SdkError<E>,
) -> PublishLogError {
    match describe(&error) {
        (true, detail) => PublishLogError::Throttled(detail),
        (false, detail) => PublishLogError::Store(detail),
    }
}

fn source_from(text: &str) -> Option<UsageSource> {
    [UsageSource::Online, UsageSource::Batch, UsageSource::BatchOnDemand].into_iter().find(|s| s.as_str() == text)
}

fn cache_from(text: &str) -> Option<CacheResult> {
    [CacheResult::Hit, CacheResult::Miss, CacheResult::Bypass].into_iter().find(|c| c.as_str() == text)
}

fn encode(record: &UsageRecord) -> HashMap<String, AttributeValue> {
    let minute = record.minute();
    let mut item = HashMap::from([
        (PK.to_owned(), s(usage_pk(minute, shard(&record.request_id)))),
        (SK.to_owned(), s(format!("{}#{}", record.source.as_str(), record.request_id))),
        (EXPIRES_AT.to_owned(), expires_at(minute)),
        ("request_id".to_owned(), s(record.request_id.clone())),
        ("at_ms".to_owned(), n(record.at_ms)),
        ("tenant".to_owned(), s(record.tenant.clone())),
        ("source".to_owned(), s(record.source.as_str())),
        (
            "outcome".to_owned(),
            s(match record.outcome {
                UsageOutcome::Answered => "answered",
                UsageOutcome::Failed(label) => label.as_str(),
            }),
        ),
        ("input_tokens".to_owned(), n(record.input_tokens)),
        ("output_tokens".to_owned(), n(record.output_tokens)),
        ("cache_read_tokens".to_owned(), n(record.cache_read_tokens)),
        ("cache_write_tokens".to_owned(), n(record.cache_write_tokens)),
        ("quota_tokens".to_owned(), n(record.quota_tokens)),
        ("model_calls".to_owned(), n(record.model_calls)),
        ("throttles_received".to_owned(), n(record.throttles_received)),
        ("throttles_avoided".to_owned(), n(record.throttles_avoided)),
        ("quota_refused".to_owned(), AttributeValue::Bool(record.quota_refused)),
        ("cost_usd".to_owned(), n(record.cost_usd)),
        ("saved_cache_usd".to_owned(), n(record.saved.cache_usd)),
        ("saved_routing_usd".to_owned(), n(record.saved.routing_usd)),
        ("saved_batch_usd".to_owned(), n(record.saved.batch_usd)),
        ("latency_ms".to_owned(), n(record.latency_ms)),
    ]);
    let optional = [
        ("model_id", record.model_id.clone()),
        ("tier", record.tier.map(|t| t.as_str().to_owned())),
        ("quota", record.quota.clone()),
        ("cache", record.cache.map(|c| c.as_str().to_owned())),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), s(value));
        }
    }
    item
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<UsageRecord, String> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let required = |name: &str| text(name).ok_or_else(|| format!("`{name}` is missing or not a string"));
    let whole = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("`{name}` is missing or not a whole number"))
    };
    let small = |name: &str| whole(name).and_then(|v| u32::try_from(v).map_err(|_| format!("`{name}` is too large")));
    let real = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("`{name}` is missing or not a number"))
    };
    let source = required("source")?;
    let outcome = required("outcome")?;
    Ok(UsageRecord {
        request_id: required("request_id")?,
        at_ms: whole("at_ms")?,
        tenant: required("tenant")?,
        source: source_from(&source).ok_or_else(|| format!("unknown source `{source}`"))?,
        model_id: text("model_id"),
        tier: text("tier").map(|t| t.parse::<Tier>().map_err(|_| format!("unknown tier `{t}`"))).transpose()?,
        quota: text("quota"),
        outcome: match outcome.as_str() {
            "answered" => UsageOutcome::Answered,
            label => {
                UsageOutcome::Failed(ErrorLabel::parse(label).ok_or_else(|| format!("unknown outcome `{label}`"))?)
            }
        },
        cache: text("cache")
            .map(|c| cache_from(&c).ok_or_else(|| format!("unknown cache result `{c}`")))
            .transpose()?,
        input_tokens: whole("input_tokens")?,
        output_tokens: whole("output_tokens")?,
        cache_read_tokens: whole("cache_read_tokens")?,
        cache_write_tokens: whole("cache_write_tokens")?,
        quota_tokens: whole("quota_tokens")?,
        model_calls: small("model_calls")?,
        throttles_received: small("throttles_received")?,
        throttles_avoided: small("throttles_avoided")?,
        quota_refused: item.get("quota_refused").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        cost_usd: real("cost_usd")?,
        saved: Savings {
            cache_usd: real("saved_cache_usd")?,
            routing_usd: real("saved_routing_usd")?,
            batch_usd: real("saved_batch_usd")?,
        },
        latency_ms: whole("latency_ms")?,
    })
}

impl UsageLedger for DynamoUsageStore {
    async fn record(&self, record: &UsageRecord) -> Result<(), UsageError> {
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(record)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(()),
            // Stored by an earlier try: the record is keyed by what it is.
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(usage_error(e)),
        }
    }

    async fn minute(&self, minute: Minute) -> Result<MinuteUsage, UsageError> {
        let mut usage = MinuteUsage::default();
        for shard in 0..SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", s(usage_pk(minute, shard)))
                .consistent_read(true)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(usage_error)?;
                match decode(&item) {
                    Ok(record) => usage.records.push(record),
                    Err(why) => {
                        let key = item.get(SK).and_then(|v| v.as_s().ok()).map_or("?", String::as_str);
                        tracing::warn!(minute = minute.0, shard, sk = key, error = %why, "usage record does not parse; skipped");
                        usage.unreadable += 1;
                    }
                }
            }
        }
        Ok(usage)
    }
}

fn progress_key(minute: Minute) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_owned(), s(publish_pk(minute))), (SK.to_owned(), s(PROGRESS_SK))])
}

fn decode_progress(item: &HashMap<String, AttributeValue>) -> Option<(Minute, MinuteProgress)> {
    let minute = item.get(PK)?.as_s().ok()?.strip_prefix("publish#")?.parse().ok().map(Minute)?;
    let calls_done: BTreeSet<u32> = item
        .get("calls")
        .and_then(|v| v.as_ns().ok())
        .map(|ns| ns.iter().filter_map(|c| c.parse().ok()).collect())
        .unwrap_or_default();
    let done = item.get("done").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false);
    Some((minute, MinuteProgress { calls_done, done }))
}

impl PublishLog for DynamoUsageStore {
    async fn progress(&self, minutes: &[Minute]) -> Result<BTreeMap<Minute, MinuteProgress>, PublishLogError> {
        let mut found = BTreeMap::new();
        for batch in minutes.chunks(KEYS_PER_BATCH_GET) {
            let keys: Vec<_> = batch.iter().map(|m| progress_key(*m)).collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| PublishLogError::Store(e.to_string()))?;
            // BatchGetItem may answer part of the keys (throttling, size): ask again for the rest.
            for _attempt in 0..8 {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request.clone())
                    .send()
                    .await
                    .map_err(log_error)?;
                for item in output.responses.as_ref().and_then(|r| r.get(&self.table)).into_iter().flatten() {
                    if let Some((minute, progress)) = decode_progress(item) {
                        found.insert(minute, progress);
                    }
                }
                match output.unprocessed_keys.and_then(|mut u| u.remove(&self.table)) {
                    Some(rest) if !rest.keys.is_empty() => request = rest,
                    _ => break,
                }
            }
        }
        Ok(found)
    }

    async fn mark_call(&self, minute: Minute, call: u32) -> Result<(), PublishLogError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(progress_key(minute)))
            .update_expression("ADD #calls :call SET #expires = :expires")
            .expression_attribute_names("#calls", "calls")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":call", AttributeValue::Ns(vec![call.to_string()]))
            .expression_attribute_values(":expires", expires_at(minute))
            .send()
            .await
            .map_err(log_error)?;
        Ok(())
    }

    async fn mark_done(&self, minute: Minute) -> Result<(), PublishLogError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(progress_key(minute)))
            .update_expression("SET #done = :done, #expires = :expires")
            .expression_attribute_names("#done", "done")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":done", AttributeValue::Bool(true))
            .expression_attribute_values(":expires", expires_at(minute))
            .send()
            .await
            .map_err(log_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> UsageRecord {
        UsageRecord {
            request_id: "req-1".into(),
            at_ms: 1_740_000_030_000,
            tenant: "acme".into(),
            source: UsageSource::BatchOnDemand,
            model_id: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
            tier: Some(Tier::Haiku),
            quota: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
            outcome: UsageOutcome::Failed(ErrorLabel::Throttled),
            cache: Some(CacheResult::Miss),
            input_tokens: 10,
            output_tokens: 0,
            cache_read_tokens: 3,
            cache_write_tokens: 4,
            quota_tokens: 17,
            model_calls: 2,
            throttles_received: 2,
            throttles_avoided: 1,
            quota_refused: false,
            cost_usd: 0.25,
            saved: Savings { cache_usd: 0.0, routing_usd: 0.125, batch_usd: 0.5 },
            latency_ms: 321,
        }
    }

    #[test]
    fn a_record_survives_the_item_codec() {
        let original = record();
        assert_eq!(decode(&encode(&original)), Ok(original.clone()));
        let bare = UsageRecord {
            model_id: None,
            tier: None,
            quota: None,
            cache: None,
            outcome: UsageOutcome::Answered,
            ..original
        };
        assert_eq!(decode(&encode(&bare)), Ok(bare));
    }

    #[test]
    fn a_broken_item_names_what_is_wrong() {
        let mut item = encode(&record());
        item.insert("tier".into(), s("gigantic"));
        assert!(decode(&item).is_err_and(|e| e.contains("gigantic")));
        let mut item = encode(&record());
        item.remove("latency_ms");
        assert!(decode(&item).is_err_and(|e| e.contains("latency_ms")));
    }

    #[test]
    fn records_spread_over_every_shard_and_keep_their_minute() {
        let shards: BTreeSet<u64> = (0..1_000).map(|i| shard(&format!("req-{i}"))).collect();
        assert_eq!(shards.len() as u64, SHARDS);
        let item = encode(&record());
        let pk = item[PK].as_s().unwrap();
        assert!(pk.starts_with(&format!("usage#{}#", record().minute().0)), "{pk}");
    }
}
