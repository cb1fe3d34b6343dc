use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use serde_json::json;

use super::complete::SAMPLE_LIMIT;
use super::memory::{MemoryBatchPorts, MemoryResults};
use super::output::{MAX_LINE_BYTES, parse_line};
use super::*;
use crate::cache::{CacheMode, CacheOptions, Tenant};
use crate::catalog::Catalog;
use crate::cost::{PricingMode, Usage};
use crate::deadline::Budgets;
use crate::label::ErrorLabel;
use crate::ports::CacheStore;
use crate::request::ConverseRequest;
use crate::routing::RouteOverrides;
use crate::service::{CacheResult, ConverseCall, Gateway, GatewaySettings};
use crate::testing::{FakeInvoker, TestPorts};

const JOB: &str = "job1";
const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
const HAIKU_PROFILE: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

fn completion(ports: &MemoryBatchPorts) -> BatchCompletion<MemoryBatchPorts> {
    completion_with(ports, BatchSettings::default())
}

fn completion_with(ports: &MemoryBatchPorts, settings: BatchSettings) -> BatchCompletion<MemoryBatchPorts> {
    BatchCompletion::new(catalog(), settings, ports.clone())
}

fn event(status: JobStatus) -> JobEvent {
    JobEvent {
        job_id: JOB.into(),
        job_arn: format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{JOB}"),
        status,
        model_id: Some(HAIKU_PROFILE.into()),
        failure_message: None,
    }
}

fn request_body(prompt: &str) -> serde_json::Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 200}
    })
}

fn submitted(request_id: &str, attempt: u32, prompt: &str) -> SubmittedRecord {
    SubmittedRecord {
        record_id: RecordId::new(request_id, attempt).unwrap(),
        tenant: Tenant::new("team-a"),
        model_id: HAIKU.into(),
        request: ConverseRequest::from_json(request_body(prompt).to_string().as_bytes()).unwrap(),
        cache: CacheOptions::default(),
        source: RecordSource::Deferred,
        enqueued_at: std::time::SystemTime::UNIX_EPOCH,
    }
}

/// Submits `count` records `r0-1`, `r1-1`, … with prompts `prompt 0`, `prompt 1`, ….
fn submit(ports: &MemoryBatchPorts, count: usize) {
    for i in 0..count {
        ports.submissions.add(JOB, submitted(&format!("r{i}"), 1, &format!("prompt {i}")));
    }
}

fn answer_line(record_id: &str, prompt: &str, input_tokens: u64, output_tokens: u64) -> String {
    json!({
        "recordId": record_id,
        "modelInput": request_body(prompt),
        "modelOutput": {
            "output": {"message": {"role": "assistant", "content": [{"text": format!("answer to {prompt}")}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens, "totalTokens": input_tokens + output_tokens}
        }
    })
    .to_string()
}

fn error_line(record_id: &str, code: u16, message: &str) -> String {
    json!({
        "recordId": record_id,
        "modelInput": request_body("x"),
        "error": {"errorCode": code, "errorMessage": message}
    })
    .to_string()
}

fn file(lines: &[String]) -> Vec<u8> {
    let mut text = lines.join("\n");
    text.push('\n');
    text.into_bytes()
}

fn answers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| answer_line(&format!("r{i}-1"), &format!("prompt {i}"), 100, 50)).collect()
}

async fn run_job(c: &BatchCompletion<MemoryBatchPorts>, ev: JobEvent, output: &[u8]) -> JobSummary {
    let Begin::Run(mut run) = c.begin(ev).await.unwrap() else { panic!("expected a run") };
    c.read_file(&mut run, "job1/input.jsonl.out", output).await.unwrap();
    c.finish(run).await.unwrap()
}

