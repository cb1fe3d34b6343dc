//! The metrics publisher over its real adapters: usage and progress in DynamoDB (moto),
//! figures in the emulator's CloudWatch through the current `aws-sdk-cloudwatch`
//! (RPCv2-CBOR). What CloudWatch holds afterwards is read back with the same SDK, as a
//! dashboard or an alarm would read it; throttling and outages defer a minute, which a later
//! run publishes without counting anything twice.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use bedrock_emulator::RunningEmulator;
use gateway_core::adapters::cloudwatch::CloudWatchMetrics;
use gateway_core::adapters::publisher::AwsPublisherPorts;
use gateway_core::adapters::usage_store::DynamoUsageStore;
use gateway_core::catalog::{Catalog, Tier};
use gateway_core::deadline::Deadline;
use gateway_core::label::ErrorLabel;
use gateway_core::metrics::Unit;
use gateway_core::metrics::publish::{
    BedrockMetrics, MetricDatum, MetricSink, MetricsError, Publisher, PublisherConfig,
};
use gateway_core::quota::limits::QuotaTable;
use gateway_core::service::CacheResult;
use gateway_core::usage::{Minute, Savings, UsageLedger, UsageOutcome, UsageRecord, UsageSource};
use integration_tests::{bedrock, dynamodb, emulator, emulator_stats, sdk_defaults, usage_table};

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const NAMESPACE: &str = "GatewayPublisherTest";

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A recent closed minute: CloudWatch takes no datum older than two weeks.
fn recent_minute() -> Minute {
    Minute(Minute::of_ms(now_ms()).0 - 3)
}

/// A client of the emulator's CloudWatch making `attempts` attempts per call.
async fn cloudwatch(emulator: &RunningEmulator, attempts: u32) -> aws_sdk_cloudwatch::Client {
    let config = sdk_defaults().endpoint_url(emulator.cloudwatch_url()).load().await;
    aws_sdk_cloudwatch::Client::from_conf(
        aws_sdk_cloudwatch::config::Builder::from(&config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts))
            .build(),
    )
}

/// `PUT /_emulator/cloudwatch/faults/{operation}` on the emulator's CloudWatch port.
async fn fault(emulator: &RunningEmulator, operation: &str, error: &str, count: u32) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = emulator.cloudwatch_url().trim_start_matches("http://").to_string();
    let body = format!(r#"{{"error":"{error}","count":{count}}}"#);
    let request = format!(
        "PUT /_emulator/cloudwatch/faults/{operation} HTTP/1.0\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.") && reply.contains(" 200 "), "fault not set: {reply}");
}

async fn usage_store() -> DynamoUsageStore {
    let client = dynamodb().await;
    let name = usage_table(&client).await;
    DynamoUsageStore::new(client, name)
}

fn record(id: usize, minute: Minute, tenant: &str, cache: CacheResult) -> UsageRecord {
    let hit = cache == CacheResult::Hit;
    UsageRecord {
        request_id: format!("req-{id:04}"),
        at_ms: minute.start_ms() + 1_000 + id as u64,
        tenant: tenant.into(),
        source: UsageSource::Online,
        model_id: Some(HAIKU.into()),
        tier: Some(Tier::Haiku),
        quota: (!hit).then(|| HAIKU.into()),
        outcome: UsageOutcome::Answered,
        cache: Some(cache),
        input_tokens: if hit { 0 } else { 1_000 },
        output_tokens: if hit { 0 } else { 200 },
        cache_read_tokens: 0,
        cache_write_tokens: 0,
        quota_tokens: if hit { 0 } else { 2_000 },
        model_calls: u32::from(!hit),
        throttles_received: 0,
        throttles_avoided: 0,
        quota_refused: false,
        cost_usd: if hit { 0.0 } else { 0.002 },
        saved: if hit { Savings { cache_usd: 0.002, ..Savings::default() } } else { Savings::default() },
        latency_ms: 100 + id as u64,
    }
}

fn publisher(store: DynamoUsageStore, metrics: CloudWatchMetrics) -> Publisher<AwsPublisherPorts> {
    let config = PublisherConfig {
        namespace: NAMESPACE.into(),
        settle: Duration::from_secs(10),
        catch_up: 5,
        ..PublisherConfig::default()
    };
    let catalog = Catalog::embedded().unwrap();
    Publisher::new(AwsPublisherPorts { store, cloudwatch: metrics }, config, &QuotaTable::from_catalog(&catalog))
}

