//! The pipeline's stages on in-memory S3 and a fake batch control plane that runs a job when
//! the test says so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::*;
use crate::batch::memory::MemoryFiles;
use crate::batch::{CreateJob, JobDescription, JobStatus};
use crate::catalog::{Catalog, Tier};
use crate::request::ConverseRequest;

const ROLE: &str = "arn:aws:iam::123456789012:role/Calibration";
const BUCKET: &str = "cal-bucket";

/// Answers a record: `None` fails it; otherwise the `modelOutput`.
type Answerer = dyn Fn(&str, &str, &Value) -> Option<Value> + Send + Sync;

/// Bedrock's batch control plane in memory: jobs by name, run by [`FakeJobs::run_all`].
#[derive(Default)]
struct FakeJobs {
    jobs: Mutex<BTreeMap<String, (CreateJob, JobDescription)>>,
    creates: AtomicU64,
}

impl std::fmt::Debug for FakeJobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeJobs")
    }
}

impl FakeJobs {
    /// Runs every job not ended yet: reads its input, writes its `.jsonl.out`, completes it.
    fn run_all(&self, files: &MemoryFiles, answer: &Answerer) -> usize {
        let mut jobs = self.jobs.lock().unwrap();
        let mut ran = 0;
        for (create, description) in jobs.values_mut() {
            if description.status.is_terminal() {
                continue;
            }
            let input = String::from_utf8(files.get(&create.plan.input_uri).unwrap()).unwrap();
            let mut out = String::new();
            for line in input.lines() {
                let record: Value = serde_json::from_str(line).unwrap();
                let record_id = record["recordId"].as_str().unwrap();
                let line = match answer(&create.plan.job_name, record_id, &record["modelInput"]) {
                    Some(output) => {
                        json!({"recordId": record_id, "modelInput": record["modelInput"], "modelOutput": output})
                    }
                    None => {
                        json!({"recordId": record_id, "modelInput": {}, "error": {"errorCode": 500, "errorMessage": "x"}})
                    }
                };
                out.push_str(&format!("{line}\n"));
            }
            let job_id = description.job_arn.rsplit('/').next().unwrap();
            files.put(&format!("{}{job_id}/{}.jsonl.out", create.plan.output_uri, create.plan.job_name), out);
            files.put(&format!("{}{job_id}/manifest.json.out", create.plan.output_uri), "{}");
            description.status = JobStatus::Completed;
            ran += 1;
        }
        ran
    }

    fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }

    fn names(&self) -> Vec<String> {
        self.jobs.lock().unwrap().keys().cloned().collect()
    }
}

impl BatchJobs for FakeJobs {
    async fn create(&self, job: &CreateJob) -> Result<String, BatchError> {
        let mut jobs = self.jobs.lock().unwrap();
        if let Some((_, existing)) = jobs.get(&job.plan.job_name) {
            return Ok(existing.job_arn.clone());
        }
        self.creates.fetch_add(1, Ordering::SeqCst);
        let job_arn = format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/job{}", jobs.len() + 1);
        let description = JobDescription {
            job_name: job.plan.job_name.clone(),
            job_arn: job_arn.clone(),
            status: JobStatus::InProgress,
            model_id: job.model_id.clone(),
            output_uri: job.plan.output_uri.clone(),
            failure_message: None,
        };
        jobs.insert(job.plan.job_name.clone(), (job.clone(), description));
        Ok(job_arn)
    }

    async fn describe(&self, job_arn: &str) -> Result<JobDescription, BatchError> {
        let jobs = self.jobs.lock().unwrap();
        jobs.values().find(|(_, d)| d.job_arn == job_arn).map(|(_, d)| d.clone()).ok_or_else(|| BatchError::Remote {
            service: "bedrock",
            operation: "GetModelInvocationJob",
            label: crate::label::ErrorLabel::NotFound,
            message: job_arn.to_owned(),
        })
    }
}

