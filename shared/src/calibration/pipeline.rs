//! The run's stages, each its own method, each ending in the manifest write that commits it.
//!
//! Crash safety, by the order of writes: a stage writes its inputs, creates its jobs (named
//! after the run, with the name as client token, so asking again returns the same job), then
//! the manifest. A process killed anywhere before the manifest write repeats the stage with
//! the same names and the same bytes; one killed after it goes on from the next stage. What a
//! stage reads (the run's own prompts file, the jobs' outputs) does not change once written,
//! so a repeated stage computes the same manifest.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::{StreamExt, TryStreamExt, stream};

use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::grade::{grading_request, parse_grade, text_request};
use super::manifest::{JobRef, PromptEntry, RunCost, RunManifest, Stage};
use super::record::{CalibrationOutcome, SCHEMA, SampledPrompt, TierOutcome, compact_stamp, prompt_id, rfc3339};
use super::{Advance, CalibrationError, CalibrationPorts, CalibrationSettings, Layout};
use crate::batch::pipeline::job_id_of_arn;
use crate::batch::{AsyncOutputReader, BatchFiles, BatchJobs, CreateJob, JobDescription, JobPlan, RecordOutcome};
use crate::catalog::{Catalog, Tier};
use crate::cost::{PricingMode, Usage};
use crate::request::{ConverseResponse, InferenceConfig};
use crate::sampling::Accepts;

/// The largest manifest, prompts file or sample read whole; a larger one is not ours.
const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

const CHEAPER: [Tier; 2] = [Tier::Haiku, Tier::Sonnet];

/// S3 requests a run keeps in flight when it reads manifests or deletes samples.
const CONCURRENT_READS: usize = 16;

/// The calibration use case over its ports: [`Calibration::advance`] moves the open run (or a
/// new one) as far as it can go now.
#[derive(Debug)]
pub struct Calibration<P> {
    catalog: Arc<Catalog>,
    settings: CalibrationSettings,
    ports: P,
}

/// What the answers of one job said, by record ID.
type Answers = BTreeMap<String, ConverseResponse>;

impl<P: CalibrationPorts> Calibration<P> {
    pub fn new(catalog: Arc<Catalog>, settings: CalibrationSettings, ports: P) -> Self {
        Calibration { catalog, settings, ports }
    }

    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub fn layout(&self) -> &Layout {
        &self.settings.layout
    }

    /// One invocation's work: resume the run that is not done (there is at most one), or
    /// start one from the samples no run holds, then advance it until a job is still running
    /// or the run is done.
    pub async fn advance(&self, now: SystemTime) -> Result<Advance, CalibrationError> {
        let runs = self.runs().await?;
        let mut manifest = match runs.iter().find(|run| run.stage != Stage::Done) {
            Some(open) => open.clone(),
            None => match self.collect(&runs, now).await? {
                Ok(manifest) => manifest,
                Err(new_samples) => {
                    return Ok(Advance::Idle { new_samples, min_prompts: self.settings.min_prompts });
                }
            },
        };
        loop {
            let next = match manifest.stage {
                Stage::Collected => Some(self.answer(manifest.clone()).await?),
                Stage::Answering => self.grade(manifest.clone()).await?,
                Stage::Grading => self.read_grades(manifest.clone()).await?,
                Stage::Publishing => Some(self.publish(manifest.clone()).await?),
                Stage::Done => {
                    tracing::info!(
                        run_id = manifest.run_id,
                        prompts = manifest.cost.prompts,
                        total_usd = manifest.cost.total_usd,
                        per_1000_prompts_usd = manifest.cost.per_1000_prompts_usd,
                        "calibration run done"
                    );
                    return Ok(Advance::Finished {
                        run_id: manifest.run_id,
                        dataset_uri: manifest.dataset_uri.unwrap_or_default(),
                        cost: manifest.cost,
                    });
                }
            };
            match next {
                Some(advanced) => manifest = advanced,
                None => return Ok(Advance::Waiting { run_id: manifest.run_id, stage: manifest.stage }),
            }
        }
    }

