//! The submission side: work taken in (dropped JSONL files; deferred HTTP requests are
//! enqueued by the API function), grouped into jobs per model and submitted to Bedrock, or
//! run on demand when too few records wait for too long.
//!
//! Crash safety, by the order of writes:
//! - intake: pending records (idempotent by key), bad lines' results (conditional puts), then
//!   the intake itself (conditional, the commit point). A redelivered event finds the intake
//!   and takes in nothing. A run killed before the commit repeats the same writes, which are
//!   idempotent while the records still wait (a submission run between the crash and the
//!   redelivery could take them into a job, and the redelivery would enqueue them again: the
//!   one window; the request IDs are the same, so the results show one request twice at most).
//! - a job: plan (its records recorded under the job name), records out of waiting, input
//!   written, job created with its name as client token (idempotent), marked submitted. A run
//!   killed anywhere leaves an unsubmitted plan that the next run resumes first, from the
//!   plan's own records, so a record is in at most one job.
//! - on demand: the answer's result is put once, then the record leaves waiting; a run killed
//!   between the two finds the result (the call repeats, a cache hit when the answer was
//!   cacheable) and stores nothing new.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::complete::SAMPLE_LIMIT;
use super::ports::{
    BatchFiles, BatchJobs, CreateJob, FileIntake, FileIntakes, JobPlan, JobPlans, PendingRecords, PutOnce,
    RecordFailure, RecordResult, ResultState, ResultStore, SubmittedRecords,
};
use super::record::{RecordId, RecordSource, SubmittedRecord};
use super::results_file::{
    self, FILE_JOB_PREFIX, InputLines, ResultsFile, ResultsLayout, caller_record_id, count_bytes, line_request_id,
    s3_uri,
};
use super::{BatchError, DroppedFile};
use crate::cache::{CacheOptions, Tenant};
use crate::catalog::{Catalog, ModelSpec, ResolveError, Target, Tier};
use crate::cost::PricingMode;
use crate::cost::Usage;
use crate::date::Date;
use crate::label::ErrorLabel;
use crate::ports::Ports;
use crate::request::{ConverseRequest, RequestError};
use crate::routing::RouteOverrides;
use crate::sampling::Accepts;
use crate::service::{AUTO_MODEL, ConverseCall, Gateway, GatewayError, USAGE_WRITE_BUDGET};
use crate::usage::{self, UsageRecord, UsageSource, build::Served};

/// Records enqueued per call while a file is read, so that a large file is never held whole.
const ENQUEUE_CHUNK: usize = 100;

/// Submitted records read per page when a plan is resumed.
const RESUME_PAGE: usize = 500;

/// Every port the submission uses. The on-demand fallback goes through the online
/// [`Gateway`] over [`SubmissionPorts::Online`], admission included.
pub trait SubmissionPorts: Send + Sync {
    type Pending: PendingRecords;
    type Plans: JobPlans;
    type Submissions: SubmittedRecords;
    type Results: ResultStore;
    type Intakes: FileIntakes;
    type Remote: BatchJobs;
    type Files: BatchFiles;
    type Online: Ports;

    fn pending(&self) -> &Self::Pending;
    fn plans(&self) -> &Self::Plans;
    fn submissions(&self) -> &Self::Submissions;
    fn results(&self) -> &Self::Results;
    fn intakes(&self) -> &Self::Intakes;
    fn remote(&self) -> &Self::Remote;
    fn files(&self) -> &Self::Files;
}