/// S3 that dies at its `fail_at`-th write (1-based), as a process killed just before it.
#[derive(Debug, Default)]
struct KillableFiles {
    inner: MemoryFiles,
    writes: AtomicUsize,
    fail_at: AtomicUsize,
}

impl BatchFiles for KillableFiles {
    type Reader = std::io::Cursor<Vec<u8>>;

    async fn write(&self, uri: &str, body: Vec<u8>) -> Result<(), BatchError> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.fail_at.load(Ordering::SeqCst) {
            return Err(BatchError::Timeout(format!("killed before write {n}")));
        }
        self.inner.write(uri, body).await
    }

    async fn list(&self, prefix_uri: &str) -> Result<Vec<String>, BatchError> {
        self.inner.list(prefix_uri).await
    }

    async fn open(&self, uri: &str) -> Result<Option<Self::Reader>, BatchError> {
        self.inner.open(uri).await
    }

    async fn delete(&self, uri: &str) -> Result<(), BatchError> {
        self.inner.delete(uri).await
    }
}

#[derive(Debug, Default)]
struct Ports {
    files: KillableFiles,
    jobs: FakeJobs,
}

impl CalibrationPorts for Arc<Ports> {
    type Files = KillableFiles;
    type Jobs = FakeJobs;

    fn files(&self) -> &KillableFiles {
        &self.files
    }

    fn jobs(&self) -> &FakeJobs {
        &self.jobs
    }
}

fn settings(tenants: &[&str], min_prompts: usize) -> CalibrationSettings {
    CalibrationSettings {
        layout: Layout::new(BUCKET, "calibration/"),
        tenants: tenants.iter().map(|t| Tenant::new(*t)).collect(),
        role_arn: Some(ROLE.to_owned()),
        min_prompts,
        max_prompts: 100,
        timeout_hours: Some(24),
        answer_max_tokens: 256,
        tier_models: Tier::ALL.iter().map(|t| (*t, Catalog::embedded().unwrap().tier_default(*t).to_owned())).collect(),
    }
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_000_000)
}

fn calibration(ports: &Arc<Ports>, tenants: &[&str], min_prompts: usize) -> Calibration<Arc<Ports>> {
    Calibration::new(Arc::new(Catalog::embedded().unwrap()), settings(tenants, min_prompts), ports.clone())
}

/// Drops a sample as the request path does (through the sampler, rate 1).
fn drop_sample(ports: &Ports, tenant: &str, text: &str) -> String {
    let config = CalibrationConfig {
        tenants: OptIns::new(vec![(Tenant::new(tenant), 1.0)]),
        bucket: BUCKET.to_owned(),
        prefix: "calibration/".to_owned(),
        role_arn: None,
        min_prompts: 1,
        max_prompts: 1,
        catalog_path: None,
        tier_overrides: Default::default(),
    };
    let sampler = Sampler::new(&config, Arc::new(MemoryFiles::default()));
    let request: ConverseRequest = serde_json::from_value(json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "system": [{"text": "be helpful"}]
    }))
    .unwrap();
    let (uri, body) = sampler.pick(&Tenant::new(tenant), &request, now()).unwrap();
    ports.files.inner.put(&uri, body);
    uri
}

fn text_output(text: &str, output_tokens: u64) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 100, "outputTokens": output_tokens, "totalTokens": 100 + output_tokens}
    })
}

fn grade_output(score: Value) -> Value {
    json!({
        "output": {"message": {"role": "assistant", "content": [
            {"toolUse": {"toolUseId": "t1", "name": grade::GRADE_TOOL, "input": {"score": score, "reason": "because"}}}
        ]}},
        "stopReason": "tool_use",
        "usage": {"inputTokens": 300, "outputTokens": 20, "totalTokens": 320}
    })
}

/// Answers by tier (haiku 10 tokens, sonnet 20, opus 30), grades haiku 4 and sonnet 8.
fn well_behaved(job: &str, record_id: &str, input: &Value) -> Option<Value> {
    if input.get("toolConfig").is_some() {
        let score = if record_id.ends_with("-haiku") { 4 } else { 8 };
        return Some(grade_output(json!(score)));
    }
    let tokens = [("haiku", 10), ("sonnet", 20), ("opus", 30)].iter().find(|(t, _)| job.ends_with(t)).unwrap().1;
    Some(text_output(&format!("answer of {job} to {record_id}"), tokens))
}