    /// Every run's manifest, oldest first (run IDs sort by time). Read [`CONCURRENT_READS`] at
    /// a time: an hourly schedule makes thousands of runs a year, each one manifest.
    pub async fn runs(&self) -> Result<Vec<RunManifest>, CalibrationError> {
        let uris: Vec<String> = self
            .ports
            .files()
            .list(&self.layout().runs_prefix())
            .await?
            .into_iter()
            .filter(|uri| uri.ends_with("/manifest.json"))
            .collect();
        // The futures are made before they are streamed: a stream mapping references to
        // futures is not `Send` for every lifetime, which the function's handler needs.
        let reads: Vec<_> = uris.iter().map(|uri| self.manifest(uri)).collect();
        let mut runs: Vec<RunManifest> = stream::iter(reads).buffered(CONCURRENT_READS).try_collect().await?;
        runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        Ok(runs)
    }

    async fn manifest(&self, uri: &str) -> Result<RunManifest, CalibrationError> {
        let bytes = self.read(uri).await?.ok_or_else(|| corrupt(uri, "listed but gone"))?;
        let manifest: RunManifest = serde_json::from_slice(&bytes).map_err(|e| corrupt(uri, &e.to_string()))?;
        if manifest.schema != SCHEMA {
            return Err(corrupt(uri, &format!("schema {} is not {SCHEMA}", manifest.schema)));
        }
        Ok(manifest)
    }

    /// Stage `collect`: the opted-in tenants' samples that no run holds, taken in turn from
    /// each tenant up to the run's maximum, written into the run's prompts file; the manifest
    /// (`collected`) commits the run. Too few samples is `Err(count)`: nothing is written.
    async fn collect(
        &self,
        runs: &[RunManifest],
        now: SystemTime,
    ) -> Result<Result<RunManifest, usize>, CalibrationError> {
        let taken: BTreeSet<&str> = runs.iter().flat_map(|r| r.prompts.iter().map(|p| p.sample_uri.as_str())).collect();
        let mut per_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for uri in self.ports.files().list(&self.layout().samples_prefix()).await? {
            if !uri.ends_with(".json") || taken.contains(uri.as_str()) {
                continue;
            }
            let Some(segment) = self.layout().tenant_segment_of(&uri) else { continue };
            // A tenant who is not (or no longer) opted in is never calibrated, whatever is left.
            if !self.settings.tenants.iter().any(|t| Layout::key_segment(t.as_str()) == segment) {
                continue;
            }
            per_tenant.entry(segment.to_owned()).or_default().push(uri);
        }
        let mut chosen: Vec<String> = Vec::new();
        let mut queues: Vec<std::vec::IntoIter<String>> = per_tenant.into_values().map(Vec::into_iter).collect();
        // In turn from each tenant, so that one busy tenant does not fill every run.
        while chosen.len() < self.settings.max_prompts && !queues.is_empty() {
            queues.retain_mut(|queue| match queue.next() {
                Some(uri) => {
                    chosen.push(uri);
                    true
                }
                None => false,
            });
        }
        chosen.truncate(self.settings.max_prompts);
        let mut prompts = Vec::with_capacity(chosen.len());
        for uri in chosen {
            match self.sample(&uri).await? {
                Some(sample) => prompts.push((uri, sample)),
                None => tracing::warn!(uri, "calibration sample unreadable; skipped"),
            }
        }
        if prompts.len() < self.settings.min_prompts {
            return Ok(Err(prompts.len()));
        }
        let mut hash = Sha256::new();
        for (uri, _) in &prompts {
            hash.update(uri.as_bytes());
            hash.update([0]);
        }
        let run_id = format!("cal-{}-{}", compact_stamp(now), &hex::encode(hash.finalize())[..12]);
        let mut lines = Vec::new();
        let mut entries = Vec::with_capacity(prompts.len());
        for (i, (uri, sample)) in prompts.into_iter().enumerate() {
            let record_id = format!("p{i}");
            lines.extend(encode_line(&json!({"recordId": record_id, "sample": sample}))?);
            entries.push(PromptEntry {
                record_id,
                prompt_id: prompt_id(&sample.prompt_cell()),
                tenant: sample.tenant,
                sampled_at: sample.sampled_at,
                sample_uri: uri,
                output_tokens: BTreeMap::new(),
                scores: BTreeMap::new(),
            });
        }
        self.ports.files().write(&self.layout().run_file(&run_id, "prompts.jsonl"), lines).await?;
        let models = self.settings.tier_models.clone();
        let manifest = RunManifest {
            schema: SCHEMA,
            run_id,
            created_at: rfc3339(now),
            stage: Stage::Collected,
            grader: models.get(&Tier::Opus).cloned().unwrap_or_default(),
            models,
            prompts: entries,
            answer_jobs: BTreeMap::new(),
            grade_job: None,
            cost: RunCost::default(),
            missing_answers: 0,
            missing_grades: 0,
            dataset_uri: None,
        };
        self.save(&manifest).await?;
        Ok(Ok(manifest))
    }

