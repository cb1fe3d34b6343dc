//! The metrics publisher's use case: each closed minute of recorded usage, with Bedrock's own
//! figures for it, published to CloudWatch in few batched calls, once.
//!
//! A minute is published when it is closed (its end plus `settle` has passed, so records
//! written as their requests finished are in) and not yet marked done in the publish log.
//! Its datums are split into PutMetricData calls deterministically; each call that goes
//! through is marked, so a retried run (the invocation timed out, CloudWatch throttled, the
//! process was killed) sends only the calls that did not, and nothing is counted twice
//! except a call whose success was never marked (killed between the two). A minute that
//! cannot be published now stays unmarked and is published by a later run, up to
//! `catch_up` minutes back.

mod aggregate;
pub mod config;
mod datum;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

pub use aggregate::{NO_MODEL, OTHER_TENANT, minute_datums};
pub use datum::{DatumValue, MAX_CALL_BYTES, MAX_DATUMS_PER_CALL, MAX_VALUES_PER_DATUM, MetricDatum, into_calls};

use crate::catalog::Quota;
use crate::deadline::Deadline;
use crate::label::ErrorLabel;
use crate::quota::limits::QuotaTable;
use crate::usage::{Minute, UsageLedger};

#[derive(Debug, Clone, PartialEq)]
pub struct PublisherConfig {
    pub namespace: String,
    /// Tenants published by name per minute; the rest are summed as [`OTHER_TENANT`].
    pub tenant_limit: usize,
    /// How long after a minute ends its records are taken as complete.
    pub settle: Duration,
    /// How many minutes back a run looks for unpublished ones (CloudWatch accepts two weeks).
    pub catch_up: u64,
    /// Time kept back from the invocation's deadline: a minute is not started with less left.
    pub reserve: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        PublisherConfig {
            namespace: crate::metrics::NAMESPACE.to_string(),
            tenant_limit: 50,
            settle: Duration::from_secs(90),
            catch_up: 60,
            reserve: Duration::from_secs(5),
        }
    }
}

/// Bedrock's own CloudWatch figures (`AWS/Bedrock`, dimension `ModelId`) for one minute.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BedrockMinute {
    /// The ID calls were made with: a quota's canonical ID.
    pub model_id: String,
    pub invocations: f64,
    pub throttles: f64,
    pub input_tokens: f64,
    pub output_tokens: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("CloudWatch throttled: {0}")]
    Throttled(String),
    #[error("CloudWatch unavailable: {0}")]
    Unavailable(String),
    /// CloudWatch refused the call's content: retrying it would fail the same way.
    #[error("CloudWatch refused the call: {0}")]
    Rejected(String),
}

impl MetricsError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            MetricsError::Throttled(_) => ErrorLabel::Throttled,
            MetricsError::Unavailable(_) => ErrorLabel::Unavailable,
            MetricsError::Rejected(_) => ErrorLabel::BadResponse,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishLogError {
    #[error("publish log throttled: {0}")]
    Throttled(String),
    #[error("publish log failed: {0}")]
    Store(String),
}

impl PublishLogError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            PublishLogError::Throttled(_) => ErrorLabel::Throttled,
            PublishLogError::Store(_) => ErrorLabel::Store,
        }
    }
}

/// PutMetricData.
pub trait MetricSink: Send + Sync {
    fn put(&self, namespace: &str, datums: &[MetricDatum]) -> impl Future<Output = Result<(), MetricsError>> + Send;
}

/// GetMetricData over `AWS/Bedrock`.
pub trait BedrockMetrics: Send + Sync {
    /// The figures of `minute` for each of `model_ids` that had any.
    fn minute(
        &self,
        minute: Minute,
        model_ids: &[String],
    ) -> impl Future<Output = Result<Vec<BedrockMinute>, MetricsError>> + Send;
}

/// What has been published: per minute, the calls that went through, and whether it is done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MinuteProgress {
    pub calls_done: BTreeSet<u32>,
    pub done: bool,
}

pub trait PublishLog: Send + Sync {
    /// The progress recorded for each of `minutes` that has any.
    fn progress(
        &self,
        minutes: &[Minute],
    ) -> impl Future<Output = Result<BTreeMap<Minute, MinuteProgress>, PublishLogError>> + Send;
    fn mark_call(&self, minute: Minute, call: u32) -> impl Future<Output = Result<(), PublishLogError>> + Send;
    fn mark_done(&self, minute: Minute) -> impl Future<Output = Result<(), PublishLogError>> + Send;
}

/// The publisher's ports, bundled as the gateway's are.
pub trait PublisherPorts: Send + Sync {
    type Usage: UsageLedger;
    type Sink: MetricSink;
    type Bedrock: BedrockMetrics;
    type Log: PublishLog;

    fn usage(&self) -> &Self::Usage;
    fn sink(&self) -> &Self::Sink;
    fn bedrock(&self) -> &Self::Bedrock;
    fn log(&self) -> &Self::Log;
}

/// What one run did, for its log line and the handler's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishReport {
    pub minutes_published: Vec<Minute>,
    /// Closed minutes left for a later run (an error, or too little time left).
    pub minutes_deferred: Vec<Minute>,
    pub calls: u32,
    /// Calls skipped because an earlier run had sent them.
    pub calls_skipped: u32,
    pub datums: u64,
    pub records: u64,
    pub unreadable_records: u64,
    /// Calls CloudWatch refused as invalid; logged, marked, and not retried.
    pub calls_rejected: u32,
    /// Why the run stopped early, if it did.
    pub stopped_by: Option<ErrorLabel>,
}

