use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::memory::MemoryPipelinePorts;
use super::results_file::line_request_id;
use super::submit::{BatchSubmission, SubmissionSettings, file_job_name};
use super::*;
use crate::admission::{AdmissionMode, Admit, Ask, Limit, Permit, Refusal};
use crate::cache::Tenant;
use crate::catalog::Catalog;
use crate::label::ErrorLabel;
use crate::ports::InvokeError;
use crate::service::{Gateway, GatewaySettings};
use crate::testing::{FakeInvoker, TestPorts};

pub(super) const BUCKET: &str = "bucket";
pub(super) const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
pub(super) const SONNET: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
pub(super) const DROP_KEY: &str = "batch/drop/team/a.jsonl";

pub(super) fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_000_000)
}

pub(super) fn minutes(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

pub(super) fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

pub(super) fn settings(min: usize, max: usize) -> SubmissionSettings {
    SubmissionSettings {
        min_records: min,
        max_records: max,
        ..SubmissionSettings::new(BUCKET, "arn:aws:iam::123456789012:role/batch", Tenant::new("files-team"))
    }
}

pub(super) struct Fixture {
    pub ports: MemoryPipelinePorts,
    pub invoker: Arc<FakeInvoker>,
    pub submission: BatchSubmission<MemoryPipelinePorts>,
}

pub(super) fn fixture(settings: SubmissionSettings) -> Fixture {
    fixture_with(settings, None)
}

fn fixture_with(settings: SubmissionSettings, admission: Option<Arc<dyn Admit>>) -> Fixture {
    fixture_recording(settings, admission, None)
}

fn fixture_recording(
    settings: SubmissionSettings,
    admission: Option<Arc<dyn Admit>>,
    usage: Option<Arc<dyn crate::usage::Recorder>>,
) -> Fixture {
    let ports = MemoryPipelinePorts::default();
    let invoker = Arc::new(FakeInvoker::default());
    let catalog = catalog();
    let mut gateway = Gateway::new(
        catalog.clone(),
        GatewaySettings::from_catalog(&catalog),
        TestPorts::new(ports.cache.clone(), invoker.clone()),
    );
    if let Some(admission) = admission {
        gateway = gateway.with_admission(admission);
    }
    if let Some(usage) = usage {
        gateway = gateway.with_usage(usage);
    }
    let submission = BatchSubmission::new(catalog, settings, ports.clone(), Arc::new(gateway));
    Fixture { ports, invoker, submission }
}

pub(super) fn body(prompt: &str, model: &str) -> Value {
    json!({
        "modelId": model,
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0}
    })
}

pub(super) fn line(record_id: &str, prompt: &str, model: &str) -> String {
    let mut value = body(prompt, model);
    value["recordId"] = json!(record_id);
    value.to_string()
}

/// Drops `lines` as the file `key` and returns its event.
pub(super) fn drop_file(ports: &MemoryPipelinePorts, key: &str, lines: &[String]) -> DroppedFile {
    let mut text = lines.join("\n");
    text.push('\n');
    let size = text.len() as u64;
    ports.files.put(&format!("s3://{BUCKET}/{key}"), text);
    DroppedFile {
        bucket: BUCKET.into(),
        key: key.into(),
        size: Some(size),
        etag: Some("\"etag-1\"".into()),
        version_id: None,
        event_time: t0(),
    }
}

pub(super) fn good_lines(n: usize) -> Vec<String> {
    (0..n).map(|i| line(&format!("caller-{i}"), &format!("prompt {i}"), "haiku")).collect()
}

fn file_job(key: &str) -> String {
    file_job_name(BUCKET, key, Some("\"etag-1\""))
}

