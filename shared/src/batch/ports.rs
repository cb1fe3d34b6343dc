//! The batch completion's ports, one capability each, in domain types. The cache write goes
//! through the online path's own [`CacheStore`].

use std::future::Future;

use super::BatchError;
use super::complete::JobSummary;
use super::record::{RecordId, SubmittedRecord};
use crate::cache::Tenant;
use crate::cost::Usage;
use crate::label::ErrorLabel;
use crate::ports::CacheStore;
use crate::request::ConverseResponse;

/// Every port a [`BatchCompletion`](super::BatchCompletion) uses, bundled as [`crate::ports::Ports`] is.
pub trait BatchPorts: Send + Sync {
    type Submissions: SubmittedRecords;
    type Results: ResultStore;
    type Jobs: JobLedger;
    type Cache: CacheStore;

    fn submissions(&self) -> &Self::Submissions;
    fn results(&self) -> &Self::Results;
    fn jobs(&self) -> &Self::Jobs;
    fn cache(&self) -> &Self::Cache;
}

/// The records as the submission wrote them into jobs.
pub trait SubmittedRecords: Send + Sync {
    /// The record `record_id` of job `job_id`; `None` when the job never had it.
    fn submitted(
        &self,
        job_id: &str,
        record_id: &RecordId,
    ) -> impl Future<Output = Result<Option<SubmittedRecord>, BatchError>> + Send;

    /// Up to `limit` records of job `job_id` in record ID order, after `after` (from the
    /// first when `None`): how the completion finds records the output never mentioned.
    fn page(
        &self,
        job_id: &str,
        after: Option<&RecordId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SubmittedRecord>, BatchError>> + Send;
}

/// Where results wait for their caller: one item per `(job, record)`.
pub trait ResultStore: Send + Sync {
    /// Stores `result` unless a result for its `(job, record)` is stored already (a
    /// conditional write), in which case the stored one is returned and nothing is written.
    fn put_once(&self, result: &RecordResult) -> impl Future<Output = Result<PutOnce, BatchError>> + Send;

    /// The result of the request's latest attempt, what `GET /v1/requests/{id}` shows.
    fn latest(&self, request_id: &str) -> impl Future<Output = Result<Option<RecordResult>, BatchError>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub enum PutOnce {
    Written,
    AlreadyStored(Box<RecordResult>),
}

/// The jobs whose completion is done.
pub trait JobLedger: Send + Sync {
    fn finished(&self, job_id: &str) -> impl Future<Output = Result<Option<JobSummary>, BatchError>> + Send;

    /// Records `summary` as its job's, unless the job has one already (a conditional write).
    fn finish(&self, summary: &JobSummary) -> impl Future<Output = Result<FinishOutcome, BatchError>> + Send;
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinishOutcome {
    Recorded,
    /// Another run of the same job finished first; its summary stands.
    AlreadyFinished(Box<JobSummary>),
}

/// What became of one record of one job.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordResult {
    pub job_id: String,
    pub record_id: RecordId,
    pub tenant: Tenant,
    /// The Bedrock ID that answered (or would have).
    pub model_id: String,
    pub state: ResultState,
    /// Written because the job ended without an output line for the record, not from one.
    pub missing_from_output: bool,
    /// The completion run that wrote it: a second line for the same record in the same run
    /// is a duplicate line, a result from another run is an earlier (or concurrent) run's.
    pub run_id: String,
}

#[derive(Debug, Clone, PartialEq)]
#[expect(clippy::large_enum_variant, reason = "most results are answers; a box would add an allocation per record")]
pub enum ResultState {
    Answered {
        response: ConverseResponse,
        usage: Usage,
        /// At the catalog's batch rates; `None` when the model is not in the catalog.
        batch_cost_usd: Option<f64>,
        /// What the same call would have cost on demand.
        on_demand_cost_usd: Option<f64>,
    },
    /// Failed in this job; the record goes into a later one as `record_id.next_attempt()`.
    Retrying { failure: RecordFailure },
    /// Failed for good: not retryable, or out of attempts.
    Failed { failure: RecordFailure },
}

/// Why a record failed, named in the one vocabulary of labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    pub label: ErrorLabel,
    /// Bedrock's `errorCode`, when it gave one.
    pub code: Option<u16>,
    pub message: String,
}