#[derive(Debug)]
pub struct Publisher<P> {
    ports: P,
    config: PublisherConfig,
    /// Applied limits by the canonical ID records name quotas by.
    quotas: BTreeMap<String, Quota>,
}

enum MinuteOutcome {
    Published,
    Stopped(ErrorLabel),
}

impl<P: PublisherPorts> Publisher<P> {
    pub fn new(ports: P, config: PublisherConfig, quotas: &QuotaTable) -> Self {
        let quotas = quotas.iter().map(|(key, limits)| (key.to_string(), limits.quota)).collect();
        Publisher { ports, config, quotas }
    }

    pub fn ports(&self) -> &P {
        &self.ports
    }

    /// The minutes a run at `now_ms` may publish: the closed ones within `catch_up`.
    pub fn closed_minutes(&self, now_ms: u64) -> Vec<Minute> {
        let settled = now_ms.saturating_sub(u64::try_from(self.config.settle.as_millis()).unwrap_or(u64::MAX));
        // The minute containing `settled` is still open; the one before is the last closed.
        let Some(last) = Minute::of_ms(settled).0.checked_sub(1) else { return Vec::new() };
        let first = last.saturating_sub(self.config.catch_up.saturating_sub(1));
        (first..=last).map(Minute).collect()
    }

    pub async fn run(&self, now_ms: u64, deadline: Deadline) -> Result<PublishReport, PublishLogError> {
        let closed = self.closed_minutes(now_ms);
        let mut report = PublishReport::default();
        if closed.is_empty() {
            return Ok(report);
        }
        let progress = self.ports.log().progress(&closed).await?;
        let mut pending = closed.into_iter().filter(|m| !progress.get(m).is_some_and(|p| p.done));
        while let Some(minute) = pending.next() {
            if deadline.remaining() < self.config.reserve {
                report.minutes_deferred.push(minute);
                report.minutes_deferred.extend(pending);
                break;
            }
            let done = progress.get(&minute).map(|p| p.calls_done.clone()).unwrap_or_default();
            match self.publish_minute(minute, &done, &mut report).await? {
                MinuteOutcome::Published => report.minutes_published.push(minute),
                MinuteOutcome::Stopped(label) => {
                    // CloudWatch or the usage store is struggling: later minutes would fail
                    // the same way, so they wait for the next run too.
                    report.stopped_by = Some(label);
                    report.minutes_deferred.push(minute);
                    report.minutes_deferred.extend(pending);
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn publish_minute(
        &self,
        minute: Minute,
        done: &BTreeSet<u32>,
        report: &mut PublishReport,
    ) -> Result<MinuteOutcome, PublishLogError> {
        let usage = match self.ports.usage().minute(minute).await {
            Ok(usage) => usage,
            Err(e) => {
                tracing::warn!(minute = minute.0, error = %e, kind = e.label().as_str(), "usage unreadable; minute deferred");
                return Ok(MinuteOutcome::Stopped(e.label()));
            }
        };
        let mut model_ids: BTreeSet<String> = self.quotas.keys().cloned().collect();
        model_ids.extend(usage.records.iter().filter_map(|r| r.quota.clone()));
        let model_ids: Vec<String> = model_ids.into_iter().collect();
        let bedrock = match self.ports.bedrock().minute(minute, &model_ids).await {
            Ok(figures) => figures,
            Err(e) => {
                tracing::warn!(minute = minute.0, error = %e, kind = e.label().as_str(), "Bedrock's metrics unreadable; minute deferred");
                return Ok(MinuteOutcome::Stopped(e.label()));
            }
        };
        if usage.unreadable > 0 {
            tracing::warn!(
                minute = minute.0,
                unreadable = usage.unreadable,
                "usage records that do not parse were skipped"
            );
        }
        let datums = minute_datums(minute, &usage, &self.quotas, &bedrock, &self.config);
        report.records += usage.records.len() as u64;
        report.unreadable_records += usage.unreadable;
        for (index, call) in into_calls(datums).iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            if done.contains(&index) {
                report.calls_skipped += 1;
                continue;
            }
            match self.ports.sink().put(&self.config.namespace, call).await {
                Ok(()) => {
                    report.calls += 1;
                    report.datums += call.len() as u64;
                }
                Err(MetricsError::Rejected(message)) => {
                    // Sending it again would be refused again; holding the minute back for it
                    // would stop every later minute. Loud, counted, and passed.
                    tracing::error!(minute = minute.0, call = index, error = %message, "CloudWatch refused a call; its datums are dropped");
                    report.calls_rejected += 1;
                }
                Err(e) => {
                    tracing::warn!(minute = minute.0, call = index, error = %e, kind = e.label().as_str(), "PutMetricData failed; the rest of the minute waits for the next run");
                    return Ok(MinuteOutcome::Stopped(e.label()));
                }
            }
            self.ports.log().mark_call(minute, index).await?;
        }
        self.ports.log().mark_done(minute).await?;
        Ok(MinuteOutcome::Published)
    }
}
