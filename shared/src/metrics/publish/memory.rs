//! In-memory publisher ports for tests: a sink that keeps what it was sent and can fail on
//! cue, Bedrock figures set by the test, and a publish log.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use super::{
    BedrockMetrics, BedrockMinute, MetricDatum, MetricSink, MetricsError, MinuteProgress, PublishLog, PublishLogError,
    PublisherPorts,
};
use crate::usage::Minute;
use crate::usage::memory::MemoryUsageLedger;

/// What the next calls of a fake answer instead of succeeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkFault {
    Throttle,
    Unavailable,
    Reject,
}

#[derive(Debug, Default)]
pub struct MemorySink {
    calls: Mutex<Vec<(String, Vec<MetricDatum>)>>,
    faults: Mutex<VecDeque<Option<SinkFault>>>,
}

impl MemorySink {
    /// The next calls answer these, in order (`None`: succeed); then every call succeeds.
    pub fn script(&self, answers: impl IntoIterator<Item = Option<SinkFault>>) {
        if let Ok(mut faults) = self.faults.lock() {
            faults.extend(answers);
        }
    }

    /// Every call that succeeded: its namespace and datums.
    pub fn calls(&self) -> Vec<(String, Vec<MetricDatum>)> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The sum of every single-valued datum sent named `name` with exactly `dimensions`.
    pub fn sum(&self, name: &str, dimensions: &[(&str, &str)]) -> f64 {
        self.calls()
            .iter()
            .flat_map(|(_, datums)| datums.iter())
            .filter(|d| d.name == name && same_dimensions(d, dimensions))
            .map(|d| match &d.value {
                super::DatumValue::Single(v) => *v,
                super::DatumValue::Distribution { values, counts } => {
                    values.iter().zip(counts).map(|(v, c)| v * c).sum()
                }
            })
            .sum()
    }
}

fn same_dimensions(datum: &MetricDatum, dimensions: &[(&str, &str)]) -> bool {
    datum.dimensions.len() == dimensions.len()
        && dimensions.iter().all(|(n, v)| datum.dimensions.iter().any(|(dn, dv)| dn == n && dv == v))
}

impl MetricSink for MemorySink {
    async fn put(&self, namespace: &str, datums: &[MetricDatum]) -> Result<(), MetricsError> {
        let fault = self.faults.lock().ok().and_then(|mut f| f.pop_front()).flatten();
        match fault {
            Some(SinkFault::Throttle) => Err(MetricsError::Throttled("Rate exceeded".into())),
            Some(SinkFault::Unavailable) => Err(MetricsError::Unavailable("connection refused".into())),
            Some(SinkFault::Reject) => Err(MetricsError::Rejected("InvalidParameterValue".into())),
            None => {
                if let Ok(mut calls) = self.calls.lock() {
                    calls.push((namespace.to_string(), datums.to_vec()));
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct MemoryBedrockMetrics {
    figures: Mutex<BTreeMap<Minute, Vec<BedrockMinute>>>,
    failing: Mutex<bool>,
}

impl MemoryBedrockMetrics {
    pub fn set(&self, minute: Minute, figures: Vec<BedrockMinute>) {
        if let Ok(mut all) = self.figures.lock() {
            all.insert(minute, figures);
        }
    }

    pub fn fail(&self, failing: bool) {
        if let Ok(mut f) = self.failing.lock() {
            *f = failing;
        }
    }
}

impl BedrockMetrics for MemoryBedrockMetrics {
    async fn minute(&self, minute: Minute, model_ids: &[String]) -> Result<Vec<BedrockMinute>, MetricsError> {
        if self.failing.lock().map(|f| *f).unwrap_or(false) {
            return Err(MetricsError::Unavailable("GetMetricData failed".into()));
        }
        let all = self.figures.lock().map_err(|_| MetricsError::Unavailable("poisoned".into()))?;
        Ok(all
            .get(&minute)
            .map(|f| f.iter().filter(|b| model_ids.contains(&b.model_id)).cloned().collect())
            .unwrap_or_default())
    }
}

#[derive(Debug, Default)]
pub struct MemoryPublishLog {
    minutes: Mutex<BTreeMap<Minute, MinuteProgress>>,
}

impl PublishLog for MemoryPublishLog {
    async fn progress(&self, wanted: &[Minute]) -> Result<BTreeMap<Minute, MinuteProgress>, PublishLogError> {
        let minutes = self.minutes.lock().map_err(|_| PublishLogError::Store("poisoned".into()))?;
        Ok(wanted.iter().filter_map(|m| minutes.get(m).map(|p| (*m, p.clone()))).collect())
    }

    async fn mark_call(&self, minute: Minute, call: u32) -> Result<(), PublishLogError> {
        let mut minutes = self.minutes.lock().map_err(|_| PublishLogError::Store("poisoned".into()))?;
        minutes.entry(minute).or_default().calls_done.insert(call);
        Ok(())
    }

    async fn mark_done(&self, minute: Minute) -> Result<(), PublishLogError> {
        let mut minutes = self.minutes.lock().map_err(|_| PublishLogError::Store("poisoned".into()))?;
        minutes.entry(minute).or_default().done = true;
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct MemoryPublisherPorts {
    pub usage: MemoryUsageLedger,
    pub sink: MemorySink,
    pub bedrock: MemoryBedrockMetrics,
    pub log: MemoryPublishLog,
}

impl PublisherPorts for MemoryPublisherPorts {
    type Usage = MemoryUsageLedger;
    type Sink = MemorySink;
    type Bedrock = MemoryBedrockMetrics;
    type Log = MemoryPublishLog;

    fn usage(&self) -> &MemoryUsageLedger {
        &self.usage
    }
    fn sink(&self) -> &MemorySink {
        &self.sink
    }
    fn bedrock(&self) -> &MemoryBedrockMetrics {
        &self.bedrock
    }
    fn log(&self) -> &MemoryPublishLog {
        &self.log
    }
}