    /// A sample object, checked: `None` when it is not one (it is left out, never guessed at).
    async fn sample(&self, uri: &str) -> Result<Option<SampledPrompt>, CalibrationError> {
        let Some(bytes) = self.read(uri).await? else { return Ok(None) };
        let Ok(sample) = serde_json::from_slice::<SampledPrompt>(&bytes) else { return Ok(None) };
        let opted_in = self.settings.tenants.iter().any(|t| t.as_str() == sample.tenant);
        let well_formed = sample.schema == SCHEMA && SampledPrompt::is_text_only(&sample.messages, &sample.system);
        Ok((opted_in && well_formed).then_some(sample))
    }

    /// Stage `answer`: one job per tier (Bedrock runs one model per job), every prompt in each.
    async fn answer(&self, mut manifest: RunManifest) -> Result<RunManifest, CalibrationError> {
        let prompts = self.prompts(&manifest).await?;
        for (tier, model_id) in manifest.models.clone() {
            let mut input = Vec::new();
            for (record_id, sample) in &prompts {
                let request = text_request(
                    sample.messages.clone(),
                    sample.system.clone(),
                    InferenceConfig { max_tokens: Some(self.settings.answer_max_tokens), ..Default::default() },
                    None,
                );
                input.extend(encode_line(&json!({"recordId": record_id, "modelInput": request}))?);
            }
            let job = self.create_job(&manifest, &format!("answer-{tier}"), &model_id, input, prompts.len()).await?;
            manifest.answer_jobs.insert(tier, job);
        }
        manifest.stage = Stage::Answering;
        self.save(&manifest).await?;
        Ok(manifest)
    }

