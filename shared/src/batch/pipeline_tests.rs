use std::sync::Arc;

use serde_json::{Value, json};

use super::memory::MemoryPipelinePorts;
use super::pipeline::{BatchPipeline, PipelineSettings, job_id_of_arn};
use super::submit_tests::{
    BUCKET, DROP_KEY, Fixture, HAIKU, catalog, drop_file, fixture, good_lines, line, minutes, results_file_of,
    settings, t0,
};
use super::*;
use crate::label::ErrorLabel;

fn pipeline(ports: &MemoryPipelinePorts) -> BatchPipeline<MemoryPipelinePorts> {
    pipeline_with(ports, BatchSettings::default())
}

fn pipeline_with(ports: &MemoryPipelinePorts, completion: BatchSettings) -> BatchPipeline<MemoryPipelinePorts> {
    BatchPipeline::new(catalog(), PipelineSettings { completion, ..PipelineSettings::default() }, ports.clone())
}

/// What Bedrock does with one record of the input.
enum Line {
    Answer,
    Error(u16),
}

fn output_line(record_id: &str, input: &Value, what: &Line) -> String {
    match what {
        Line::Answer => json!({
            "recordId": record_id,
            "modelInput": input,
            "modelOutput": {
                "output": {"message": {"role": "assistant", "content": [{"text": format!("answer to {record_id}")}]}},
                "stopReason": "end_turn",
                "usage": {"inputTokens": 100, "outputTokens": 50, "totalTokens": 150}
            }
        }),
        Line::Error(code) => json!({
            "recordId": record_id,
            "modelInput": input,
            "error": {"errorCode": code, "errorMessage": format!("failed with {code}")}
        }),
    }
    .to_string()
}

/// Runs the job as Bedrock would: reads its input, writes `<output>/<jobId>/<name>.jsonl.out`
/// (lines in reverse order: Bedrock promises none) and a manifest, sets the status.
fn bedrock_runs(f: &Fixture, job_name: &str, status: JobStatus, what: impl Fn(usize, &str) -> Line) -> JobEvent {
    let job = f.ports.remote.by_name(job_name).unwrap();
    let plan = f.ports.plans.plans().into_iter().find(|p| p.job_name == job_name).unwrap();
    let input = String::from_utf8(f.ports.files.get(&plan.input_uri).unwrap()).unwrap();
    let mut lines: Vec<String> = input
        .lines()
        .enumerate()
        .map(|(i, l)| {
            let v: Value = serde_json::from_str(l).unwrap();
            let id = v["recordId"].as_str().unwrap().to_owned();
            output_line(&id, &v["modelInput"], &what(i, &id))
        })
        .collect();
    lines.reverse();
    let folder = format!("{}{}/", job.output_uri, job_id_of_arn(&job.job_arn));
    let mut body = lines.join("\n");
    body.push('\n');
    f.ports.files.put(&format!("{folder}{job_name}.jsonl.out"), body);
    f.ports.files.put(&format!("{folder}manifest.json.out"), r#"{"totalRecordCount": 1}"#);
    f.ports.remote.set_status(&job.job_arn, status, None);
    event_of(f, job_name, status)
}

fn event_of(f: &Fixture, job_name: &str, status: JobStatus) -> JobEvent {
    let job = f.ports.remote.by_name(job_name).unwrap();
    JobEvent {
        job_id: job_name.into(),
        job_arn: job.job_arn,
        status,
        model_id: Some(HAIKU.into()),
        failure_message: None,
    }
}

/// Drops `lines`, submits them, returns the one job's name.
async fn submitted(f: &Fixture, lines: &[String], at_minute: u64) -> String {
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, lines)).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(at_minute)).await.unwrap();
    assert_eq!(report.created.len(), 1, "{report:#?}");
    report.created[0].job_name.clone()
}