/// The sum over `minute` of one metric, as GetMetricData computes it.
async fn stat(
    client: &aws_sdk_cloudwatch::Client,
    minute: Minute,
    metric: &str,
    dimensions: &[(&str, &str)],
    statistic: &str,
) -> Vec<f64> {
    let mut builder = Metric::builder().namespace(NAMESPACE).metric_name(metric);
    for (name, value) in dimensions {
        builder = builder.dimensions(Dimension::builder().name(*name).value(*value).build());
    }
    let query = MetricDataQuery::builder()
        .id("q")
        .metric_stat(MetricStat::builder().metric(builder.build()).period(60).stat(statistic).build())
        .build();
    let output = client
        .get_metric_data()
        .metric_data_queries(query)
        .start_time(DateTime::from_millis(minute.start_ms() as i64))
        .end_time(DateTime::from_millis(minute.next().start_ms() as i64))
        .send()
        .await
        .unwrap();
    output.metric_data_results()[0].values().to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_minute_of_usage_lands_in_cloudwatch_once_with_its_figures() {
    let emulator = emulator(|_| {}).await;
    let client = cloudwatch(&emulator, 3).await;
    let store = usage_store().await;
    let minute = recent_minute();
    for i in 0..30 {
        let (tenant, cache) = match i % 3 {
            0 => ("acme", CacheResult::Hit),
            1 => ("acme", CacheResult::Miss),
            _ => ("globex", CacheResult::Miss),
        };
        store.record(&record(i, minute, tenant, cache)).await.unwrap();
    }
    let publisher = publisher(store, CloudWatchMetrics::new(client.clone()));
    let now = minute.next().start_ms() + 11_000;

    let report = publisher.run(now, Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!(report.stopped_by, None);
    assert!(report.minutes_published.contains(&minute), "{report:?}");
    assert_eq!(report.records, 30);
    assert_eq!(report.calls as usize, report.minutes_published.len(), "one call a minute: {report:?}");

    assert_eq!(stat(&client, minute, "Requests", &[], "Sum").await, [30.0]);
    assert_eq!(stat(&client, minute, "CacheHits", &[], "Sum").await, [10.0]);
    assert_eq!(stat(&client, minute, "CacheHitRate", &[], "Average").await, [100.0 * 10.0 / 30.0]);
    let acme = stat(&client, minute, "CostUsd", &[("Tenant", "acme")], "Sum").await;
    assert!((acme[0] - 10.0 * 0.002).abs() < 1e-12, "{acme:?}");
    assert_eq!(stat(&client, minute, "Requests", &[("Tenant", "globex")], "Sum").await, [10.0]);
    let saved = stat(&client, minute, "SavedUsd", &[("SavingsSource", "cache")], "Sum").await;
    assert!((saved[0] - 0.02).abs() < 1e-12, "{saved:?}");
    // Latencies 100..=129 ms, one each: the distribution's median as CloudWatch computes it.
    let p50 = stat(&client, minute, "Latency", &[], "p50").await;
    assert!((113.0..=116.0).contains(&p50[0]), "{p50:?}");
    let quota_tokens = stat(&client, minute, "QuotaTokens", &[("Quota", HAIKU)], "Sum").await;
    assert_eq!(quota_tokens, [20.0 * 2_000.0]);

    // A retried invocation (the schedule fired twice, Lambda retried) finds the minute done.
    let again = publisher.run(now + 5_000, Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!((again.calls, again.minutes_published.len()), (0, 0), "{again:?}");
    assert_eq!(stat(&client, minute, "Requests", &[], "Sum").await, [30.0], "nothing counted twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn cloudwatch_throttling_defers_the_minute_and_the_next_run_publishes_it_once() {
    let emulator = emulator(|_| {}).await;
    // Two attempts per call: the SDK's own retry is part of what is being tested.
    let client = cloudwatch(&emulator, 2).await;
    let store = usage_store().await;
    let minute = recent_minute();
    for i in 0..12 {
        store.record(&record(i, minute, "acme", CacheResult::Miss)).await.unwrap();
    }
    let throttled = publisher(store, CloudWatchMetrics::new(client.clone()));
    let now = minute.next().start_ms() + 11_000;

    // Enough throttles to outlast both attempts of the first call, not the next run.
    fault(&emulator, "PutMetricData", "throttling", 2).await;
    let first = throttled.run(now, Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!(first.stopped_by, Some(ErrorLabel::Throttled), "{first:?}");
    assert!(first.minutes_published.is_empty() && !first.minutes_deferred.is_empty(), "{first:?}");
    assert!(stat(&client, minute, "Requests", &[], "Sum").await.is_empty(), "nothing published yet");

    let second = throttled.run(now + 60_000, Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!(second.stopped_by, None, "{second:?}");
    assert!(second.minutes_published.contains(&minute), "{second:?}");
    assert_eq!(stat(&client, minute, "Requests", &[], "Sum").await, [12.0]);

    // An outage (500s on every attempt) is a deferral too, never a loss.
    fault(&emulator, "GetMetricData", "internal", 10).await;
    let store = usage_store().await;
    store.record(&record(0, minute, "acme", CacheResult::Miss)).await.unwrap();
    let other = publisher(store, CloudWatchMetrics::new(client.clone()));
    let down = other.run(now, Deadline::after(Duration::from_secs(30))).await.unwrap();
    assert_eq!(down.stopped_by, Some(ErrorLabel::Unavailable), "{down:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bedrocks_own_figures_are_read_back_from_what_the_emulators_runtime_published() {
    // The first call's quota is enough for three calls and no more: the fourth is throttled.
    let emulator = emulator(|config| {
        config.quotas.insert(HAIKU.into(), bedrock_emulator::QuotaOverride { rpm: Some(3), tpm: None });
    })
    .await;
    let runtime = bedrock(&emulator.url(), 1).await;
    let started = Minute::of_ms(now_ms());
    let mut throttled = 0;
    for _ in 0..4 {
        let message = Message::builder()
            .role(ConversationRole::User)
            .content(ContentBlock::Text("Name three uses of a cache.".into()))
            .build()
            .unwrap();
        match runtime.converse().model_id(HAIKU).messages(message).send().await {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|s| s.is_throttling_exception()) => throttled += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(throttled, 1);
    let stats = emulator_stats(&emulator).await;
    let totals = &stats["totals"];

    let adapter = CloudWatchMetrics::new(cloudwatch(&emulator, 1).await);
    let models = [HAIKU.to_string(), "amazon.nova-micro-v1:0".to_string()];
    let mut figures = Vec::new();
    // The calls may straddle a minute's end.
    for minute in [started, started.next()] {
        figures.extend(adapter.minute(minute, &models).await.unwrap());
    }
    assert!(figures.iter().all(|f| f.model_id == HAIKU), "a model with no traffic is left out: {figures:?}");
    let sum = |f: fn(&gateway_core::metrics::publish::BedrockMinute) -> f64| figures.iter().map(f).sum::<f64>();
    assert_eq!(sum(|f| f.invocations), 3.0);
    assert_eq!(sum(|f| f.throttles), 1.0);
    assert_eq!(sum(|f| f.input_tokens), totals["input_tokens"].as_f64().unwrap());
    assert_eq!(sum(|f| f.output_tokens), totals["output_tokens"].as_f64().unwrap());
    assert!(sum(|f| f.output_tokens) > 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_adapter_classifies_refusals_and_throttles() {
    let emulator = emulator(|_| {}).await;
    let adapter = CloudWatchMetrics::new(cloudwatch(&emulator, 1).await);
    let minute = recent_minute();
    // A datum CloudWatch refuses (a value it cannot store) is the datums' fault: not retried.
    let bad = MetricDatum::single("Requests", Unit::Count, minute.start_ms(), f64::NAN);
    match adapter.put(NAMESPACE, &[bad]).await {
        Err(MetricsError::Rejected(message)) => assert!(message.contains("InvalidParameterValue"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    fault(&emulator, "PutMetricData", "throttling", 1).await;
    let good = MetricDatum::single("Requests", Unit::Count, minute.start_ms(), 1.0);
    assert!(matches!(adapter.put(NAMESPACE, std::slice::from_ref(&good)).await, Err(MetricsError::Throttled(_))));
    adapter.put(NAMESPACE, &[good]).await.unwrap();
    // Clients may not publish under AWS/ namespaces: only the emulator's own services do.
    let aws = MetricDatum::single("Invocations", Unit::Count, minute.start_ms(), 1.0);
    assert!(matches!(adapter.put("AWS/Bedrock", &[aws]).await, Err(MetricsError::Rejected(_))));
}