    /// Stage `grade`: once every answer job has ended, the answers are read and priced and the
    /// grader is asked about every cheaper answer of a prompt the grader itself answered.
    /// `None` while a job still runs.
    async fn grade(&self, mut manifest: RunManifest) -> Result<Option<RunManifest>, CalibrationError> {
        let mut ended = Vec::new();
        for job in manifest.answer_jobs.values() {
            let Some(description) = self.ended(job).await? else { return Ok(None) };
            ended.push(description);
        }
        let mut answers: BTreeMap<Tier, Answers> = BTreeMap::new();
        let mut answers_usd = 0.0;
        let mut missing = 0;
        for ((tier, job), description) in manifest.answer_jobs.clone().iter().zip(ended) {
            let read = self.outputs(job, description).await?;
            for response in read.values() {
                answers_usd += self.batch_cost(&job.model_id, response)?;
            }
            for entry in &mut manifest.prompts {
                match read.get(&entry.record_id) {
                    Some(response) => {
                        entry.output_tokens.insert(*tier, u64::try_from(response.usage.output_tokens).unwrap_or(0));
                    }
                    None => missing += 1,
                }
            }
            answers.insert(*tier, read);
        }
        let prompts = self.prompts(&manifest).await?;
        let empty = Answers::new();
        let reference_answers = answers.get(&Tier::Opus).unwrap_or(&empty);
        let grader_accepts = self.accepts_of(&manifest.grader);
        let mut graded = Vec::new();
        for (record_id, sample) in &prompts {
            let Some(reference) = reference_answers.get(record_id) else { continue };
            let (system, cell, reference) = (sample.system_text(), sample.prompt_cell(), reference.text());
            for tier in CHEAPER {
                let Some(candidate) = answers.get(&tier).and_then(|a| a.get(record_id)) else { continue };
                let request = grading_request(&system, &cell, &reference, &candidate.text());
                graded.push((format!("{record_id}-{tier}"), grader_accepts.fit(&request).into_owned()));
            }
        }
        // Failed answers can leave fewer grades than Bedrock's per-job minimum, which would
        // refuse the job and stall the run. The job is filled up with repeats instead: each
        // is a second chance at a grade its first copy leaves malformed.
        let records = if graded.is_empty() { 0 } else { graded.len().max(self.settings.min_prompts) };
        let mut input = Vec::new();
        for i in 0..records {
            let (record_id, request) = &graded[i % graded.len()];
            let record_id = repeat_id(record_id, i / graded.len());
            input.extend(encode_line(&json!({"recordId": record_id, "modelInput": request}))?);
        }
        manifest.missing_answers = missing;
        manifest.cost = RunCost::new(answers_usd, 0.0, manifest.prompts.len() as u64);
        if records > 0 {
            let grader = manifest.grader.clone();
            manifest.grade_job = Some(self.create_job(&manifest, "grade", &grader, input, records).await?);
            manifest.stage = Stage::Grading;
        } else {
            // Nothing to grade (the grader answered nothing, or nothing else did): no job.
            manifest.stage = Stage::Publishing;
        }
        self.save(&manifest).await?;
        Ok(Some(manifest))
    }

    /// The grading job's outcome, read once it has ended: a score per graded answer, or none
    /// when the grade is malformed. `None` while the job runs.
    async fn read_grades(&self, mut manifest: RunManifest) -> Result<Option<RunManifest>, CalibrationError> {
        let Some(job) = manifest.grade_job.clone() else {
            return Err(corrupt(&self.layout().run_file(&manifest.run_id, "manifest.json"), "grading without a job"));
        };
        let Some(description) = self.ended(&job).await? else { return Ok(None) };
        let grades = self.outputs(&job, description).await?;
        let mut grading_usd = 0.0;
        for response in grades.values() {
            grading_usd += self.batch_cost(&job.model_id, response)?;
        }
        let gradable = |entry: &PromptEntry, tier: &Tier| {
            entry.output_tokens.contains_key(tier) && entry.output_tokens.contains_key(&Tier::Opus)
        };
        let distinct: u64 =
            manifest.prompts.iter().map(|e| CHEAPER.iter().filter(|t| gradable(e, t)).count() as u64).sum();
        let copies_per_record = job.records.div_ceil(distinct.max(1)) as usize;
        let mut missing = 0;
        for entry in &mut manifest.prompts {
            for tier in CHEAPER {
                if !gradable(entry, &tier) {
                    continue;
                }
                let record_id = format!("{}-{tier}", entry.record_id);
                // The first readable grade among the record and its repeats.
                let copies = (0..copies_per_record).filter_map(|copy| grades.get(repeat_id(&record_id, copy).as_ref()));
                let mut score = None;
                for response in copies {
                    match parse_grade(response) {
                        Ok(read) => {
                            score = Some(read);
                            break;
                        }
                        Err(reason) => tracing::warn!(run_id = manifest.run_id, record_id, %reason, "grade unreadable"),
                    }
                }
                match score {
                    Some(score) => {
                        entry.scores.insert(tier, score);
                    }
                    None => missing += 1,
                }
            }
        }
        manifest.missing_grades = missing;
        manifest.cost = RunCost::new(manifest.cost.answers_usd, grading_usd, manifest.prompts.len() as u64);
        manifest.stage = Stage::Publishing;
        self.save(&manifest).await?;
        Ok(Some(manifest))
    }

