//! Completion throughput and peak heap for a 100,000-record `.jsonl.out`:
//! `cargo bench -p gateway-core --no-default-features --bench batch_completion`.
//!
//! The file (answers of 1–2 KB, 2 % failed records) is generated into the temp directory,
//! then completed twice through `BatchCompletion`, every record looked up, priced, cached and
//! stored: streamed (`read_file_async` over a `tokio::fs::File` in a `BufReader`, what the
//! completion function does with an S3 body) and, as the baseline, read whole into memory
//! first and parsed from there. The ports keep only counts (the records as submitted are
//! rebuilt from their IDs, results and cache entries are counted and dropped), so the peak
//! heap is the reader's and the completion's, not a store's. The heap is counted by
//! `peak_alloc`'s global allocator (a wrapper around the system allocator: the workspace
//! forbids the `unsafe` a local one would need).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use gateway_core::batch::{
    BatchCompletion, BatchError, BatchPorts, BatchSettings, Begin, FinishOutcome, JobEvent, JobLedger, JobStatus,
    JobSummary, PutOnce, RecordId, RecordResult, RecordSource, ResultStore, SubmittedRecord, SubmittedRecords,
};
use gateway_core::cache::{CacheEntry, CacheKey, CacheOptions, Tenant};
use gateway_core::catalog::Catalog;
use gateway_core::ports::{CacheError, CacheStore, PutOutcome};
use gateway_core::request::ConverseRequest;
use peak_alloc::PeakAlloc;
use serde_json::json;
use tokio::io::BufReader;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const RECORDS: usize = 100_000;
const FAILED_EVERY: usize = 50;
const JOB: &str = "gw-20260101000000-000000000000";
const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

/// Every record of the job "was submitted": rebuilt from its ID, nothing held.
#[derive(Debug)]
struct Rebuilt {
    request: ConverseRequest,
}

impl SubmittedRecords for Rebuilt {
    async fn submitted(&self, _job_id: &str, record_id: &RecordId) -> Result<Option<SubmittedRecord>, BatchError> {
        Ok(Some(SubmittedRecord {
            record_id: record_id.clone(),
            tenant: Tenant::new("bench"),
            model_id: HAIKU.to_owned(),
            request: self.request.clone(),
            cache: CacheOptions::default(),
            source: RecordSource::Deferred,
            enqueued_at: SystemTime::UNIX_EPOCH,
        }))
    }

    async fn page(
        &self,
        _job_id: &str,
        _after: Option<&RecordId>,
        _limit: usize,
    ) -> Result<Vec<SubmittedRecord>, BatchError> {
        // Every record is in the output: none to account for as missing.
        Ok(Vec::new())
    }
}

#[derive(Debug, Default)]
struct Counted {
    results: AtomicU64,
    cached: AtomicU64,
}

impl ResultStore for Counted {
    async fn put_once(&self, _result: &RecordResult) -> Result<PutOnce, BatchError> {
        self.results.fetch_add(1, Ordering::Relaxed);
        Ok(PutOnce::Written)
    }

    async fn latest(&self, _request_id: &str) -> Result<Option<RecordResult>, BatchError> {
        Ok(None)
    }
}

impl CacheStore for Counted {
    async fn get(&self, _key: &CacheKey, _now: SystemTime) -> Result<Option<CacheEntry>, CacheError> {
        Ok(None)
    }

    async fn put(&self, entry: &CacheEntry) -> Result<PutOutcome, CacheError> {
        self.cached.fetch_add(1, Ordering::Relaxed);
        Ok(PutOutcome::Stored { bytes: entry.response.output.message.content.len() })
    }
}

impl JobLedger for Counted {
    async fn finished(&self, _job_id: &str) -> Result<Option<JobSummary>, BatchError> {
        Ok(None)
    }

    async fn finish(&self, _summary: &JobSummary) -> Result<FinishOutcome, BatchError> {
        Ok(FinishOutcome::Recorded)
    }
}

#[derive(Debug, Clone)]
struct BenchPorts {
    submissions: Arc<Rebuilt>,
    counts: Arc<Counted>,
}

impl BatchPorts for BenchPorts {
    type Submissions = Rebuilt;
    type Results = Counted;
    type Jobs = Counted;
    type Cache = Counted;

    fn submissions(&self) -> &Rebuilt {
        &self.submissions
    }

    fn results(&self) -> &Counted {
        &self.counts
    }

    fn jobs(&self) -> &Counted {
        &self.counts
    }

    fn cache(&self) -> &Counted {
        &self.counts
    }
}

fn prompt_body() -> serde_json::Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": "Summarise the following support ticket in three sentences. ".repeat(5)}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0}
    })
}