/// Advances, running every job between calls, until the run finishes.
async fn run_to_end(
    cal: &Calibration<Arc<Ports>>,
    ports: &Ports,
    answer: &Answerer,
) -> (String, String, RunCost, Vec<Advance>) {
    let mut seen = Vec::new();
    for _ in 0..10 {
        let advance = cal.advance(now()).await.unwrap();
        seen.push(advance.clone());
        if let Advance::Finished { run_id, dataset_uri, cost } = advance {
            return (run_id, dataset_uri, cost, seen);
        }
        ports.jobs.run_all(&ports.files.inner, answer);
    }
    panic!("the run did not finish: {seen:?}");
}

fn dataset(ports: &Ports, uri: &str) -> Vec<CalibrationOutcome> {
    let body = String::from_utf8(ports.files.inner.get(uri).unwrap()).unwrap();
    body.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn a_run_answers_on_every_tier_grades_and_publishes_with_its_cost() {
    let ports = Arc::new(Ports::default());
    for (tenant, text) in
        [("acme", "What is 2+2?"), ("acme", "Name a prime."), ("beta", "Explain TCP."), ("gamma", "secret")]
    {
        drop_sample(&ports, tenant, text);
    }
    let cal = calibration(&ports, &["acme", "beta"], 1);
    let (run_id, uri, cost, seen) = run_to_end(&cal, &ports, &well_behaved).await;
    assert!(matches!(&seen[0], Advance::Waiting { stage: Stage::Answering, .. }), "{seen:?}");
    assert!(matches!(&seen[1], Advance::Waiting { stage: Stage::Grading, .. }), "{seen:?}");
    assert_eq!(seen.len(), 3);
    assert_eq!(uri, format!("s3://{BUCKET}/calibration/dataset/{run_id}.jsonl"));
    // Three answer jobs (a job runs one model) and one grading job.
    assert_eq!(ports.jobs.creates(), 4);

    let lines = dataset(&ports, &uri);
    assert_eq!(lines.len(), 3, "gamma did not opt in");
    let catalog = Catalog::embedded().unwrap();
    for line in &lines {
        assert_eq!(line.schema, 1);
        assert_eq!(line.run_id, run_id);
        assert_ne!(line.tenant, Tenant::new("gamma").as_str());
        assert_eq!(line.prompt_id, record::prompt_id(&line.prompt));
        assert_eq!(line.grader, catalog.tier_default(Tier::Opus));
        assert_eq!(line.sampled_at, record::rfc3339(now()));
        let turns = crate::routing::features::Conversation::from_prompt_cell(&line.prompt);
        assert_eq!(turns.turns().len(), 1);
        let scores: Vec<Option<u8>> = Tier::ALL.iter().map(|t| line.outcomes[t].score).collect();
        assert_eq!(scores, [Some(4), Some(8), Some(10)]);
        let tokens: Vec<Option<u64>> = Tier::ALL.iter().map(|t| line.outcomes[t].output_tokens).collect();
        assert_eq!(tokens, [Some(10), Some(20), Some(30)]);
        for tier in Tier::ALL {
            assert_eq!(line.outcomes[&tier].model_id, catalog.tier_default(tier));
        }
    }

    // At batch prices: every answer of every tier, and two grades per prompt.
    let batch = |tier: Tier, input: u64, output: u64| {
        let usage = crate::cost::Usage { input_tokens: input, output_tokens: output, ..Default::default() };
        catalog.cost_of(catalog.tier_default(tier), &usage, crate::cost::PricingMode::Batch).unwrap()
    };
    let answers = 3.0 * (batch(Tier::Haiku, 100, 10) + batch(Tier::Sonnet, 100, 20) + batch(Tier::Opus, 100, 30));
    let grading = 6.0 * batch(Tier::Opus, 300, 20);
    assert!((cost.answers_usd - answers).abs() < 1e-12, "{cost:?}");
    assert!((cost.grading_usd - grading).abs() < 1e-12, "{cost:?}");
    assert_eq!(cost.prompts, 3);
    assert!((cost.per_1000_prompts_usd - (answers + grading) * 1000.0 / 3.0).abs() < 1e-9);
    let manifest = &cal.runs().await.unwrap()[0];
    assert_eq!((manifest.stage, manifest.cost), (Stage::Done, cost));
    // A published run's samples are deleted; gamma's, never taken, stays.
    let left = ports.files.inner.list(&cal.layout().samples_prefix()).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].contains("gamma"), "{left:?}");
}

