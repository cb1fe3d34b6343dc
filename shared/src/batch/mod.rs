//! Batch inference: deferred requests and dropped JSONL files grouped into Bedrock batch jobs
//! (or run on demand when too few wait too long), and a finished job's output read back into
//! results the caller can fetch and answers the online cache serves.
//!
//! - [`output`]: the `.jsonl.out` format, streamed one line at a time.
//! - [`record`]: the record ID scheme and the records as submitted (tenant, model, request).
//! - [`ports`]: what the submission and the completion need from the outside, one
//!   capability each.
//! - [`complete`]: the completion stage, from the job-state event to the job's summary.
//! - [`pipeline`]: a job completed end to end (output files listed and streamed, retries
//!   enqueued, results files written) and the reconciler of jobs whose event never came.
//! - [`submit`]: dropped files taken in, jobs planned and submitted, the on-demand fallback.
//! - [`results_file`]: a dropped file's results, one line per input record.
//! - [`defer`]: deferrable HTTP requests, queued for a job unless the cache answers them.
//! - [`config`]: the pipeline's deployer settings.
//! - `memory`: in-memory fakes of the ports (tests, feature `testing`).
//!
//! Exactly once, without a lock: the result of a `(job, record)` is written with a
//! conditional put, after the cache write it depends on, so a run killed anywhere and run
//! again (or a duplicate event's run beside it) writes each result once and rebuilds the same
//! summary from what is stored; the job's summary is itself a conditional put, so a duplicate
//! event after it finds the job finished.

pub mod codec;
pub mod complete;
pub mod config;
pub mod defer;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod output;
pub mod pipeline;
pub mod ports;
pub mod record;
pub mod results_file;
pub mod submit;

#[cfg(test)]
mod pipeline_tests;
#[cfg(test)]
mod submit_tests;
#[cfg(test)]
mod tests;

pub use complete::{BatchCompletion, BatchSettings, Begin, JobOutcome, JobRun, JobSummary};
pub use output::{AsyncOutputReader, OutputReader, RecordError, RecordOutcome};
pub use pipeline::{BatchPipeline, PipelinePorts, PipelineSettings, ReconcileReport};
pub use ports::{
    BatchFiles, BatchJobs, BatchPorts, CreateJob, FileIntake, FileIntakes, FinishOutcome, JobDescription, JobLedger,
    JobPlan, JobPlans, OpenJob, PendingRecords, PutOnce, RecordFailure, RecordResult, RequestStatus, RequestStatuses,
    ResultState, ResultStore, SubmittedRecords,
};
pub use record::{RecordId, RecordSource, SubmittedRecord};
pub use results_file::{ResultsFile, ResultsLayout};
pub use submit::{BatchSubmission, IntakeReport, SubmissionPorts, SubmissionSettings, SubmitReport};

use crate::label::ErrorLabel;

/// A batch job's status as Bedrock reports it (`GetModelInvocationJob`, the job-state event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Submitted,
    Validating,
    Scheduled,
    InProgress,
    Stopping,
    Completed,
    PartiallyCompleted,
    Failed,
    Stopped,
    Expired,
}

impl JobStatus {
    pub const ALL: [JobStatus; 10] = [
        JobStatus::Submitted,
        JobStatus::Validating,
        JobStatus::Scheduled,
        JobStatus::InProgress,
        JobStatus::Stopping,
        JobStatus::Completed,
        JobStatus::PartiallyCompleted,
        JobStatus::Failed,
        JobStatus::Stopped,
        JobStatus::Expired,
    ];

