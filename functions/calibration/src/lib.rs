//! calibration: the schedule's `Scheduled Event` in, [`Calibration::advance`] called once, how
//! far the run got (and, once it is done, what it cost) out.
//!
//! The event's own time is not used: a run advances as far as Bedrock's jobs allow now, so a
//! late, repeated or retried invocation simply finds the run further along. One instance at
//! a time (the template reserves one), so two invocations never start two runs.

use std::future::Future;
use std::time::SystemTime;

use event_support::{Envelope, EventError, SCHEDULED_EVENT, SCHEDULER_SOURCE};
use gateway_core::calibration::{Advance, Calibration, CalibrationError, CalibrationPorts};
use gateway_core::label::ErrorLabel;
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};

pub use http_support::init_tracing;

/// What the handler needs of the use case, so tests can drive it on fakes.
pub trait Advancer: Send + Sync {
    fn advance(&self, now: SystemTime) -> impl Future<Output = Result<Advance, CalibrationError>> + Send;
}

impl<P: CalibrationPorts> Advancer for Calibration<P> {
    fn advance(&self, now: SystemTime) -> impl Future<Output = Result<Advance, CalibrationError>> + Send {
        // Boxed: the run's stages nest deep enough that the handler's future, unboxed, is past
        // the compiler's layout depth in `main`.
        Box::pin(Calibration::advance(self, now))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
}

impl event_support::HandlerError for RunError {
    fn label(&self) -> ErrorLabel {
        match self {
            RunError::Event(e) => e.label(),
            RunError::Calibration(e) => e.label(),
        }
    }

    /// Every stage repeats safely, so any failure of the run is worth the next invocation;
    /// only an event that is not the schedule's is not.
    fn is_transient(&self) -> bool {
        match self {
            RunError::Event(_) => false,
            RunError::Calibration(_) => true,
        }
    }
}

impl From<RunError> for Diagnostic {
    fn from(error: RunError) -> Diagnostic {
        event_support::diagnostic(event_support::HandlerError::label(&error), &error)
    }
}

/// How far the run got, as the invocation's result and log line show it.
pub fn summary(advance: &Advance) -> Value {
    match advance {
        Advance::Idle { new_samples, min_prompts } => {
            json!({"state": "idle", "newSamples": new_samples, "minPrompts": min_prompts})
        }
        Advance::Waiting { run_id, stage } => json!({"state": "waiting", "runId": run_id, "stage": stage.as_str()}),
        Advance::Finished { run_id, dataset_uri, cost } => json!({
            "state": "done",
            "runId": run_id,
            "datasetUri": dataset_uri,
            "prompts": cost.prompts,
            "answersUsd": cost.answers_usd,
            "gradingUsd": cost.grading_usd,
            "totalUsd": cost.total_usd,
            "per1000PromptsUsd": cost.per_1000_prompts_usd,
        }),
    }
}

#[derive(Debug)]
pub struct Handler<A> {
    calibration: A,
}

impl<A: Advancer> Handler<A> {
    pub fn new(calibration: A) -> Self {
        Handler { calibration }
    }

    /// The Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        self.handle_event(event.payload, SystemTime::now()).await.map_err(Diagnostic::from)
    }

    pub async fn handle_event(&self, event: Value, now: SystemTime) -> Result<Value, RunError> {
        let outcome = self.run(event, now).await;
        event_support::log_outcome(&outcome);
        outcome
    }

    async fn run(&self, event: Value, now: SystemTime) -> Result<Value, RunError> {
        let envelope = Envelope::parse(event)?;
        if !envelope.is(SCHEDULER_SOURCE, SCHEDULED_EVENT) {
            return Err(envelope.unexpected().into());
        }
        Ok(summary(&self.calibration.advance(now).await?))
    }
}