#[tokio::test]
async fn a_finished_run_is_not_run_again_and_the_next_takes_only_new_samples() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "acme", "first");
    let cal = calibration(&ports, &["acme"], 1);
    let (first, _, _, _) = run_to_end(&cal, &ports, &well_behaved).await;
    assert_eq!(cal.advance(now()).await.unwrap(), Advance::Idle { new_samples: 0, min_prompts: 1 });
    assert_eq!(ports.jobs.creates(), 4);

    drop_sample(&ports, "acme", "second");
    drop_sample(&ports, "acme", "third");
    let later = Calibration::new(Arc::new(Catalog::embedded().unwrap()), settings(&["acme"], 1), ports.clone());
    let (second, uri, cost, _) = run_to_end(&later, &ports, &well_behaved).await;
    assert_ne!(first, second);
    assert_eq!(cost.prompts, 2);
    let prompts: Vec<String> = dataset(&ports, &uri).iter().map(|l| l.prompt.clone()).collect();
    assert!(prompts.iter().all(|p| !p.contains("first")), "{prompts:?}");
    assert_eq!(ports.jobs.creates(), 8);
}

#[tokio::test]
async fn a_run_waits_for_its_jobs_and_asks_for_nothing_twice() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "acme", "q");
    let cal = calibration(&ports, &["acme"], 1);
    for _ in 0..3 {
        assert!(matches!(cal.advance(now()).await.unwrap(), Advance::Waiting { stage: Stage::Answering, .. }));
    }
    assert_eq!(ports.jobs.creates(), 3);
    ports.jobs.run_all(&ports.files.inner, &well_behaved);
    for _ in 0..2 {
        assert!(matches!(cal.advance(now()).await.unwrap(), Advance::Waiting { stage: Stage::Grading, .. }));
    }
    assert_eq!(ports.jobs.creates(), 4);
}

/// A process killed before any one of a run's writes, then run again, ends with the dataset
/// and cost of a run never killed, and no job created twice.
#[tokio::test]
async fn a_run_killed_before_any_write_resumes_to_the_same_dataset() {
    let clean = Arc::new(Ports::default());
    drop_sample(&clean, "acme", "one");
    drop_sample(&clean, "beta", "two");
    let (_, clean_uri, clean_cost, _) =
        run_to_end(&calibration(&clean, &["acme", "beta"], 1), &clean, &well_behaved).await;
    let writes = clean.files.writes.load(Ordering::SeqCst);
    let expected = clean.files.inner.get(&clean_uri).unwrap();
    let stages = [Stage::Collected, Stage::Answering, Stage::Grading, Stage::Publishing, Stage::Done];
    assert!(writes >= stages.len(), "{writes}");

    for kill_at in 1..=writes {
        let ports = Arc::new(Ports::default());
        drop_sample(&ports, "acme", "one");
        drop_sample(&ports, "beta", "two");
        ports.files.fail_at.store(kill_at, Ordering::SeqCst);
        let cal = calibration(&ports, &["acme", "beta"], 1);
        let mut finished = None;
        for _ in 0..10 {
            match cal.advance(now()).await {
                Ok(Advance::Finished { dataset_uri, cost, .. }) => {
                    finished = Some((dataset_uri, cost));
                    break;
                }
                Ok(_) => {}
                Err(e) => assert_eq!(e.label(), crate::label::ErrorLabel::Timeout, "{e}"),
            }
            // A fresh process each time: nothing carried over but what S3 and Bedrock hold.
            ports.jobs.run_all(&ports.files.inner, &well_behaved);
        }
        let (uri, cost) = finished.unwrap_or_else(|| panic!("killed at write {kill_at}: never finished"));
        assert_eq!(ports.files.inner.get(&uri).unwrap(), expected, "killed at write {kill_at}");
        assert_eq!(cost, clean_cost, "killed at write {kill_at}");
        assert_eq!(ports.jobs.creates(), 4, "killed at write {kill_at}: {:?}", ports.jobs.names());
        assert_eq!(cal.runs().await.unwrap().len(), 1, "killed at write {kill_at}");
    }
}