    /// Stage `publish`: the run's dataset file, one line per prompt, written whole (the same
    /// bytes however often it is written), then the manifest says `done`.
    async fn publish(&self, mut manifest: RunManifest) -> Result<RunManifest, CalibrationError> {
        let prompts: BTreeMap<String, SampledPrompt> = self.prompts(&manifest).await?.into_iter().collect();
        let mut body = Vec::new();
        for entry in &manifest.prompts {
            let Some(sample) = prompts.get(&entry.record_id) else {
                return Err(corrupt(&self.layout().run_file(&manifest.run_id, "prompts.jsonl"), "a prompt is missing"));
            };
            body.extend(encode_line(&outcome_line(&manifest, entry, sample))?);
        }
        let uri = self.layout().dataset_uri(&manifest.run_id);
        self.ports.files().write(&uri, body).await?;
        // The samples are redundant once published (the run's prompts file and the dataset
        // hold them) and would only pile up: a run deletes its own before it is done, so a
        // killed run deletes them again on resuming.
        let deletes: Vec<_> =
            manifest.prompts.iter().map(|entry| self.ports.files().delete(&entry.sample_uri)).collect();
        stream::iter(deletes).buffer_unordered(CONCURRENT_READS).try_collect::<Vec<()>>().await?;
        manifest.dataset_uri = Some(uri);
        manifest.stage = Stage::Done;
        self.save(&manifest).await?;
        Ok(manifest)
    }

    /// Writes a job's input and creates it under `<run-id>-<what>`; the same call again is
    /// the same job.
    async fn create_job(
        &self,
        manifest: &RunManifest,
        what: &str,
        model_id: &str,
        input: Vec<u8>,
        records: usize,
    ) -> Result<JobRef, CalibrationError> {
        let role_arn = self.settings.role_arn.clone().ok_or(CalibrationError::NoRole)?;
        let job_name = format!("{}-{what}", manifest.run_id);
        let input_uri = self.layout().run_file(&manifest.run_id, &format!("{what}.jsonl"));
        self.ports.files().write(&input_uri, input).await?;
        let plan = JobPlan {
            job_name: job_name.clone(),
            model_id: model_id.to_owned(),
            input_uri,
            output_uri: self.layout().run_file(&manifest.run_id, "output/"),
            records: records as u64,
            planned_at: SystemTime::now(),
        };
        let create = CreateJob {
            plan,
            model_id: model_id.to_owned(),
            role_arn,
            invocation_type: Some("Converse".to_owned()),
            timeout_hours: self.settings.timeout_hours,
        };
        let job_arn = self.ports.jobs().create(&create).await?;
        Ok(JobRef { job_name, model_id: model_id.to_owned(), job_arn, records: records as u64 })
    }

    /// The job's description once it has ended; `None` while it runs.
    async fn ended(&self, job: &JobRef) -> Result<Option<JobDescription>, CalibrationError> {
        let description = self.ports.jobs().describe(&job.job_arn).await?;
        Ok(description.status.is_terminal().then_some(description))
    }

    /// An ended job's answered records, by record ID (failed records are simply absent).
    async fn outputs(&self, job: &JobRef, description: JobDescription) -> Result<Answers, CalibrationError> {
        let mut output_uri = description.output_uri;
        if !output_uri.ends_with('/') {
            output_uri.push('/');
        }
        let prefix = format!("{output_uri}{}/", job_id_of_arn(&job.job_arn));
        let mut answers = Answers::new();
        for uri in self.ports.files().list(&prefix).await? {
            if !uri.ends_with(".jsonl.out") {
                continue;
            }
            let Some(reader) = self.ports.files().open(&uri).await? else {
                return Err(corrupt(&uri, "listed but cannot be opened"));
            };
            let mut reader = AsyncOutputReader::new(reader);
            while let Some(outcome) = reader.next_outcome().await? {
                match outcome {
                    RecordOutcome::Answered { record_id, response, .. } => {
                        answers.insert(record_id, response);
                    }
                    RecordOutcome::Failed { record_id, error, .. } => {
                        tracing::info!(job = job.job_name, record_id, code = ?error.code, "calibration record failed");
                    }
                    RecordOutcome::Malformed { line, reason, .. } => {
                        tracing::warn!(job = job.job_name, line, reason, "calibration output line malformed");
                    }
                }
            }
        }
        Ok(answers)
    }

