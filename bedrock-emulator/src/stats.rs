//! Counters behind `GET /_emulator/stats`, per quota bucket and in total, and the same
//! events as Bedrock's own CloudWatch metrics (`AWS/Bedrock`, dimension `ModelId`) in the
//! emulator's CloudWatch, so a client reading them (the gateway's metrics publisher) sees
//! what it would see deployed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use gateway_core::quota::QuotaKey;
use serde::Serialize;

use crate::cloudwatch::CloudWatch;
use crate::errors::ApiError;

const BEDROCK_NAMESPACE: &str = "AWS/Bedrock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Converse,
    ConverseStream,
    Invoke,
    InvokeStream,
    CountTokens,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Converse => "converse",
            Operation::ConverseStream => "converse_stream",
            Operation::Invoke => "invoke",
            Operation::InvokeStream => "invoke_with_response_stream",
            Operation::CountTokens => "count_tokens",
        }
    }

    pub fn streaming(self) -> bool {
        matches!(self, Operation::ConverseStream | Operation::InvokeStream)
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Operations {
    pub converse: u64,
    pub converse_stream: u64,
    pub invoke: u64,
    pub invoke_with_response_stream: u64,
    pub count_tokens: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Throttled {
    /// Over the requests-per-minute quota.
    pub rpm: u64,
    /// Over the tokens-per-minute quota.
    pub tpm: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Injected {
    pub throttling: u64,
    pub internal_server: u64,
    pub service_unavailable: u64,
    pub model_timeout: u64,
    pub stream_error: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Every request that named this model, whatever became of it.
    pub requests: u64,
    /// Requests answered in full (streams: to their last event).
    pub succeeded: u64,
    /// Streaming requests that started streaming.
    pub streams: u64,
    pub operations: Operations,
    pub throttled: Throttled,
    pub injected: Injected,
    pub validation_errors: u64,
    /// Streams the client abandoned before their end.
    pub disconnected: u64,
    /// Tokens of answered requests (streams: as far as they got).
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_write_input_tokens: u64,
    /// Tokens settled against the TPM quota: input + cache writes + output x burndown.
    pub quota_tokens: u64,
}

/// Tokens billed for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub quota: u64,
}

/// How a request that got past admission ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    StreamError,
    Disconnected,
}

#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Inner>,
    cloudwatch: OnceLock<Arc<CloudWatch>>,
}

#[derive(Debug, Default)]
struct Inner {
    totals: Counters,
    models: BTreeMap<String, (QuotaKey, Counters)>,
}

impl Inner {
    /// Applies `f` to the totals and, when the request reached a model, to its counters.
    fn each(&mut self, bucket: Option<&QuotaKey>, f: impl Fn(&mut Counters)) {
        f(&mut self.totals);
        if let Some(bucket) = bucket {
            let entry = self.models.entry(bucket.to_string()).or_insert_with(|| (bucket.clone(), Counters::default()));
            f(&mut entry.1);
        }
    }
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on every model call's outcome is also a set of `AWS/Bedrock` datums there.
    pub fn publish_to(&self, cloudwatch: Arc<CloudWatch>) {
        let _ = self.cloudwatch.set(cloudwatch);
    }

    fn publish(&self, bucket: &QuotaKey, figures: &[(&str, &str, f64)]) {
        let Some(cloudwatch) = self.cloudwatch.get() else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let model_id = bucket.to_string();
        for (name, unit, value) in figures {
            cloudwatch.record_service_datum(BEDROCK_NAMESPACE, name, &[("ModelId", &model_id)], unit, *value, now_ms);
        }
    }

    pub fn request(&self, bucket: Option<&QuotaKey>, op: Operation) {
        self.lock().each(bucket, |c| {
            c.requests += 1;
            let ops = &mut c.operations;
            match op {
                Operation::Converse => ops.converse += 1,
                Operation::ConverseStream => ops.converse_stream += 1,
                Operation::Invoke => ops.invoke += 1,
                Operation::InvokeStream => ops.invoke_with_response_stream += 1,
                Operation::CountTokens => ops.count_tokens += 1,
            }
        });
    }