#[tokio::test]
async fn a_malformed_grade_is_missing_not_guessed() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "acme", "a");
    drop_sample(&ports, "acme", "b");
    let cal = calibration(&ports, &["acme"], 1);
    let answer = |job: &str, record_id: &str, input: &Value| {
        if input.get("toolConfig").is_none() {
            return well_behaved(job, record_id, input);
        }
        Some(match record_id {
            "p0-haiku" => grade_output(json!(11)),
            "p0-sonnet" => text_output("I'd say 8/10", 5),
            "p1-haiku" => grade_output(json!(7.5)),
            _ => grade_output(json!(6)),
        })
    };
    let (_, uri, cost, _) = run_to_end(&cal, &ports, &answer).await;
    let lines = dataset(&ports, &uri);
    let scores: Vec<[Option<u8>; 3]> =
        lines.iter().map(|l| [Tier::Haiku, Tier::Sonnet, Tier::Opus].map(|t| l.outcomes[&t].score)).collect();
    assert!(scores.contains(&[None, None, Some(10)]), "{scores:?}");
    assert!(scores.contains(&[None, Some(6), Some(10)]), "{scores:?}");
    assert_eq!(cal.runs().await.unwrap()[0].missing_grades, 3);
    // A grade that could not be read was still paid for.
    assert!(cost.grading_usd > 0.0);
    let raw = String::from_utf8(ports.files.inner.get(&uri).unwrap()).unwrap();
    assert!(raw.contains(r#""score":null"#), "{raw}");
}

#[tokio::test]
async fn a_grading_job_below_the_job_minimum_is_filled_with_repeats_that_rescue_unreadable_grades() {
    let ports = Arc::new(Ports::default());
    for text in ["a", "b", "c", "d", "e"] {
        drop_sample(&ports, "acme", text);
    }
    // A job takes at least five records here. Haiku answers one prompt and Sonnet three, so
    // four answers are gradable.
    let cal = calibration(&ports, &["acme"], 5);
    let answer = |job: &str, record_id: &str, input: &Value| {
        let failed = match job {
            j if j.ends_with("-haiku") => record_id != "p0",
            j if j.ends_with("-sonnet") => ["p3", "p4"].contains(&record_id),
            _ => false,
        };
        if failed {
            return None;
        }
        if input.get("toolConfig").is_some() {
            // The first copy of p0's haiku grade is unreadable; its repeat is not.
            return Some(match record_id {
                "p0-haiku" => text_output("no tool call", 5),
                "p0-haiku-r2" => grade_output(json!(3)),
                id if id.contains("-haiku") => grade_output(json!(9)),
                _ => grade_output(json!(7)),
            });
        }
        well_behaved(job, record_id, input)
    };
    let (_, uri, cost, _) = run_to_end(&cal, &ports, &answer).await;
    let grading =
        ports.jobs.jobs.lock().unwrap().values().find(|(c, _)| c.plan.job_name.ends_with("-grade")).unwrap().0.clone();
    assert_eq!(grading.plan.records, 5, "four gradable answers, filled up to the minimum");
    let input = String::from_utf8(ports.files.inner.get(&grading.plan.input_uri).unwrap()).unwrap();
    let ids: Vec<String> = input
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["recordId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["p0-haiku", "p0-sonnet", "p1-sonnet", "p2-sonnet", "p0-haiku-r2"]);

    let lines = dataset(&ports, &uri);
    let scores: Vec<[Option<u8>; 2]> =
        lines.iter().map(|l| [Tier::Haiku, Tier::Sonnet].map(|t| l.outcomes[&t].score)).collect();
    assert_eq!(scores, [[Some(3), Some(7)], [None, Some(7)], [None, Some(7)], [None, None], [None, None]]);
    assert_eq!(
        cal.runs().await.unwrap()[0].missing_grades,
        0,
        "a failed answer is a missing answer, not a missing grade"
    );
    // Every record of the job, repeats included, is paid for.
    let catalog = Catalog::embedded().unwrap();
    let usage = crate::cost::Usage { input_tokens: 300, output_tokens: 20, ..Default::default() };
    let one = catalog.cost_of(catalog.tier_default(Tier::Opus), &usage, crate::cost::PricingMode::Batch).unwrap();
    let unreadable = crate::cost::Usage { input_tokens: 100, output_tokens: 5, ..Default::default() };
    let unreadable =
        catalog.cost_of(catalog.tier_default(Tier::Opus), &unreadable, crate::cost::PricingMode::Batch).unwrap();
    assert!((cost.grading_usd - (4.0 * one + unreadable)).abs() < 1e-12, "{cost:?}");
}

#[tokio::test]
async fn a_failed_answer_has_no_tokens_and_without_the_graders_answer_nothing_is_graded() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "acme", "only");
    let cal = calibration(&ports, &["acme"], 1);
    let answer = |job: &str, record_id: &str, input: &Value| {
        if job.ends_with("-opus") {
            return None;
        }
        well_behaved(job, record_id, input)
    };
    let (_, uri, cost, _) = run_to_end(&cal, &ports, &answer).await;
    // No grading job: nothing had a reference answer.
    assert_eq!(ports.jobs.creates(), 3);
    let line = &dataset(&ports, &uri)[0];
    assert_eq!(
        line.outcomes[&Tier::Opus],
        TierOutcome { model_id: line.grader.clone(), score: None, output_tokens: None }
    );
    assert_eq!(line.outcomes[&Tier::Haiku].score, None);
    assert_eq!(line.outcomes[&Tier::Haiku].output_tokens, Some(10));
    assert_eq!(cost.grading_usd, 0.0);
    assert!(cost.answers_usd > 0.0);
    assert_eq!(cal.runs().await.unwrap()[0].missing_answers, 1);
}