#[derive(Debug, Clone)]
pub struct SubmissionSettings {
    /// The bucket of job inputs and outputs.
    pub bucket: String,
    /// Job inputs are written to `<job_input_prefix><job_name>.jsonl`.
    pub job_input_prefix: String,
    /// Bedrock writes `<job_output_prefix><jobId>/…` for every job.
    pub job_output_prefix: String,
    /// Dropped files and their results files.
    pub layout: ResultsLayout,
    /// The service role Bedrock assumes to read the inputs and write the outputs.
    pub role_arn: String,
    pub timeout_hours: Option<u32>,
    /// Bedrock refuses a job with fewer records (its per-model minimum, 100 by default).
    pub min_records: usize,
    /// Records per job at most. Bedrock's default maximum is 50,000; smaller jobs finish sooner.
    pub max_records: usize,
    /// Bytes of a job's input JSONL at most (Bedrock's input file size quota, 1 GB by default).
    pub max_input_bytes: u64,
    /// A dropped file larger than this is refused whole.
    pub max_file_bytes: u64,
    /// A line of a dropped file longer than this fails alone.
    pub max_line_bytes: usize,
    /// How long the oldest record may wait for a job before the waiting records run on demand.
    pub max_wait: Duration,
    /// Attempts a record gets in all; the completion's setting, for on-demand failures.
    pub max_attempts: u32,
    /// Whose work a dropped file is: files come from the bucket's owner team, not from an
    /// authenticated caller, so one configured tenant owns them (and their cache entries).
    pub file_tenant: Tenant,
    /// Base model IDs that take batch jobs; `None`: every model of the catalog.
    pub batch_models: Option<BTreeSet<String>>,
    /// Bounds on one run, so that it finishes well within a Lambda invocation.
    pub max_jobs_per_run: usize,
    pub max_on_demand_per_run: usize,
}

impl SubmissionSettings {
    pub fn new(bucket: impl Into<String>, role_arn: impl Into<String>, file_tenant: Tenant) -> Self {
        SubmissionSettings {
            bucket: bucket.into(),
            job_input_prefix: "batch/input/".to_owned(),
            job_output_prefix: "batch/output/".to_owned(),
            layout: ResultsLayout::default(),
            role_arn: role_arn.into(),
            timeout_hours: Some(24),
            min_records: 100,
            max_records: 10_000,
            max_input_bytes: 1_000_000_000,
            max_file_bytes: 1_000_000_000,
            max_line_bytes: 4 * 1024 * 1024,
            max_wait: Duration::from_secs(15 * 60),
            max_attempts: 3,
            file_tenant,
            batch_models: None,
            max_jobs_per_run: 20,
            max_on_demand_per_run: 200,
        }
    }
}

/// A line of a dropped file that failed at intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineFailure {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_id: Option<String>,
    pub label: &'static str,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IntakeReport {
    pub file_job: String,
    pub uri: String,
    /// Lines carrying a record.
    pub records: u64,
    pub enqueued: u64,
    pub failed: u64,
    /// The first failures, at most [`SAMPLE_LIMIT`]; `failed` counts them all.
    pub failures: Vec<LineFailure>,
    /// The whole file was refused, with the reason (empty, too large, gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// A redelivered event: the file was taken in before, nothing was done.
    pub duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<ResultsFile>,
}

