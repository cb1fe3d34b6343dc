//! The completion stage: a terminal job-state event, the job's output outcomes one by one,
//! then the job's summary.
//!
//! Per record, in this order: look the record up as submitted, price it (batch and on-demand
//! rates), write the cache entry the online path would have written, then put the result
//! conditionally. The result is the commit point: a run killed before it leaves the record to
//! the next run (whose cache write repeats the same entry under the same key, harmless), a
//! run killed after it finds the result stored and counts it without writing again.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::io::AsyncBufRead;

use super::output::{AsyncOutputReader, OutputReader, RecordError, RecordOutcome};
use super::ports::{
    BatchPorts, FinishOutcome, JobLedger, PutOnce, RecordFailure, RecordResult, ResultState, ResultStore,
    SubmittedRecords,
};
use super::record::{RecordId, SubmittedRecord};
use super::{BatchError, JobEvent, JobStatus};
use crate::cache::{self, CacheEntry, CacheSettings};
use crate::catalog::Catalog;
use crate::cost::{PricingMode, Usage};
use crate::label::ErrorLabel;
use crate::ports::{CacheStore, PutOutcome};
use crate::request::ConverseResponse;
use crate::service::USAGE_WRITE_BUDGET;
use crate::usage::{self, Recorder};

/// How many failures and malformed lines a summary lists; the counts are always complete.
pub const SAMPLE_LIMIT: usize = 100;

/// Submitted records read per page when looking for those the output never named.
const MISSING_PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Attempts a record gets in all, the first included; a retryable failure on the last is
    /// final. At least 1.
    pub max_attempts: u32,
    /// The online cache policy, so that a batch answer is cached exactly when the same
    /// request online would have been, for as long.
    pub cache: CacheSettings,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings { max_attempts: 3, cache: CacheSettings::default() }
    }
}

/// How the job ended for its callers. A job with no answered record is `Failed`, whatever
/// Bedrock's status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Completed,
    PartiallyCompleted,
    Failed {
        reason: String,
    },
    /// Not terminal yet: a progress event, nothing read and nothing stored. Never the outcome
    /// of a summary the ledger holds.
    Running,
}

/// A record that failed (for now or for good), for the summary's sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    pub record_id: String,
    pub failure: RecordFailure,
    pub will_retry: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedLine {
    /// The output file (its S3 key) and the line in it, from 1.
    pub file: String,
    pub line: u64,
    pub record_id: Option<String>,
    pub reason: String,
}

/// Every record of a job accounted for.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub job_id: String,
    pub status: JobStatus,
    pub outcome: JobOutcome,
    pub answered: u64,
    pub failed: u64,
    pub retrying: u64,
    /// Lines that named no record this job had, or no record at all.
    pub malformed_lines: u64,
    pub batch_cost_usd: f64,
    pub on_demand_cost_usd: f64,
    /// Answers written to the cache by this run, and writes that failed (counted, as online,
    /// never failing the record).
    pub cache_writes: u64,
    pub cache_write_failures: u64,
    /// The first failures and malformed lines, at most [`SAMPLE_LIMIT`] each.
    pub failures: Vec<FailedRecord>,
    pub malformed: Vec<MalformedLine>,
    /// The records to submit in a later job, already under their next attempt's ID. Resubmit
    /// them by record ID: a duplicate event returns the same list.
    pub retries: Vec<SubmittedRecord>,
}

impl JobSummary {
    /// A job with nothing counted yet.
    pub fn empty(job_id: &str, status: JobStatus, outcome: JobOutcome) -> JobSummary {
        JobSummary {
            job_id: job_id.to_owned(),
            status,
            outcome,
            answered: 0,
            failed: 0,
            retrying: 0,
            malformed_lines: 0,
            batch_cost_usd: 0.0,
            on_demand_cost_usd: 0.0,
            cache_writes: 0,
            cache_write_failures: 0,
            failures: Vec::new(),
            malformed: Vec::new(),
            retries: Vec::new(),
        }
    }

    /// The money the batch price saved against on demand.
    pub fn saved_usd(&self) -> f64 {
        self.on_demand_cost_usd - self.batch_cost_usd
    }
}

/// What to do with an event.
#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one per event, moved once: the size costs nothing")]
pub enum Begin {
    /// Not terminal (or out of order after the end): the job's output is not final.
    Ignored { status: JobStatus },
    /// A duplicate: the job's completion is done, this is its summary.
    AlreadyFinished(Box<JobSummary>),
    /// Read the job's output files into [`BatchCompletion::record`] (or the readers), then
    /// [`BatchCompletion::finish`].
    Run(JobRun),
}