#[tokio::test]
async fn a_completed_job_is_read_from_its_output_folder_priced_at_batch_rates_and_cached() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    let event = bedrock_runs(&f, &job, JobStatus::Completed, |_, _| Line::Answer);
    let summary = pipeline(&f.ports).complete_job(event).await.unwrap();

    assert_eq!((summary.answered, summary.failed, summary.malformed_lines), (3, 0, 0), "{summary:#?}");
    assert_eq!(summary.outcome, JobOutcome::Completed);
    assert!(summary.batch_cost_usd > 0.0);
    assert!((summary.batch_cost_usd * 2.0 - summary.on_demand_cost_usd).abs() < 1e-12);
    assert_eq!(summary.cache_writes, 3);
    assert!(f.ports.plans.open().await.unwrap().is_empty(), "the job is closed");
    let written = results_file_of(&f.ports, DROP_KEY).unwrap();
    assert!(written.iter().all(|l| l["status"] == "answered" && l["pricing"] == "batch"));
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_complete_the_job_exactly_once() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    let p = pipeline(&f.ports);

    f.ports.remote.set_status(&event_of(&f, &job, JobStatus::InProgress).job_arn, JobStatus::InProgress, None);
    let early = p.complete_job(event_of(&f, &job, JobStatus::InProgress)).await.unwrap();
    assert_eq!((early.outcome, early.status), (JobOutcome::Running, JobStatus::InProgress));
    assert_eq!(f.ports.results.writes(), 0);

    let event = bedrock_runs(&f, &job, JobStatus::Completed, |_, _| Line::Answer);
    let first = p.complete_job(event.clone()).await.unwrap();
    let again = p.complete_job(event).await.unwrap();
    let late = p.complete_job(event_of(&f, &job, JobStatus::InProgress)).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(late, first, "a progress event after the end returns the summary that stands");
    assert_eq!((f.ports.results.writes(), f.ports.jobs.writes()), (3, 1));
}

#[tokio::test]
async fn a_progress_event_after_a_lost_completion_event_completes_the_job() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    bedrock_runs(&f, &job, JobStatus::Completed, |_, _| Line::Answer);
    let summary = pipeline(&f.ports).complete_job(event_of(&f, &job, JobStatus::InProgress)).await.unwrap();
    assert_eq!((summary.status, summary.answered), (JobStatus::Completed, 3));
}

#[tokio::test]
async fn the_reconciler_completes_a_job_whose_event_never_came_and_reports_the_running_ones() {
    let f = fixture(settings(3, 5));
    f.submission.intake_file(drop_file(&f.ports, DROP_KEY, &good_lines(10))).await.unwrap();
    let report = f.submission.plan_and_submit(t0() + minutes(1)).await.unwrap();
    let (done, running) = (&report.created[0].job_name, &report.created[1].job_name);
    bedrock_runs(&f, done, JobStatus::Completed, |_, _| Line::Answer);
    let p = pipeline(&f.ports);

    let reconciled = p.reconcile(std::time::SystemTime::now()).await.unwrap();
    assert_eq!(reconciled.checked, 2);
    assert_eq!(reconciled.completed.len(), 1, "{reconciled:#?}");
    assert_eq!((reconciled.completed[0].job_name.as_str(), reconciled.completed[0].answered), (done.as_str(), 5));
    assert_eq!(reconciled.completed[0].outcome, "completed");
    assert_eq!(reconciled.still_running, 1);
    assert!(reconciled.overdue.is_empty());
    assert!(reconciled.errors.is_empty());

    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(26 * 3600);
    let next = p.reconcile(later).await.unwrap();
    assert_eq!((next.checked, next.still_running), (1, 1));
    assert_eq!(next.overdue, std::slice::from_ref(running));
    assert_eq!(f.ports.jobs.writes(), 1);
    // The second job's records are still in it, and the file waits for them.
    assert_eq!(results_file_of(&f.ports, DROP_KEY), None);
}

