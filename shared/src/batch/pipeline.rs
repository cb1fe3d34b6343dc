//! A job's completion end to end, and the reconciler that finds jobs whose event never came.
//!
//! [`BatchPipeline::complete_job`]: the job's description (its output location), every
//! `*.jsonl.out` under `<output_uri><jobId>/` streamed through the completion, the records the
//! output never named accounted for, the retries enqueued, the summary written, then the
//! results files of the dropped files the job finished.
//!
//! The retries are enqueued before the summary is written: a run killed between the two leaves
//! the job open, so the reconciler (or the event's retry) runs it again and enqueues the same
//! retries, which is idempotent; once the summary stands, a duplicate event returns it and
//! touches nothing. A retry whose request has moved on (its attempt already in a job, or
//! answered) is not enqueued again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::complete::{BatchCompletion, BatchSettings, Begin, JobOutcome, JobSummary};
use super::ports::{
    BatchFiles, BatchJobs, BatchPorts, FileIntakes, JobLedger, JobPlans, PendingRecords, RequestStatus,
    RequestStatuses, SubmittedRecords,
};
use super::record::{RecordId, SubmittedRecord};
use super::results_file::{self, ResultsFile, ResultsLayout};
use super::{BatchError, JobEvent, JobStatus};
use crate::catalog::Catalog;

/// Submitted records read per page when looking for the dropped files a job finished.
const FILES_PAGE: usize = 500;

/// The output files of a job; the manifest beside them is not one.
const OUTPUT_SUFFIX: &str = ".jsonl.out";

/// Every port the pipeline uses: the completion's, and the submission's it hands retries and
/// results files to.
pub trait PipelinePorts: BatchPorts {
    type Pending: PendingRecords;
    type Statuses: RequestStatuses;
    type Plans: JobPlans;
    type Intakes: FileIntakes;
    type Remote: BatchJobs;
    type Files: BatchFiles;

    fn pending(&self) -> &Self::Pending;
    fn statuses(&self) -> &Self::Statuses;
    fn plans(&self) -> &Self::Plans;
    fn intakes(&self) -> &Self::Intakes;
    fn remote(&self) -> &Self::Remote;
    fn files(&self) -> &Self::Files;
}

#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub completion: BatchSettings,
    pub layout: ResultsLayout,
    /// Lines of a dropped file longer than this failed at intake; the results writer reads
    /// the file again with the same bound.
    pub max_line_bytes: usize,
    /// An open job older than this is reported by the reconciler (Bedrock's own timeout, 24 h
    /// by default, should have ended it).
    pub overdue_after: Duration,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            completion: BatchSettings::default(),
            layout: ResultsLayout::default(),
            max_line_bytes: 4 * 1024 * 1024,
            overdue_after: Duration::from_secs(25 * 3600),
        }
    }
}

/// A job the reconciler found ended and completed.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconciledJob {
    pub job_name: String,
    pub status: &'static str,
    pub outcome: &'static str,
    pub answered: u64,
    pub failed: u64,
    pub retrying: u64,
}

/// A job the reconciler could not complete this time; the next run tries again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileFailure {
    pub job_name: String,
    pub label: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileReport {
    /// Open jobs asked about.
    pub checked: u64,
    pub completed: Vec<ReconciledJob>,
    pub still_running: u64,
    /// Open jobs submitted longer ago than the settings allow, still running.
    pub overdue: Vec<String>,
    pub errors: Vec<ReconcileFailure>,
}

/// The completion of whole jobs, over the pipeline's ports.
#[derive(Debug)]
pub struct BatchPipeline<P> {
    completion: BatchCompletion<P>,
    settings: PipelineSettings,
}

/// The ID Bedrock names a job's output folder with: the last segment of its ARN.
pub fn job_id_of_arn(job_arn: &str) -> &str {
    job_arn.rsplit('/').next().unwrap_or(job_arn)
}

/// The S3 key of an `s3://bucket/key` URI (the name malformed-line reports give a file).
fn key_of(uri: &str) -> &str {
    uri.strip_prefix("s3://").and_then(|rest| rest.split_once('/')).map_or(uri, |(_, key)| key)
}

pub fn outcome_name(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Completed => "completed",
        JobOutcome::PartiallyCompleted => "partially_completed",
        JobOutcome::Failed { .. } => "failed",
        JobOutcome::Running => "running",
    }
}

impl<P: PipelinePorts> BatchPipeline<P> {
    pub fn new(catalog: Arc<Catalog>, settings: PipelineSettings, ports: P) -> Self {
        BatchPipeline { completion: BatchCompletion::new(catalog, settings.completion, ports), settings }
    }

    /// Every record's final result also leaves a usage record there ([`BatchCompletion::with_usage`]).
    pub fn with_usage(self, usage: Arc<dyn crate::usage::Recorder>) -> Self {
        BatchPipeline { completion: self.completion.with_usage(usage), ..self }
    }

    pub fn ports(&self) -> &P {
        self.completion.ports()
    }

