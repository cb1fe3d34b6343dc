//! metrics-publisher: the schedule's `Scheduled Event` in, [`Publisher::run`] called, its
//! report out.
//!
//! The event's own time is not used: a run publishes every closed minute not yet published
//! as of now, so a late or retried invocation catches up rather than redoing one minute. A
//! run that had to leave minutes for later (CloudWatch throttled or down, the usage table
//! throttled) fails, so Lambda's `Errors` metric and the function's alarm show it; the next
//! scheduled run publishes them, and nothing is counted twice.

use std::time::{Duration, SystemTime};

use event_support::{Envelope, EventError, SCHEDULED_EVENT, SCHEDULER_SOURCE};
use gateway_core::deadline::Deadline;
use gateway_core::label::ErrorLabel;
use gateway_core::metrics::publish::{PublishLogError, PublishReport, Publisher, PublisherPorts};
use lambda_runtime::{Diagnostic, LambdaEvent};
use serde_json::{Value, json};

pub use http_support::init_tracing;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Event(#[from] EventError),
    #[error(transparent)]
    Log(#[from] PublishLogError),
    #[error("{deferred} minutes left for the next run ({label}); {published} published")]
    Deferred { label: ErrorLabel, deferred: usize, published: usize },
}

impl event_support::HandlerError for PublishError {
    fn label(&self) -> ErrorLabel {
        match self {
            PublishError::Event(e) => e.label(),
            PublishError::Log(e) => e.label(),
            PublishError::Deferred { label, .. } => *label,
        }
    }

    fn is_transient(&self) -> bool {
        !matches!(self, PublishError::Event(_))
    }
}

impl From<PublishError> for Diagnostic {
    fn from(error: PublishError) -> Diagnostic {
        event_support::diagnostic(event_support::HandlerError::label(&error), &error)
    }
}

/// The run's time when the runtime gives no usable deadline: the template's timeout less a
/// margin for the reply.
pub const UNSTATED_DEADLINE: Duration = Duration::from_secs(110);

/// Lambda's deadline is always ahead of an invocation's start; `cargo lambda watch` sends a
/// fixed one in 1970, which would leave every minute for a run that never comes.
pub fn invocation_deadline(stated: SystemTime, now: SystemTime) -> Deadline {
    if stated > now { Deadline::from_wall_clock(stated, Duration::ZERO) } else { Deadline::after(UNSTATED_DEADLINE) }
}

#[derive(Debug)]
pub struct Handler<P> {
    publisher: Publisher<P>,
}

fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The report as the invocation's result and log line show it.
pub fn summary(report: &PublishReport) -> Value {
    json!({
        "minutesPublished": report.minutes_published.iter().map(|m| m.0).collect::<Vec<_>>(),
        "minutesDeferred": report.minutes_deferred.iter().map(|m| m.0).collect::<Vec<_>>(),
        "putMetricDataCalls": report.calls,
        "callsSkipped": report.calls_skipped,
        "callsRejected": report.calls_rejected,
        "datums": report.datums,
        "records": report.records,
        "unreadableRecords": report.unreadable_records,
    })
}

impl<P: PublisherPorts> Handler<P> {
    pub fn new(publisher: Publisher<P>) -> Self {
        Handler { publisher }
    }

    pub fn publisher(&self) -> &Publisher<P> {
        &self.publisher
    }

    /// The Lambda entry point.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, Diagnostic> {
        let now = SystemTime::now();
        let deadline = invocation_deadline(event.context.deadline(), now);
        self.handle_event(event.payload, now, deadline).await.map_err(Diagnostic::from)
    }

    pub async fn handle_event(&self, event: Value, now: SystemTime, deadline: Deadline) -> Result<Value, PublishError> {
        let outcome = self.run(event, now, deadline).await;
        event_support::log_outcome(&outcome);
        outcome
    }

    async fn run(&self, event: Value, now: SystemTime, deadline: Deadline) -> Result<Value, PublishError> {
        let envelope = Envelope::parse(event)?;
        if !envelope.is(SCHEDULER_SOURCE, SCHEDULED_EVENT) {
            return Err(envelope.unexpected().into());
        }
        let report = self.publisher.run(epoch_ms(now), deadline).await?;
        // Out of time counts as a failure too: the alarm on Errors should see a publisher
        // that keeps falling behind.
        let stopped_by = report.stopped_by.or((!report.minutes_deferred.is_empty()).then_some(ErrorLabel::Timeout));
        match stopped_by {
            Some(label) => Err(PublishError::Deferred {
                label,
                deferred: report.minutes_deferred.len(),
                published: report.minutes_published.len(),
            }),
            None => Ok(summary(&report)),
        }
    }
}