fn results_lines(ports: &MemoryPipelinePorts, key: &str) -> Vec<Value> {
    let uri = format!("s3://{BUCKET}/batch/results/{}.results.jsonl", key.trim_start_matches("batch/drop/"));
    let bytes = ports.files.get(&uri).unwrap_or_else(|| panic!("no results file at {uri}"));
    String::from_utf8(bytes).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

pub(super) fn results_file_of(ports: &MemoryPipelinePorts, key: &str) -> Option<Vec<Value>> {
    let uri = format!("s3://{BUCKET}/batch/results/{}.results.jsonl", key.trim_start_matches("batch/drop/"));
    ports.files.get(&uri).map(|_| results_lines(ports, key))
}

#[tokio::test]
async fn a_dropped_file_enqueues_its_good_lines_and_fails_each_bad_one_with_its_reason() {
    let mut s = settings(3, 10);
    s.max_line_bytes = 2_000;
    s.batch_models = Some([HAIKU.to_owned()].into_iter().collect());
    let f = fixture(s);
    let lines = vec![
        line("a", "first", "haiku"),
        "{not json".to_owned(),
        json!({"recordId": "c", "modelId": "haiku", "messages": []}).to_string(),
        line("d", "unknown", "gpt-4o"),
        line("e", "not batch here", "sonnet"),
        line("f", &"x".repeat(3_000), "haiku"),
        String::new(),
        line("g", "second", &format!("us.{HAIKU}")),
        line("h", "routed", "auto"),
        json!({"recordId": 7, "modelId": "haiku", "messages": [{"role": "user", "content": [{"text": "hi"}]}]})
            .to_string(),
        json!({"recordId": "k", "modelId": "haiku", "messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": {"maxTokens": 999_999}}).to_string(),
        line("l", "third", HAIKU),
        line("m", "retired", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ];
    let report = f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &lines)).await.unwrap();

    assert_eq!((report.records, report.enqueued, report.failed), (12, 3, 9), "{report:#?}");
    assert!(!report.duplicate && report.refused.is_none());
    let failure = |line: u64| report.failures.iter().find(|f| f.line == line).unwrap_or_else(|| panic!("line {line}"));
    assert_eq!(failure(2).label, "malformed_json");
    assert_eq!((failure(3).label, failure(3).record_id.as_deref()), ("invalid_request", Some("c")));
    assert!(failure(3).reason.contains("messages"), "{}", failure(3).reason);
    assert_eq!(failure(4).label, "unknown_model");
    assert!(failure(5).reason.contains("does not take batch jobs"), "{}", failure(5).reason);
    assert!(failure(6).reason.contains("longer than 2000 bytes"));
    assert!(failure(9).reason.contains("auto"));
    assert!(failure(10).reason.contains("recordId"));
    assert!(failure(11).reason.contains("maxTokens"));
    assert_eq!(failure(13).label, "model_retired");
    assert!(failure(13).reason.contains("end of life on Amazon Bedrock on 2026-06-19"), "{}", failure(13).reason);

    // Each bad line's result is stored at once, failed, under the file's pseudo job.
    let job = file_job(DROP_KEY);
    assert_eq!(report.file_job, job);
    let stored = f.ports.results.get(&job, &RecordId::new(line_request_id(&job, 4), 1).unwrap()).unwrap();
    assert!(matches!(&stored.state, ResultState::Failed { failure } if failure.label == ErrorLabel::UnknownModel));
    assert_eq!(f.ports.results.writes(), 9);

    // The good lines wait, resolved to the base model, owned by the files' tenant.
    let waiting = f.ports.pending.all();
    let mut lines_waiting: Vec<_> = waiting
        .iter()
        .map(|r| match &r.source {
            RecordSource::File { key, line, .. } if key == DROP_KEY => *line,
            other => panic!("{other:?}"),
        })
        .collect();
    // Waiting is ordered by time, then record ID: not by line.
    lines_waiting.sort_unstable();
    assert_eq!(lines_waiting, [1, 8, 12]);
    assert!(waiting.iter().all(|r| r.model_id == HAIKU && r.tenant == Tenant::new("files-team")));
    assert!(waiting.iter().all(|r| r.request.model_id.is_none()));
    assert_eq!(waiting[0].record_id.to_string(), format!("{job}-1-1"));
    // Not every line is final yet: no results file.
    assert_eq!(results_file_of(&f.ports, DROP_KEY), None);
}

#[tokio::test]
async fn a_redelivered_event_takes_nothing_in_twice_and_a_new_version_is_new_work() {
    let f = fixture(settings(3, 10));
    let mut lines = good_lines(2);
    lines.push("junk".into());
    let event = drop_file(&f.ports, DROP_KEY, &lines);
    let first = f.submission.intake_file(event.clone()).await.unwrap();
    let again = f.submission.intake_file(event.clone()).await.unwrap();
    assert!(again.duplicate && !first.duplicate);
    assert_eq!((again.enqueued, again.records), (0, 3));
    assert_eq!((f.ports.pending.len(), f.ports.results.writes(), f.ports.intakes.len()), (2, 1, 1));

    let replaced = DroppedFile { etag: Some("\"etag-2\"".into()), ..event };
    let report = f.submission.intake_file(replaced).await.unwrap();
    assert!(!report.duplicate);
    assert_ne!(report.file_job, first.file_job);
    assert_eq!(f.ports.pending.len(), 4);
}

