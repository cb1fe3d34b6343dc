#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use super::memory::{MemoryPublisherPorts, SinkFault};
use super::*;
use crate::catalog::{Catalog, Tier};
use crate::service::CacheResult;
use crate::usage::{Savings, UsageOutcome, UsageRecord, UsageSource};

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
/// 10:00:00 UTC on some day, as a minute.
const MINUTE: Minute = Minute(29_000_000);

fn record(id: &str, tenant: &str) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        at_ms: MINUTE.start_ms() + 30_000,
        tenant: tenant.into(),
        source: UsageSource::Online,
        model_id: Some(HAIKU.into()),
        tier: Some(Tier::Haiku),
        quota: Some(HAIKU.into()),
        outcome: UsageOutcome::Answered,
        cache: Some(CacheResult::Miss),
        input_tokens: 100,
        output_tokens: 50,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: 350,
        model_calls: 1,
        throttles_received: 0,
        throttles_avoided: 0,
        quota_refused: false,
        cost_usd: 0.001,
        saved: Savings::default(),
        latency_ms: 120,
    }
}

fn publisher(config: PublisherConfig) -> Publisher<MemoryPublisherPorts> {
    let catalog = Catalog::embedded().unwrap();
    Publisher::new(MemoryPublisherPorts::default(), config, &QuotaTable::from_catalog(&catalog))
}

/// A run just after `MINUTE` closed, with time to spare.
async fn run(p: &Publisher<MemoryPublisherPorts>) -> PublishReport {
    let now = MINUTE.next().start_ms() + 100_000;
    p.run(now, Deadline::after(Duration::from_secs(60))).await.unwrap()
}

fn one_minute() -> PublisherConfig {
    PublisherConfig { catch_up: 1, ..PublisherConfig::default() }
}

async fn store(p: &Publisher<MemoryPublisherPorts>, records: impl IntoIterator<Item = UsageRecord>) {
    for r in records {
        p.ports().usage.record(&r).await.unwrap();
    }
}

#[tokio::test]
async fn a_minute_is_summed_by_model_tier_tenant_and_cache() {
    let p = publisher(one_minute());
    let mut hit = record("b", "acme");
    hit.cache = Some(CacheResult::Hit);
    (hit.input_tokens, hit.output_tokens, hit.cost_usd, hit.model_calls, hit.quota_tokens) = (0, 0, 0.0, 0, 0);
    hit.saved.cache_usd = 0.001;
    let mut failed = record("c", "globex");
    failed.outcome = UsageOutcome::Failed(crate::label::ErrorLabel::Throttled);
    (failed.output_tokens, failed.throttles_received) = (0, 2);
    store(&p, [record("a", "acme"), hit, failed]).await;
    let report = run(&p).await;
    assert_eq!((report.minutes_published.clone(), report.records, report.calls), (vec![MINUTE], 3, 1));
    let sink = &p.ports().sink;
    assert_eq!(sink.calls()[0].0, "BedrockGateway");
    assert_eq!(sink.sum("Requests", &[]), 3.0);
    assert_eq!(sink.sum("Errors", &[]), 1.0);
    let rate = sink.sum("CacheHitRate", &[]);
    assert!((rate - 100.0 / 3.0).abs() < 1e-9, "one HIT of three lookups, the failed MISS included: {rate}");
    assert_eq!(sink.sum("GoodputTokens", &[]), 50.0, "answered output only");
    assert_eq!(sink.sum("ThrottlesReceived", &[]), 2.0);
    assert_eq!(sink.sum("SavedUsd", &[("SavingsSource", "cache")]), 0.001);
    assert_eq!(sink.sum("Requests", &[("Tenant", "acme")]), 2.0);
    assert!((sink.sum("CostUsd", &[("ModelId", HAIKU), ("Source", "online")]) - 0.002).abs() < 1e-12);
    assert_eq!(sink.sum("InputTokens", &[("Tier", "haiku")]), 200.0);
    // Latency is a distribution of the answered requests: two at 120 ms.
    assert_eq!(sink.sum("Latency", &[]), 240.0);
}

#[tokio::test]
async fn tenants_beyond_the_limit_are_summed_as_other() {
    let p = publisher(PublisherConfig { tenant_limit: 2, ..one_minute() });
    let records = (0..5).map(|i| {
        let mut r = record(&format!("r{i}"), &format!("tenant-{i}"));
        r.cost_usd = f64::from(i + 1);
        r
    });
    store(&p, records).await;
    run(&p).await;
    let sink = &p.ports().sink;
    let tenants: Vec<String> = sink.calls()[0]
        .1
        .iter()
        .filter(|d| d.name == "CostUsd")
        .filter_map(|d| d.dimensions.iter().find(|(n, _)| *n == "Tenant").map(|(_, v)| v.clone()))
        .collect();
    assert_eq!(tenants, ["tenant-3", "tenant-4", OTHER_TENANT], "the two costliest by name, the rest summed");
    assert_eq!(sink.sum("CostUsd", &[("Tenant", OTHER_TENANT)]), 6.0);
    assert_eq!(sink.sum("CostUsd", &[]), 15.0);
}