#[test]
fn record_ids_round_trip_and_refuse_what_the_scheme_never_wrote() {
    let id = RecordId::new("req-with-dashes", 2).unwrap();
    assert_eq!(id.to_string(), "req-with-dashes-2");
    assert_eq!(RecordId::parse("req-with-dashes-2"), Some(id.clone()));
    assert_eq!(id.next_attempt().to_string(), "req-with-dashes-3");
    for bad in ["", "nodash", "r-", "-1", "r-0", "r-+1", "r-1x"] {
        assert_eq!(RecordId::parse(bad), None, "{bad}");
    }
    assert_eq!(RecordId::new("", 1), None);
    assert_eq!(RecordId::new("r", 0), None);
}

#[test]
fn lines_parse_into_answers_failures_and_malformed_lines() {
    assert!(matches!(
        parse_line(1, &answer_line("r0-1", "p", 3, 4)),
        Some(RecordOutcome::Answered { line: 1, record_id, response }) if record_id == "r0-1" && response.usage.output_tokens == 4
    ));
    let Some(RecordOutcome::Failed { line: 2, record_id, error }) = parse_line(2, &error_line("r1-1", 429, "slow"))
    else {
        panic!("expected a failure")
    };
    assert_eq!((record_id.as_str(), error.code, error.message.as_str()), ("r1-1", Some(429), "slow"));
    assert!(error.is_retryable());
    assert_eq!(parse_line(3, "   "), None);
    let cases = [
        ("{not json", None),
        (r#"{"modelOutput": {}}"#, None),
        (r#"{"recordId": "r2-1"}"#, Some("r2-1")),
        (r#"{"recordId": "r2-1", "modelOutput": {"stopReason": 3}}"#, Some("r2-1")),
        (r#"{"recordId": "r2-1", "modelOutput": {}, "error": {}}"#, Some("r2-1")),
    ];
    for (text, expected_id) in cases {
        let Some(RecordOutcome::Malformed { line, record_id, reason }) = parse_line(7, text) else {
            panic!("{text} should be malformed")
        };
        assert_eq!((line, record_id.as_deref()), (7, expected_id), "{text}");
        assert!(!reason.is_empty());
    }
}

#[tokio::test]
async fn the_async_reader_yields_what_the_blocking_reader_yields() {
    let mut lines = answers(0..3);
    lines.insert(1, "garbage".into());
    lines.push(error_line("r9-1", 500, "boom"));
    let bytes = file(&lines);
    let blocking: Vec<_> = OutputReader::new(&bytes[..]).map(Result::unwrap).collect();
    let mut reader = AsyncOutputReader::new(&bytes[..]);
    let mut streamed = Vec::new();
    while let Some(outcome) = reader.next_outcome().await.unwrap() {
        streamed.push(outcome);
    }
    assert_eq!(blocking.len(), 5);
    assert_eq!(streamed, blocking);
    assert_eq!(reader.lines_read(), 5);
}

#[test]
fn an_overlong_line_is_malformed_and_the_next_line_still_reads() {
    let mut bytes = vec![b'x'; MAX_LINE_BYTES + 10];
    bytes.push(b'\n');
    bytes.extend(file(&answers(0..1)));
    let outcomes: Vec<_> = OutputReader::new(BufReader::new(&bytes[..])).map(Result::unwrap).collect();
    assert_eq!(outcomes.len(), 2);
    assert!(matches!(&outcomes[0], RecordOutcome::Malformed { line: 1, reason, .. } if reason.contains("longer")));
    assert!(matches!(&outcomes[1], RecordOutcome::Answered { record_id, .. } if record_id == "r0-1"));
}

#[tokio::test]
async fn answers_are_priced_at_the_catalogs_batch_rates_half_of_on_demand() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 2);
    let c = completion(&ports);
    let lines = vec![answer_line("r0-1", "prompt 0", 1000, 500), answer_line("r1-1", "prompt 1", 2000, 100)];
    let summary = run_job(&c, event(JobStatus::Completed), &file(&lines)).await;

    let usage = |input, output| Usage { input_tokens: input, output_tokens: output, ..Usage::default() };
    let cat = catalog();
    let price = |mode| {
        cat.cost_of(HAIKU_PROFILE, &usage(1000, 500), mode).unwrap()
            + cat.cost_of(HAIKU_PROFILE, &usage(2000, 100), mode).unwrap()
    };
    let (batch, on_demand) = (price(PricingMode::Batch), price(PricingMode::OnDemand));
    assert!(batch > 0.0);
    assert!((summary.batch_cost_usd - batch).abs() < 1e-12);
    assert!((summary.on_demand_cost_usd - on_demand).abs() < 1e-12);
    assert!((summary.batch_cost_usd * 2.0 - summary.on_demand_cost_usd).abs() < 1e-12, "batch is half price");
    assert!((summary.saved_usd() - (on_demand - batch)).abs() < 1e-12);
    assert_eq!(summary.outcome, JobOutcome::Completed);

    let stored = ports.results.get(JOB, &RecordId::new("r0", 1).unwrap()).unwrap();
    let ResultState::Answered { batch_cost_usd, on_demand_cost_usd, usage: stored_usage, .. } = stored.state else {
        panic!("expected an answer")
    };
    assert_eq!(stored_usage, usage(1000, 500));
    assert_eq!(batch_cost_usd, Some(cat.cost_of(HAIKU_PROFILE, &usage(1000, 500), PricingMode::Batch).unwrap()));
    assert_eq!(on_demand_cost_usd, Some(cat.cost_of(HAIKU_PROFILE, &usage(1000, 500), PricingMode::OnDemand).unwrap()));
    assert_eq!(ports.results.latest("r0").await.unwrap().map(|r| r.record_id.to_string()), Some("r0-1".into()));
}

#[tokio::test]
async fn a_batch_answer_is_a_hit_for_the_same_request_online() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 1);
    let c = completion(&ports);
    let summary = run_job(&c, event(JobStatus::Completed), &file(&answers(0..1))).await;
    assert_eq!(summary.cache_writes, 1);

    let record = submitted("r0", 1, "prompt 0");
    let entry = ports.cache.get(&record.cache_key(), std::time::SystemTime::now()).await.unwrap().unwrap();
    assert_eq!(entry.response.text(), "answer to prompt 0");

    // The online path, on the same cache, asked by the tier name the caller used.
    let catalog = catalog();
    let settings = GatewaySettings::from_catalog(&catalog);
    let invoker = Arc::new(FakeInvoker::default());
    let gateway = Gateway::new(catalog, settings, TestPorts::new(ports.cache.clone(), invoker.clone()));
    let mut body = request_body("prompt 0");
    body["modelId"] = json!("haiku");
    let call = ConverseCall {
        request: ConverseRequest::from_json(body.to_string().as_bytes()).unwrap(),
        tenant: Tenant::new("team-a"),
        cache: CacheOptions::default(),
        routing: RouteOverrides::default(),
        deadline: Budgets::default().deadline(None),
    };
    let answer = gateway.converse(call).await.unwrap();
    assert_eq!(answer.cache.result, CacheResult::Hit);
    assert_eq!(answer.response.text(), "answer to prompt 0");
    assert_eq!(answer.cache.saved_usd, Some(entry.cost_usd));
    assert_eq!(invoker.calls(), 0);
}

