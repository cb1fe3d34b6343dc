//! The stored form of the batch domain values: the JSON document (`doc`) of each item of the
//! batch table.
//!
//! Serde mirrors rather than derives on the domain types, so that the stored shape is written
//! down in one place and a field added to a domain type cannot change what old items mean.
//! Every document carries the schema version `v`; a reader refuses one it does not know
//! rather than guess. Encoding borrows the value (a `Cow` per large field), so that storing
//! a result never copies its answer.
//!
//! Decoding returns the reason as text: the caller knows the item's key and makes the
//! [`BatchError::Corrupt`] that names it.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::complete::{FailedRecord, JobOutcome, JobSummary, MalformedLine};
use super::ports::{FileIntake, JobPlan, RecordFailure, RecordResult, ResultState};
use super::record::{RecordId, RecordSource, SubmittedRecord};
use super::{BatchError, JobStatus};
use crate::cache::{CacheMode, CacheOptions, Tenant};
use crate::cost::Usage;
use crate::label::ErrorLabel;
use crate::request::{ConverseRequest, ConverseResponse};

/// Bumped when a document's shape changes meaning.
const VERSION: u32 = 1;

// ---- Shared pieces. ----

/// An instant as whole seconds and nanoseconds since the epoch: exact, unlike milliseconds,
/// so that a record read back is the record written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredTime {
    secs: u64,
    nanos: u32,
}

impl StoredTime {
    fn encode(what: &str, t: SystemTime) -> Result<StoredTime, BatchError> {
        let since = t.duration_since(UNIX_EPOCH).map_err(|_| store_error(format!("{what} is before 1970")))?;
        Ok(StoredTime { secs: since.as_secs(), nanos: since.subsec_nanos() })
    }

