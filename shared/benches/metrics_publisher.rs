//! One minute published for 1,000 tenants and 20 models:
//! `cargo bench -p gateway-core --no-default-features --bench metrics_publisher`.
//!
//! 20,000 usage records (each tenant calls each model once; one call in ten a cache HIT, one
//! in fifty failed) are read from the in-memory ledger, aggregated with 20 models' Bedrock
//! figures and sent to an in-memory sink; the figures are the run's wall time (median of the
//! runs) and the PutMetricData calls it made. Two settings are measured: the default tenant
//! limit (50 named, the rest as `other`) and every tenant by name; the baseline is the number
//! of calls a publisher sending one datum per call (what CloudWatch's API allows without
//! batching) would make for the same minute.

use std::time::{Duration, Instant};

use gateway_core::catalog::{Catalog, Tier};
use gateway_core::deadline::Deadline;
use gateway_core::label::ErrorLabel;
use gateway_core::metrics::publish::memory::MemoryPublisherPorts;
use gateway_core::metrics::publish::{BedrockMinute, PublishReport, Publisher, PublisherConfig};
use gateway_core::quota::limits::QuotaTable;
use gateway_core::service::CacheResult;
use gateway_core::usage::{Minute, Savings, UsageLedger, UsageOutcome, UsageRecord, UsageSource};

const TENANTS: usize = 1_000;
const MODELS: usize = 20;
const RUNS: usize = 15;
const MINUTE: Minute = Minute(29_000_000);

fn model(index: usize) -> String {
    format!("us.vendor.model-{index:02}-v1:0")
}

fn records() -> Vec<UsageRecord> {
    let mut records = Vec::with_capacity(TENANTS * MODELS);
    for tenant in 0..TENANTS {
        for m in 0..MODELS {
            let n = tenant * MODELS + m;
            let hit = n.is_multiple_of(10);
            records.push(UsageRecord {
                request_id: format!("req-{n:06}"),
                at_ms: MINUTE.start_ms() + (n as u64 % 60_000),
                tenant: format!("tenant-{tenant:04}"),
                source: UsageSource::Online,
                model_id: Some(model(m)),
                tier: Some(Tier::ALL[m % 3]),
                quota: Some(model(m)),
                outcome: if n.is_multiple_of(50) {
                    UsageOutcome::Failed(ErrorLabel::Throttled)
                } else {
                    UsageOutcome::Answered
                },
                cache: Some(if hit { CacheResult::Hit } else { CacheResult::Miss }),
                input_tokens: if hit { 0 } else { 800 + (n as u64 % 400) },
                output_tokens: if hit { 0 } else { 200 + (n as u64 % 300) },
                cache_read_tokens: 0,
                cache_write_tokens: 0,
                quota_tokens: if hit { 0 } else { 2_000 },
                model_calls: u32::from(!hit),
                throttles_received: u32::from(n.is_multiple_of(50)),
                throttles_avoided: u32::from(n.is_multiple_of(37)),
                quota_refused: false,
                cost_usd: if hit { 0.0 } else { 0.002 },
                saved: Savings { cache_usd: if hit { 0.002 } else { 0.0 }, ..Savings::default() },
                latency_ms: 200 + (n as u64 * 7919) % 3_000,
            });
        }
    }
    records
}

fn bedrock() -> Vec<BedrockMinute> {
    (0..MODELS)
        .map(|m| BedrockMinute {
            model_id: model(m),
            invocations: 900.0,
            throttles: 18.0,
            input_tokens: 900_000.0,
            output_tokens: 300_000.0,
        })
        .collect()
}

/// Publishes the minute on fresh ports; the time covers the run only, not loading the ledger.
async fn publish_once(
    config: &PublisherConfig,
    quotas: &QuotaTable,
    records: &[UsageRecord],
) -> (Duration, PublishReport) {
    let ports = MemoryPublisherPorts::default();
    for r in records {
        let _ = ports.usage.record(r).await;
    }
    ports.bedrock.set(MINUTE, bedrock());
    let publisher = Publisher::new(ports, config.clone(), quotas);
    let now = MINUTE.next().start_ms() + 100_000;
    let started = Instant::now();
    let report = publisher.run(now, Deadline::after(Duration::from_secs(60))).await;
    let elapsed = started.elapsed();
    (elapsed, report.unwrap_or_default())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let catalog = Catalog::embedded()?;
    let quotas = QuotaTable::from_catalog(&catalog);
    let records = records();
    println!(
        "metrics publisher: one minute, {TENANTS} tenants x {MODELS} models = {} records, {RUNS} runs each",
        records.len()
    );
    for (label, tenant_limit) in [("tenant limit 50 (default)", 50), ("every tenant by name", TENANTS)] {
        let config = PublisherConfig { catch_up: 1, tenant_limit, ..PublisherConfig::default() };
        let mut times = Vec::with_capacity(RUNS);
        let mut last = PublishReport::default();
        for _ in 0..RUNS {
            let (elapsed, report) = runtime.block_on(publish_once(&config, &quotas, &records));
            times.push(elapsed);
            last = report;
        }
        times.sort();
        let median = times[RUNS / 2];
        println!(
            "  {label:<28} run {:>7.2} ms (min {:.2}, max {:.2})  PutMetricData calls/minute {:>3}  datums {:>5}  one-datum-per-call baseline {:>5} calls",
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3,
            times[RUNS - 1].as_secs_f64() * 1e3,
            last.calls,
            last.datums,
            last.datums,
        );
    }
    Ok(())
}
