//! The DynamoDB usage store and publish log against moto through the real SDK: idempotent
//! writes, a minute read back across its shards and pages, unreadable items counted, and the
//! publish progress the metrics publisher resumes from.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use aws_sdk_dynamodb::types::AttributeValue;
use gateway_core::adapters::usage_store::DynamoUsageStore;
use gateway_core::catalog::Tier;
use gateway_core::metrics::publish::PublishLog;
use gateway_core::service::CacheResult;
use gateway_core::usage::{Minute, Savings, UsageLedger, UsageOutcome, UsageRecord, UsageSource};
use integration_tests::{dynamodb, usage_table};

const MINUTE: Minute = Minute(29_000_000);

/// A fresh table with UsageTable's keys.
async fn store() -> (DynamoUsageStore, aws_sdk_dynamodb::Client, String) {
    let client = dynamodb().await;
    let name = usage_table(&client).await;
    (DynamoUsageStore::new(client.clone(), name.clone()), client, name)
}

fn record(id: &str, minute: Minute) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        at_ms: minute.start_ms() + 59_999,
        tenant: "acme".into(),
        source: UsageSource::Online,
        model_id: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
        tier: Some(Tier::Haiku),
        quota: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
        outcome: UsageOutcome::Answered,
        cache: Some(CacheResult::Miss),
        input_tokens: 1_200,
        output_tokens: 300,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: 2_700,
        model_calls: 1,
        throttles_received: 0,
        throttles_avoided: 1,
        quota_refused: false,
        cost_usd: 0.0027,
        saved: Savings { routing_usd: 0.0081, ..Savings::default() },
        latency_ms: 870,
    }
}

#[tokio::test]
async fn a_minute_reads_back_every_record_once_and_counts_what_does_not_parse() {
    let (store, client, table) = store().await;
    // Enough records, with padding, for more than one 1 MB query page on some shard.
    let padding = "x".repeat(300);
    for i in 0..400 {
        let mut r = record(&format!("req-{i:04}"), MINUTE);
        r.tenant = format!("tenant-{}-{padding}", i % 7);
        store.record(&r).await.unwrap();
    }
    // A retried write and the neighbouring minutes change nothing.
    store.record(&record("req-0001", MINUTE)).await.unwrap();
    store.record(&record("req-next", MINUTE.next())).await.unwrap();
    store.record(&record("req-prev", Minute(MINUTE.0 - 1))).await.unwrap();
    // An item some older or newer writer left that this one cannot read.
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S(format!("usage#{}#03", MINUTE.0)))
        .item("sk", AttributeValue::S("online#broken".into()))
        .item("source", AttributeValue::S("carrier-pigeon".into()))
        .send()
        .await
        .unwrap();

    let minute = store.minute(MINUTE).await.unwrap();
    assert_eq!((minute.records.len(), minute.unreadable), (400, 1));
    let first = minute.records.iter().find(|r| r.request_id == "req-0001").unwrap();
    assert_eq!(first.tenant, format!("tenant-1-{padding}"), "the first write stands");
    assert_eq!((first.saved.routing_usd, first.latency_ms), (0.0081, 870));
    assert_eq!(store.minute(MINUTE.next()).await.unwrap().records.len(), 1);
}

#[tokio::test]
async fn publish_progress_is_kept_per_minute_and_call() {
    let (store, _, _) = store().await;
    let minutes: Vec<Minute> = (0..150).map(|i| Minute(MINUTE.0 + i)).collect();
    assert!(store.progress(&minutes).await.unwrap().is_empty());
    store.mark_call(MINUTE, 0).await.unwrap();
    store.mark_call(MINUTE, 2).await.unwrap();
    store.mark_call(MINUTE, 2).await.unwrap();
    store.mark_done(Minute(MINUTE.0 + 120)).await.unwrap();
    // 150 minutes take two BatchGetItem calls.
    let progress = store.progress(&minutes).await.unwrap();
    assert_eq!(progress.len(), 2);
    assert_eq!(progress[&MINUTE].calls_done.iter().copied().collect::<Vec<_>>(), [0, 2]);
    assert!(!progress[&MINUTE].done);
    assert!(progress[&Minute(MINUTE.0 + 120)].done);
}