    fn decode(self) -> Result<SystemTime, String> {
        if self.nanos >= 1_000_000_000 {
            return Err(format!("nanos {} is not under one second", self.nanos));
        }
        UNIX_EPOCH
            .checked_add(Duration::new(self.secs, self.nanos))
            .ok_or_else(|| format!("{} seconds since the epoch is out of range", self.secs))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredDuration {
    secs: u64,
    nanos: u32,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredCacheOptions {
    /// The header's spelling (`on`, `read_only`, …).
    mode: Option<CacheMode>,
    ttl: Option<StoredDuration>,
    allow_sampling: bool,
}

impl StoredCacheOptions {
    fn encode(options: &CacheOptions) -> StoredCacheOptions {
        StoredCacheOptions {
            mode: options.mode,
            ttl: options.ttl.map(|d| StoredDuration { secs: d.as_secs(), nanos: d.subsec_nanos() }),
            allow_sampling: options.allow_sampling,
        }
    }

    fn decode(self) -> Result<CacheOptions, String> {
        let ttl = match self.ttl {
            Some(d) if d.nanos >= 1_000_000_000 => {
                return Err(format!("cache ttl nanos {} is not under a second", d.nanos));
            }
            Some(d) => Some(Duration::new(d.secs, d.nanos)),
            None => None,
        };
        Ok(CacheOptions { mode: self.mode, ttl, allow_sampling: self.allow_sampling })
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
enum StoredSource<'a> {
    Deferred,
    File { bucket: Cow<'a, str>, key: Cow<'a, str>, line: u64 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredFailure<'a> {
    /// The label's snake_case spelling.
    label: Cow<'a, str>,
    code: Option<u16>,
    message: Cow<'a, str>,
}

impl<'a> StoredFailure<'a> {
    fn encode(failure: &'a RecordFailure) -> StoredFailure<'a> {
        StoredFailure {
            label: Cow::Borrowed(failure.label.as_str()),
            code: failure.code,
            message: Cow::Borrowed(&failure.message),
        }
    }

    fn decode(self) -> Result<RecordFailure, String> {
        let label = ErrorLabel::parse(&self.label).ok_or_else(|| format!("unknown failure label `{}`", self.label))?;
        Ok(RecordFailure { label, code: self.code, message: self.message.into_owned() })
    }
}

fn store_error(message: String) -> BatchError {
    BatchError::Store(message.into())
}

fn record_id(text: &str) -> Result<RecordId, String> {
    RecordId::parse(text).ok_or_else(|| format!("`{text}` is not a record ID"))
}

fn check_version(v: u32) -> Result<(), String> {
    if v == VERSION { Ok(()) } else { Err(format!("document version {v}, this code reads version {VERSION}")) }
}

/// JSON has no NaN nor infinity (serde_json would write `null`, which reads back as no cost
/// or not at all): such a cost is refused before it is stored.
fn finite(what: &str, value: f64) -> Result<f64, BatchError> {
    if value.is_finite() {
        Ok(value)
    } else {
        Err(store_error(format!("cannot store {what} {value}: not a finite number")))
    }
}

fn to_json<T: Serialize>(what: &str, value: &T) -> Result<String, BatchError> {
    serde_json::to_string(value).map_err(|e| store_error(format!("cannot encode the {what}: {e}")))
}

fn from_json<'de, T: Deserialize<'de>>(doc: &'de str) -> Result<T, String> {
    serde_json::from_str(doc).map_err(|e| e.to_string())
}

// ---- Submitted records. ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredRecord<'a> {
    v: u32,
    record_id: String,
    /// The tenant's identity encoding, as cache keys use it.
    tenant: Cow<'a, str>,
    model_id: Cow<'a, str>,
    /// The Converse body as the gateway serialises it (camelCase, without `modelId`).
    request: Cow<'a, ConverseRequest>,
    cache: StoredCacheOptions,
    source: StoredSource<'a>,
    enqueued_at: StoredTime,
}

impl<'a> StoredRecord<'a> {
    fn encode(record: &'a SubmittedRecord) -> Result<StoredRecord<'a>, BatchError> {
        let source = match &record.source {
            RecordSource::Deferred => StoredSource::Deferred,
            RecordSource::File { bucket, key, line } => {
                StoredSource::File { bucket: Cow::Borrowed(bucket), key: Cow::Borrowed(key), line: *line }
            }
        };
        Ok(StoredRecord {
            v: VERSION,
            record_id: record.record_id.to_string(),
            tenant: Cow::Borrowed(record.tenant.as_str()),
            model_id: Cow::Borrowed(&record.model_id),
            request: Cow::Borrowed(&record.request),
            cache: StoredCacheOptions::encode(&record.cache),
            source,
            enqueued_at: StoredTime::encode("the record's enqueued_at", record.enqueued_at)?,
        })
    }

    fn decode(self) -> Result<SubmittedRecord, String> {
        check_version(self.v)?;
        let source = match self.source {
            StoredSource::Deferred => RecordSource::Deferred,
            StoredSource::File { bucket, key, line } => {
                RecordSource::File { bucket: bucket.into_owned(), key: key.into_owned(), line }
            }
        };
        Ok(SubmittedRecord {
            record_id: record_id(&self.record_id)?,
            tenant: Tenant::from_stored(self.tenant.into_owned()),
            model_id: self.model_id.into_owned(),
            request: self.request.into_owned(),
            cache: self.cache.decode()?,
            source,
            enqueued_at: self.enqueued_at.decode()?,
        })
    }
}

pub fn encode_record(record: &SubmittedRecord) -> Result<String, BatchError> {
    to_json("submitted record", &StoredRecord::encode(record)?)
}

pub fn decode_record(doc: &str) -> Result<SubmittedRecord, String> {
    from_json::<StoredRecord<'_>>(doc)?.decode()
}

// ---- Results. ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per result, built and consumed at once; the answer is borrowed when writing"
)]
enum StoredState<'a> {
    Answered {
        response: Cow<'a, ConverseResponse>,
        usage: Usage,
        batch_cost_usd: Option<f64>,
        on_demand_cost_usd: Option<f64>,
    },
    Retrying {
        failure: StoredFailure<'a>,
    },
    Failed {
        failure: StoredFailure<'a>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredResult<'a> {
    v: u32,
    job_id: Cow<'a, str>,
    record_id: String,
    tenant: Cow<'a, str>,
    model_id: Cow<'a, str>,
    state: StoredState<'a>,
    missing_from_output: bool,
    run_id: Cow<'a, str>,
    /// Results stored before usage records existed have none.
    #[serde(default)]
    stored_at_ms: u64,
}

/// The state's name as the `state` attribute of a result item holds it: what a query for a
/// job's retries filters on without decoding every document.
pub fn state_name(state: &ResultState) -> &'static str {
    match state {
        ResultState::Answered { .. } => "answered",
        ResultState::Retrying { .. } => "retrying",
        ResultState::Failed { .. } => "failed",
    }
}

pub fn encode_result(result: &RecordResult) -> Result<String, BatchError> {
    let state = match &result.state {
        ResultState::Answered { response, usage, batch_cost_usd, on_demand_cost_usd } => StoredState::Answered {
            response: Cow::Borrowed(response),
            usage: *usage,
            batch_cost_usd: batch_cost_usd.map(|c| finite("a batch cost", c)).transpose()?,
            on_demand_cost_usd: on_demand_cost_usd.map(|c| finite("an on-demand cost", c)).transpose()?,
        },
        ResultState::Retrying { failure } => StoredState::Retrying { failure: StoredFailure::encode(failure) },
        ResultState::Failed { failure } => StoredState::Failed { failure: StoredFailure::encode(failure) },
    };
    let stored = StoredResult {
        v: VERSION,
        job_id: Cow::Borrowed(&result.job_id),
        record_id: result.record_id.to_string(),
        tenant: Cow::Borrowed(result.tenant.as_str()),
        model_id: Cow::Borrowed(&result.model_id),
        state,
        missing_from_output: result.missing_from_output,
        run_id: Cow::Borrowed(&result.run_id),
        stored_at_ms: result.stored_at_ms,
    };
    to_json("record result", &stored)
}

pub fn decode_result(doc: &str) -> Result<RecordResult, String> {
    let stored: StoredResult<'_> = from_json(doc)?;
    check_version(stored.v)?;
    let state = match stored.state {
        StoredState::Answered { response, usage, batch_cost_usd, on_demand_cost_usd } => {
            ResultState::Answered { response: response.into_owned(), usage, batch_cost_usd, on_demand_cost_usd }
        }
        StoredState::Retrying { failure } => ResultState::Retrying { failure: failure.decode()? },
        StoredState::Failed { failure } => ResultState::Failed { failure: failure.decode()? },
    };
    Ok(RecordResult {
        job_id: stored.job_id.into_owned(),
        record_id: record_id(&stored.record_id)?,
        tenant: Tenant::from_stored(stored.tenant.into_owned()),
        model_id: stored.model_id.into_owned(),
        state,
        missing_from_output: stored.missing_from_output,
        run_id: stored.run_id.into_owned(),
        stored_at_ms: stored.stored_at_ms,
    })
}

// ---- Job summaries. ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", rename_all_fields = "camelCase", deny_unknown_fields)]
enum StoredOutcome<'a> {
    Completed,
    PartiallyCompleted,
    Failed { reason: Cow<'a, str> },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredFailedRecord<'a> {
    record_id: Cow<'a, str>,
    failure: StoredFailure<'a>,
    will_retry: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredMalformed<'a> {
    file: Cow<'a, str>,
    line: u64,
    record_id: Option<Cow<'a, str>>,
    reason: Cow<'a, str>,
}

/// The summary without its retries: a job's retries are its records (with their requests),
/// which could never fit in one item; the store rebuilds them from the job's results.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredSummary<'a> {
    v: u32,
    job_id: Cow<'a, str>,
    /// Bedrock's spelling.
    status: Cow<'a, str>,
    outcome: StoredOutcome<'a>,
    answered: u64,
    failed: u64,
    retrying: u64,
    malformed_lines: u64,
    batch_cost_usd: f64,
    on_demand_cost_usd: f64,
    cache_writes: u64,
    cache_write_failures: u64,
    failures: Vec<StoredFailedRecord<'a>>,
    malformed: Vec<StoredMalformed<'a>>,
}

/// Everything but `retries`, which [`decode_summary`] leaves empty.
pub fn encode_summary(summary: &JobSummary) -> Result<String, BatchError> {
    let outcome = match &summary.outcome {
        JobOutcome::Completed => StoredOutcome::Completed,
        JobOutcome::PartiallyCompleted => StoredOutcome::PartiallyCompleted,
        JobOutcome::Failed { reason } => StoredOutcome::Failed { reason: Cow::Borrowed(reason) },
        // Only a finished job's summary is stored; a running one is a caller's bug.
        JobOutcome::Running => {
            return Err(BatchError::Corrupt(format!("job {} is still running: no summary to store", summary.job_id)));
        }
    };
    let stored = StoredSummary {
        v: VERSION,
        job_id: Cow::Borrowed(&summary.job_id),
        status: Cow::Borrowed(summary.status.as_str()),
        outcome,
        answered: summary.answered,
        failed: summary.failed,
        retrying: summary.retrying,
        malformed_lines: summary.malformed_lines,
        batch_cost_usd: finite("the job's batch cost", summary.batch_cost_usd)?,
        on_demand_cost_usd: finite("the job's on-demand cost", summary.on_demand_cost_usd)?,
        cache_writes: summary.cache_writes,
        cache_write_failures: summary.cache_write_failures,
        failures: summary
            .failures
            .iter()
            .map(|f| StoredFailedRecord {
                record_id: Cow::Borrowed(&f.record_id),
                failure: StoredFailure::encode(&f.failure),
                will_retry: f.will_retry,
            })
            .collect(),
        malformed: summary
            .malformed
            .iter()
            .map(|m| StoredMalformed {
                file: Cow::Borrowed(&m.file),
                line: m.line,
                record_id: m.record_id.as_deref().map(Cow::Borrowed),
                reason: Cow::Borrowed(&m.reason),
            })
            .collect(),
    };
    to_json("job summary", &stored)
}

/// The summary with empty `retries`.
pub fn decode_summary(doc: &str) -> Result<JobSummary, String> {
    let stored: StoredSummary<'_> = from_json(doc)?;
    check_version(stored.v)?;
    let status = JobStatus::parse(&stored.status).ok_or_else(|| format!("unknown job status `{}`", stored.status))?;
    let outcome = match stored.outcome {
        StoredOutcome::Completed => JobOutcome::Completed,
        StoredOutcome::PartiallyCompleted => JobOutcome::PartiallyCompleted,
        StoredOutcome::Failed { reason } => JobOutcome::Failed { reason: reason.into_owned() },
    };
    let failures = stored
        .failures
        .into_iter()
        .map(|f| {
            Ok(FailedRecord {
                record_id: f.record_id.into_owned(),
                failure: f.failure.decode()?,
                will_retry: f.will_retry,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let malformed = stored
        .malformed
        .into_iter()
        .map(|m| MalformedLine {
            file: m.file.into_owned(),
            line: m.line,
            record_id: m.record_id.map(Cow::into_owned),
            reason: m.reason.into_owned(),
        })
        .collect();
    Ok(JobSummary {
        job_id: stored.job_id.into_owned(),
        status,
        outcome,
        answered: stored.answered,
        failed: stored.failed,
        retrying: stored.retrying,
        malformed_lines: stored.malformed_lines,
        batch_cost_usd: stored.batch_cost_usd,
        on_demand_cost_usd: stored.on_demand_cost_usd,
        cache_writes: stored.cache_writes,
        cache_write_failures: stored.cache_write_failures,
        failures,
        malformed,
        retries: Vec::new(),
    })
}

// ---- Job plans. ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredPlan<'a> {
    v: u32,
    job_name: Cow<'a, str>,
    model_id: Cow<'a, str>,
    input_uri: Cow<'a, str>,
    output_uri: Cow<'a, str>,
    records: u64,
    planned_at: StoredTime,
}

pub fn encode_plan(plan: &JobPlan) -> Result<String, BatchError> {
    let stored = StoredPlan {
        v: VERSION,
        job_name: Cow::Borrowed(&plan.job_name),
        model_id: Cow::Borrowed(&plan.model_id),
        input_uri: Cow::Borrowed(&plan.input_uri),
        output_uri: Cow::Borrowed(&plan.output_uri),
        records: plan.records,
        planned_at: StoredTime::encode("the plan's planned_at", plan.planned_at)?,
    };
    to_json("job plan", &stored)
}

pub fn decode_plan(doc: &str) -> Result<JobPlan, String> {
    let stored: StoredPlan<'_> = from_json(doc)?;
    check_version(stored.v)?;
    Ok(JobPlan {
        job_name: stored.job_name.into_owned(),
        model_id: stored.model_id.into_owned(),
        input_uri: stored.input_uri.into_owned(),
        output_uri: stored.output_uri.into_owned(),
        records: stored.records,
        planned_at: stored.planned_at.decode()?,
    })
}

// ---- Dropped files taken in. ----

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoredIntake<'a> {
    v: u32,
    file_job: Cow<'a, str>,
    bucket: Cow<'a, str>,
    key: Cow<'a, str>,
    version: Option<Cow<'a, str>>,
    records: u64,
    refused: Option<Cow<'a, str>>,
    tenant: Cow<'a, str>,
    taken_at: StoredTime,
}

pub fn encode_intake(intake: &FileIntake) -> Result<String, BatchError> {
    let stored = StoredIntake {
        v: VERSION,
        file_job: Cow::Borrowed(&intake.file_job),
        bucket: Cow::Borrowed(&intake.bucket),
        key: Cow::Borrowed(&intake.key),
        version: intake.version.as_deref().map(Cow::Borrowed),
        records: intake.records,
        refused: intake.refused.as_deref().map(Cow::Borrowed),
        tenant: Cow::Borrowed(intake.tenant.as_str()),
        taken_at: StoredTime::encode("the intake's taken_at", intake.taken_at)?,
    };
    to_json("file intake", &stored)
}

pub fn decode_intake(doc: &str) -> Result<FileIntake, String> {
    let stored: StoredIntake<'_> = from_json(doc)?;
    check_version(stored.v)?;
    Ok(FileIntake {
        file_job: stored.file_job.into_owned(),
        bucket: stored.bucket.into_owned(),
        key: stored.key.into_owned(),
        version: stored.version.map(Cow::into_owned),
        records: stored.records,
        refused: stored.refused.map(Cow::into_owned),
        tenant: Tenant::from_stored(stored.tenant.into_owned()),
        taken_at: stored.taken_at.decode()?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::splitmix::SplitMix64;

    const CASES: u64 = 300;

    /// Text with what JSON must escape, a separator the keys use and characters beyond ASCII.
    fn text(rng: &mut SplitMix64) -> String {
        const PIECES: [&str; 10] = ["a", "Z9", "-", "#", "\"", "\\", "\n", "é", "日本", "🦀"];
        (0..rng.below(12)).map(|_| PIECES[rng.below(PIECES.len() as u64) as usize]).collect()
    }

    fn non_empty(rng: &mut SplitMix64) -> String {
        format!("x{}", text(rng))
    }

    fn instant(rng: &mut SplitMix64) -> SystemTime {
        UNIX_EPOCH + Duration::new(rng.below(4_000_000_000), rng.below(1_000_000_000) as u32)
    }

    fn finite_f64(rng: &mut SplitMix64) -> f64 {
        loop {
            let value = f64::from_bits(rng.next_u64());
            if value.is_finite() {
                return value;
            }
        }
    }

    fn request(rng: &mut SplitMix64) -> ConverseRequest {
        let mut body = json!({"messages": [{"role": "user", "content": [{"text": non_empty(rng)}]}]});
        if rng.below(2) == 0 {
            // f32 values that are not short decimals, to catch a lossy float path.
            let temperature = rng.below(1 << 20) as f32 / (1 << 20) as f32;
            body["inferenceConfig"] = json!({"temperature": temperature, "maxTokens": 1 + rng.below(4000)});
        }
        if rng.below(3) == 0 {
            body["system"] = json!([{"text": non_empty(rng)}]);
        }
        ConverseRequest::from_json(body.to_string().as_bytes()).unwrap()
    }

    fn record(rng: &mut SplitMix64) -> SubmittedRecord {
        let tenant = if rng.below(4) == 0 { Tenant::anonymous() } else { Tenant::new(non_empty(rng)) };
        let mode =
            [None, Some(CacheMode::On), Some(CacheMode::Off), Some(CacheMode::ReadOnly), Some(CacheMode::WriteOnly)]
                [rng.below(5) as usize];
        let ttl = (rng.below(2) == 0).then(|| Duration::new(rng.below(1 << 40), rng.below(1_000_000_000) as u32));
        let source = if rng.below(2) == 0 {
            RecordSource::Deferred
        } else {
            RecordSource::File { bucket: non_empty(rng), key: text(rng), line: rng.next_u64() }
        };
        SubmittedRecord {
            record_id: RecordId::new(non_empty(rng), 1 + rng.below(u64::from(u32::MAX)) as u32).unwrap(),
            tenant,
            model_id: non_empty(rng),
            request: request(rng),
            cache: CacheOptions { mode, ttl, allow_sampling: rng.below(2) == 0 },
            source,
            enqueued_at: instant(rng),
        }
    }

    fn failure(rng: &mut SplitMix64) -> RecordFailure {
        RecordFailure {
            label: ErrorLabel::ALL[rng.below(ErrorLabel::ALL.len() as u64) as usize],
            code: (rng.below(2) == 0).then(|| rng.below(u64::from(u16::MAX) + 1) as u16),
            message: text(rng),
        }
    }

    fn response(rng: &mut SplitMix64) -> ConverseResponse {
        let tokens = |rng: &mut SplitMix64| rng.below(1 << 31);
        let mut body = json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text(rng)}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": tokens(rng), "outputTokens": tokens(rng), "totalTokens": tokens(rng)},
            "metrics": {"latencyMs": rng.below(100_000)}
        });
        if rng.below(2) == 0 {
            body["trace"] = json!({"promptRouter": {"invokedModelId": non_empty(rng)}});
        }
        serde_json::from_value(body).unwrap()
    }

    fn result(rng: &mut SplitMix64) -> RecordResult {
        let state = match rng.below(3) {
            0 => ResultState::Answered {
                response: response(rng),
                usage: Usage {
                    input_tokens: rng.next_u64(),
                    output_tokens: rng.next_u64(),
                    cache_read_input_tokens: rng.next_u64(),
                    cache_write_input_tokens: rng.next_u64(),
                    cache_write_1h_input_tokens: rng.next_u64(),
                },
                batch_cost_usd: (rng.below(2) == 0).then(|| finite_f64(rng)),
                on_demand_cost_usd: (rng.below(2) == 0).then(|| finite_f64(rng)),
            },
            1 => ResultState::Retrying { failure: failure(rng) },
            _ => ResultState::Failed { failure: failure(rng) },
        };
        RecordResult {
            job_id: non_empty(rng),
            record_id: RecordId::new(non_empty(rng), 1 + rng.below(1000) as u32).unwrap(),
            tenant: Tenant::new(non_empty(rng)),
            model_id: non_empty(rng),
            state,
            missing_from_output: rng.below(2) == 0,
            run_id: non_empty(rng),
            stored_at_ms: rng.next_u64(),
        }
    }

    fn summary(rng: &mut SplitMix64) -> JobSummary {
        let outcome = match rng.below(3) {
            0 => JobOutcome::Completed,
            1 => JobOutcome::PartiallyCompleted,
            _ => JobOutcome::Failed { reason: text(rng) },
        };
        JobSummary {
            job_id: non_empty(rng),
            status: JobStatus::ALL[rng.below(JobStatus::ALL.len() as u64) as usize],
            outcome,
            answered: rng.next_u64(),
            failed: rng.next_u64(),
            retrying: rng.next_u64(),
            malformed_lines: rng.next_u64(),
            batch_cost_usd: finite_f64(rng),
            on_demand_cost_usd: finite_f64(rng),
            cache_writes: rng.next_u64(),
            cache_write_failures: rng.next_u64(),
            failures: (0..rng.below(4))
                .map(|_| FailedRecord { record_id: text(rng), failure: failure(rng), will_retry: rng.below(2) == 0 })
                .collect(),
            malformed: (0..rng.below(4))
                .map(|_| MalformedLine {
                    file: text(rng),
                    line: rng.next_u64(),
                    record_id: (rng.below(2) == 0).then(|| text(rng)),
                    reason: text(rng),
                })
                .collect(),
            retries: Vec::new(),
        }
    }

    fn plan(rng: &mut SplitMix64) -> JobPlan {
        JobPlan {
            job_name: non_empty(rng),
            model_id: non_empty(rng),
            input_uri: text(rng),
            output_uri: text(rng),
            records: rng.next_u64(),
            planned_at: instant(rng),
        }
    }

    #[test]
    fn submitted_records_round_trip() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..CASES {
            let original = record(&mut rng);
            let doc = encode_record(&original).unwrap();
            assert_eq!(decode_record(&doc).unwrap(), original, "{doc}");
        }
    }

    #[test]
    fn results_round_trip_with_their_answers_usage_and_costs() {
        let mut rng = SplitMix64::new(2);
        for _ in 0..CASES {
            let original = result(&mut rng);
            let doc = encode_result(&original).unwrap();
            assert_eq!(decode_result(&doc).unwrap(), original, "{doc}");
        }
    }

    #[test]
    fn summaries_round_trip_without_their_retries() {
        let mut rng = SplitMix64::new(3);
        for _ in 0..CASES {
            let original = summary(&mut rng);
            let doc = encode_summary(&original).unwrap();
            assert_eq!(decode_summary(&doc).unwrap(), original, "{doc}");
        }
        let mut with_retries = summary(&mut rng);
        with_retries.retries = vec![record(&mut rng)];
        let decoded = decode_summary(&encode_summary(&with_retries).unwrap()).unwrap();
        assert!(decoded.retries.is_empty(), "the store rebuilds retries from the job's results");
        assert_eq!(JobSummary { retries: with_retries.retries.clone(), ..decoded }, with_retries);
    }

    #[test]
    fn plans_round_trip() {
        let mut rng = SplitMix64::new(4);
        for _ in 0..CASES {
            let original = plan(&mut rng);
            let doc = encode_plan(&original).unwrap();
            assert_eq!(decode_plan(&doc).unwrap(), original, "{doc}");
        }
    }

    #[test]
    fn intakes_round_trip() {
        let mut rng = SplitMix64::new(6);
        for _ in 0..CASES {
            let original = FileIntake {
                file_job: non_empty(&mut rng),
                bucket: non_empty(&mut rng),
                key: text(&mut rng),
                version: (rng.below(2) == 0).then(|| text(&mut rng)),
                records: rng.below(1_000_000),
                refused: (rng.below(3) == 0).then(|| text(&mut rng)),
                tenant: Tenant::new(non_empty(&mut rng)),
                taken_at: instant(&mut rng),
            };
            let doc = encode_intake(&original).unwrap();
            assert_eq!(decode_intake(&doc).unwrap(), original, "{doc}");
        }
    }

    #[test]
    fn a_cost_json_cannot_hold_is_refused_before_it_is_stored() {
        let mut rng = SplitMix64::new(5);
        let mut bad = summary(&mut rng);
        bad.batch_cost_usd = f64::NAN;
        assert!(matches!(encode_summary(&bad), Err(BatchError::Store(_))));
        let mut answered = result(&mut rng);
        answered.state = ResultState::Answered {
            response: response(&mut rng),
            usage: Usage::default(),
            batch_cost_usd: Some(f64::INFINITY),
            on_demand_cost_usd: None,
        };
        let error = encode_result(&answered).unwrap_err();
        assert!(error.to_string().contains("store") && format!("{error:?}").contains("finite"), "{error:?}");
    }

    #[test]
    fn a_document_of_another_version_or_shape_is_refused_with_the_reason() {
        let mut rng = SplitMix64::new(6);
        let doc = encode_plan(&plan(&mut rng)).unwrap();
        let newer = doc.replacen("\"v\":1", "\"v\":2", 1);
        assert!(decode_plan(&newer).unwrap_err().contains("version 2"));
        let mut value: serde_json::Value = serde_json::from_str(&encode_record(&record(&mut rng)).unwrap()).unwrap();
        value["recordId"] = json!("no attempt");
        assert!(decode_record(&value.to_string()).unwrap_err().contains("not a record ID"));
        value["surprise"] = json!(1);
        assert!(decode_record(&value.to_string()).is_err());
        let mut failed = result(&mut rng);
        failed.state = ResultState::Failed { failure: failure(&mut rng) };
        let doc = encode_result(&failed).unwrap();
        let label = format!("\"label\":\"{}\"", doc_label(&doc));
        let unknown = doc.replacen(&label, "\"label\":\"gremlins\"", 1);
        assert!(decode_result(&unknown).unwrap_err().contains("gremlins"));
        assert!(decode_summary("{").is_err());
    }

    fn doc_label(doc: &str) -> String {
        let value: serde_json::Value = serde_json::from_str(doc).unwrap();
        value["state"]["failure"]["label"].as_str().unwrap().to_owned()
    }

    #[test]
    fn an_instant_before_the_epoch_cannot_be_stored() {
        let mut rng = SplitMix64::new(7);
        let mut early = plan(&mut rng);
        early.planned_at = UNIX_EPOCH - Duration::from_secs(1);
        assert!(matches!(encode_plan(&early), Err(BatchError::Store(_))));
    }
}