#[tokio::test]
async fn no_samples_no_run_and_nothing_written() {
    let ports = Arc::new(Ports::default());
    let cal = calibration(&ports, &["acme"], 1);
    assert_eq!(cal.advance(now()).await.unwrap(), Advance::Idle { new_samples: 0, min_prompts: 1 });
    assert!(ports.files.inner.uris().is_empty());
    assert_eq!(ports.jobs.creates(), 0);

    // Below the minimum is no run either: it waits for more samples.
    drop_sample(&ports, "acme", "q");
    let waiting = calibration(&ports, &["acme"], 2);
    assert_eq!(waiting.advance(now()).await.unwrap(), Advance::Idle { new_samples: 1, min_prompts: 2 });
    assert_eq!(ports.files.inner.uris().len(), 1);
}

#[tokio::test]
async fn a_tenant_not_opted_in_is_never_calibrated() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "gamma", "not mine to take");
    // A sample under an opted-in tenant's folder that names another tenant is not taken either.
    let forged = drop_sample(&ports, "gamma", "forged");
    let moved = forged.replace(
        &Layout::key_segment(Tenant::new("gamma").as_str()),
        &Layout::key_segment(Tenant::new("acme").as_str()),
    );
    ports.files.inner.put(&moved, ports.files.inner.get(&forged).unwrap());
    let cal = calibration(&ports, &["acme"], 1);
    assert_eq!(cal.advance(now()).await.unwrap(), Advance::Idle { new_samples: 0, min_prompts: 1 });
    assert_eq!(ports.jobs.creates(), 0);
}