    pub fn rejected(&self, bucket: Option<&QuotaKey>, error: &ApiError) {
        if let Some(bucket) = bucket {
            // Throttled requests count as neither Invocations nor errors, as Bedrock documents.
            let metric = match error {
                ApiError::TooManyRequests | ApiError::TooManyTokens | ApiError::InjectedThrottling => {
                    "InvocationThrottles"
                }
                ApiError::Validation(_) | ApiError::UnknownOperation(_) | ApiError::ResourceNotFound(_) => {
                    "InvocationClientErrors"
                }
                ApiError::InternalServer | ApiError::ServiceUnavailable | ApiError::ModelTimeout => {
                    "InvocationServerErrors"
                }
            };
            self.publish(bucket, &[(metric, "Count", 1.0)]);
        }
        self.lock().each(bucket, |c| match error {
            // The caller's to fix, like a validation error; the admin API counts them together.
            ApiError::Validation(_) | ApiError::UnknownOperation(_) | ApiError::ResourceNotFound(_) => {
                c.validation_errors += 1;
            }
            ApiError::TooManyRequests => c.throttled.rpm += 1,
            ApiError::TooManyTokens => c.throttled.tpm += 1,
            ApiError::InjectedThrottling => c.injected.throttling += 1,
            ApiError::InternalServer => c.injected.internal_server += 1,
            ApiError::ServiceUnavailable => c.injected.service_unavailable += 1,
            ApiError::ModelTimeout => c.injected.model_timeout += 1,
        });
    }

    pub fn stream_started(&self, bucket: &QuotaKey) {
        self.lock().each(Some(bucket), |c| c.streams += 1);
    }

    pub fn ended(&self, bucket: &QuotaKey, ending: Ending, billed: Billed) {
        let outcome = match ending {
            Ending::Completed | Ending::Disconnected => "Invocations",
            Ending::StreamError => "InvocationServerErrors",
        };
        self.publish(
            bucket,
            &[
                (outcome, "Count", 1.0),
                ("InputTokenCount", "Count", billed.input as f64),
                ("OutputTokenCount", "Count", billed.output as f64),
                ("CacheReadInputTokens", "Count", billed.cache_read as f64),
                ("CacheWriteInputTokens", "Count", billed.cache_write as f64),
                ("EstimatedTPMQuotaUsage", "Count", billed.quota as f64),
            ],
        );
        self.lock().each(Some(bucket), |c| {
            match ending {
                Ending::Completed => c.succeeded += 1,
                Ending::StreamError => c.injected.stream_error += 1,
                Ending::Disconnected => c.disconnected += 1,
            }
            c.input_tokens += billed.input;
            c.output_tokens += billed.output;
            c.cache_read_input_tokens += billed.cache_read;
            c.cache_write_input_tokens += billed.cache_write;
            c.quota_tokens += billed.quota;
        });
    }

    /// Totals and every bucket's counters.
    pub fn snapshot(&self) -> (Counters, Vec<(QuotaKey, Counters)>) {
        let inner = self.lock();
        (inner.totals.clone(), inner.models.values().cloned().collect())
    }

    pub fn reset_bucket(&self, bucket: &QuotaKey) {
        self.lock().models.remove(&bucket.to_string());
    }

    pub fn reset_all(&self) {
        *self.lock() = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use gateway_core::catalog::Scope;

    use super::*;

    #[test]
    fn counters_go_to_the_bucket_and_the_totals() {
        let stats = Stats::default();
        let b = QuotaKey::new("m", Scope::Global);
        stats.request(Some(&b), Operation::ConverseStream);
        stats.request(None, Operation::Converse);
        stats.rejected(None, &ApiError::validation("bad"));
        stats.rejected(Some(&b), &ApiError::TooManyTokens);
        stats.ended(&b, Ending::Completed, Billed { input: 3, output: 4, ..Billed::default() });
        let (totals, models) = stats.snapshot();
        assert_eq!((totals.requests, totals.validation_errors, totals.throttled.tpm), (2, 1, 1));
        let (bucket, counters) = &models[0];
        assert_eq!(bucket.to_string(), "global.m");
        assert_eq!((counters.requests, counters.operations.converse_stream), (1, 1));
        assert_eq!((counters.input_tokens, counters.output_tokens, counters.succeeded), (3, 4, 1));
        stats.reset_bucket(&b);
        assert!(stats.snapshot().1.is_empty());
    }
}
