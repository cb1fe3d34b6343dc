//! batch-completion: EventBridge events in, the completion use case called, its summary out.
//!
//! - `Batch Inference Job State Change` from `aws.bedrock` → [`JobEvent`] →
//!   [`Completion::complete`] for a terminal status; a job still running is answered
//!   `ignored`, since its output is not final.
//! - `Scheduled Event` from `aws.events` → [`Completion::reconcile`] at the event's `time`:
//!   Bedrock delivers state changes best effort, so the schedule asks about open jobs.
//!
//! This crate only translates. A failure is returned to Lambda as a [`Diagnostic`] whose
//! `errorType` is the failure's label, so EventBridge's retries and then the dead-letter
//! queue take the event; the use case is idempotent, so a retry finishes what a run began.

use std::future::Future;
use std::time::SystemTime;

use event_support::{Envelope, EventError, HandlerError, SCHEDULED_EVENT, SCHEDULER_SOURCE};
use gateway_core::batch::pipeline::{BatchPipeline, PipelinePorts, ReconcileReport};
use gateway_core::batch::{BatchError, JobEvent, JobOutcome, JobStatus, JobSummary};
use gateway_core::config::ConfigError;
use gateway_core::label::ErrorLabel;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde::Deserialize;
use serde_json::{Value, json};

pub use http_support::init_tracing;

pub const JOB_STATE_CHANGE: &str = "Batch Inference Job State Change";
pub const BEDROCK_SOURCE: &str = "aws.bedrock";

/// The completion use cases this function drives. `gateway_core::batch::BatchPipeline`
/// implements it at the merge (`complete_job`, `reconcile`).
pub trait Completion: Send + Sync {
    /// What one reconciler pass reports.
    type Reconciled: Summary + Send;

    /// Completes a job whose status is terminal; a duplicate event returns the job's summary.
    fn complete(&self, event: JobEvent) -> impl Future<Output = Result<JobSummary, BatchError>> + Send;

    /// Asks Bedrock about every open job as of `now`, completing those that ended.
    fn reconcile(&self, now: SystemTime) -> impl Future<Output = Result<Self::Reconciled, BatchError>> + Send;
}

/// A use case's report as the function's answer shows it: JSON for the invocation's result
/// and its log line.
pub trait Summary {
    fn summary(&self) -> Value;
}

impl Summary for JobSummary {
    fn summary(&self) -> Value {
        let (outcome, reason) = match &self.outcome {
            JobOutcome::Completed => ("completed", None),
            JobOutcome::PartiallyCompleted => ("partially_completed", None),
            JobOutcome::Running => ("running", None),
            JobOutcome::Failed { reason } => ("failed", Some(reason.as_str()).filter(|r| !r.is_empty())),
        };
        let mut summary = json!({
            "job": self.job_id,
            "status": self.status.as_str(),
            "outcome": outcome,
            "answered": self.answered,
            "failed": self.failed,
            "retrying": self.retrying,
            "malformedLines": self.malformed_lines,
            "batchCostUsd": self.batch_cost_usd,
            "onDemandCostUsd": self.on_demand_cost_usd,
            "savedUsd": self.saved_usd(),
            "cacheWrites": self.cache_writes,
            "cacheWriteFailures": self.cache_write_failures,
            "retries": self.retries.len(),
        });
        if let (Some(reason), Some(map)) = (reason, summary.as_object_mut()) {
            map.insert("reason".into(), reason.into());
        }
        summary
    }
}

/// What an event asks of the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// A job changed state.
    Job(JobEvent),
    /// The reconciler's schedule fired at this time.
    Reconcile(SystemTime),
}

/// The state-change event's `detail`, the fields the completion needs.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobStateDetail {
    batch_job_name: String,
    batch_job_arn: String,
    #[serde(default)]
    batch_model_id: Option<String>,
    status: String,
    #[serde(default)]
    failure_message: Option<String>,
}