#[tokio::test]
async fn empty_and_oversized_files_are_refused_whole_with_one_report() {
    let mut s = settings(3, 10);
    s.max_file_bytes = 500;
    let f = fixture(s);

    let empty = f.submission.intake_file(drop_file(&f.ports, "batch/drop/empty.jsonl", &["   ".into()])).await.unwrap();
    assert_eq!(empty.refused.as_deref(), Some("the file has no records"));
    let report = results_file_of(&f.ports, "batch/drop/empty.jsonl").unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0]["status"], "refused");

    let big = f.submission.intake_file(drop_file(&f.ports, "batch/drop/big.jsonl", &good_lines(10))).await.unwrap();
    assert!(big.refused.as_deref().unwrap().contains("more than the limit of 500"), "{big:?}");
    assert_eq!(big.records, 0);
    assert_eq!(results_file_of(&f.ports, "batch/drop/big.jsonl").unwrap()[0]["status"], "refused");

    // Without a size in the event the object is measured before anything is enqueued.
    let mut unsized_event = drop_file(&f.ports, "batch/drop/unsized.jsonl", &good_lines(10));
    unsized_event.size = None;
    let unsized_report = f.submission.intake_file(unsized_event).await.unwrap();
    assert!(unsized_report.refused.as_deref().unwrap().contains("more than 500 bytes"));
    assert!(f.ports.pending.is_empty());

    // A results file dropped back under the input prefix is never work.
    let echo = f
        .submission
        .intake_file(drop_file(&f.ports, "batch/drop/a.jsonl.results.jsonl", &good_lines(1)))
        .await
        .unwrap();
    assert!(echo.refused.is_some());
    assert!(f.ports.pending.is_empty());
}

#[tokio::test]
async fn a_file_of_only_bad_lines_gets_its_results_file_at_once_one_line_per_record() {
    let f = fixture(settings(3, 10));
    let lines = vec!["{".to_owned(), String::new(), line("x", "p", "gpt-4o"), r#"{"recordId": "y"}"#.to_owned()];
    let report = f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &lines)).await.unwrap();
    assert_eq!((report.records, report.failed), (3, 3));
    let written = results_lines(&f.ports, DROP_KEY);
    let places: Vec<_> = written.iter().map(|l| (l["line"].as_u64().unwrap(), l["recordId"].clone())).collect();
    assert_eq!(places, [(1, Value::Null), (3, json!("x")), (4, json!("y"))]);
    assert!(written.iter().all(|l| l["status"] == "failed" && !l["error"]["message"].as_str().unwrap().is_empty()));
    assert_eq!(written[1]["error"]["label"], "unknown_model");
}

#[tokio::test]
async fn records_below_the_minimum_wait_then_run_on_demand_after_max_wait() {
    let f = fixture(settings(3, 10));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(2))).await.unwrap();

    let early = f.submission.plan_and_submit(t0() + minutes(5)).await.unwrap();
    assert!(early.created.is_empty());
    assert_eq!(early.on_demand.answered, 0);
    assert_eq!((f.ports.pending.len(), f.invoker.calls()), (2, 0));

    let late = f.submission.plan_and_submit(t0() + minutes(15)).await.unwrap();
    assert!(late.created.is_empty());
    assert_eq!(late.on_demand.answered, 2, "{late:#?}");
    assert!(late.on_demand.cost_usd > 0.0);
    assert_eq!(f.invoker.calls(), 2);
    assert!(f.ports.pending.is_empty());
    // Stored as results of the day's on-demand pseudo job, at on-demand prices.
    let request = line_request_id(&file_job(DROP_KEY), 1);
    let result = f.ports.results.latest(&request).await.unwrap().unwrap();
    assert_eq!(result.job_id, "ondemand-20260225");
    let ResultState::Answered { batch_cost_usd, on_demand_cost_usd, .. } = result.state else { panic!() };
    assert_eq!(batch_cost_usd, None);
    assert!(on_demand_cost_usd.unwrap() > 0.0);
    // The online path's cache is warm: the same request online would be a hit.
    assert_eq!(f.ports.cache.len(), 2);
    // Every line is final: the results file is written.
    let written = results_lines(&f.ports, DROP_KEY);
    assert_eq!(written.len(), 2);
    assert!(written.iter().all(|l| l["status"] == "answered" && l["pricing"] == "on_demand"));
    assert_eq!(written[0]["recordId"], "caller-0");
}