/// A job created (or resumed, or left planned because the model's job quota is full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmittedJob {
    pub job_name: String,
    pub model_id: String,
    pub records: u64,
    pub input_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,
    /// Bedrock refused it for now (quota); the next run resumes it.
    pub deferred: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OnDemandReport {
    pub answered: u64,
    pub retrying: u64,
    pub failed: u64,
    /// Left waiting: admission found no room in the model's quota.
    pub quota_deferred: u64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitReport {
    pub resumed: Vec<SubmittedJob>,
    pub created: Vec<SubmittedJob>,
    pub records_submitted: u64,
    pub on_demand: OnDemandReport,
    pub results_files: Vec<ResultsFile>,
}

/// The submission use case over its ports.
pub struct BatchSubmission<P: SubmissionPorts> {
    catalog: Arc<Catalog>,
    settings: SubmissionSettings,
    ports: P,
    gateway: Arc<Gateway<P::Online>>,
}

impl<P: SubmissionPorts + std::fmt::Debug> std::fmt::Debug for BatchSubmission<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSubmission")
            .field("settings", &self.settings)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// A line that cannot run, and the model it named when it named one.
struct BadLine {
    failure: RecordFailure,
    model_id: String,
}

impl BadLine {
    fn new(label: ErrorLabel, message: impl Into<String>) -> Self {
        BadLine { failure: RecordFailure { label, code: None, message: message.into() }, model_id: String::new() }
    }
}

impl From<RequestError> for BadLine {
    fn from(e: RequestError) -> Self {
        BadLine::new(e.label(), e.to_string())
    }
}

impl From<ResolveError> for BadLine {
    fn from(e: ResolveError) -> Self {
        BadLine::new(e.label(), e.to_string())
    }
}

impl<P: SubmissionPorts> BatchSubmission<P> {
    pub fn new(
        catalog: Arc<Catalog>,
        settings: SubmissionSettings,
        ports: P,
        gateway: Arc<Gateway<P::Online>>,
    ) -> Self {
        BatchSubmission { catalog, settings, ports, gateway }
    }

    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub fn settings(&self) -> &SubmissionSettings {
        &self.settings
    }

    /// The models jobs are planned for, in a stable order.
    fn batch_models(&self) -> Vec<&ModelSpec> {
        self.catalog
            .models()
            .iter()
            .filter(|spec| self.settings.batch_models.as_ref().is_none_or(|allowed| allowed.contains(&spec.model_id)))
            .collect()
    }

    /// Takes a dropped JSONL file in: every good line waits for a job, every bad line fails at
    /// once with its reason, the file's intake is recorded so its results file can be written.
    pub async fn intake_file(&self, file: DroppedFile) -> Result<IntakeReport, BatchError> {
        let version = file.version_id.clone().or_else(|| file.etag.clone());
        let file_job = file_job_name(&file.bucket, &file.key, version.as_deref());
        let uri = s3_uri(&file.bucket, &file.key);
        let mut report = IntakeReport {
            file_job: file_job.clone(),
            uri: uri.clone(),
            records: 0,
            enqueued: 0,
            failed: 0,
            failures: Vec::new(),
            refused: None,
            duplicate: false,
            results: None,
        };
        if self.settings.layout.is_results_key(&file.key) {
            report.refused = Some(format!("`{}` is a results file, not work", file.key));
            return Ok(report);
        }
        if let Some(done) = self.ports.intakes().intake(&file_job).await? {
            report.duplicate = true;
            report.records = done.records;
            report.refused = done.refused;
            return Ok(report);
        }
        let intake = |records, refused| FileIntake {
            file_job: file_job.clone(),
            bucket: file.bucket.clone(),
            key: file.key.clone(),
            version: version.clone(),
            records,
            refused,
            tenant: self.settings.file_tenant.clone(),
            taken_at: file.event_time,
        };
        if let Some(reason) = self.refusal(&file, &uri).await? {
            self.ports.intakes().record_intake(&intake(0, Some(reason.clone()))).await?;
            report.refused = Some(reason);
            report.results = Some(self.write_results(&file_job).await?);
            return Ok(report);
        }
        let Some(input) = self.ports.files().open(&uri).await? else {
            let reason = "the object is gone".to_owned();
            self.ports.intakes().record_intake(&intake(0, Some(reason.clone()))).await?;
            report.refused = Some(reason);
            return Ok(report);
        };
        let mut lines = InputLines::new(input, self.settings.max_line_bytes);
        let mut chunk = Vec::with_capacity(ENQUEUE_CHUNK);
        while let Some((line, text)) = lines.next_record().await? {
            report.records += 1;
            let request_id = line_request_id(&file_job, line);
            let parsed = match text {
                None => Err(BadLine::new(
                    ErrorLabel::InvalidRequest,
                    format!("the line is longer than {} bytes", self.settings.max_line_bytes),
                )),
                Some(text) => self.record_of_line(text, &request_id, &file, line),
            };
            match parsed {
                Ok(record) => {
                    chunk.push(record);
                    if chunk.len() == ENQUEUE_CHUNK {
                        self.ports.pending().enqueue(&chunk).await?;
                        report.enqueued += chunk.len() as u64;
                        chunk.clear();
                    }
                }
                Err(bad) => {
                    let caller_id = text.and_then(caller_record_id);
                    self.fail_line(&file_job, &request_id, bad, line, caller_id, &mut report).await?;
                }
            }
        }
        if !chunk.is_empty() {
            self.ports.pending().enqueue(&chunk).await?;
            report.enqueued += chunk.len() as u64;
        }
        let refused = (report.records == 0).then(|| "the file has no records".to_owned());
        self.ports.intakes().record_intake(&intake(report.records, refused.clone())).await?;
        report.refused = refused;
        if report.enqueued == 0 {
            report.results = Some(self.write_results(&file_job).await?);
        }
        Ok(report)
    }

    /// Why the whole file is refused before any line is read, if it is.
    async fn refusal(&self, file: &DroppedFile, uri: &str) -> Result<Option<String>, BatchError> {
        let limit = self.settings.max_file_bytes;
        let too_large = |bytes: u64| format!("the file has {bytes} bytes, more than the limit of {limit}");
        if let Some(size) = file.size {
            return Ok((size > limit).then(|| too_large(size)));
        }
        // Without a size in the event, the object is measured first: refusing it halfway
        // through would leave half of it enqueued.
        let Some(input) = self.ports.files().open(uri).await? else {
            return Ok(None);
        };
        let bytes = count_bytes(input, limit).await?;
        Ok((bytes > limit).then(|| format!("the file has more than {limit} bytes, the limit")))
    }

    /// To the gateway's usage ledger, when it has one: within the same budget as online, and
    /// never failing the batch work for a record.
    async fn record_usage(&self, record: &UsageRecord) {
        if let Some(ledger) = self.gateway.usage() {
            let _ = usage::build::write(ledger.as_ref(), record, USAGE_WRITE_BUDGET).await;
        }
    }

    async fn fail_line(
        &self,
        file_job: &str,
        request_id: &str,
        bad: BadLine,
        line: u64,
        caller_id: Option<String>,
        report: &mut IntakeReport,
    ) -> Result<(), BatchError> {
        report.failed += 1;
        if report.failures.len() < SAMPLE_LIMIT {
            report.failures.push(LineFailure {
                line,
                record_id: caller_id,
                label: bad.failure.label.as_str(),
                reason: bad.failure.message.clone(),
            });
        }
        let record_id = RecordId::new(request_id, 1)
            .ok_or_else(|| BatchError::Corrupt(format!("request ID `{request_id}` is empty")))?;
        let result = RecordResult {
            job_id: file_job.to_owned(),
            record_id,
            tenant: self.settings.file_tenant.clone(),
            model_id: bad.model_id,
            state: ResultState::Failed { failure: bad.failure },
            missing_from_output: false,
            run_id: format!("intake-{file_job}"),
            stored_at_ms: usage::epoch_ms(SystemTime::now()),
        };
        // A rerun after a crash finds the same failure stored, and its record keeps that time.
        let stored = match self.ports.results().put_once(&result).await? {
            PutOnce::Written => result,
            PutOnce::AlreadyStored(stored) => *stored,
        };
        if let Some(record) = usage::build::batch_result(&stored, &self.catalog) {
            self.record_usage(&record).await;
        }
        Ok(())
    }

    /// A line as the record it asks for, resolved as the online path resolves it.
    fn record_of_line(
        &self,
        text: &[u8],
        request_id: &str,
        file: &DroppedFile,
        line: u64,
    ) -> Result<SubmittedRecord, BadLine> {
        let mut value: Value = serde_json::from_slice(text)
            .map_err(|e| BadLine::new(ErrorLabel::MalformedJson, format!("the line is not JSON: {e}")))?;
        let Value::Object(fields) = &mut value else {
            return Err(BadLine::new(ErrorLabel::InvalidRequest, "the line must be a JSON object"));
        };
        match fields.remove("recordId") {
            None | Some(Value::String(_)) => {}
            Some(_) => return Err(BadLine::new(ErrorLabel::InvalidRequest, "`recordId` must be a string")),
        }
        let body = serde_json::to_vec(&value)
            .map_err(|e| BadLine::new(ErrorLabel::InvalidRequest, format!("the line cannot be re-encoded: {e}")))?;
        let mut request = ConverseRequest::from_json(&body)?;
        let requested = crate::request::requested_model(request.model_id.take(), None)?;
        let spec = self.batch_model(&requested)?;
        if let Some(n) = request.max_tokens().filter(|n| *n > spec.max_output_tokens) {
            let reason =
                format!("{n} exceeds {}'s maximum output of {} tokens", spec.display_name, spec.max_output_tokens);
            let mut bad = BadLine::from(RequestError::invalid("inferenceConfig.maxTokens", reason));
            bad.model_id = spec.model_id.clone();
            return Err(bad);
        }
        let cache = CacheOptions::default();
        self.gateway.settings().cache.decide(&cache, &request)?;
        let record_id = RecordId::new(request_id, 1)
            .ok_or_else(|| BadLine::new(ErrorLabel::Internal, "the line's request ID is empty"))?;
        Ok(SubmittedRecord {
            record_id,
            tenant: self.settings.file_tenant.clone(),
            model_id: spec.model_id.clone(),
            request,
            cache,
            source: RecordSource::File { bucket: file.bucket.clone(), key: file.key.clone(), line },
            enqueued_at: file.event_time,
        })
    }

    /// The catalog model a `modelId` names (tier name, profile, ID or ARN), if it takes batch
    /// jobs. A base ID that needs a profile on demand is fine for a job.
    fn batch_model(&self, requested: &str) -> Result<&ModelSpec, BadLine> {
        if requested.eq_ignore_ascii_case(AUTO_MODEL) {
            return Err(BadLine::new(
                ErrorLabel::InvalidRequest,
                "`modelId: auto` is routed per request online; a batch line names a tier or a model",
            ));
        }
        let id = match requested.parse::<Tier>() {
            Ok(tier) => self.gateway.settings().tier_models.get(&tier).map_or(requested, String::as_str),
            Err(()) => requested,
        };
        let spec = match self.catalog.resolve(id) {
            Ok(Target::Model(m)) => m.spec,
            Ok(Target::PromptRouter { .. }) => {
                return Err(BadLine::new(ErrorLabel::UnknownModel, "a prompt router cannot run batch jobs"));
            }
            Err(ResolveError::NeedsProfile { .. }) => self.catalog.resolve_served(id)?.0,
            Err(e) => return Err(e.into()),
        };
        if let Some(end) = spec.end_of_life.filter(|_| spec.retired_on(Date::today())) {
            let mut bad = BadLine::new(
                ErrorLabel::ModelRetired,
                format!("{} reached its end of life on Amazon Bedrock on {end}", spec.display_name),
            );
            bad.model_id = spec.model_id.clone();
            return Err(bad);
        }
        if !spec.offered_in_batch() {
            let mut bad = BadLine::new(
                ErrorLabel::UnknownModel,
                format!("{} has no batch price in the catalog: Bedrock does not offer it in batch", spec.display_name),
            );
            bad.model_id = spec.model_id.clone();
            return Err(bad);
        }
        if self.settings.batch_models.as_ref().is_some_and(|allowed| !allowed.contains(&spec.model_id)) {
            let mut bad = BadLine::new(
                ErrorLabel::UnknownModel,
                format!("{} does not take batch jobs in this deployment", spec.display_name),
            );
            bad.model_id = spec.model_id.clone();
            return Err(bad);
        }
        Ok(spec)
    }

    async fn write_results(&self, file_job: &str) -> Result<ResultsFile, BatchError> {
        results_file::write_if_complete(
            self.ports.results(),
            self.ports.intakes(),
            self.ports.files(),
            &self.settings.layout,
            file_job,
            self.settings.max_line_bytes,
        )
        .await
    }

    /// Resumes the plans a crash or the job quota left, then groups what waits into jobs per
    /// model, or runs records on demand when fewer than a job's minimum waited too long.
    pub async fn plan_and_submit(&self, now: SystemTime) -> Result<SubmitReport, BatchError> {
        let mut report = SubmitReport::default();
        let mut quota_full: BTreeSet<String> = BTreeSet::new();
        for plan in self.ports.plans().unsubmitted().await? {
            let job = self.resume(&plan).await?;
            if job.deferred {
                quota_full.insert(plan.model_id.clone());
            } else {
                report.records_submitted += job.records;
            }
            report.resumed.push(job);
        }
        let mut touched_files = BTreeSet::new();
        for spec in self.batch_models() {
            if quota_full.contains(&spec.model_id) {
                continue;
            }
            self.plan_model(spec, now, &mut report, &mut touched_files).await?;
        }
        for file_job in touched_files {
            report.results_files.push(self.write_results(&file_job).await?);
        }
        Ok(report)
    }

    async fn plan_model(
        &self,
        spec: &ModelSpec,
        now: SystemTime,
        report: &mut SubmitReport,
        touched_files: &mut BTreeSet<String>,
    ) -> Result<(), BatchError> {
        while report.created.len() < self.settings.max_jobs_per_run {
            let waiting = self.ports.pending().oldest(&spec.model_id, self.settings.max_records).await?;
            let Some(oldest) = waiting.first() else {
                return Ok(());
            };
            let (input, fits) = job_input(&waiting, spec.accepts(), self.settings.max_input_bytes)?;
            if fits >= self.settings.min_records.max(1) {
                let records = &waiting[..fits];
                let plan = self.plan_for(&spec.model_id, records, now);
                self.ports.plans().plan(&plan, records).await?;
                self.ports.pending().remove(records).await?;
                let job = self.create(&plan, input).await?;
                let deferred = job.deferred;
                if !deferred {
                    report.records_submitted += job.records;
                }
                report.created.push(job);
                if deferred {
                    return Ok(());
                }
                continue;
            }
            let waited = now.duration_since(oldest.enqueued_at).unwrap_or_default();
            if waited >= self.settings.max_wait {
                let overdue: Vec<_> = waiting
                    .iter()
                    .filter(|r| now.duration_since(r.enqueued_at).unwrap_or_default() >= self.settings.max_wait)
                    .take(self.settings.max_on_demand_per_run)
                    .cloned()
                    .collect();
                self.run_on_demand(spec, overdue, now, &mut report.on_demand, touched_files).await?;
            }
            return Ok(());
        }
        Ok(())
    }

    fn plan_for(&self, model_id: &str, records: &[SubmittedRecord], now: SystemTime) -> JobPlan {
        let first = records.first().map(|r| r.record_id.to_string()).unwrap_or_default();
        let job_name = job_name(model_id, &first, records.len(), now);
        JobPlan {
            input_uri: s3_uri(&self.settings.bucket, &format!("{}{job_name}.jsonl", self.settings.job_input_prefix)),
            output_uri: s3_uri(&self.settings.bucket, &self.settings.job_output_prefix),
            job_name,
            model_id: model_id.to_owned(),
            records: records.len() as u64,
            planned_at: now,
        }
    }

    /// Writes the input, creates the job and marks it submitted; a full job quota leaves it
    /// planned for the next run.
    async fn create(&self, plan: &JobPlan, input: Vec<u8>) -> Result<SubmittedJob, BatchError> {
        self.ports.files().write(&plan.input_uri, input).await?;
        let mut job = SubmittedJob {
            job_name: plan.job_name.clone(),
            model_id: plan.model_id.clone(),
            records: plan.records,
            input_uri: plan.input_uri.clone(),
            job_arn: None,
            deferred: false,
        };
        let model_id = match self.catalog.resolve_served(&plan.model_id) {
            Ok((spec, _)) => invoke_id_of(spec),
            Err(_) => plan.model_id.clone(),
        };
        let create = CreateJob {
            plan: plan.clone(),
            model_id,
            role_arn: self.settings.role_arn.clone(),
            invocation_type: Some("Converse".to_owned()),
            timeout_hours: self.settings.timeout_hours,
        };
        match self.ports.remote().create(&create).await {
            Ok(job_arn) => {
                self.ports.plans().submitted(&plan.job_name, &job_arn, SystemTime::now()).await?;
                job.job_arn = Some(job_arn);
            }
            Err(e) if e.label() == ErrorLabel::QuotaExhausted => {
                tracing::info!(job_name = plan.job_name, error = %e, "batch job quota full; the plan waits for the next run");
                job.deferred = true;
            }
            Err(e) => return Err(e),
        }
        Ok(job)
    }

    /// A plan never marked submitted, sent again from its own records under its own name.
    async fn resume(&self, plan: &JobPlan) -> Result<SubmittedJob, BatchError> {
        let mut records = Vec::new();
        let mut after: Option<RecordId> = None;
        loop {
            let page = self.ports.submissions().page(&plan.job_name, after.as_ref(), RESUME_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.record_id.clone());
            records.extend(page);
        }
        // The plan's records may still wait when the run died before taking them out.
        self.ports.pending().remove(&records).await?;
        let accepts = self.catalog.by_model_id(&plan.model_id).map_or(Accepts::default(), ModelSpec::accepts);
        let (input, fits) = job_input(&records, accepts, u64::MAX)?;
        if fits != records.len() {
            return Err(BatchError::Corrupt(format!("job {} has records that cannot be encoded", plan.job_name)));
        }
        let mut plan = plan.clone();
        plan.records = records.len() as u64;
        self.create(&plan, input).await
    }

    /// Overdue records through the online path, one by one. Admission refusing one leaves it
    /// and the rest of the model's records waiting: the quota is full for all of them.
    async fn run_on_demand(
        &self,
        spec: &ModelSpec,
        records: Vec<SubmittedRecord>,
        now: SystemTime,
        report: &mut OnDemandReport,
        touched_files: &mut BTreeSet<String>,
    ) -> Result<(), BatchError> {
        let job_id = format!("ondemand-{}", utc_stamp(now, false));
        let run_id = format!("ondemand-{}", crate::ports::ClaimToken::unique().as_str());
        let invoke_id = invoke_id_of(spec);
        for record in records {
            let started = Instant::now();
            let request_id = record.record_id.to_string();
            let served = |finished: SystemTime| Served {
                source: UsageSource::BatchOnDemand,
                request_id: &request_id,
                tenant: &record.tenant,
                finished_at_ms: usage::epoch_ms(finished),
            };
            let mut request = record.request.clone();
            request.model_id = Some(invoke_id.clone());
            let call = ConverseCall {
                request,
                tenant: record.tenant.clone(),
                cache: record.cache,
                routing: RouteOverrides::default(),
                deadline: self.gateway.settings().budgets.deadline(None),
            };
            let mut used = None;
            let state = match self.gateway.converse(call).await {
                Ok(answer) => {
                    used = Some(usage::build::answered(
                        served(SystemTime::now()),
                        &answer,
                        &self.catalog,
                        PricingMode::OnDemand,
                    ));
                    let usage = Usage::from(&answer.response.usage);
                    report.answered += 1;
                    report.cost_usd += answer.cost_usd.unwrap_or(0.0);
                    // Not priced at batch rates: the caller paid the on-demand price.
                    ResultState::Answered {
                        response: answer.response,
                        usage,
                        batch_cost_usd: None,
                        on_demand_cost_usd: answer.cost_usd,
                    }
                }
                Err(GatewayError::QuotaExhausted { refusal, .. }) => {
                    tracing::info!(record_id = %record.record_id, %refusal, "no quota for the overdue records; they wait");
                    report.quota_deferred += 1;
                    return Ok(());
                }
                Err(e) => {
                    let failure = RecordFailure { label: e.label(), code: None, message: e.to_string() };
                    let retryable = matches!(e, GatewayError::DeadlineExceeded { .. })
                        || e.invoke_error().is_some_and(crate::ports::InvokeError::warrants_fallback);
                    if retryable && record.record_id.attempt() < self.settings.max_attempts {
                        report.retrying += 1;
                        let retry = SubmittedRecord { record_id: record.record_id.next_attempt(), ..record.clone() };
                        self.ports.pending().enqueue(std::slice::from_ref(&retry)).await?;
                        ResultState::Retrying { failure }
                    } else {
                        report.failed += 1;
                        used =
                            Some(usage::build::failed(served(SystemTime::now()), &e, &self.catalog, started.elapsed()));
                        ResultState::Failed { failure }
                    }
                }
            };
            let result = RecordResult {
                job_id: job_id.clone(),
                record_id: record.record_id.clone(),
                tenant: record.tenant.clone(),
                model_id: record.model_id.clone(),
                state,
                missing_from_output: false,
                run_id: run_id.clone(),
                stored_at_ms: usage::epoch_ms(SystemTime::now()),
            };
            self.ports.results().put_once(&result).await?;
            if let Some(used) = &used {
                self.record_usage(used).await;
            }
            self.ports.pending().remove(std::slice::from_ref(&record)).await?;
            if let Some(file_job) = results_file::file_job_of(record.record_id.request_id()) {
                touched_files.insert(file_job.to_owned());
            }
        }
        Ok(())
    }
}

/// One line of a job's input, as Bedrock reads it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InputLine<'a> {
    record_id: String,
    /// The Converse body without its `modelId`: the job names the model.
    model_input: &'a ConverseRequest,
}