/// One run of one job's completion: the tallies so far.
#[derive(Debug)]
pub struct JobRun {
    event: JobEvent,
    run_id: String,
    /// The output file being read, named in malformed-line reports.
    file: String,
    summary: JobSummary,
    /// The records no output line named are stored already (see
    /// [`BatchCompletion::account_for_missing`]); finishing does not look for them again.
    missing_accounted: bool,
}

impl JobRun {
    pub fn job_id(&self) -> &str {
        &self.event.job_id
    }

    /// Names the output file the next outcomes given to [`BatchCompletion::record`] come from.
    pub fn set_file(&mut self, file: &str) {
        file.clone_into(&mut self.file);
    }

    /// The tallies so far.
    pub fn summary(&self) -> &JobSummary {
        &self.summary
    }
}

/// Unique across processes and runs, as claim tokens are.
fn unique_run_id() -> String {
    crate::ports::ClaimToken::unique().as_str().to_owned()
}

/// The batch-completion use case over its ports.
#[derive(Debug)]
pub struct BatchCompletion<P> {
    catalog: Arc<Catalog>,
    settings: BatchSettings,
    ports: P,
    usage: Option<Arc<dyn Recorder>>,
}

impl<P: BatchPorts> BatchCompletion<P> {
    pub fn new(catalog: Arc<Catalog>, settings: BatchSettings, ports: P) -> Self {
        BatchCompletion { catalog, settings, ports, usage: None }
    }

    /// Each record's final result also leaves a usage record there, for the metrics publisher.
    pub fn with_usage(mut self, usage: Arc<dyn Recorder>) -> Self {
        self.usage = Some(usage);
        self
    }

    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub async fn begin(&self, event: JobEvent) -> Result<Begin, BatchError> {
        if !event.status.is_terminal() {
            return Ok(Begin::Ignored { status: event.status });
        }
        if let Some(summary) = self.ports.jobs().finished(&event.job_id).await? {
            return Ok(Begin::AlreadyFinished(Box::new(summary)));
        }
        let summary = JobSummary::empty(&event.job_id, event.status, JobOutcome::Failed { reason: String::new() });
        Ok(Begin::Run(JobRun {
            event,
            run_id: unique_run_id(),
            file: String::new(),
            summary,
            missing_accounted: false,
        }))
    }

    /// Every outcome of the output file named `file`; a read error stops the run (run it
    /// again: what was written stays written once).
    pub async fn read_file<R: std::io::BufRead>(
        &self,
        run: &mut JobRun,
        file: &str,
        input: R,
    ) -> Result<(), BatchError> {
        file.clone_into(&mut run.file);
        for outcome in OutputReader::new(input) {
            self.record(run, outcome?).await?;
        }
        Ok(())
    }

    pub async fn read_file_async<R: AsyncBufRead + Unpin>(
        &self,
        run: &mut JobRun,
        file: &str,
        input: R,
    ) -> Result<(), BatchError> {
        file.clone_into(&mut run.file);
        let mut reader = AsyncOutputReader::new(input);
        while let Some(outcome) = reader.next_outcome().await? {
            self.record(run, outcome).await?;
        }
        Ok(())
    }

    /// One line's outcome (of the file last named to a reader, or to [`JobRun::set_file`]):
    /// looked up, priced, cached, stored once, tallied.
    pub async fn record(&self, run: &mut JobRun, outcome: RecordOutcome) -> Result<(), BatchError> {
        let (line, record_id, answer) = match outcome {
            RecordOutcome::Malformed { line, record_id, reason } => {
                // A line that still names a record of the job fails that record for good:
                // the same request would come back the same way.
                if let Some(submitted) = self.lookup(run, record_id.as_deref()).await? {
                    let failure = RecordFailure { label: ErrorLabel::BadResponse, code: None, message: reason };
                    return self.store(run, &submitted, self.failed_state(&submitted, failure, false)).await;
                }
                malformed(run, line, record_id, reason);
                return Ok(());
            }
            RecordOutcome::Answered { line, record_id, response } => (line, record_id, Ok(response)),
            RecordOutcome::Failed { line, record_id, error } => (line, record_id, Err(error)),
        };
        let Some(submitted) = self.lookup(run, Some(&record_id)).await? else {
            malformed(run, line, Some(record_id), "not a record of this job".to_owned());
            return Ok(());
        };
        let state = match answer {
            Ok(response) => self.answered(run, &submitted, response).await,
            Err(error) => {
                let retryable = error.is_retryable();
                self.failed_state(&submitted, failure_of(&error), retryable)
            }
        };
        self.store(run, &submitted, state).await
    }

