//! The handler driven by the EventBridge events of `events/batch-completion/`, over a fake
//! of the completion use cases that records what it was asked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::SystemTime;

use batch_completion::{Completion, Handler, Summary, Trigger};
use gateway_core::batch::{BatchError, JobEvent, JobOutcome, JobStatus, JobSummary};
use gateway_core::label::ErrorLabel;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

const JOB: &str = "gw-20261202141500-3f9a0c7d21be";
const JOB_ARN: &str = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/k2m4p6r8t0v1";
const MODEL_ARN: &str = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0";

/// Builds the failure a fake returns (a `BatchError` cannot be cloned).
type MakeError = fn() -> BatchError;

/// The completion as the pipeline behaves from outside: a job's first completion decides its
/// summary, a duplicate gets the same one back.
#[derive(Debug, Default)]
struct FakeCompletion {
    asked: Mutex<Vec<JobEvent>>,
    finished: Mutex<HashMap<String, JobSummary>>,
    reconciled: Mutex<Vec<SystemTime>>,
    /// The failure the next call returns.
    failure: Mutex<Option<MakeError>>,
}

#[derive(Debug)]
struct Reconciled {
    at: SystemTime,
    completed: u64,
}

impl Summary for Reconciled {
    fn summary(&self) -> Value {
        let at = self.at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        json!({"reconciledAt": at, "completed": self.completed})
    }
}

impl FakeCompletion {
    fn fail_next(&self, failure: MakeError) {
        *self.failure.lock().unwrap() = Some(failure);
    }

    fn failure(&self) -> Option<BatchError> {
        self.failure.lock().unwrap().take().map(|make| make())
    }

    fn asked(&self) -> Vec<JobEvent> {
        self.asked.lock().unwrap().clone()
    }
}

impl Completion for FakeCompletion {
    type Reconciled = Reconciled;

    async fn complete(&self, event: JobEvent) -> Result<JobSummary, BatchError> {
        self.asked.lock().unwrap().push(event.clone());
        if let Some(error) = self.failure() {
            return Err(error);
        }
        let mut finished = self.finished.lock().unwrap();
        let summary = finished.entry(event.job_id.clone()).or_insert_with(|| {
            let (outcome, answered, failed) = match event.status {
                JobStatus::Completed => (JobOutcome::Completed, 3, 0),
                JobStatus::PartiallyCompleted => (JobOutcome::PartiallyCompleted, 2, 1),
                _ => (JobOutcome::Failed { reason: event.failure_message.clone().unwrap_or_default() }, 0, 3),
            };
            JobSummary {
                job_id: event.job_id.clone(),
                status: event.status,
                outcome,
                answered,
                failed,
                retrying: 0,
                malformed_lines: 0,
                batch_cost_usd: 0.5 * answered as f64,
                on_demand_cost_usd: 1.0 * answered as f64,
                cache_writes: answered,
                cache_write_failures: 0,
                failures: Vec::new(),
                malformed: Vec::new(),
                retries: Vec::new(),
            }
        });
        Ok(summary.clone())
    }

    async fn reconcile(&self, now: SystemTime) -> Result<Reconciled, BatchError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        self.reconciled.lock().unwrap().push(now);
        Ok(Reconciled { at: now, completed: self.finished.lock().unwrap().len() as u64 })
    }
}

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/batch-completion/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn handler() -> Handler<FakeCompletion> {
    Handler::new(FakeCompletion::default())
}

async fn invoke(h: &Handler<FakeCompletion>, payload: Value) -> Result<Value, lambda_runtime::Diagnostic> {
    h.handle(LambdaEvent::new(payload, Context::default())).await
}

#[tokio::test]
async fn a_completed_job_is_completed_under_its_name_and_summarised() {
    let h = handler();
    let summary = invoke(&h, event("completed.json")).await.unwrap();
    assert_eq!(
        h.completion().asked(),
        vec![JobEvent {
            job_id: JOB.into(),
            job_arn: JOB_ARN.into(),
            status: JobStatus::Completed,
            model_id: Some(MODEL_ARN.into()),
            failure_message: None,
        }]
    );
    assert_eq!(summary["job"], JOB);
    assert_eq!((summary["status"].as_str(), summary["outcome"].as_str()), (Some("Completed"), Some("completed")));
    assert_eq!((summary["answered"].as_u64(), summary["failed"].as_u64()), (Some(3), Some(0)));
    assert_eq!((summary["batchCostUsd"].as_f64(), summary["savedUsd"].as_f64()), (Some(1.5), Some(1.5)));
    assert!(summary.get("reason").is_none());
}

#[tokio::test]
async fn a_partially_completed_job_is_completed_and_says_so() {
    let h = handler();
    let summary = invoke(&h, event("partially-completed.json")).await.unwrap();
    assert_eq!(h.completion().asked()[0].status, JobStatus::PartiallyCompleted);
    assert_eq!(h.completion().asked()[0].job_id, "gw-20261202150000-8d21c47e09fa");
    assert_eq!(summary["outcome"], "partially_completed");
    assert_eq!((summary["answered"].as_u64(), summary["failed"].as_u64()), (Some(2), Some(1)));
}