#[tokio::test]
async fn exactly_the_minimum_makes_one_job_whose_input_is_recordid_and_modelinput_lines() {
    let f = fixture(settings(3, 10));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(3))).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();

    assert_eq!(report.created.len(), 1, "{report:#?}");
    let job = &report.created[0];
    assert!(!job.deferred && job.job_arn.is_some());
    assert_eq!((job.records, report.records_submitted, job.model_id.as_str()), (3, 3, HAIKU));
    let name = &job.job_name;
    assert!(name.starts_with("gw-20260225061420-") && name.len() == "gw-20260225061420-".len() + 12, "{name}");
    assert_eq!(job.input_uri, format!("s3://{BUCKET}/batch/input/{name}.jsonl"));
    let described = f.ports.remote.by_name(name).unwrap();
    assert_eq!(described.output_uri, format!("s3://{BUCKET}/batch/output/"));

    let input = String::from_utf8(f.ports.files.get(&job.input_uri).unwrap()).unwrap();
    let lines: Vec<Value> = input.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["recordId"], format!("{}-1-1", file_job(DROP_KEY)));
    assert!(lines[0]["modelInput"]["messages"].is_array());
    assert!(lines[0]["modelInput"].get("modelId").is_none());
    assert!(f.ports.pending.is_empty());
    assert_eq!(f.ports.plans.open().await.unwrap().len(), 1);
    // The records are the job's now, as the completion will look them up.
    let id = RecordId::parse(lines[2]["recordId"].as_str().unwrap()).unwrap();
    assert!(f.ports.submissions.submitted(name, &id).await.unwrap().is_some());
}

#[tokio::test]
async fn more_than_the_maximum_makes_several_jobs_and_the_byte_limit_splits_too() {
    let f = fixture(settings(3, 5));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(12))).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();
    let sizes: Vec<_> = report.created.iter().map(|j| j.records).collect();
    assert_eq!(sizes, [5, 5], "the last two wait for more work");
    assert_eq!(f.ports.pending.len(), 2);
    assert_ne!(report.created[0].job_name, report.created[1].job_name);

    let mut s = settings(2, 10);
    let one_line = f.ports.files.get(&report.created[0].input_uri).unwrap().len() as u64 / 5;
    s.max_input_bytes = one_line * 4 + one_line / 2;
    let g = fixture(s);
    g.submission.intake_file(drop_file(&g.ports, DROP_KEY, &good_lines(10))).await.unwrap();
    let report = g.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();
    let sizes: Vec<_> = report.created.iter().map(|j| j.records).collect();
    assert_eq!(sizes, [4, 4, 2]);
    for job in &report.created {
        assert!(g.ports.files.get(&job.input_uri).unwrap().len() as u64 <= one_line * 4 + one_line / 2);
    }
}

#[tokio::test]
async fn a_plan_left_by_a_full_quota_or_a_failed_write_is_resumed_under_its_name() {
    let f = fixture(settings(3, 10));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(3))).await.unwrap();
    f.ports.remote.refuse_next(1);
    let refused = f.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();
    assert!(refused.created[0].deferred && refused.created[0].job_arn.is_none());
    assert_eq!(refused.records_submitted, 0);
    // The records belong to the plan, not to waiting: no other job can take them.
    assert!(f.ports.pending.is_empty());
    assert_eq!(f.ports.plans.unsubmitted().await.unwrap().len(), 1);

    let resumed = f.submission.plan_and_submit(t0() + minutes(2)).await.unwrap();
    assert_eq!(resumed.resumed.len(), 1);
    assert_eq!(resumed.resumed[0].job_name, refused.created[0].job_name);
    assert!(resumed.resumed[0].job_arn.is_some());
    assert!(resumed.created.is_empty());
    assert_eq!(f.ports.remote.creates(), 1);
    assert!(f.ports.plans.unsubmitted().await.unwrap().is_empty());

    // The process dies writing the input: the next run writes it and creates the job.
    let g = fixture(settings(3, 10));
    g.submission.intake_file(drop_file(&g.ports, DROP_KEY, &good_lines(4))).await.unwrap();
    g.ports.files.fail_next_writes(1);
    assert!(g.submission.plan_and_submit(t0() + minutes(1)).await.is_err());
    assert_eq!(g.ports.remote.creates(), 0);
    let report = g.submission.plan_and_submit(t0() + minutes(2)).await.unwrap();
    assert_eq!((report.resumed.len(), report.created.len(), report.records_submitted), (1, 0, 4));
    let input = g.ports.files.get(&report.resumed[0].input_uri).unwrap();
    assert_eq!(String::from_utf8(input).unwrap().lines().count(), 4);
    assert!(g.ports.pending.is_empty());
}