/// The input JSONL of a job of `records` for a model that `accepts` what it does: the
/// longest prefix within `max_bytes`, and its length in records. Each line is fitted to the
/// model, as an online call is: one refused parameter would fail the record.
fn job_input(records: &[SubmittedRecord], accepts: Accepts, max_bytes: u64) -> Result<(Vec<u8>, usize), BatchError> {
    let mut body = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let mut model_input = accepts.fit(&record.request);
        // The job names the model; a record enqueued with its `modelId` still in the body
        // must not send it.
        if model_input.model_id.is_some() {
            model_input.to_mut().model_id = None;
        }
        let line = InputLine { record_id: record.record_id.to_string(), model_input: &model_input };
        let mut encoded = serde_json::to_vec(&line)
            .map_err(|e| BatchError::Corrupt(format!("record {} cannot be encoded: {e}", record.record_id)))?;
        encoded.push(b'\n');
        if (body.len() + encoded.len()) as u64 > max_bytes {
            return Ok((body, i));
        }
        body.extend(encoded);
    }
    Ok((body, records.len()))
}

/// `file-<16 hex>` of the object: the same object (a redelivered event) gets the same name,
/// a file dropped again under the key (another version or ETag) another.
pub fn file_job_name(bucket: &str, key: &str, version: Option<&str>) -> String {
    let mut hash = Sha256::new();
    for part in [bucket, key, version.unwrap_or_default()] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    format!("{FILE_JOB_PREFIX}{}", hex::encode(&digest[..8]))
}