/// A deterministic mix of answer lengths, so that lines run from about 1 to 2 KB.
fn answer_text(i: usize) -> String {
    let words = 120 + (i * 7919) % 140;
    (0..words)
        .map(|w| ["the", "ticket", "reports", "a", "billing", "error", "customer", "refund"][w % 8])
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_output(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::io::Write;
    let input = prompt_body();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut failed = 0;
    for i in 0..RECORDS {
        let record_id = format!("req-{i:08}-1");
        let line = if i % FAILED_EVERY == 0 {
            failed += 1;
            json!({"recordId": record_id, "modelInput": input, "error": {"errorCode": 429, "errorMessage": "Too many requests, please wait before trying again."}})
        } else {
            let text = answer_text(i);
            let output_tokens = text.len() / 4;
            json!({
                "recordId": record_id,
                "modelInput": input,
                "modelOutput": {
                    "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                    "stopReason": "end_turn",
                    "usage": {"inputTokens": 90, "outputTokens": output_tokens, "totalTokens": 90 + output_tokens}
                }
            })
        };
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok((std::fs::metadata(path)?.len(), failed))
}

struct Figures {
    seconds: f64,
    answered: u64,
    failed: u64,
    retrying: u64,
    peak_bytes: usize,
}

fn completion() -> Result<BatchCompletion<BenchPorts>, Box<dyn std::error::Error>> {
    let request = ConverseRequest::from_json(prompt_body().to_string().as_bytes())?;
    let ports = BenchPorts { submissions: Arc::new(Rebuilt { request }), counts: Arc::default() };
    Ok(BatchCompletion::new(Arc::new(Catalog::embedded()?), BatchSettings::default(), ports))
}

fn event() -> JobEvent {
    JobEvent {
        job_id: JOB.to_owned(),
        job_arn: "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/abcdef123456".to_owned(),
        status: JobStatus::PartiallyCompleted,
        model_id: Some(format!("us.{HAIKU}")),
        failure_message: None,
    }
}

async fn run(path: &std::path::Path, whole: bool) -> Result<Figures, Box<dyn std::error::Error>> {
    let completion = completion()?;
    let floor = HEAP.current_usage();
    HEAP.reset_peak_usage();
    let started = Instant::now();
    let Begin::Run(mut job) = completion.begin(event()).await? else {
        return Err("the bench's event did not start a run".into());
    };
    if whole {
        let bytes = tokio::fs::read(path).await?;
        completion.read_file(&mut job, "output.jsonl.out", &bytes[..]).await?;
    } else {
        let file = tokio::fs::File::open(path).await?;
        completion.read_file_async(&mut job, "output.jsonl.out", BufReader::with_capacity(64 * 1024, file)).await?;
    }
    let summary = completion.finish(job).await?;
    let seconds = started.elapsed().as_secs_f64();
    let peak_bytes = HEAP.peak_usage().saturating_sub(floor);
    let stored = completion.ports().counts.results.load(Ordering::Relaxed);
    if stored != RECORDS as u64 {
        return Err(format!("{stored} results stored of {RECORDS}").into());
    }
    Ok(Figures { seconds, answered: summary.answered, failed: summary.failed, retrying: summary.retrying, peak_bytes })
}

fn print(name: &str, f: &Figures) {
    println!(
        "{name:<28} {:>9.0} records/s  {:>6.2} s  peak heap {:>8.2} MiB  (answered {}, retrying {}, failed {})",
        RECORDS as f64 / f.seconds,
        f.seconds,
        f.peak_bytes as f64 / (1024.0 * 1024.0),
        f.answered,
        f.retrying,
        f.failed,
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it as a test, which only
    // checks that it still builds.
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    let path = std::env::temp_dir().join(format!("batch_completion_bench_{}.jsonl.out", std::process::id()));
    let (bytes, failed) = write_output(&path)?;
    println!(
        "batch completion of {RECORDS} records, {:.1} MiB ({:.0} bytes a line on average), {failed} failed records",
        bytes as f64 / (1024.0 * 1024.0),
        bytes as f64 / RECORDS as f64,
    );
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = runtime.block_on(async {
        let streamed = run(&path, false).await?;
        let whole = run(&path, true).await?;
        Ok::<_, Box<dyn std::error::Error>>((streamed, whole))
    });
    let _ = std::fs::remove_file(&path);
    let (streamed, whole) = outcome?;
    print("streamed (BufReader, 64 KiB)", &streamed);
    print("baseline: read whole, parse", &whole);
    println!(
        "streaming holds {:.1}x less heap at its peak ({:.2} MiB against {:.2} MiB)",
        whole.peak_bytes as f64 / streamed.peak_bytes.max(1) as f64,
        streamed.peak_bytes as f64 / (1024.0 * 1024.0),
        whole.peak_bytes as f64 / (1024.0 * 1024.0),
    );
    Ok(())
}