#[tokio::test]
async fn on_demand_failures_retry_as_the_next_attempt_then_fail_for_good() {
    let mut s = settings(3, 10);
    s.max_attempts = 2;
    let f = fixture(s);
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(1))).await.unwrap();
    f.invoker.fail_with(|| InvokeError::Unavailable { message: "down".into() });

    let first = f.submission.plan_and_submit(t0() + minutes(20)).await.unwrap();
    assert_eq!((first.on_demand.retrying, first.on_demand.failed), (1, 0));
    let waiting = f.ports.pending.all();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].record_id.attempt(), 2);
    assert_eq!(waiting[0].enqueued_at, t0(), "a retry keeps the caller's wait");

    let second = f.submission.plan_and_submit(t0() + minutes(21)).await.unwrap();
    assert_eq!((second.on_demand.retrying, second.on_demand.failed), (0, 1));
    assert!(f.ports.pending.is_empty());
    let written = results_lines(&f.ports, DROP_KEY);
    assert_eq!(written[0]["status"], "failed");
    assert_eq!(written[0]["error"]["label"], "unavailable");
}

#[derive(Debug)]
struct NoRoom;

impl Admit for NoRoom {
    fn admit<'a>(
        &'a self,
        ask: Ask<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Permit, Refusal>> + Send + 'a>> {
        let refusal = Refusal {
            key: ask.key.clone(),
            retry_after: Duration::from_secs(5),
            waited: Duration::ZERO,
            limit: Limit::Tokens,
            mode: AdmissionMode::Shared,
        };
        Box::pin(async move { Err(refusal) })
    }
}

#[tokio::test]
async fn overdue_records_wait_when_admission_finds_no_room_in_the_quota() {
    let f = fixture_with(settings(3, 10), Some(Arc::new(NoRoom)));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(2))).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(20)).await.unwrap();
    assert_eq!((report.on_demand.quota_deferred, report.on_demand.answered), (1, 0));
    assert_eq!((f.invoker.calls(), f.ports.pending.len()), (0, 2));
    assert_eq!(f.ports.results.writes(), 0);
}

#[tokio::test]
async fn each_model_gets_its_own_jobs() {
    let f = fixture(settings(2, 10));
    let mut lines = good_lines(2);
    lines.extend((0..2).map(|i| line(&format!("s{i}"), "p", "sonnet")));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &lines)).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();
    let mut models: Vec<_> = report.created.iter().map(|j| (j.model_id.as_str(), j.records)).collect();
    models.sort();
    assert_eq!(models, [(HAIKU, 2), (SONNET, 2)]);
}

#[tokio::test]
async fn bad_lines_and_on_demand_answers_leave_usage_records_as_online_requests_do() {
    use crate::usage::memory::MemoryUsageLedger;
    use crate::usage::{UsageOutcome, UsageSource};

    let ledger = Arc::new(MemoryUsageLedger::default());
    let f = fixture_recording(settings(3, 10), None, Some(ledger.clone()));
    let mut lines = good_lines(2);
    lines.push("not json".to_owned());
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &lines)).await.unwrap();
    let at_intake = ledger.all();
    assert_eq!(at_intake.len(), 1, "{at_intake:#?}");
    assert_eq!(
        (at_intake[0].source, at_intake[0].outcome),
        (UsageSource::Batch, UsageOutcome::Failed(ErrorLabel::MalformedJson))
    );

    f.submission.plan_and_submit(t0() + minutes(15)).await.unwrap();
    let on_demand: Vec<_> = ledger.all().into_iter().filter(|r| r.source == UsageSource::BatchOnDemand).collect();
    assert_eq!(on_demand.len(), 2, "{on_demand:#?}");
    for record in &on_demand {
        assert_eq!(record.outcome, UsageOutcome::Answered);
        assert!(record.cost_usd > 0.0 && record.quota.is_some() && record.quota_tokens > 0);
        assert_eq!(record.saved.batch_usd, 0.0, "paid at on-demand prices: nothing saved by batch");
    }
}