/// `gw-<yyyymmddHHMMSS>-<12 hex>`: a valid Bedrock job name, unique per set of records.
pub fn job_name(model_id: &str, first_record_id: &str, count: usize, now: SystemTime) -> String {
    let digest = Sha256::digest(format!("{model_id}{first_record_id}{count}").as_bytes());
    let hex = hex::encode(digest);
    format!("gw-{}-{}", utc_stamp(now, true), &hex[..12])
}

/// `yyyymmdd`, with `HHMMSS` after it when `with_time`, in UTC.
fn utc_stamp(at: SystemTime, with_time: bool) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::date::civil_from_days(days as i64);
    let date = format!("{year:04}{month:02}{day:02}");
    if with_time { format!("{date}{:02}{:02}{:02}", rest / 3600, rest % 3600 / 60, rest % 60) } else { date }
}

/// The ID a call (or a job) for the model is sent with: in-region where the model runs there,
/// else its first inference profile.
fn invoke_id_of(spec: &ModelSpec) -> String {
    spec.scopes().first().map(|scope| spec.invoke_id(scope)).unwrap_or_else(|| spec.model_id.clone())
}

#[cfg(test)]
mod stamp_tests {
    use super::*;

    #[test]
    fn stamps_are_utc_calendar_dates() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_000_000);
        // 2026-02-25T06:13:20Z
        assert_eq!(utc_stamp(at, true), "20260225061320");
        assert_eq!(utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400), false), "20000229");
    }
}
