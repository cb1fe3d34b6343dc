//! Deferrable requests: a Converse request the caller lets wait for a batch job (at the
//! batch price) instead of an answer now, and where such a request stands.
//!
//! A deferred request runs the online path's own stages up to the model call: `prepare`
//! (resolution or routing, limits, the cache key and decision) and the cache read, so that a
//! HIT is answered at once and every invalid request fails exactly as online. A miss is
//! checked for what batch inference cannot do, then waits as a [`SubmittedRecord`] keyed as
//! the online path keys its first attempt, so the batch answer lands in the cache entry the
//! same request online would read. It takes no claim on the key: it calls no model now, and
//! other instances must not wait for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::BatchError;
use super::ports::{PendingRecords, RecordFailure, RecordResult, RequestStatus, RequestStatuses, ResultState};
use super::record::{RecordId, RecordSource, SubmittedRecord};
use crate::cache::Tenant;
use crate::catalog::Catalog;
use crate::cost::Usage;
use crate::ports::Ports;
use crate::request::{ConverseResponse, RequestError};
use crate::service::{Answer, ConverseCall, Gateway, GatewayError, Prepared};

/// A deferred request's first record; each retry of it raises the attempt.
const FIRST_ATTEMPT: u32 = 1;

/// What the HTTP API needs of the batch table: to queue a deferred request, and to say
/// where one stands.
pub trait DeferPorts: Send + Sync {
    type Pending: PendingRecords;
    type Statuses: RequestStatuses;

    fn pending(&self) -> &Self::Pending;
    fn statuses(&self) -> &Self::Statuses;
}

/// One store that is both, as the DynamoDB batch table is.
impl<T: PendingRecords + RequestStatuses> DeferPorts for T {
    type Pending = T;
    type Statuses = T;

    fn pending(&self) -> &T {
        self
    }

    fn statuses(&self) -> &T {
        self
    }
}

#[cfg(any(test, feature = "testing"))]
impl DeferPorts for super::memory::MemoryStatuses {
    type Pending = super::memory::MemoryPending;
    type Statuses = super::memory::MemoryStatuses;

    fn pending(&self) -> &super::memory::MemoryPending {
        &self.pending
    }

    fn statuses(&self) -> &super::memory::MemoryStatuses {
        self
    }
}

/// A deployment without a batch table: no value of it exists, so a handler holding
/// `Option<NoBatchTable>` can only hold `None`, and its deferral paths say so to the caller.
#[derive(Debug, Clone, Copy)]
pub enum NoBatchTable {}

impl PendingRecords for NoBatchTable {
    async fn enqueue(&self, _: &[SubmittedRecord]) -> Result<(), BatchError> {
        match *self {}
    }

    async fn oldest(&self, _: &str, _: usize) -> Result<Vec<SubmittedRecord>, BatchError> {
        match *self {}
    }

    async fn remove(&self, _: &[SubmittedRecord]) -> Result<(), BatchError> {
        match *self {}
    }
}

impl RequestStatuses for NoBatchTable {
    async fn status(&self, _: &Tenant, _: &str) -> Result<Option<RequestStatus>, BatchError> {
        match *self {}
    }
}

/// How a deferrable request was taken.
#[derive(Debug)]
pub enum Deferral {
    /// The cache had the answer: the caller gets it now, exactly as online.
    Answered(Box<Answer>),
    /// Waiting for a batch job under `record.record_id.request_id()`.
    Enqueued(Box<SubmittedRecord>),
}

#[derive(Debug, thiserror::Error)]
pub enum DeferError {
    /// What the online path would have answered: a bad body, an unknown model, limits; and
    /// what batch inference cannot run (as an invalid request naming the field).
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("the request could not be queued for a batch job")]
    Enqueue(#[source] BatchError),
}

impl From<RequestError> for DeferError {
    fn from(e: RequestError) -> Self {
        DeferError::Gateway(GatewayError::InvalidRequest(e))
    }
}

impl<P: Ports> Gateway<P> {
    /// Answers a deferrable request from the cache, or queues it for a batch job as of `now`.
    pub async fn defer<Q: PendingRecords>(
        &self,
        call: ConverseCall,
        pending: &Q,
        now: SystemTime,
    ) -> Result<Deferral, DeferError> {
        let options = call.cache;
        let prepared = self.prepare(call, Instant::now())?;
        let mut report = prepared.cache_report();
        if let Some((entry, read_at)) = self.read(&prepared, &mut report).await {
            return Ok(Deferral::Answered(Box::new(prepared.into_hit(*entry, Vec::new(), report, read_at))));
        }
        let model_id = batch_model(&prepared, self.catalog())?;
        let request_id = fresh_request_id(&prepared, now);
        let record_id = RecordId::new(request_id, FIRST_ATTEMPT)
            .ok_or_else(|| RequestError::invalid("modelId", "no record ID could be made for the request"))?;
        let deadline = prepared.deadline;
        let record = SubmittedRecord {
            record_id,
            tenant: prepared.tenant,
            model_id,
            request: prepared.request,
            cache: options,
            source: RecordSource::Deferred,
            enqueued_at: now,
        };
        deadline
            .bound(pending.enqueue(std::slice::from_ref(&record)))
            .await
            .unwrap_or_else(|_| Err(BatchError::Timeout("the request's deadline passed before it was queued".into())))
            .map_err(DeferError::Enqueue)?;
        Ok(Deferral::Enqueued(Box::new(record)))
    }
}