#[tokio::test]
async fn answers_the_online_policy_would_not_cache_are_stored_but_not_cached() {
    let ports = MemoryBatchPorts::default();
    let mut off = submitted("r0", 1, "prompt 0");
    off.cache = CacheOptions { mode: Some(CacheMode::Off), ..CacheOptions::default() };
    ports.submissions.add(JOB, off);
    let c = completion(&ports);
    let summary = run_job(&c, event(JobStatus::Completed), &file(&answers(0..1))).await;
    assert_eq!((summary.answered, summary.cache_writes), (1, 0));
    assert!(ports.cache.is_empty());
}

#[tokio::test]
async fn a_failing_cache_write_is_counted_and_the_result_still_stored() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 2);
    ports.cache.fail_writes(true);
    let summary = run_job(&completion(&ports), event(JobStatus::Completed), &file(&answers(0..2))).await;
    assert_eq!((summary.answered, summary.cache_write_failures, summary.cache_writes), (2, 2, 0));
    assert_eq!(ports.results.writes(), 2);
}

#[tokio::test]
async fn a_rerun_after_a_crash_mid_file_writes_each_result_once() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 10);
    let mut lines = answers(0..8);
    lines.push(error_line("r8-1", 429, "throttled"));
    lines.push(error_line("r9-1", 400, "bad input"));
    let output = file(&lines);
    let c = completion(&ports);

    ports.results.fail_after(4);
    let Begin::Run(mut run) = c.begin(event(JobStatus::PartiallyCompleted)).await.unwrap() else { panic!() };
    assert!(matches!(c.read_file(&mut run, "job1/input.jsonl.out", &output[..]).await, Err(BatchError::Store(_))));
    drop(run);
    assert_eq!(ports.results.writes(), 4);
    assert_eq!(ports.jobs.writes(), 0);

    ports.results.stop_failing();
    let summary = run_job(&c, event(JobStatus::PartiallyCompleted), &output).await;
    assert_eq!(ports.results.writes(), 10, "each result written once over both runs");
    assert_eq!(ports.results.len(), 10);
    assert_eq!((summary.answered, summary.retrying, summary.failed), (8, 1, 1));
    assert_eq!(summary.retries.len(), 1);
    let one = catalog()
        .cost_of(HAIKU_PROFILE, &Usage { input_tokens: 100, output_tokens: 50, ..Usage::default() }, PricingMode::Batch)
        .unwrap();
    assert!((summary.batch_cost_usd - 8.0 * one).abs() < 1e-12, "the first run's records are counted too");
    assert_eq!(summary.outcome, JobOutcome::PartiallyCompleted);
    assert_eq!(ports.cache.len(), 8);
}

