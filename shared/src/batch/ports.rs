//! The batch completion's ports, one capability each, in domain types. The cache write goes
//! through the online path's own [`CacheStore`].

use std::future::Future;
use std::time::SystemTime;

use tokio::io::AsyncBufRead;

use super::complete::JobSummary;
use super::record::{RecordId, SubmittedRecord};
use super::{BatchError, JobStatus};
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
    /// When the result was first stored, milliseconds since the epoch: its usage record's
    /// time, so a rerun that writes the record again writes it to the same minute, once.
    pub stored_at_ms: u64,
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

// ---- The submission side: work waiting for a job, the jobs planned and submitted. ----

/// Records waiting for a job, per model, oldest first. Deferred HTTP requests, lines of
/// dropped files and retries of failed records all wait here.
pub trait PendingRecords: Send + Sync {
    /// Adds records to wait. Idempotent: a record (model, `enqueued_at`, record ID) already
    /// waiting stays as it is, so a redelivered event or a rerun enqueues nothing twice.
    fn enqueue(&self, records: &[SubmittedRecord]) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Up to `limit` records waiting for `model_id`, oldest `enqueued_at` first.
    fn oldest(
        &self,
        model_id: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<SubmittedRecord>, BatchError>> + Send;

    /// Takes records out of waiting: they are in a submitted job now, or were answered on
    /// demand. Removing a record that is not waiting is no error.
    fn remove(&self, records: &[SubmittedRecord]) -> impl Future<Output = Result<(), BatchError>> + Send;
}

/// A job the submission decided on, before and after Bedrock knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPlan {
    /// Chosen here, unique, valid as a Bedrock job name and as the client request token that
    /// makes `CreateModelInvocationJob` idempotent: the key of everything about the job.
    pub job_name: String,
    /// The base model ID every record of the job is sent to.
    pub model_id: String,
    /// `s3://bucket/key` of the input JSONL the submission writes.
    pub input_uri: String,
    /// `s3://bucket/prefix/` Bedrock writes `<jobId>/<input>.jsonl.out` under.
    pub output_uri: String,
    pub records: u64,
    pub planned_at: SystemTime,
}

/// A job Bedrock accepted whose completion is not done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenJob {
    pub plan: JobPlan,
    pub job_arn: String,
    pub submitted_at: SystemTime,
}

/// The jobs' own records: planned (records written, not yet accepted by Bedrock) and
/// submitted (accepted, not yet finished). [`JobLedger::finish`] closes a job.
pub trait JobPlans: Send + Sync {
    /// Records the plan and its records (readable through [`SubmittedRecords`] under
    /// `plan.job_name`), before anything is sent to Bedrock. Idempotent by job name.
    fn plan(&self, plan: &JobPlan, records: &[SubmittedRecord]) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Bedrock accepted the job under `job_arn`.
    fn submitted(
        &self,
        job_name: &str,
        job_arn: &str,
        at: SystemTime,
    ) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// Plans never marked submitted (the process died, or Bedrock refused for now): the
    /// submission resumes them before planning anything new.
    fn unsubmitted(&self) -> impl Future<Output = Result<Vec<JobPlan>, BatchError>> + Send;

    /// Submitted jobs not finished: the reconciler asks Bedrock about each, since the
    /// state-change event may never come.
    fn open(&self) -> impl Future<Output = Result<Vec<OpenJob>, BatchError>> + Send;
}

/// Where a request stands, for `GET /v1/requests/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestStatus {
    /// Waiting for a job (or for its on-demand turn).
    Pending { record: SubmittedRecord },
    /// In job `job_name`, not answered yet.
    InJob { job_name: String, record: SubmittedRecord },
    /// The latest attempt's result: answered, failed for good, or failed and waiting to retry
    /// (a retry that is pending again shows as `Pending`).
    Done(RecordResult),
}