    /// Bedrock's spelling; `None` for a status this code does not know.
    pub fn parse(text: &str) -> Option<JobStatus> {
        Some(match text {
            "Submitted" => JobStatus::Submitted,
            "Validating" => JobStatus::Validating,
            "Scheduled" => JobStatus::Scheduled,
            "InProgress" => JobStatus::InProgress,
            "Stopping" => JobStatus::Stopping,
            "Completed" => JobStatus::Completed,
            "PartiallyCompleted" => JobStatus::PartiallyCompleted,
            "Failed" => JobStatus::Failed,
            "Stopped" => JobStatus::Stopped,
            "Expired" => JobStatus::Expired,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Submitted => "Submitted",
            JobStatus::Validating => "Validating",
            JobStatus::Scheduled => "Scheduled",
            JobStatus::InProgress => "InProgress",
            JobStatus::Stopping => "Stopping",
            JobStatus::Completed => "Completed",
            JobStatus::PartiallyCompleted => "PartiallyCompleted",
            JobStatus::Failed => "Failed",
            JobStatus::Stopped => "Stopped",
            JobStatus::Expired => "Expired",
        }
    }

    /// The job will not change again: its output (possibly partial, possibly none) is final.
    pub fn is_terminal(self) -> bool {
        match self {
            JobStatus::Completed
            | JobStatus::PartiallyCompleted
            | JobStatus::Failed
            | JobStatus::Stopped
            | JobStatus::Expired => true,
            JobStatus::Submitted
            | JobStatus::Validating
            | JobStatus::Scheduled
            | JobStatus::InProgress
            | JobStatus::Stopping => false,
        }
    }
}

/// What the completion is told about a job: the state-change event's `detail` (or, from the
/// reconciler, `GetModelInvocationJob`'s answer).
///
/// `job_id` is the job's *name* (`batchJobName`), not the ID in its ARN: the submission names
/// each job and records its records under that name before `CreateModelInvocationJob`
/// (which is idempotent by the name as client token), so nothing Bedrock runs is ever
/// unknown here, even when the process dies between the two.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub job_id: String,
    /// `batchJobArn`: what `GetModelInvocationJob` takes.
    pub job_arn: String,
    pub status: JobStatus,
    /// `batchModelId`: what the job's records were sent to.
    pub model_id: Option<String>,
    pub failure_message: Option<String>,
}

/// A JSONL file dropped under the input prefix: S3's "Object Created" event, as the
/// submission is told of it. The version or ETag, when given, tells a redelivered event (the
/// same object) from a file dropped again under the same key (new work).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedFile {
    pub bucket: String,
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub event_time: std::time::SystemTime,
}

/// The batch layer's failures: reading the output and the stores behind the ports. A cache
/// write failure is not one of them (as online, it never fails the work; it is counted).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("reading the batch output failed at line {line}")]
    Read {
        line: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("batch store request failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("batch store is throttling requests")]
    Throttled(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("batch store did not answer in time: {0}")]
    Timeout(String),
    #[error("stored batch item is malformed: {0}")]
    Corrupt(String),
    /// Bedrock's control plane or S3 refused or failed a call; `label` says how (a
    /// `ServiceQuotaExceededException` for too many jobs is `QuotaExhausted`: try later).
    #[error("{service} {operation} failed ({label}): {message}")]
    Remote { service: &'static str, operation: &'static str, label: ErrorLabel, message: String },
}

impl BatchError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            BatchError::Read { .. } => ErrorLabel::Transport,
            BatchError::Store(_) => ErrorLabel::Store,
            BatchError::Throttled(_) => ErrorLabel::Throttled,
            BatchError::Timeout(_) => ErrorLabel::Timeout,
            BatchError::Corrupt(_) => ErrorLabel::Corrupt,
            BatchError::Remote { label, .. } => *label,
        }
    }

    /// Whether running the same work again may succeed: a store or service that failed for
    /// now, as opposed to data that will fail the same way. A full job quota is transient:
    /// the records keep waiting and a later pass submits them.
    pub fn is_transient(&self) -> bool {
        match self {
            BatchError::Read { .. } | BatchError::Store(_) | BatchError::Throttled(_) | BatchError::Timeout(_) => true,
            BatchError::Corrupt(_) => false,
            BatchError::Remote { label, .. } => matches!(
                label,
                ErrorLabel::Throttled
                    | ErrorLabel::QuotaExhausted
                    | ErrorLabel::Unavailable
                    | ErrorLabel::Internal
                    | ErrorLabel::Timeout
                    | ErrorLabel::Transport
            ),
        }
    }
}