    /// Writes the job's summary once; a concurrent run that finished first wins, and its
    /// summary (built from the same stored results) is returned.
    pub async fn finish(&self, run: JobRun) -> Result<JobSummary, BatchError> {
        let mut run = run;
        if !run.missing_accounted {
            self.account_for_missing(&mut run).await?;
        }
        let JobRun { event, mut summary, .. } = run;
        summary.outcome = outcome_of(&event, &summary);
        match self.ports.jobs().finish(&summary).await? {
            FinishOutcome::Recorded => Ok(summary),
            FinishOutcome::AlreadyFinished(stored) => Ok(*stored),
        }
    }

    /// Records the job had but no output line named (a failed, stopped or expired job, or
    /// lines Bedrock never wrote) fail as retryable, so that every record is accounted for.
    /// [`Self::finish`] does it when it was not done; doing it first, after the last file,
    /// lets a caller act on the whole run's [`JobSummary::retries`] before the job is closed.
    pub async fn account_for_missing(&self, run: &mut JobRun) -> Result<(), BatchError> {
        let mut after: Option<RecordId> = None;
        loop {
            let page = self.ports.submissions().page(&run.event.job_id, after.as_ref(), MISSING_PAGE).await?;
            let Some(last) = page.last() else {
                run.missing_accounted = true;
                return Ok(());
            };
            after = Some(last.record_id.clone());
            for submitted in &page {
                let message = format!("no output for the record; the job ended {}", run.event.status.as_str());
                let failure = RecordFailure { label: ErrorLabel::ModelFailed, code: None, message };
                let state = self.failed_state(submitted, failure, true);
                self.put_and_tally(run, submitted, state, true).await?;
            }
        }
    }

    async fn lookup(&self, run: &JobRun, record_id: Option<&str>) -> Result<Option<SubmittedRecord>, BatchError> {
        let Some(id) = record_id.and_then(RecordId::parse) else {
            return Ok(None);
        };
        self.ports.submissions().submitted(&run.event.job_id, &id).await
    }

    fn failed_state(&self, submitted: &SubmittedRecord, failure: RecordFailure, retryable: bool) -> ResultState {
        if retryable && submitted.record_id.attempt() < self.settings.max_attempts {
            ResultState::Retrying { failure }
        } else {
            ResultState::Failed { failure }
        }
    }

    /// Prices the answer and writes the entry the online path would have written for it.
    async fn answered(&self, run: &mut JobRun, submitted: &SubmittedRecord, response: ConverseResponse) -> ResultState {
        let usage = Usage::from(&response.usage);
        let served = self.served_model(run, submitted, &response).to_owned();
        let price = |mode| match self.catalog.cost_of(&served, &usage, mode) {
            Ok(cost) => Some(cost),
            Err(e) => {
                tracing::warn!(model_id = served, error = %e, "batch answer from a model outside the catalog; cost unknown");
                None
            }
        };
        let (batch_cost_usd, on_demand_cost_usd) = (price(PricingMode::Batch), price(PricingMode::OnDemand));
        let response = self.warm_cache(run, submitted, &served, on_demand_cost_usd, response).await;
        ResultState::Answered { response, usage, batch_cost_usd, on_demand_cost_usd }
    }