#[tokio::test]
async fn a_failed_job_is_completed_with_bedrocks_reason() {
    let h = handler();
    let summary = invoke(&h, event("failed.json")).await.unwrap();
    let asked = h.completion().asked();
    assert_eq!(asked[0].status, JobStatus::Failed);
    assert!(asked[0].failure_message.as_deref().unwrap().contains("Access Denied"));
    assert_eq!(summary["outcome"], "failed");
    assert!(summary["reason"].as_str().unwrap().contains("could not be read"));
}

#[tokio::test]
async fn a_running_job_is_ignored_without_asking_the_use_case() {
    let h = handler();
    let answer = invoke(&h, event("in-progress.json")).await.unwrap();
    assert_eq!((answer["outcome"].as_str(), answer["status"].as_str()), (Some("ignored"), Some("InProgress")));
    assert_eq!(answer["job"], JOB);
    assert!(h.completion().asked().is_empty());
}

#[tokio::test]
async fn a_duplicate_event_gets_the_first_runs_summary() {
    let h = handler();
    let first = invoke(&h, event("completed.json")).await.unwrap();
    let duplicate = invoke(&h, event("completed-duplicate.json")).await.unwrap();
    assert_eq!(first, duplicate);
    let asked = h.completion().asked();
    assert_eq!(asked.len(), 2, "the use case decides what a duplicate is");
    assert_eq!(asked[0], asked[1]);
}

#[tokio::test]
async fn an_unknown_status_is_an_invalid_event_for_the_dead_letter_queue() {
    let h = handler();
    let error = invoke(&h, event("unknown-status.json")).await.unwrap_err();
    assert_eq!(error.error_type, "invalid_request");
    assert!(error.error_message.contains("`Paused`"), "{}", error.error_message);
    assert!(h.completion().asked().is_empty());
}

#[tokio::test]
async fn the_schedule_runs_the_reconciler_at_the_events_time() {
    let h = handler();
    invoke(&h, event("completed.json")).await.unwrap();
    let answer = invoke(&h, event("scheduled.json")).await.unwrap();
    let at = event_support::parse_rfc3339("2026-12-02T16:15:00Z").unwrap();
    assert_eq!(*h.completion().reconciled.lock().unwrap(), vec![at]);
    assert_eq!(answer["completed"], 1);
    assert_eq!(Trigger::from_event(event("scheduled.json")).unwrap(), Trigger::Reconcile(at));
}

#[tokio::test]
async fn use_case_failures_are_diagnostics_named_by_their_label() {
    let h = handler();
    let cases: [(MakeError, &str); 4] = [
        (|| BatchError::Throttled("slow down".into()), "throttled"),
        (|| BatchError::Corrupt("bad doc".into()), "corrupt"),
        (|| BatchError::Timeout("no answer".into()), "timeout"),
        (
            || BatchError::Remote {
                service: "bedrock",
                operation: "GetModelInvocationJob",
                label: ErrorLabel::AccessDenied,
                message: "no".into(),
            },
            "access_denied",
        ),
    ];
    for (failure, label) in cases {
        h.completion().fail_next(failure);
        let error = invoke(&h, event("completed.json")).await.unwrap_err();
        assert_eq!(error.error_type, label);
        h.completion().fail_next(failure);
        assert_eq!(invoke(&h, event("scheduled.json")).await.unwrap_err().error_type, label);
    }
    // Nothing was completed by the failed runs: the next delivery completes the job.
    assert_eq!(invoke(&h, event("completed.json")).await.unwrap()["outcome"], "completed");
}

#[tokio::test]
async fn events_it_does_not_handle_are_errors_naming_them() {
    let h = handler();
    let mut s3 = event("completed.json");
    s3["source"] = "aws.s3".into();
    s3["detail-type"] = "Object Created".into();
    let error = invoke(&h, s3).await.unwrap_err();
    assert_eq!(error.error_type, "invalid_request");
    assert!(error.error_message.contains("Object Created"));

    let mut bare = event("completed.json");
    bare.as_object_mut().unwrap().remove("detail");
    assert_eq!(invoke(&h, bare).await.unwrap_err().error_type, "malformed_json");

    let mut nameless = event("completed.json");
    nameless["detail"]["batchJobName"] = "".into();
    let error = invoke(&h, nameless).await.unwrap_err();
    assert!(error.error_message.contains("batchJobName"), "{}", error.error_message);

    let mut arnless = event("completed.json");
    arnless["detail"].as_object_mut().unwrap().remove("batchJobArn");
    assert_eq!(invoke(&h, arnless).await.unwrap_err().error_type, "malformed_json");

    assert_eq!(invoke(&h, json!([1, 2])).await.unwrap_err().error_type, "malformed_json");
    assert!(h.completion().asked().is_empty());
}
