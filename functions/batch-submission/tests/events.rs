//! The handler driven by the EventBridge events of `events/batch-submission/`, over a fake
//! of the submission use cases that records what it was asked.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Mutex;
use std::time::SystemTime;

use batch_submission::{Handler, Submission, Summary};
use gateway_core::batch::config::BatchConfig;
use gateway_core::batch::{BatchError, DroppedFile};
use gateway_core::label::ErrorLabel;
use lambda_runtime::{Context, LambdaEvent};
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct FakeSubmission {
    files: Mutex<Vec<DroppedFile>>,
    passes: Mutex<Vec<SystemTime>>,
    failure: Mutex<Option<fn() -> BatchError>>,
}

impl FakeSubmission {
    fn failure(&self) -> Option<BatchError> {
        self.failure.lock().unwrap().take().map(|make| make())
    }
}

#[derive(Debug)]
struct Intake {
    key: String,
    records: u64,
}

impl Summary for Intake {
    fn summary(&self) -> Value {
        json!({"key": self.key, "outcome": "taken_in", "records": self.records})
    }
}

#[derive(Debug)]
struct Submitted {
    jobs: u64,
}

impl Summary for Submitted {
    fn summary(&self) -> Value {
        json!({"outcome": "submitted", "jobs": self.jobs})
    }
}

impl Submission for FakeSubmission {
    type Intake = Intake;
    type Submitted = Submitted;

    async fn intake_file(&self, file: DroppedFile) -> Result<Intake, BatchError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        let key = file.key.clone();
        let records = file.size.unwrap_or(0) / 100;
        self.files.lock().unwrap().push(file);
        Ok(Intake { key, records })
    }

    async fn plan_and_submit(&self, now: SystemTime) -> Result<Submitted, BatchError> {
        if let Some(error) = self.failure() {
            return Err(error);
        }
        self.passes.lock().unwrap().push(now);
        Ok(Submitted { jobs: self.files.lock().unwrap().len() as u64 })
    }
}

fn config() -> BatchConfig {
    let vars = [("BATCH_TABLE_NAME", "gateway-batch"), ("BATCH_BUCKET", "bedrock-gateway-batch-local")];
    BatchConfig::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap()
}

fn handler() -> Handler<FakeSubmission> {
    Handler::new(FakeSubmission::default(), config())
}

fn event(name: &str) -> Value {
    let path = format!("{}/../../events/batch-submission/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

async fn invoke(h: &Handler<FakeSubmission>, payload: Value) -> Result<Value, lambda_runtime::Diagnostic> {
    h.handle(LambdaEvent::new(payload, Context::default())).await
}

#[tokio::test]
async fn a_dropped_file_is_taken_in_as_s3_described_it() {
    let h = handler();
    let report = invoke(&h, event("object-created.json")).await.unwrap();
    let files = h.submission().files.lock().unwrap().clone();
    assert_eq!(
        files,
        vec![DroppedFile {
            bucket: "bedrock-gateway-batch-local".into(),
            key: "batch/drop/eval-2026-12-02.jsonl".into(),
            size: Some(48_213),
            etag: Some("9b2cf535f27731c974343645a3985328".into()),
            version_id: Some("Xk2vLq8hT3pZr0aY7sWd1mNc4bGf6uJe".into()),
            event_time: event_support::parse_rfc3339("2026-12-02T14:21:07Z").unwrap(),
        }]
    );
    assert_eq!(report, json!({"key": "batch/drop/eval-2026-12-02.jsonl", "outcome": "taken_in", "records": 482}));
}

#[tokio::test]
async fn an_object_outside_the_input_prefix_is_ignored_with_the_reason() {
    let h = handler();
    let report = invoke(&h, event("object-created-wrong-prefix.json")).await.unwrap();
    assert_eq!(report["outcome"], "ignored");
    assert_eq!(report["key"], "reports/2026-12/summary.jsonl");
    assert!(report["reason"].as_str().unwrap().contains("batch/drop/"), "{report}");
    for (bucket, key) in [("bedrock-gateway-batch-local", "batch/drop/notes.txt"), ("elsewhere", "batch/drop/a.jsonl")]
    {
        let mut other = event("object-created.json");
        other["detail"]["bucket"]["name"] = bucket.into();
        other["detail"]["object"]["key"] = key.into();
        assert_eq!(invoke(&h, other).await.unwrap()["outcome"], "ignored", "{bucket}/{key}");
    }
    assert!(h.submission().files.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_schedule_plans_and_submits_at_the_events_time() {
    let h = handler();
    invoke(&h, event("object-created.json")).await.unwrap();
    let report = invoke(&h, event("scheduled.json")).await.unwrap();
    assert_eq!(report, json!({"outcome": "submitted", "jobs": 1}));
    let at = event_support::parse_rfc3339("2026-12-02T14:30:00Z").unwrap();
    assert_eq!(*h.submission().passes.lock().unwrap(), vec![at]);
}

#[tokio::test]
async fn an_event_without_detail_is_malformed_and_takes_nothing_in() {
    let h = handler();
    let error = invoke(&h, event("malformed-missing-detail.json")).await.unwrap_err();
    assert_eq!(error.error_type, "malformed_json");
    assert!(error.error_message.contains("Object Created"), "{}", error.error_message);
    let mut keyless = event("object-created.json");
    keyless["detail"]["object"].as_object_mut().unwrap().remove("key");
    assert_eq!(invoke(&h, keyless).await.unwrap_err().error_type, "malformed_json");
    let mut timeless = event("object-created.json");
    timeless["time"] = "yesterday".into();
    let error = invoke(&h, timeless).await.unwrap_err();
    assert_eq!((error.error_type.as_str(), error.error_message.contains("`time`")), ("invalid_request", true));
    assert!(h.submission().files.lock().unwrap().is_empty());
}

#[tokio::test]
async fn use_case_failures_are_diagnostics_named_by_their_label() {
    let h = handler();
    *h.submission().failure.lock().unwrap() = Some(|| BatchError::Remote {
        service: "bedrock",
        operation: "CreateModelInvocationJob",
        label: ErrorLabel::QuotaExhausted,
        message: "too many jobs".into(),
    });
    assert_eq!(invoke(&h, event("scheduled.json")).await.unwrap_err().error_type, "quota_exhausted");
    *h.submission().failure.lock().unwrap() = Some(|| BatchError::Store("down".into()));
    let error = invoke(&h, event("object-created.json")).await.unwrap_err();
    assert_eq!(error.error_type, "store");
    // The redelivered event is taken in once the store answers.
    assert_eq!(invoke(&h, event("object-created.json")).await.unwrap()["outcome"], "taken_in");
}

#[tokio::test]
async fn other_events_are_errors_naming_them() {
    let h = handler();
    let mut bedrock = event("scheduled.json");
    bedrock["source"] = "aws.bedrock".into();
    bedrock["detail-type"] = "Batch Inference Job State Change".into();
    let error = invoke(&h, bedrock).await.unwrap_err();
    assert_eq!(error.error_type, "invalid_request");
    assert!(error.error_message.contains("Batch Inference Job State Change"));
}