    /// What the model a job runs accepts (a base ID, profile ID or ARN); a model outside the
    /// catalog is sent the request as it is.
    fn accepts_of(&self, model_id: &str) -> Accepts {
        self.catalog.resolve_served(model_id).map_or(Accepts::default(), |(spec, _)| spec.accepts())
    }

    fn batch_cost(&self, model_id: &str, response: &ConverseResponse) -> Result<f64, CalibrationError> {
        self.catalog
            .cost_of(model_id, &Usage::from(&response.usage), PricingMode::Batch)
            .map_err(|e| CalibrationError::Pricing(e.to_string()))
    }

    /// The run's prompts, as its prompts file holds them, in record order.
    async fn prompts(&self, manifest: &RunManifest) -> Result<Vec<(String, SampledPrompt)>, CalibrationError> {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Line {
            record_id: String,
            sample: SampledPrompt,
        }
        let uri = self.layout().run_file(&manifest.run_id, "prompts.jsonl");
        let bytes = self.read(&uri).await?.ok_or_else(|| corrupt(&uri, "missing"))?;
        let mut prompts = Vec::new();
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line: Line = serde_json::from_slice(line).map_err(|e| corrupt(&uri, &e.to_string()))?;
            prompts.push((line.record_id, line.sample));
        }
        Ok(prompts)
    }

    async fn save(&self, manifest: &RunManifest) -> Result<(), CalibrationError> {
        let body = serde_json::to_vec_pretty(manifest).map_err(|e| CalibrationError::Encode(e.to_string()))?;
        self.ports.files().write(&self.layout().run_file(&manifest.run_id, "manifest.json"), body).await?;
        Ok(())
    }

    async fn read(&self, uri: &str) -> Result<Option<Vec<u8>>, CalibrationError> {
        let Some(reader) = self.ports.files().open(uri).await? else { return Ok(None) };
        let mut bytes = Vec::new();
        reader
            .take(MAX_OBJECT_BYTES + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|source| crate::batch::BatchError::Read { line: 0, source })?;
        if bytes.len() as u64 > MAX_OBJECT_BYTES {
            return Err(corrupt(uri, "larger than any object the pipeline writes"));
        }
        Ok(Some(bytes))
    }
}

/// The dataset line of one prompt: every tier, with its score (the grader's own is 10 when it
/// answered) or `null`, and its output tokens.
fn outcome_line(manifest: &RunManifest, entry: &PromptEntry, sample: &SampledPrompt) -> CalibrationOutcome {
    let outcomes = manifest
        .models
        .iter()
        .map(|(tier, model_id)| {
            let output_tokens = entry.output_tokens.get(tier).copied();
            let score = match tier {
                Tier::Opus => output_tokens.map(|_| 10),
                Tier::Haiku | Tier::Sonnet => entry.scores.get(tier).copied(),
            };
            (*tier, TierOutcome { model_id: model_id.clone(), score, output_tokens })
        })
        .collect();
    CalibrationOutcome {
        schema: SCHEMA,
        run_id: manifest.run_id.clone(),
        prompt_id: entry.prompt_id.clone(),
        tenant: entry.tenant.clone(),
        sampled_at: entry.sampled_at.clone(),
        prompt: sample.prompt_cell(),
        grader: manifest.grader.clone(),
        outcomes,
    }
}

fn encode_line<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CalibrationError> {
    let mut line = serde_json::to_vec(value).map_err(|e| CalibrationError::Encode(e.to_string()))?;
    line.push(b'\n');
    Ok(line)
}

fn corrupt(uri: &str, reason: &str) -> CalibrationError {
    CalibrationError::Corrupt { uri: uri.to_owned(), reason: reason.to_owned() }
}

/// The record ID of a grading record's `copy`-th repeat (the record itself at 0).
fn repeat_id(record_id: &str, copy: usize) -> Cow<'_, str> {
    match copy {
        0 => Cow::Borrowed(record_id),
        n => Cow::Owned(format!("{record_id}-r{}", n + 1)),
    }
}