/// The base model ID a batch job runs the request on: the first attempt's model, as the
/// cache key names it. What batch inference cannot run is refused before anything waits.
fn batch_model(prepared: &Prepared, catalog: &Catalog) -> Result<String, RequestError> {
    let first = prepared.attempts.first().ok_or_else(|| RequestError::invalid("modelId", "resolves to no model"))?;
    if first.quota.is_none() {
        // A prompt router picks its model during the call; a job needs one up front.
        return Err(RequestError::invalid(
            "modelId",
            "a prompt router cannot run in a batch job, so it cannot be deferred",
        ));
    }
    let spec = catalog.by_model_id(&first.key_model).ok_or_else(|| {
        RequestError::invalid("modelId", format!("{} is not in the catalog, so it cannot be deferred", first.key_model))
    })?;
    if !spec.offered_in_batch() {
        return Err(RequestError::invalid(
            "modelId",
            format!("{} has no batch price in the catalog, so it cannot be deferred", spec.display_name),
        ));
    }
    if prepared.request.tool_config.is_some() {
        return Err(RequestError::invalid(
            "toolConfig",
            "batch inference does not run tool use, so it cannot be deferred",
        ));
    }
    Ok(first.key_model.clone())
}

/// 32 hex digits, unique without coordination: the time, the process and a counter, with the
/// request's key. Two requests could share one only if identical, from the same process in
/// the same nanosecond, and then one answer serves both.
fn fresh_request_id(prepared: &Prepared, now: SystemTime) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let clock = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut hash = Sha256::new();
    hash.update(nanos.to_be_bytes());
    hash.update(clock.to_be_bytes());
    hash.update(std::process::id().to_be_bytes());
    hash.update(NEXT.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    hash.update(prepared.tenant.as_str().as_bytes());
    hash.update(prepared.key.to_hex().as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Where a request stands, as `GET /v1/requests/{id}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub request_id: String,
    pub status: StatusName,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    pub attempt: u32,
    /// The Bedrock ID the record was (or is to be) answered by.
    pub model_id: String,
    /// The Converse response, as online.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<ConverseResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageReport>,
    /// At batch rates. Nothing is spent before an answer; `None` when the model is not in the catalog.
    pub cost_usd: Option<f64>,
    /// What the same call would have cost on demand.
    pub on_demand_cost_usd: Option<f64>,
    pub saved_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<StatusError>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusName {
    Pending,
    InJob,
    Answered,
    Retrying,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageReport {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_write_input_tokens: u64,
}

impl From<Usage> for UsageReport {
    fn from(u: Usage) -> Self {
        UsageReport {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_write_input_tokens: u.cache_write_input_tokens,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusError {
    pub label: &'static str,
    pub message: String,
    /// Bedrock's `errorCode`, when it gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
}

impl From<RecordFailure> for StatusError {
    fn from(failure: RecordFailure) -> Self {
        StatusError { label: failure.label.as_str(), message: failure.message, code: failure.code }
    }
}

impl StatusReport {
    pub fn new(status: RequestStatus) -> StatusReport {
        let waiting = |status: StatusName, job_name: Option<String>, record: SubmittedRecord| StatusReport {
            request_id: record.record_id.request_id().to_owned(),
            status,
            job_name,
            attempt: record.record_id.attempt(),
            model_id: record.model_id,
            output: None,
            usage: None,
            cost_usd: Some(0.0),
            on_demand_cost_usd: Some(0.0),
            saved_usd: Some(0.0),
            error: None,
        };
        match status {
            RequestStatus::Pending { record } => waiting(StatusName::Pending, None, record),
            RequestStatus::InJob { job_name, record } => waiting(StatusName::InJob, Some(job_name), record),
            RequestStatus::Done(result) => StatusReport::done(result),
        }
    }

    fn done(result: RecordResult) -> StatusReport {
        let RecordResult { job_id, record_id, model_id, state, .. } = result;
        let mut report = StatusReport {
            request_id: record_id.request_id().to_owned(),
            status: StatusName::Failed,
            job_name: Some(job_id),
            attempt: record_id.attempt(),
            model_id,
            output: None,
            usage: None,
            cost_usd: Some(0.0),
            on_demand_cost_usd: Some(0.0),
            saved_usd: Some(0.0),
            error: None,
        };
        match state {
            ResultState::Answered { response, usage, batch_cost_usd, on_demand_cost_usd } => {
                report.status = StatusName::Answered;
                report.output = Some(response);
                report.usage = Some(usage.into());
                report.cost_usd = batch_cost_usd;
                report.on_demand_cost_usd = on_demand_cost_usd;
                report.saved_usd = batch_cost_usd.zip(on_demand_cost_usd).map(|(batch, online)| online - batch);
            }
            ResultState::Retrying { failure } => {
                report.status = StatusName::Retrying;
                report.error = Some(failure.into());
            }
            ResultState::Failed { failure } => report.error = Some(failure.into()),
        }
        report
    }
}