pub trait RequestStatuses: Send + Sync {
    /// The most advanced state of the request's latest attempt; `None` for an unknown ID.
    /// Scoped to `tenant`: another tenant's request is unknown.
    fn status(
        &self,
        tenant: &Tenant,
        request_id: &str,
    ) -> impl Future<Output = Result<Option<RequestStatus>, BatchError>> + Send;
}

// ---- Bedrock's batch control plane and S3, as the pipeline needs them. ----

/// What `CreateModelInvocationJob` is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateJob {
    pub plan: JobPlan,
    /// What the job invokes: the base model where it runs in-region, else its first inference
    /// profile (Bedrock refuses a base ID that needs a profile, as on demand).
    pub model_id: String,
    /// The service role Bedrock assumes to read the input and write the output.
    pub role_arn: String,
    /// `modelInvocationType`: `Converse` for Converse-shaped records.
    pub invocation_type: Option<String>,
    pub timeout_hours: Option<u32>,
}

/// What `GetModelInvocationJob` says of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDescription {
    pub job_name: String,
    pub job_arn: String,
    pub status: JobStatus,
    pub model_id: String,
    /// `s3://…/` as configured; the files are under `<output_uri><jobId>/`.
    pub output_uri: String,
    pub failure_message: Option<String>,
}

pub trait BatchJobs: Send + Sync {
    /// Creates the job, with its name as the client request token: asking again for the
    /// same plan returns the same job's ARN. Too many jobs in flight is
    /// `BatchError::Remote { label: QuotaExhausted, .. }`.
    fn create(&self, job: &CreateJob) -> impl Future<Output = Result<String, BatchError>> + Send;

    fn describe(&self, job_arn: &str) -> impl Future<Output = Result<JobDescription, BatchError>> + Send;
}

/// S3 as the pipeline reads and writes it, by `s3://bucket/key` URIs.
pub trait BatchFiles: Send + Sync {
    type Reader: AsyncBufRead + Unpin + Send;

    /// Writes an object whole (a job's input, a dropped file's results).
    fn write(&self, uri: &str, body: Vec<u8>) -> impl Future<Output = Result<(), BatchError>> + Send;

    /// The URIs of every object under `prefix_uri`, in key order.
    fn list(&self, prefix_uri: &str) -> impl Future<Output = Result<Vec<String>, BatchError>> + Send;

    /// The object's bytes as a stream, never held whole. `None` when there is no such object.
    fn open(&self, uri: &str) -> impl Future<Output = Result<Option<Self::Reader>, BatchError>> + Send;

    /// Deletes an object; one already gone is no error, so a repeated delete is safe.
    fn delete(&self, uri: &str) -> impl Future<Output = Result<(), BatchError>> + Send;
}

// ---- Dropped files: what it takes to write a file's results once every line is final. ----

/// A dropped JSONL file as the intake took it in. Its lines' request IDs are
/// `<file_job>-<line>`, so the results writer derives every line's request from the file
/// itself and needs nothing stored per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileIntake {
    /// `file-<16 hex>` of the bucket, key and object version: the pseudo job its bad lines'
    /// results are stored under, and the prefix of its lines' request IDs.
    pub file_job: String,
    pub bucket: String,
    pub key: String,
    /// The object's version ID, else its ETag: what the request IDs were derived from.
    pub version: Option<String>,
    /// Lines carrying a record (blank lines carry none): a results writer that reads another
    /// count from the object is reading another object, and writes nothing.
    pub records: u64,
    /// Set when the whole file was refused (empty, too large, unreadable): no line of it runs.
    pub refused: Option<String>,
    pub tenant: Tenant,
    pub taken_at: SystemTime,
}

/// The dropped files taken in, by their `file_job`.
pub trait FileIntakes: Send + Sync {
    /// Records the intake unless one for `intake.file_job` is recorded already (a conditional
    /// write, the intake's commit point): `true` when this call recorded it.
    fn record_intake(&self, intake: &FileIntake) -> impl Future<Output = Result<bool, BatchError>> + Send;

    fn intake(&self, file_job: &str) -> impl Future<Output = Result<Option<FileIntake>, BatchError>> + Send;
}