#[tokio::test]
async fn partial_failures_are_retried_in_later_jobs_then_fail_for_good() {
    let f = fixture(settings(1, 10));
    let job1 = submitted(&f, &good_lines(3), 1).await;
    let p = pipeline(&f.ports);
    // Line 3 is throttled every time, line 2 is refused as invalid once and for all.
    let outcome = |_: usize, id: &str| {
        if id.ends_with("-3-1") || id.ends_with("-3-2") || id.ends_with("-3-3") {
            Line::Error(429)
        } else if id.ends_with("-2-1") {
            Line::Error(400)
        } else {
            Line::Answer
        }
    };
    let first = p.complete_job(bedrock_runs(&f, &job1, JobStatus::PartiallyCompleted, outcome)).await.unwrap();
    assert_eq!((first.answered, first.retrying, first.failed), (1, 1, 1));
    assert_eq!(first.outcome, JobOutcome::PartiallyCompleted);
    let waiting = f.ports.pending.all();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].record_id.attempt(), 2);
    assert!(results_file_of(&f.ports, DROP_KEY).is_none(), "line 3 is not final yet");

    for attempt in [2, 3] {
        let report = f.submission.plan_and_submit(t0() + minutes(attempt)).await.unwrap();
        assert_eq!(report.created.len(), 1, "attempt {attempt}: {report:#?}");
        let job = report.created[0].job_name.clone();
        let summary = p.complete_job(bedrock_runs(&f, &job, JobStatus::PartiallyCompleted, outcome)).await.unwrap();
        assert_eq!(summary.outcome, JobOutcome::Failed { reason: "no record was answered".into() });
        if attempt == 2 {
            assert_eq!((summary.retrying, summary.failed), (1, 0));
            assert_eq!(f.ports.pending.all()[0].record_id.attempt(), 3);
        } else {
            assert_eq!((summary.retrying, summary.failed), (0, 1), "out of attempts");
            assert!(f.ports.pending.is_empty());
        }
    }
    let written = results_file_of(&f.ports, DROP_KEY).unwrap();
    let statuses: Vec<_> = written.iter().map(|l| l["status"].as_str().unwrap().to_owned()).collect();
    assert_eq!(statuses, ["answered", "failed", "failed"]);
    assert_eq!(written[2]["error"]["label"], ErrorLabel::Throttled.as_str());
    assert_eq!(written[2]["error"]["code"], 429);
    assert_eq!(written[1]["error"]["code"], 400);
    let attempts: Vec<_> = written.iter().map(|l| l["attempts"].as_u64().unwrap()).collect();
    assert_eq!(attempts, [1, 1, 3], "the throttled record was tried in three jobs");
    assert!(written[0]["onDemandCostUsd"].as_f64().unwrap() > written[0]["costUsd"].as_f64().unwrap());
}

#[tokio::test]
async fn a_completion_killed_mid_file_and_run_again_writes_each_result_once() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(6), 1).await;
    let event = bedrock_runs(&f, &job, JobStatus::Completed, |_, _| Line::Answer);
    let p = pipeline(&f.ports);

    f.ports.results.fail_after(4);
    assert!(matches!(p.complete_job(event.clone()).await, Err(BatchError::Store(_))));
    assert_eq!((f.ports.results.writes(), f.ports.jobs.writes()), (4, 0));
    assert_eq!(f.ports.plans.open().await.unwrap().len(), 1, "still open, so the reconciler finds it");

    f.ports.results.stop_failing();
    let reconciled = p.reconcile(std::time::SystemTime::now()).await.unwrap();
    assert_eq!(reconciled.completed.len(), 1);
    assert_eq!(reconciled.completed[0].answered, 6, "the first run's results are counted too");
    assert_eq!((f.ports.results.writes(), f.ports.jobs.writes()), (6, 1));
    assert_eq!(results_file_of(&f.ports, DROP_KEY).unwrap().len(), 6);
}