impl Trigger {
    /// Reads an EventBridge event; anything but the two kinds above is an error, so that a
    /// rule matching too much is noticed rather than silently absorbed.
    pub fn from_event(event: Value) -> Result<Trigger, EventError> {
        let envelope = Envelope::parse(event)?;
        if envelope.is(SCHEDULER_SOURCE, SCHEDULED_EVENT) {
            // The schedule's own time, not the clock: a retried invocation decides as the first did.
            return envelope.instant().map(Trigger::Reconcile);
        }
        if !envelope.is(BEDROCK_SOURCE, JOB_STATE_CHANGE) {
            return Err(envelope.unexpected());
        }
        let detail: JobStateDetail = envelope.detail()?;
        let status = JobStatus::parse(&detail.status).ok_or_else(|| EventError::Invalid {
            field: "detail.status",
            reason: format!("`{}` is not a batch job status this function knows", detail.status),
        })?;
        let non_empty = |field: &'static str, value: String| {
            if value.trim().is_empty() {
                Err(EventError::Invalid { field, reason: "is empty".into() })
            } else {
                Ok(value)
            }
        };
        Ok(Trigger::Job(JobEvent {
            job_id: non_empty("detail.batchJobName", detail.batch_job_name)?,
            job_arn: non_empty("detail.batchJobArn", detail.batch_job_arn)?,
            status,
            model_id: detail.batch_model_id.filter(|m| !m.is_empty()),
            // Bedrock sends `""` when nothing failed.
            failure_message: detail.failure_message.filter(|m| !m.is_empty()),
        }))
    }
}

/// Why an invocation failed: the event, or the use case.
#[derive(Debug, thiserror::Error)]
pub enum CompletionError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Batch(#[from] BatchError),
}

impl event_support::HandlerError for CompletionError {
    fn label(&self) -> ErrorLabel {
        match self {
            CompletionError::Event(e) => e.label(),
            CompletionError::Batch(e) => e.label(),
        }
    }

    /// Whether a retry may succeed. Either way Lambda retries and then dead-letters the event;
    /// this only decides how loudly the log says it.
    fn is_transient(&self) -> bool {
        match self {
            CompletionError::Event(_) => false,
            CompletionError::Batch(e) => e.is_transient(),
        }
    }
}

impl From<CompletionError> for Diagnostic {
    fn from(error: CompletionError) -> Diagnostic {
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
pub struct Handler<C> {
    completion: C,
}

impl<C: Completion> Handler<C> {
    pub fn new(completion: C) -> Self {
        Handler { completion }
    }

    pub fn completion(&self) -> &C {
        &self.completion
    }

    /// The Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        self.handle_event(event.payload).await.map_err(Diagnostic::from)
    }

    /// One event: its summary, or the failure the runtime reports.
    pub async fn handle_event(&self, event: Value) -> Result<Value, CompletionError> {
        let outcome = self.run(event).await;
        event_support::log_outcome(&outcome);
        outcome
    }

    async fn run(&self, event: Value) -> Result<Value, CompletionError> {
        match Trigger::from_event(event)? {
            Trigger::Job(job) if !job.status.is_terminal() => Ok(json!({
                "job": job.job_id,
                "status": job.status.as_str(),
                "outcome": "ignored",
                "reason": "the job has not ended; its output is not final",
            })),
            Trigger::Job(job) => Ok(self.completion.complete(job).await?.summary()),
            Trigger::Reconcile(now) => Ok(self.completion.reconcile(now).await?.summary()),
        }
    }
}

impl<P: PipelinePorts> Completion for BatchPipeline<P> {
    type Reconciled = ReconcileReport;

    async fn complete(&self, event: JobEvent) -> Result<JobSummary, BatchError> {
        self.complete_job(event).await
    }

    async fn reconcile(&self, now: SystemTime) -> Result<ReconcileReport, BatchError> {
        BatchPipeline::reconcile(self, now).await
    }
}

impl Summary for ReconcileReport {
    fn summary(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