#[tokio::test]
async fn duplicate_and_out_of_order_events_process_the_job_once() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 3);
    let c = completion(&ports);
    let output = file(&answers(0..3));

    // Out of order: progress events before and after the end do nothing.
    assert!(matches!(
        c.begin(event(JobStatus::InProgress)).await.unwrap(),
        Begin::Ignored { status: JobStatus::InProgress }
    ));
    let first = run_job(&c, event(JobStatus::Completed), &output).await;
    assert!(matches!(c.begin(event(JobStatus::Scheduled)).await.unwrap(), Begin::Ignored { .. }));

    let Begin::AlreadyFinished(again) = c.begin(event(JobStatus::Completed)).await.unwrap() else {
        panic!("a duplicate must find the job finished")
    };
    assert_eq!(*again, first);
    assert_eq!((ports.results.writes(), ports.jobs.writes()), (3, 1));
}

#[tokio::test]
async fn concurrent_runs_of_one_job_write_each_result_once_and_agree() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 6);
    let c = completion(&ports);
    let Begin::Run(mut a) = c.begin(event(JobStatus::Completed)).await.unwrap() else { panic!() };
    let Begin::Run(mut b) = c.begin(event(JobStatus::Completed)).await.unwrap() else { panic!() };
    // Both read the same file, interleaved and in different orders.
    let forward: Vec<_> = OutputReader::new(&file(&answers(0..6))[..]).map(Result::unwrap).collect();
    for (x, y) in forward.iter().zip(forward.iter().rev()) {
        c.record(&mut a, x.clone()).await.unwrap();
        c.record(&mut b, y.clone()).await.unwrap();
    }
    let (first, second) = (c.finish(a).await.unwrap(), c.finish(b).await.unwrap());
    assert_eq!(first.answered, 6);
    assert_eq!(second, first, "the later run returns the summary that stands");
    assert_eq!((ports.results.writes(), ports.jobs.writes()), (6, 1));
}

