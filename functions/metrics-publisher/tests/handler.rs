//! The handler driven by the sample events in `events/metrics-publisher/` over the in-memory
//! publisher ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use event_support::HandlerError;
use gateway_core::catalog::Catalog;
use gateway_core::deadline::Deadline;
use gateway_core::label::ErrorLabel;
use gateway_core::metrics::publish::memory::{MemoryPublisherPorts, SinkFault};
use gateway_core::metrics::publish::{Publisher, PublisherConfig};
use gateway_core::quota::QuotaTable;
use gateway_core::usage::{Minute, Savings, UsageLedger, UsageOutcome, UsageRecord, UsageSource};
use metrics_publisher::{Handler, PublishError, UNSTATED_DEADLINE, invocation_deadline};
use serde_json::Value;

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/metrics-publisher/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

const MINUTE: Minute = Minute(29_000_000);

fn handler() -> Handler<MemoryPublisherPorts> {
    let catalog = Catalog::embedded().unwrap();
    let config = PublisherConfig { catch_up: 2, ..PublisherConfig::default() };
    Handler::new(Publisher::new(MemoryPublisherPorts::default(), config, &QuotaTable::from_catalog(&catalog)))
}

/// Just after MINUTE closed.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(MINUTE.next().start_ms() + 100_000)
}

fn record(id: &str) -> UsageRecord {
    UsageRecord {
        request_id: id.into(),
        at_ms: MINUTE.start_ms() + 1_000,
        tenant: "acme".into(),
        source: UsageSource::Online,
        model_id: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
        tier: None,
        quota: Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".into()),
        outcome: UsageOutcome::Answered,
        cache: None,
        input_tokens: 10,
        output_tokens: 5,
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: 35,
        model_calls: 1,
        throttles_received: 0,
        throttles_avoided: 0,
        quota_refused: false,
        cost_usd: 0.5,
        saved: Savings::default(),
        latency_ms: 100,
    }
}

fn time_enough() -> Deadline {
    Deadline::after(Duration::from_secs(60))
}

#[tokio::test]
async fn the_schedule_publishes_the_closed_minutes_once() {
    let h = handler();
    h.publisher().ports().usage.record(&record("a")).await.unwrap();
    let summary = h.handle_event(event("scheduled.json"), now(), time_enough()).await.unwrap();
    assert_eq!(summary["minutesPublished"], serde_json::json!([MINUTE.0 - 1, MINUTE.0]));
    assert_eq!((summary["records"].as_u64(), summary["putMetricDataCalls"].as_u64()), (Some(1), Some(2)));
    let again = h.handle_event(event("scheduled.json"), now(), time_enough()).await.unwrap();
    assert_eq!(again["putMetricDataCalls"], 0);
    assert_eq!(h.publisher().ports().sink.sum("CostUsd", &[]), 0.5);
}

#[tokio::test]
async fn a_throttled_run_fails_so_the_alarm_sees_it_and_the_next_one_catches_up() {
    let h = handler();
    h.publisher().ports().sink.script([Some(SinkFault::Throttle)]);
    let error = h.handle_event(event("scheduled.json"), now(), time_enough()).await.unwrap_err();
    assert!(matches!(error, PublishError::Deferred { deferred: 2, published: 0, .. }), "{error}");
    assert_eq!(error.label(), ErrorLabel::Throttled);
    assert!(error.is_transient());
    let summary = h.handle_event(event("scheduled.json"), now(), time_enough()).await.unwrap();
    assert_eq!(summary["minutesPublished"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn another_event_is_refused_and_publishes_nothing() {
    let h = handler();
    let error = h.handle_event(event("not-scheduled.json"), now(), time_enough()).await.unwrap_err();
    assert!(matches!(error, PublishError::Event(_)) && !error.is_transient(), "{error}");
    assert!(h.publisher().ports().sink.calls().is_empty());
}

#[tokio::test]
async fn a_run_out_of_time_fails_and_leaves_its_minutes_to_the_next() {
    let h = handler();
    let error = h.handle_event(event("scheduled.json"), now(), Deadline::after(Duration::ZERO)).await.unwrap_err();
    assert!(matches!(error, PublishError::Deferred { deferred: 2, published: 0, .. }), "{error}");
    assert_eq!(error.label(), ErrorLabel::Timeout);
    let summary = h.handle_event(event("scheduled.json"), now(), time_enough()).await.unwrap();
    assert_eq!(summary["minutesPublished"].as_array().unwrap().len(), 2);
}

#[test]
fn a_deadline_already_past_at_the_start_is_no_deadline() {
    let now = SystemTime::now();
    // cargo lambda's local runtime states 600,000 ms after the epoch for every invocation.
    let local = invocation_deadline(UNIX_EPOCH + Duration::from_millis(600_000), now);
    assert!(local.remaining() > UNSTATED_DEADLINE - Duration::from_secs(1));
    let lambda = invocation_deadline(now + Duration::from_secs(30), now);
    assert!(lambda.remaining() <= Duration::from_secs(30) && lambda.remaining() > Duration::from_secs(29));
}