    /// Completes the job of a state-change event once. A progress event completes the job
    /// when Bedrock says it has ended meanwhile (its own event may be late or lost), and
    /// otherwise returns a [`JobOutcome::Running`] summary with nothing read or stored. A job
    /// with no records here (not this gateway's) returns a `Failed` summary, nothing stored.
    pub async fn complete_job(&self, event: JobEvent) -> Result<JobSummary, BatchError> {
        if let Some(summary) = self.ports().jobs().finished(&event.job_id).await? {
            return Ok(summary);
        }
        // The state-change rule sees every batch job of the account: one this gateway never
        // planned has no records here, and its output is not read.
        if self.ports().submissions().page(&event.job_id, None, 1).await?.is_empty() {
            tracing::info!(job_id = event.job_id, "a batch job this gateway did not submit; ignored");
            let mut summary = running(&event.job_id, event.status);
            summary.outcome = JobOutcome::Failed { reason: format!("job {} has no records here", event.job_id) };
            return Ok(summary);
        }
        let description = self.ports().remote().describe(&event.job_arn).await?;
        let status = if event.status.is_terminal() { event.status } else { description.status };
        if !status.is_terminal() {
            return Ok(running(&event.job_id, status));
        }
        let event = JobEvent {
            status,
            model_id: event.model_id.or(Some(description.model_id)),
            failure_message: event.failure_message.or(description.failure_message),
            ..event
        };
        let mut run = match self.completion.begin(event.clone()).await? {
            Begin::Run(run) => run,
            Begin::AlreadyFinished(summary) => return Ok(*summary),
            Begin::Ignored { status } => return Ok(running(&event.job_id, status)),
        };
        let mut output_uri = description.output_uri;
        if !output_uri.ends_with('/') {
            output_uri.push('/');
        }
        let prefix = format!("{output_uri}{}/", job_id_of_arn(&event.job_arn));
        for uri in self.ports().files().list(&prefix).await? {
            if !uri.ends_with(OUTPUT_SUFFIX) {
                continue;
            }
            // Listed a moment ago: gone now is a fault to retry, not an empty file.
            let Some(reader) = self.ports().files().open(&uri).await? else {
                return Err(BatchError::Corrupt(format!("output file {uri} was listed but cannot be opened")));
            };
            self.completion.read_file_async(&mut run, key_of(&uri), reader).await?;
        }
        self.completion.account_for_missing(&mut run).await?;
        self.enqueue_retries(&run.summary().retries).await?;
        let summary = self.completion.finish(run).await?;
        self.write_results_files(&summary.job_id).await?;
        Ok(summary)
    }

    /// Retries wait for a later job unless their request has moved on already.
    async fn enqueue_retries(&self, retries: &[SubmittedRecord]) -> Result<(), BatchError> {
        let mut fresh = Vec::with_capacity(retries.len());
        for retry in retries {
            let status = self.ports().statuses().status(&retry.tenant, retry.record_id.request_id()).await?;
            if !status.as_ref().is_some_and(|status| reached(status, &retry.record_id)) {
                fresh.push(retry.clone());
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        self.ports().pending().enqueue(&fresh).await
    }

    /// Rewrites the results file of every dropped file the job had lines of and that is now
    /// final in every line.
    async fn write_results_files(&self, job_id: &str) -> Result<Vec<ResultsFile>, BatchError> {
        let mut file_jobs = BTreeSet::new();
        let mut after: Option<RecordId> = None;
        loop {
            let page = self.ports().submissions().page(job_id, after.as_ref(), FILES_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.record_id.clone());
            file_jobs.extend(
                page.iter().filter_map(|r| results_file::file_job_of(r.record_id.request_id())).map(str::to_owned),
            );
        }
        let mut written = Vec::with_capacity(file_jobs.len());
        for file_job in file_jobs {
            let outcome = results_file::write_if_complete(
                self.ports().results(),
                self.ports().intakes(),
                self.ports().files(),
                &self.settings.layout,
                &file_job,
                self.settings.max_line_bytes,
            )
            .await?;
            tracing::info!(job_id, file_job, ?outcome, "results file");
            written.push(outcome);
        }
        Ok(written)
    }

    /// Asks Bedrock about every open job and completes those that have ended; a job that
    /// fails to complete is reported and left open for the next run.
    pub async fn reconcile(&self, now: SystemTime) -> Result<ReconcileReport, BatchError> {
        let mut report = ReconcileReport::default();
        for open in self.ports().plans().open().await? {
            report.checked += 1;
            let job_name = open.plan.job_name.clone();
            let description = match self.ports().remote().describe(&open.job_arn).await {
                Ok(description) => description,
                Err(e) => {
                    report.errors.push(failure(&job_name, &e));
                    continue;
                }
            };
            if !description.status.is_terminal() {
                report.still_running += 1;
                if now.duration_since(open.submitted_at).unwrap_or_default() > self.settings.overdue_after {
                    report.overdue.push(job_name);
                }
                continue;
            }
            let event = JobEvent {
                job_id: job_name.clone(),
                job_arn: open.job_arn.clone(),
                status: description.status,
                model_id: Some(description.model_id),
                failure_message: description.failure_message,
            };
            match self.complete_job(event).await {
                Ok(summary) => report.completed.push(ReconciledJob {
                    job_name,
                    status: summary.status.as_str(),
                    outcome: outcome_name(&summary.outcome),
                    answered: summary.answered,
                    failed: summary.failed,
                    retrying: summary.retrying,
                }),
                Err(e) => report.errors.push(failure(&job_name, &e)),
            }
        }
        Ok(report)
    }
}

fn failure(job_name: &str, e: &BatchError) -> ReconcileFailure {
    tracing::warn!(job_name, error = %e, kind = %e.label(), "reconciling a batch job failed");
    ReconcileFailure { job_name: job_name.to_owned(), label: e.label().as_str(), message: e.to_string() }
}

/// Whether the request already shows this attempt (or a later one) waiting, in a job or done.
fn reached(status: &RequestStatus, retry: &RecordId) -> bool {
    let attempt = match status {
        RequestStatus::Pending { record } | RequestStatus::InJob { record, .. } => record.record_id.attempt(),
        RequestStatus::Done(result) => result.record_id.attempt(),
    };
    attempt >= retry.attempt()
}

fn running(job_id: &str, status: JobStatus) -> JobSummary {
    JobSummary::empty(job_id, status, JobOutcome::Running)
}