#[tokio::test]
async fn a_line_repeated_in_one_file_counts_once() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 2);
    let mut lines = answers(0..2);
    lines.push(lines[0].clone());
    let summary = run_job(&completion(&ports), event(JobStatus::Completed), &file(&lines)).await;
    assert_eq!(summary.answered, 2);
    assert_eq!(ports.results.writes(), 2);
}

#[tokio::test]
async fn retryable_failures_are_retried_up_to_the_bound_then_reported() {
    let ports = MemoryBatchPorts::default();
    ports.submissions.add(JOB, submitted("first", 1, "a"));
    ports.submissions.add(JOB, submitted("last", 2, "b"));
    ports.submissions.add(JOB, submitted("invalid", 1, "c"));
    ports.submissions.add(JOB, submitted("ok", 1, "d"));
    let settings = BatchSettings { max_attempts: 2, ..BatchSettings::default() };
    let lines = vec![
        error_line("first-1", 503, "unavailable"),
        error_line("last-2", 429, "throttled"),
        error_line("invalid-1", 400, "malformed input"),
        answer_line("ok-1", "d", 10, 10),
    ];
    let summary =
        run_job(&completion_with(&ports, settings), event(JobStatus::PartiallyCompleted), &file(&lines)).await;

    assert_eq!((summary.answered, summary.retrying, summary.failed), (1, 1, 2));
    let retry_ids: Vec<_> = summary.retries.iter().map(|r| r.record_id.to_string()).collect();
    assert_eq!(retry_ids, ["first-2"]);
    assert_eq!(summary.retries[0].request, submitted("first", 1, "a").request);
    let failure = |id: &str| summary.failures.iter().find(|f| f.record_id == id).unwrap().clone();
    assert!(failure("first-1").will_retry);
    let last = failure("last-2");
    assert!(!last.will_retry, "out of attempts");
    assert_eq!(
        (last.failure.label, last.failure.code, last.failure.message.as_str()),
        (ErrorLabel::Throttled, Some(429), "throttled")
    );
    let invalid = failure("invalid-1");
    assert!(!invalid.will_retry, "a request Bedrock refuses is not retried");
    assert_eq!(invalid.failure.label, ErrorLabel::InvalidRequest);
    let stored = ports.results.get(JOB, &RecordId::new("last", 2).unwrap()).unwrap();
    assert!(matches!(stored.state, ResultState::Failed { .. }));
    assert!(matches!(
        ports.results.get(JOB, &RecordId::new("first", 1).unwrap()).unwrap().state,
        ResultState::Retrying { .. }
    ));
}

#[tokio::test]
async fn a_job_with_no_answered_record_is_failed_never_completed() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 2);
    let lines = vec![error_line("r0-1", 400, "bad"), error_line("r1-1", 400, "bad")];
    let summary = run_job(&completion(&ports), event(JobStatus::Completed), &file(&lines)).await;
    assert!(matches!(summary.outcome, JobOutcome::Failed { .. }), "{:?}", summary.outcome);
    assert_eq!(summary.failed, 2);

    let other = MemoryBatchPorts::default();
    let failed =
        JobEvent { failure_message: Some("service role cannot read the input".into()), ..event(JobStatus::Failed) };
    let summary = run_job(&completion(&other), failed, b"").await;
    assert_eq!(summary.outcome, JobOutcome::Failed { reason: "Bedrock: service role cannot read the input".into() });
    assert_eq!(other.jobs.writes(), 1, "a failed job is finished too, so a duplicate event does nothing");
}

#[tokio::test]
async fn a_stopped_job_with_some_answers_is_partially_completed() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 3);
    let summary = run_job(&completion(&ports), event(JobStatus::Stopped), &file(&answers(0..2))).await;
    assert_eq!(summary.outcome, JobOutcome::PartiallyCompleted);
    assert_eq!((summary.answered, summary.retrying), (2, 1), "the record the job never reached is retried");
    assert_eq!(summary.retries[0].record_id.to_string(), "r2-2");
}