#[tokio::test]
async fn a_job_that_fails_entirely_is_failed_and_its_records_wait_for_another() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    let arn = f.ports.remote.by_name(&job).unwrap().job_arn;
    f.ports.remote.set_status(&arn, JobStatus::Failed, Some("the role cannot read the input"));
    let event = JobEvent { model_id: None, ..event_of(&f, &job, JobStatus::Failed) };
    let summary = pipeline(&f.ports).complete_job(event).await.unwrap();
    assert_eq!(summary.outcome, JobOutcome::Failed { reason: "Bedrock: the role cannot read the input".into() });
    assert_eq!((summary.answered, summary.retrying), (0, 3));
    let attempts: Vec<_> = f.ports.pending.all().iter().map(|r| r.record_id.attempt()).collect();
    assert_eq!(attempts, [2, 2, 2]);
}

#[tokio::test]
async fn a_dropped_files_results_have_one_line_per_input_record_in_input_order() {
    let f = fixture(settings(4, 10));
    let lines = vec![
        line("first", "a", "haiku"),
        "{broken".to_owned(),
        line("second", "b", "haiku"),
        String::new(),
        line("third", "c", "haiku"),
        line("unknown", "d", "gpt-4o"),
        line("fourth", "e", "haiku"),
    ];
    let job = submitted(&f, &lines, 1).await;
    assert!(results_file_of(&f.ports, DROP_KEY).is_none());
    let refused_line = |_: usize, id: &str| if id.ends_with("-5-1") { Line::Error(400) } else { Line::Answer };
    let summary =
        pipeline(&f.ports).complete_job(bedrock_runs(&f, &job, JobStatus::Completed, refused_line)).await.unwrap();
    assert_eq!((summary.answered, summary.failed), (3, 1));

    let written = results_file_of(&f.ports, DROP_KEY).unwrap();
    let rows: Vec<_> = written
        .iter()
        .map(|l| {
            (l["line"].as_u64().unwrap(), l["recordId"].as_str().map(str::to_owned), l["status"].as_str().unwrap())
        })
        .collect();
    let id = |s: &str| Some(s.to_owned());
    assert_eq!(
        rows,
        [
            (1, id("first"), "answered"),
            (2, None, "failed"),
            (3, id("second"), "answered"),
            (5, id("third"), "failed"),
            (6, id("unknown"), "failed"),
            (7, id("fourth"), "answered"),
        ]
    );
    assert!(!written[0]["output"]["output"]["message"]["content"][0]["text"].as_str().unwrap().is_empty());
    assert_eq!(written[1]["error"]["label"], "malformed_json");
    assert_eq!(written[3]["error"]["message"], "failed with 400");
    assert!(written[0]["costUsd"].as_f64().unwrap() > 0.0);
    assert_eq!(written[0]["requestId"], format!("{}-1", summary_file_job(&f)));
}

fn summary_file_job(_: &Fixture) -> String {
    super::submit::file_job_name(BUCKET, DROP_KEY, Some("\"etag-1\""))
}

#[tokio::test]
async fn a_rerun_after_a_crash_before_closing_the_job_does_not_enqueue_retries_that_moved_on() {
    let f = fixture(settings(1, 10));
    let job1 = submitted(&f, &good_lines(1), 1).await;
    let p = pipeline(&f.ports);
    let event = bedrock_runs(&f, &job1, JobStatus::Completed, |_, _| Line::Error(500));
    // The retry is enqueued, then the process dies before the summary is written.
    f.ports.jobs.fail_next_finishes(1);
    assert!(p.complete_job(event).await.is_err());
    assert_eq!(f.ports.pending.all()[0].record_id.attempt(), 2);
    // The retry goes into a job of its own meanwhile.
    let report = f.submission.plan_and_submit(t0() + minutes(2)).await.unwrap();
    assert_eq!(report.created.len(), 1);
    assert!(f.ports.pending.is_empty());

    // The reconciler finds the first job open and completes it: the retry is not waiting again.
    let reconciled = p.reconcile(std::time::SystemTime::now()).await.unwrap();
    assert_eq!(reconciled.completed.len(), 1, "{reconciled:#?}");
    assert_eq!(reconciled.completed[0].job_name, job1);
    assert!(f.ports.pending.is_empty());
    let retry = f.ports.submissions.page(&report.created[0].job_name, None, 1).await.unwrap().remove(0);
    let status = f.ports.statuses.status(&retry.tenant, retry.record_id.request_id()).await.unwrap();
    assert!(matches!(status, Some(RequestStatus::InJob { record, .. }) if record.record_id.attempt() == 2));
}