    fn served_model<'a>(
        &self,
        run: &'a JobRun,
        submitted: &'a SubmittedRecord,
        response: &'a ConverseResponse,
    ) -> &'a str {
        response.invoked_model_id().or(run.event.model_id.as_deref()).unwrap_or(&submitted.model_id)
    }

    async fn warm_cache(
        &self,
        run: &mut JobRun,
        submitted: &SubmittedRecord,
        served: &str,
        on_demand_cost_usd: Option<f64>,
        response: ConverseResponse,
    ) -> ConverseResponse {
        // A TTL over the deployment's maximum is refused online before any call; here the
        // answer exists, so it is stored as a result and only the cache write is skipped.
        let decision = match self.settings.cache.decide(&submitted.cache, &submitted.request) {
            Ok(decision) if decision.write => decision,
            Ok(_) | Err(_) => return response,
        };
        if !cache::is_cacheable(&response) {
            return response;
        }
        let now = SystemTime::now();
        // The online hit reports the entry's cost as saved: what a new call would cost, on demand.
        let entry = CacheEntry {
            key: submitted.cache_key(),
            response,
            model_id: served.to_owned(),
            cost_usd: on_demand_cost_usd.unwrap_or(0.0),
            created_at: now,
            expires_at: now + decision.ttl,
        };
        match self.ports.cache().put(&entry).await {
            Ok(PutOutcome::Stored { .. }) => run.summary.cache_writes += 1,
            Ok(PutOutcome::TooLarge { bytes, limit }) => {
                tracing::info!(bytes, limit, "batch answer too large to cache")
            }
            Err(e) => {
                tracing::warn!(error = %e, kind = %e.label(), record_id = %submitted.record_id, "batch cache write failed");
                run.summary.cache_write_failures += 1;
            }
        }
        entry.response
    }

    async fn store(&self, run: &mut JobRun, submitted: &SubmittedRecord, state: ResultState) -> Result<(), BatchError> {
        self.put_and_tally(run, submitted, state, false).await
    }

    async fn put_and_tally(
        &self,
        run: &mut JobRun,
        submitted: &SubmittedRecord,
        state: ResultState,
        missing_from_output: bool,
    ) -> Result<(), BatchError> {
        let result = RecordResult {
            job_id: run.event.job_id.clone(),
            record_id: submitted.record_id.clone(),
            tenant: submitted.tenant.clone(),
            model_id: submitted.model_id.clone(),
            state,
            missing_from_output,
            run_id: run.run_id.clone(),
            stored_at_ms: crate::usage::epoch_ms(SystemTime::now()),
        };
        let counted = match self.ports.results().put_once(&result).await? {
            PutOnce::Written => result,
            PutOnce::AlreadyStored(stored) if stored.run_id == run.run_id => {
                if !missing_from_output {
                    tracing::info!(record_id = %submitted.record_id, "duplicate output line for a record; ignored");
                }
                return Ok(());
            }
            // Every run reads every output line, so a result from one was counted when this run
            // read it; only an earlier run's missing record is news here.
            PutOnce::AlreadyStored(stored) if missing_from_output && !stored.missing_from_output => return Ok(()),
            PutOnce::AlreadyStored(stored) => *stored,
        };
        // Written again for a result an earlier run stored (it may have died before its
        // record): the record keeps the first store's time, so the ledger keeps it once.
        if let (Some(usage), Some(record)) = (&self.usage, usage::build::batch_result(&counted, &self.catalog)) {
            let _ = usage::build::write(usage.as_ref(), &record, USAGE_WRITE_BUDGET).await;
        }
        tally(&mut run.summary, submitted, counted.state);
        Ok(())
    }
}

fn failure_of(error: &RecordError) -> RecordFailure {
    let label = match error.code {
        Some(429) => ErrorLabel::Throttled,
        Some(408) => ErrorLabel::ModelTimeout,
        Some(403) => ErrorLabel::AccessDenied,
        Some(404) => ErrorLabel::ModelNotFound,
        Some(424) => ErrorLabel::ModelFailed,
        Some(503) => ErrorLabel::Unavailable,
        Some(code) if code >= 500 => ErrorLabel::Internal,
        Some(_) => ErrorLabel::InvalidRequest,
        None => ErrorLabel::ModelFailed,
    };
    RecordFailure { label, code: error.code, message: error.message.clone() }
}

fn malformed(run: &mut JobRun, line: u64, record_id: Option<String>, reason: String) {
    tracing::warn!(job_id = run.event.job_id, file = run.file, line, record_id, reason, "malformed batch output line");
    run.summary.malformed_lines += 1;
    if run.summary.malformed.len() < SAMPLE_LIMIT {
        run.summary.malformed.push(MalformedLine { file: run.file.clone(), line, record_id, reason });
    }
}

/// Counts the stored state, whichever run stored it, so that every run's summary is whole.
fn tally(summary: &mut JobSummary, submitted: &SubmittedRecord, state: ResultState) {
    let (failure, will_retry) = match state {
        ResultState::Answered { batch_cost_usd, on_demand_cost_usd, .. } => {
            summary.answered += 1;
            summary.batch_cost_usd += batch_cost_usd.unwrap_or(0.0);
            summary.on_demand_cost_usd += on_demand_cost_usd.unwrap_or(0.0);
            return;
        }
        ResultState::Retrying { failure } => {
            summary.retrying += 1;
            summary
                .retries
                .push(SubmittedRecord { record_id: submitted.record_id.next_attempt(), ..submitted.clone() });
            (failure, true)
        }
        ResultState::Failed { failure } => {
            summary.failed += 1;
            (failure, false)
        }
    };
    if summary.failures.len() < SAMPLE_LIMIT {
        summary.failures.push(FailedRecord { record_id: submitted.record_id.to_string(), failure, will_retry });
    }
}

fn outcome_of(event: &JobEvent, summary: &JobSummary) -> JobOutcome {
    if summary.answered == 0 {
        let reason = match &event.failure_message {
            Some(message) if !message.is_empty() => format!("Bedrock: {message}"),
            _ if summary.failed + summary.retrying + summary.malformed_lines == 0 => {
                format!("the job ended {} with no output record", event.status.as_str())
            }
            _ => "no record was answered".to_owned(),
        };
        return JobOutcome::Failed { reason };
    }
    let whole = summary.failed + summary.retrying + summary.malformed_lines == 0;
    if whole && event.status == JobStatus::Completed { JobOutcome::Completed } else { JobOutcome::PartiallyCompleted }
}