#[tokio::test]
async fn utilisation_is_against_the_applied_quota_and_sees_traffic_around_the_gateway() {
    let p = publisher(one_minute());
    let quota = Catalog::embedded().unwrap();
    let quota =
        QuotaTable::from_catalog(&quota).iter().find(|(k, _)| k.to_string() == HAIKU).map(|(_, l)| l.quota).unwrap();
    store(&p, [record("a", "acme")]).await;
    let around = BedrockMinute {
        model_id: HAIKU.into(),
        invocations: 4.0,
        throttles: 1.0,
        input_tokens: 1_000.0,
        output_tokens: 200.0,
    };
    p.ports().bedrock.set(MINUTE, vec![around]);
    run(&p).await;
    let sink = &p.ports().sink;
    let q = [("Quota", HAIKU)];
    assert_eq!(sink.sum("QuotaTokens", &q), 350.0);
    assert_eq!(sink.sum("BedrockThrottles", &q), 1.0);
    let tpm = sink.sum("TpmUtilization", &q);
    assert!((tpm - 100.0 * 1_200.0 / quota.tpm as f64).abs() < 1e-9, "Bedrock saw more than the gateway sent: {tpm}");
    let rpm = sink.sum("RpmUtilization", &q);
    assert!((rpm - 100.0 * 4.0 / quota.rpm as f64).abs() < 1e-9);
}

#[tokio::test]
async fn a_second_run_publishes_nothing_twice() {
    let p = publisher(PublisherConfig { catch_up: 3, ..PublisherConfig::default() });
    store(&p, [record("a", "acme")]).await;
    let first = run(&p).await;
    assert_eq!(first.minutes_published.len(), 3, "empty minutes are published too: zero is a figure");
    let second = run(&p).await;
    assert!(second.minutes_published.is_empty() && second.calls == 0);
    assert_eq!(p.ports().sink.sum("Requests", &[]), 1.0);
}

#[tokio::test]
async fn a_throttled_call_is_sent_by_the_next_run_and_the_sent_ones_are_not() {
    // 1,200 tenants make more than one call's worth of datums.
    let many = || (0..1_200).map(|i| record(&format!("r{i}"), &format!("t{i:04}")));
    let clean = publisher(PublisherConfig { tenant_limit: 2_000, ..one_minute() });
    store(&clean, many()).await;
    let clean_report = run(&clean).await;
    assert!(clean_report.calls >= 3, "{clean_report:?}");

    let p = publisher(PublisherConfig { tenant_limit: 2_000, ..one_minute() });
    store(&p, many()).await;
    p.ports().sink.script([None, Some(SinkFault::Throttle)]);
    let first = run(&p).await;
    assert_eq!(
        (first.calls, first.minutes_deferred.clone(), first.stopped_by),
        (1, vec![MINUTE], Some(ErrorLabel::Throttled))
    );
    let second = run(&p).await;
    assert_eq!((second.calls_skipped, second.minutes_published.clone()), (1, vec![MINUTE]));
    assert_eq!(second.calls + first.calls, clean_report.calls);
    for name in ["Requests", "CostUsd", "InputTokens"] {
        assert_eq!(p.ports().sink.sum(name, &[]), clean.ports().sink.sum(name, &[]), "{name}");
    }
    assert_eq!(p.ports().sink.sum("Requests", &[("Tenant", "t0999")]), 1.0);
}

#[tokio::test]
async fn a_refused_call_is_counted_and_does_not_hold_the_minute_back() {
    let p = publisher(one_minute());
    store(&p, [record("a", "acme")]).await;
    p.ports().sink.script([Some(SinkFault::Reject)]);
    let report = run(&p).await;
    assert_eq!((report.calls_rejected, report.minutes_published.clone()), (1, vec![MINUTE]));
    assert!(run(&p).await.minutes_published.is_empty());
}

#[tokio::test]
async fn bedrock_metrics_unreadable_defers_the_minute_whole() {
    let p = publisher(one_minute());
    store(&p, [record("a", "acme")]).await;
    p.ports().bedrock.fail(true);
    let report = run(&p).await;
    assert_eq!((report.calls, report.minutes_deferred.clone()), (0, vec![MINUTE]));
    p.ports().bedrock.fail(false);
    assert_eq!(run(&p).await.minutes_published, vec![MINUTE]);
    assert_eq!(p.ports().sink.sum("Requests", &[]), 1.0);
}

#[tokio::test]
async fn unreadable_records_are_counted_and_published() {
    let p = publisher(one_minute());
    p.ports().usage.add_unreadable(MINUTE, 3);
    let report = run(&p).await;
    assert_eq!(report.unreadable_records, 3);
    assert_eq!(p.ports().sink.sum("UsageRecordsUnreadable", &[]), 3.0);
}

#[tokio::test]
async fn with_too_little_time_left_minutes_wait_for_the_next_run() {
    let p = publisher(PublisherConfig { catch_up: 2, ..PublisherConfig::default() });
    let now = MINUTE.next().start_ms() + 100_000;
    let report = p.run(now, Deadline::after(Duration::from_secs(1))).await.unwrap();
    assert_eq!((report.minutes_published.len(), report.minutes_deferred.len()), (0, 2));
}

#[test]
fn only_settled_minutes_are_closed_and_catch_up_bounds_how_far_back() {
    let p = publisher(PublisherConfig { settle: Duration::from_secs(90), catch_up: 3, ..PublisherConfig::default() });
    // 89 s after MINUTE ended its records may still be arriving.
    assert_eq!(p.closed_minutes(MINUTE.next().start_ms() + 89_000).last(), Some(&Minute(MINUTE.0 - 1)));
    let closed = p.closed_minutes(MINUTE.next().start_ms() + 90_000);
    assert_eq!(closed, vec![Minute(MINUTE.0 - 2), Minute(MINUTE.0 - 1), MINUTE]);
    assert!(p.closed_minutes(10_000).is_empty());
}