#[tokio::test]
async fn a_job_this_gateway_never_submitted_is_not_read_nor_recorded() {
    let f = fixture(settings(3, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    let mut foreign = bedrock_runs(&f, &job, JobStatus::Completed, |_, _| Line::Answer);
    foreign.job_id = "someone-elses-job".into();
    let summary = pipeline(&f.ports).complete_job(foreign).await.unwrap();
    assert!(matches!(summary.outcome, JobOutcome::Failed { ref reason } if reason.contains("no records")));
    assert_eq!((f.ports.results.writes(), f.ports.jobs.writes()), (0, 0));
}

#[test]
fn line_request_ids_lead_back_to_their_file() {
    use super::results_file::{file_job_of, line_request_id};
    let id = line_request_id("file-0123456789abcdef", 42);
    assert_eq!(file_job_of(&id), Some("file-0123456789abcdef"));
    for other in ["req-1", "file--3", "file-x-", "file-x-1a", "plain"] {
        assert_eq!(file_job_of(other), None, "{other}");
    }
    let layout = ResultsLayout::default();
    assert_eq!(layout.results_key("batch/drop/t/a.jsonl"), "batch/results/t/a.jsonl.results.jsonl");
    assert!(layout.is_results_key("batch/drop/t/a.jsonl.results.jsonl"));
    assert!(!layout.is_results_key("batch/drop/t/a.jsonl"));
}

#[tokio::test]
async fn every_final_result_leaves_one_usage_record_at_batch_prices_through_a_killed_and_rerun_completion() {
    use crate::usage::memory::MemoryUsageLedger;
    use crate::usage::{UsageOutcome, UsageSource};

    let f = fixture(settings(1, 10));
    let job = submitted(&f, &good_lines(3), 1).await;
    let ledger = Arc::new(MemoryUsageLedger::default());
    let p = pipeline(&f.ports).with_usage(ledger.clone());
    // Line 2 is refused for good, line 3 throttled and left for a later job.
    let outcome = |_: usize, id: &str| {
        if id.ends_with("-2-1") {
            Line::Error(400)
        } else if id.ends_with("-3-1") {
            Line::Error(429)
        } else {
            Line::Answer
        }
    };
    let event = bedrock_runs(&f, &job, JobStatus::PartiallyCompleted, outcome);
    f.ports.results.fail_after(2);
    assert!(p.complete_job(event).await.is_err(), "killed after two results");
    f.ports.results.stop_failing();
    p.reconcile(std::time::SystemTime::now()).await.unwrap();

    let records = ledger.all();
    assert_eq!(records.len(), 2, "the answer and the final failure, once each; the retry waits: {records:#?}");
    assert!(records.iter().all(|r| r.source == UsageSource::Batch && r.quota.is_none() && r.cache.is_none()));
    let answered = records.iter().find(|r| r.outcome == UsageOutcome::Answered).unwrap();
    assert_eq!((answered.input_tokens, answered.output_tokens, answered.model_calls), (100, 50, 1));
    assert!(answered.cost_usd > 0.0);
    assert!((answered.saved.batch_usd - answered.cost_usd).abs() < 1e-12, "batch is half the on-demand price");
    let failed = records.iter().find(|r| r.outcome != UsageOutcome::Answered).unwrap();
    assert_eq!(failed.outcome, UsageOutcome::Failed(ErrorLabel::InvalidRequest));
    for record in &records {
        let stored = f.ports.results.all().into_iter().find(|r| r.record_id.to_string() == record.request_id).unwrap();
        assert_eq!(record.at_ms, stored.stored_at_ms, "a rerun writes the record to the first store's minute");
    }
}