#[tokio::test]
async fn malformed_lines_are_reported_with_their_line_and_the_rest_proceeds() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 3);
    let lines = vec![
        answer_line("r0-1", "prompt 0", 1, 1),
        "{broken".to_owned(),
        r#"{"recordId": "r1-1", "modelOutput": {"nonsense": true}}"#.to_owned(),
        answer_line("stranger-1", "?", 1, 1),
        answer_line("r2-1", "prompt 2", 1, 1),
    ];
    let summary = run_job(&completion(&ports), event(JobStatus::Completed), &file(&lines)).await;
    assert_eq!(summary.answered, 2);
    assert_eq!(summary.malformed_lines, 2);
    assert_eq!((summary.malformed[0].file.as_str(), summary.malformed[0].line), ("job1/input.jsonl.out", 2));
    assert!(summary.malformed[0].reason.contains("JSON"));
    assert_eq!(summary.malformed[1].record_id.as_deref(), Some("stranger-1"));
    assert_eq!(summary.malformed[1].line, 4);
    // The record a broken line still names is accounted for, failed with the reason.
    assert_eq!(summary.failed, 1);
    assert_eq!(summary.failures[0].failure.label, ErrorLabel::BadResponse);
    assert!(summary.failures[0].failure.message.contains("Converse response"));
    assert_eq!(summary.outcome, JobOutcome::PartiallyCompleted);
}

#[tokio::test]
async fn summaries_sample_failures_but_count_them_all() {
    let ports = MemoryBatchPorts::default();
    let count = SAMPLE_LIMIT + 20;
    submit(&ports, count);
    let lines: Vec<_> = (0..count).map(|i| error_line(&format!("r{i}-1"), 400, "bad")).collect();
    let mut output = file(&lines);
    output.extend(file(&vec!["junk".to_owned(); count]));
    let summary = run_job(&completion(&ports), event(JobStatus::Completed), &output).await;
    assert_eq!((summary.failed, summary.malformed_lines), (count as u64, count as u64));
    assert_eq!((summary.failures.len(), summary.malformed.len()), (SAMPLE_LIMIT, SAMPLE_LIMIT));
}

/// An output file generated as it is read, which notes how far reading ever ran ahead of
/// the results stored: a completion that collected the lines first would run the whole
/// file ahead.
struct GeneratedOutput {
    results: Arc<MemoryResults>,
    next: usize,
    total: usize,
    pending: Vec<u8>,
    max_lead: usize,
}

