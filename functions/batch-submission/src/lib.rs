//! batch-submission: EventBridge events in, the submission use cases called, their reports out.
//!
//! - `Object Created` from `aws.s3` → [`DroppedFile`] → [`Submission::intake_file`] when the
//!   object is a `.jsonl` file under the input prefix of the batch bucket
//!   ([`BatchConfig::check_dropped`]); anything else is answered `ignored` with the reason,
//!   since an S3 rule may match more than the pipeline's files.
//! - `Scheduled Event` from `aws.events` → [`Submission::plan_and_submit`] at the event's
//!   `time`: the records waiting are planned into jobs and submitted to Bedrock.
//!
//! This crate only translates. A failure is returned to Lambda as a [`Diagnostic`] whose
//! `errorType` is the failure's label, so EventBridge's retries and then the dead-letter
//! queue take the event; intake and planning are idempotent, so a retry loses and doubles
//! nothing.

use std::future::Future;
use std::time::SystemTime;

use event_support::{Envelope, EventError, HandlerError, SCHEDULED_EVENT, SCHEDULER_SOURCE};
use gateway_core::batch::config::{BatchConfig, NotAnInput};
use gateway_core::batch::submit::{BatchSubmission, IntakeReport, SubmissionPorts, SubmitReport};
use gateway_core::batch::{BatchError, DroppedFile};
use gateway_core::config::ConfigError;
use gateway_core::label::ErrorLabel;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::{Value, json};

pub use http_support::init_tracing;

pub const OBJECT_CREATED: &str = "Object Created";
pub const S3_SOURCE: &str = "aws.s3";

/// The submission use cases this function drives. `gateway_core::batch::BatchSubmission`
/// implements it at the merge (`intake_file`, `plan_and_submit`).
pub trait Submission: Send + Sync {
    /// What taking one dropped file in reports.
    type Intake: Summary + Send;
    /// What one planning and submission pass reports.
    type Submitted: Summary + Send;

    /// Reads the dropped file (through the batch files port) into records waiting for jobs.
    fn intake_file(&self, file: DroppedFile) -> impl Future<Output = Result<Self::Intake, BatchError>> + Send;

    /// Plans the records waiting as of `now` into jobs and submits them.
    fn plan_and_submit(&self, now: SystemTime) -> impl Future<Output = Result<Self::Submitted, BatchError>> + Send;
}

/// A use case's report as the function's answer shows it: JSON for the invocation's result
/// and its log line.
pub trait Summary {
    fn summary(&self) -> Value;
}

/// What an event asks of the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A file to take in.
    Intake(DroppedFile),
    /// An object that is not the pipeline's, and why.
    Ignore { bucket: String, key: String, reason: NotAnInput },
    /// The planner's schedule fired at this time.
    Submit(SystemTime),
}

/// S3's `detail`, the fields the intake needs.
#[derive(Debug, Deserialize)]
struct ObjectCreatedDetail {
    bucket: BucketDetail,
    object: ObjectDetail,
}

#[derive(Debug, Deserialize)]
struct BucketDetail {
    name: String,
}

#[derive(Debug, Deserialize)]
struct ObjectDetail {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
}

impl Trigger {
    /// Reads an EventBridge event; anything but the two kinds above is an error, so that a
    /// rule matching too much is noticed rather than silently absorbed.
    pub fn from_event(event: Value, config: &BatchConfig) -> Result<Trigger, EventError> {
        let envelope = Envelope::parse(event)?;
        if envelope.is(SCHEDULER_SOURCE, SCHEDULED_EVENT) {
            // The schedule's own time, not the clock: a retried invocation plans as the first did.
            return envelope.instant().map(Trigger::Submit);
        }
        if !envelope.is(S3_SOURCE, OBJECT_CREATED) {
            return Err(envelope.unexpected());
        }
        let detail: ObjectCreatedDetail = envelope.detail()?;
        if detail.bucket.name.is_empty() || detail.object.key.is_empty() {
            return Err(EventError::Invalid { field: "detail", reason: "names no bucket or no key".into() });
        }
        let file = DroppedFile {
            bucket: detail.bucket.name,
            key: detail.object.key,
            size: detail.object.size,
            etag: detail.object.etag.filter(|e| !e.is_empty()),
            version_id: detail.object.version_id.filter(|v| !v.is_empty()),
            event_time: envelope.instant()?,
        };
        Ok(match config.check_dropped(&file) {
            Ok(()) => Trigger::Intake(file),
            Err(reason) => Trigger::Ignore { bucket: file.bucket, key: file.key, reason },
        })
    }
}

/// Why an invocation failed: the event, or the use case.
#[derive(Debug, thiserror::Error)]
pub enum SubmissionError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl event_support::HandlerError for SubmissionError {
    fn label(&self) -> ErrorLabel {
        match self {
            SubmissionError::Event(e) => e.label(),
            SubmissionError::Batch(e) => e.label(),
        }
    }

    /// Whether a retry may succeed. Either way Lambda retries and then dead-letters the event;
    /// this only decides how loudly the log says it. A full job quota is transient: the
    /// records keep waiting and the next pass submits them.
    fn is_transient(&self) -> bool {
        match self {
            SubmissionError::Event(_) => false,
            SubmissionError::Batch(e) => e.is_transient(),
        }
    }
}

impl From<SubmissionError> for Diagnostic {
    fn from(error: SubmissionError) -> Diagnostic {
        event_support::diagnostic(error.label(), &error)
    }
}

/// Why a cold start could not build the function.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("batch configuration is invalid: {0}")]
    Config(#[from] ConfigError),
}

#[derive(Debug)]
pub struct Handler<S> {
    submission: S,
    config: BatchConfig,
}

impl<S: Submission> Handler<S> {
    pub fn new(submission: S, config: BatchConfig) -> Self {
        Handler { submission, config }
    }

    pub fn submission(&self) -> &S {
        &self.submission
    }

    /// The Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        self.handle_event(event.payload).await.map_err(Diagnostic::from)
    }

    /// One event: its report, or the failure the runtime reports.
    pub async fn handle_event(&self, event: Value) -> Result<Value, SubmissionError> {
        let outcome = self.run(event).await;
        event_support::log_outcome(&outcome);
        outcome
    }

    async fn run(&self, event: Value) -> Result<Value, SubmissionError> {
        match Trigger::from_event(event, &self.config)? {
            Trigger::Ignore { bucket, key, reason } => Ok(json!({
                "bucket": bucket,
                "key": key,
                "outcome": "ignored",
                "reason": reason.to_string(),
            })),
            Trigger::Intake(file) => Ok(self.submission.intake_file(file).await?.summary()),
            Trigger::Submit(now) => Ok(self.submission.plan_and_submit(now).await?.summary()),
        }
    }
}

impl<P: SubmissionPorts> Submission for BatchSubmission<P> {
    type Intake = IntakeReport;
    type Submitted = SubmitReport;

    async fn intake_file(&self, file: DroppedFile) -> Result<IntakeReport, BatchError> {
        BatchSubmission::intake_file(self, file).await
    }

    async fn plan_and_submit(&self, now: SystemTime) -> Result<SubmitReport, BatchError> {
        BatchSubmission::plan_and_submit(self, now).await
    }
}

impl Summary for IntakeReport {
    fn summary(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl Summary for SubmitReport {
    fn summary(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