#[tokio::test]
async fn without_a_role_no_job_is_created() {
    let ports = Arc::new(Ports::default());
    drop_sample(&ports, "acme", "q");
    let mut no_role = settings(&["acme"], 1);
    no_role.role_arn = None;
    let cal = Calibration::new(Arc::new(Catalog::embedded().unwrap()), no_role, ports.clone());
    assert!(matches!(cal.advance(now()).await, Err(CalibrationError::NoRole)));
    assert_eq!(ports.jobs.creates(), 0);
}

mod sampling {
    use super::*;

    fn sampler(rates: &[(&str, f64)], writer: Arc<dyn SampleWriter>) -> Sampler {
        let config = CalibrationConfig {
            tenants: OptIns::new(rates.iter().map(|(t, r)| (Tenant::new(*t), *r)).collect()),
            bucket: BUCKET.to_owned(),
            prefix: "calibration/".to_owned(),
            role_arn: None,
            min_prompts: 1,
            max_prompts: 10,
            catalog_path: None,
            tier_overrides: Default::default(),
        };
        Sampler::new(&config, writer)
    }

    fn request(text: &str) -> ConverseRequest {
        serde_json::from_value(json!({"messages": [{"role": "user", "content": [{"text": text}]}]})).unwrap()
    }

    #[tokio::test]
    async fn only_opted_in_tenants_are_sampled_at_about_their_rate_and_deterministically() {
        let files = Arc::new(MemoryFiles::default());
        let s = sampler(&[("acme", 0.25), ("all", 1.0)], files.clone());
        let mut picked = 0;
        for i in 0..2000 {
            let r = request(&format!("prompt {i}"));
            assert_eq!(s.sample(&Tenant::new("gamma"), &r, now()).await, Sampled::NotOptedIn);
            assert_eq!(s.sample(&Tenant::new("all"), &r, now()).await, Sampled::Written);
            let first = s.pick(&Tenant::new("acme"), &r, now()).is_ok();
            assert_eq!(first, s.pick(&Tenant::new("acme"), &r, now()).is_ok());
            picked += usize::from(first);
        }
        assert!((400..600).contains(&picked), "{picked}");
        assert_eq!(files.uris().len(), 2000);
        assert!(files.uris().iter().all(|u| u.contains(&Layout::key_segment(Tenant::new("all").as_str()))));
        // The same prompt again is the same object, and this instance does not write it again.
        assert_eq!(s.sample(&Tenant::new("all"), &request("prompt 0"), now()).await, Sampled::Written);
        assert_eq!(files.uris().len(), 2000);
        assert_eq!(s.written(), 2000);
    }

    #[tokio::test]
    async fn a_failing_store_is_counted_never_the_requests_failure() {
        let files = Arc::new(MemoryFiles::default());
        files.fail_next_writes(1);
        let s = sampler(&[("acme", 1.0)], files.clone());
        assert_eq!(s.sample(&Tenant::new("acme"), &request("q"), now()).await, Sampled::Failed);
        assert_eq!((s.written(), s.failed()), (0, 1));
        assert_eq!(s.sample(&Tenant::new("acme"), &request("q"), now()).await, Sampled::Written);
        let tools: ConverseRequest = serde_json::from_value(json!({"messages": [{"role": "user", "content": [
            {"toolResult": {"toolUseId": "t", "content": [{"text": "x"}]}}
        ]}]}))
        .unwrap();
        assert_eq!(s.sample(&Tenant::new("acme"), &tools, now()).await, Sampled::NotEligible);
    }

    #[test]
    fn tenant_folders_are_key_safe_and_distinct() {
        assert_eq!(Layout::key_segment("header/4:acme"), "header~2F4~3Aacme");
        assert_ne!(Layout::key_segment("a~2F"), Layout::key_segment("a/"));
    }
}