impl Read for GeneratedOutput {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() {
            if self.next == self.total {
                return Ok(0);
            }
            self.max_lead = self.max_lead.max(self.next - self.results.len());
            self.pending = format!("{}\n", answer_line(&format!("r{}-1", self.next), "p", 7, 3)).into_bytes();
            self.next += 1;
        }
        let n = out.len().min(self.pending.len());
        out[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

#[tokio::test]
async fn a_hundred_thousand_records_stream_through_with_bounded_lead() {
    const RECORDS: usize = 100_000;
    let ports = MemoryBatchPorts::default();
    for i in 0..RECORDS {
        let mut record = submitted(&format!("r{i}"), 1, "p");
        // Cache writes are covered above; here they would only slow the test down.
        record.cache = CacheOptions { mode: Some(CacheMode::Off), ..CacheOptions::default() };
        ports.submissions.add(JOB, record);
    }
    let c = completion(&ports);
    let Begin::Run(mut run) = c.begin(event(JobStatus::Completed)).await.unwrap() else { panic!() };
    let mut input = BufReader::with_capacity(
        4096,
        GeneratedOutput { results: ports.results.clone(), next: 0, total: RECORDS, pending: Vec::new(), max_lead: 0 },
    );
    c.read_file(&mut run, "job1/big.jsonl.out", &mut input).await.unwrap();
    assert!(input.fill_buf().unwrap().is_empty());
    let lead = input.get_ref().max_lead;
    assert!(lead <= 16, "reading ran {lead} lines ahead of processing");
    let summary = c.finish(run).await.unwrap();
    assert_eq!(summary.answered, RECORDS as u64);
    assert_eq!(ports.results.writes(), RECORDS as u64);
    assert!(summary.failures.is_empty() && summary.malformed.is_empty() && summary.retries.is_empty());
}

#[tokio::test]
async fn a_job_of_several_files_read_asynchronously_is_summed_and_names_each_files_lines() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 4);
    let c = completion(&ports);
    let Begin::Run(mut run) = c.begin(event(JobStatus::Completed)).await.unwrap() else { panic!() };
    let mut first = answers(0..2);
    first.push("junk".into());
    let mut second = vec!["{".to_owned()];
    second.extend(answers(2..4));
    c.read_file_async(&mut run, "job1/a.jsonl.out", &file(&first)[..]).await.unwrap();
    c.read_file_async(&mut run, "job1/b.jsonl.out", &file(&second)[..]).await.unwrap();
    assert_eq!(run.summary().answered, 4);
    let summary = c.finish(run).await.unwrap();
    let places: Vec<_> = summary.malformed.iter().map(|m| (m.file.as_str(), m.line)).collect();
    assert_eq!(places, [("job1/a.jsonl.out", 3), ("job1/b.jsonl.out", 1)]);
    assert_eq!(summary.outcome, JobOutcome::PartiallyCompleted);
}

#[tokio::test]
async fn a_failed_job_without_output_accounts_for_every_record() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 3);
    ports.submissions.add("another-job", submitted("elsewhere", 1, "z"));
    let failed = JobEvent { failure_message: Some("internal error".into()), ..event(JobStatus::Failed) };
    let summary = run_job(&completion(&ports), failed, b"").await;
    assert_eq!(summary.outcome, JobOutcome::Failed { reason: "Bedrock: internal error".into() });
    assert_eq!((summary.answered, summary.retrying, summary.failed), (0, 3, 0));
    let retried: Vec<_> = summary.retries.iter().map(|r| r.record_id.to_string()).collect();
    assert_eq!(retried, ["r0-2", "r1-2", "r2-2"]);
    assert!(summary.failures.iter().all(|f| f.failure.message.contains("ended Failed")));

    // On its last attempt a record missing from the output fails for good.
    let last = MemoryBatchPorts::default();
    last.submissions.add(JOB, submitted("r0", 3, "p"));
    let summary = run_job(&completion(&last), event(JobStatus::Expired), b"").await;
    assert_eq!((summary.retrying, summary.failed), (0, 1));
}

#[tokio::test]
async fn a_rerun_counts_the_missing_records_an_earlier_run_stored() {
    let ports = MemoryBatchPorts::default();
    submit(&ports, 3);
    let output = file(&answers(0..1));
    let c = completion(&ports);
    // The answer and one missing record are written, then the process dies.
    ports.results.fail_after(2);
    let Begin::Run(mut run) = c.begin(event(JobStatus::Stopped)).await.unwrap() else { panic!() };
    c.read_file(&mut run, "job1/input.jsonl.out", &output[..]).await.unwrap();
    assert!(c.finish(run).await.is_err());
    assert_eq!(ports.results.writes(), 2);

    ports.results.stop_failing();
    let summary = run_job(&c, event(JobStatus::Stopped), &output).await;
    assert_eq!((summary.answered, summary.retrying), (1, 2));
    assert_eq!(ports.results.writes(), 3);
}

#[test]
fn statuses_round_trip_and_know_when_they_end() {
    for status in JobStatus::ALL {
        assert_eq!(JobStatus::parse(status.as_str()), Some(status));
    }
    assert!(JobStatus::PartiallyCompleted.is_terminal());
    assert!(!JobStatus::Stopping.is_terminal());
    assert_eq!(JobStatus::parse("Running"), None);
}
