//! In-memory fakes of the batch ports, with the conditional writes the DynamoDB items will
//! have, write counters, and failure injection after a number of writes (a run killed
//! mid-file).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use super::complete::JobSummary;
use super::pipeline::PipelinePorts;
use super::ports::{
    BatchFiles, BatchJobs, BatchPorts, CreateJob, FileIntake, FileIntakes, FinishOutcome, JobDescription, JobLedger,
    JobPlan, JobPlans, OpenJob, PendingRecords, PutOnce, RecordResult, RequestStatus, RequestStatuses, ResultStore,
    SubmittedRecords,
};
use super::record::{RecordId, SubmittedRecord};
use super::submit::SubmissionPorts;
use super::{BatchError, JobStatus};
use crate::cache::Tenant;
use crate::label::ErrorLabel;

fn locked<T>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another test thread panicked; the data is still usable.
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The job table's submitted records, by job and record ID.
#[derive(Debug, Default)]
pub struct MemorySubmissions {
    records: Mutex<BTreeMap<(String, RecordId), SubmittedRecord>>,
}

impl MemorySubmissions {
    pub fn add(&self, job_id: &str, record: SubmittedRecord) {
        locked(&self.records).insert((job_id.to_owned(), record.record_id.clone()), record);
    }
}

impl SubmittedRecords for MemorySubmissions {
    async fn submitted(&self, job_id: &str, record_id: &RecordId) -> Result<Option<SubmittedRecord>, BatchError> {
        Ok(locked(&self.records).get(&(job_id.to_owned(), record_id.clone())).cloned())
    }

    async fn page(
        &self,
        job_id: &str,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<SubmittedRecord>, BatchError> {
        let records = locked(&self.records);
        let of_job = |((job, _), _): &(&(String, RecordId), &SubmittedRecord)| job == job_id;
        let page = match after {
            Some(after) => records
                .range((job_id.to_owned(), after.clone())..)
                .skip_while(|((_, id), _)| id == after)
                .take_while(of_job)
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect(),
            None => records
                .iter()
                .skip_while(|e| !of_job(e))
                .take_while(of_job)
                .take(limit)
                .map(|(_, r)| r.clone())
                .collect(),
        };
        Ok(page)
    }
}

/// Results by `(job, record)`, written at most once each.
#[derive(Debug)]
pub struct MemoryResults {
    results: Mutex<HashMap<(String, RecordId), RecordResult>>,
    writes: AtomicU64,
    /// Writes left before every put fails; `usize::MAX` never fails.
    writes_before_failure: AtomicUsize,
}

impl Default for MemoryResults {
    fn default() -> Self {
        MemoryResults {
            results: Mutex::default(),
            writes: AtomicU64::new(0),
            writes_before_failure: AtomicUsize::new(usize::MAX),
        }
    }
}

impl MemoryResults {
    /// Items written (conditional puts that found the slot free).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    pub fn len(&self) -> usize {
        locked(&self.results).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// After `n` more successful writes every put fails, as if the process died there.
    pub fn fail_after(&self, n: usize) {
        self.writes_before_failure.store(n, Ordering::SeqCst);
    }

    pub fn stop_failing(&self) {
        self.writes_before_failure.store(usize::MAX, Ordering::SeqCst);
    }

    pub fn get(&self, job_id: &str, record_id: &RecordId) -> Option<RecordResult> {
        locked(&self.results).get(&(job_id.to_owned(), record_id.clone())).cloned()
    }

    /// Every stored result, by job and record.
    pub fn all(&self) -> Vec<RecordResult> {
        locked(&self.results).values().cloned().collect()
    }
}

impl ResultStore for MemoryResults {
    async fn put_once(&self, result: &RecordResult) -> Result<PutOnce, BatchError> {
        let mut results = locked(&self.results);
        let slot = (result.job_id.clone(), result.record_id.clone());
        if let Some(stored) = results.get(&slot) {
            return Ok(PutOnce::AlreadyStored(Box::new(stored.clone())));
        }
        let left = self.writes_before_failure.load(Ordering::SeqCst);
        if left == 0 {
            return Err(BatchError::Store("injected failure".into()));
        }
        if left != usize::MAX {
            self.writes_before_failure.store(left - 1, Ordering::SeqCst);
        }
        results.insert(slot, result.clone());
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(PutOnce::Written)
    }

    async fn latest(&self, request_id: &str) -> Result<Option<RecordResult>, BatchError> {
        Ok(locked(&self.results)
            .values()
            .filter(|r| r.record_id.request_id() == request_id)
            .max_by_key(|r| r.record_id.attempt())
            .cloned())
    }
}

/// Finished jobs' summaries, each written once.
#[derive(Debug, Default)]
pub struct MemoryJobs {
    finished: Mutex<HashMap<String, JobSummary>>,
    writes: AtomicU64,
    /// Finishes that fail before the next succeeds, as if the process died there.
    failing_finishes: AtomicUsize,
}

impl MemoryJobs {
    pub fn fail_next_finishes(&self, n: usize) {
        self.failing_finishes.store(n, Ordering::SeqCst);
    }

    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl JobLedger for MemoryJobs {
    async fn finished(&self, job_id: &str) -> Result<Option<JobSummary>, BatchError> {
        Ok(locked(&self.finished).get(job_id).cloned())
    }

    async fn finish(&self, summary: &JobSummary) -> Result<FinishOutcome, BatchError> {
        let failing = self.failing_finishes.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_finishes.store(failing - 1, Ordering::SeqCst);
            return Err(BatchError::Store("injected failure".into()));
        }
        let mut finished = locked(&self.finished);
        if let Some(stored) = finished.get(&summary.job_id) {
            return Ok(FinishOutcome::AlreadyFinished(Box::new(stored.clone())));
        }
        finished.insert(summary.job_id.clone(), summary.clone());
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(FinishOutcome::Recorded)
    }
}

/// The fakes bundled, each shared so that a test keeps inspecting them.
#[derive(Debug, Default, Clone)]
pub struct MemoryBatchPorts {
    pub submissions: std::sync::Arc<MemorySubmissions>,
    pub results: std::sync::Arc<MemoryResults>,
    pub jobs: std::sync::Arc<MemoryJobs>,
    pub cache: std::sync::Arc<crate::testing::InMemoryCacheStore>,
}

impl super::ports::BatchPorts for MemoryBatchPorts {
    type Submissions = MemorySubmissions;
    type Results = MemoryResults;
    type Jobs = MemoryJobs;
    type Cache = crate::testing::InMemoryCacheStore;

    fn submissions(&self) -> &MemorySubmissions {
        &self.submissions
    }

    fn results(&self) -> &MemoryResults {
        &self.results
    }

    fn jobs(&self) -> &MemoryJobs {
        &self.jobs
    }

    fn cache(&self) -> &crate::testing::InMemoryCacheStore {
        &self.cache
    }
}

/// Records waiting for a job, keyed as the DynamoDB items are: per model, by
/// `(enqueued_at, record ID)`.
#[derive(Debug, Default)]
pub struct MemoryPending {
    waiting: Mutex<BTreeMap<(String, SystemTime, RecordId), SubmittedRecord>>,
}

impl MemoryPending {
    pub fn len(&self) -> usize {
        locked(&self.waiting).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<SubmittedRecord> {
        locked(&self.waiting).values().cloned().collect()
    }
}

fn pending_key(record: &SubmittedRecord) -> (String, SystemTime, RecordId) {
    (record.model_id.clone(), record.enqueued_at, record.record_id.clone())
}

impl PendingRecords for MemoryPending {
    async fn enqueue(&self, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        let mut waiting = locked(&self.waiting);
        for record in records {
            waiting.entry(pending_key(record)).or_insert_with(|| record.clone());
        }
        Ok(())
    }

    async fn oldest(&self, model_id: &str, limit: usize) -> Result<Vec<SubmittedRecord>, BatchError> {
        Ok(locked(&self.waiting)
            .iter()
            .filter(|((model, _, _), _)| model == model_id)
            .take(limit)
            .map(|(_, record)| record.clone())
            .collect())
    }

    async fn remove(&self, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        let mut waiting = locked(&self.waiting);
        for record in records {
            waiting.remove(&pending_key(record));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct PlanState {
    plan: JobPlan,
    submitted: Option<(String, SystemTime)>,
}

/// Job plans over the same submitted records and finished jobs the completion reads.
#[derive(Debug, Default)]
pub struct MemoryPlans {
    submissions: Arc<MemorySubmissions>,
    jobs: Arc<MemoryJobs>,
    plans: Mutex<BTreeMap<String, PlanState>>,
}

impl MemoryPlans {
    pub fn new(submissions: Arc<MemorySubmissions>, jobs: Arc<MemoryJobs>) -> Self {
        MemoryPlans { submissions, jobs, plans: Mutex::default() }
    }

    pub fn plans(&self) -> Vec<JobPlan> {
        locked(&self.plans).values().map(|state| state.plan.clone()).collect()
    }

    /// The latest attempt of a request planned into a job, and the job.
    fn latest_in_jobs(&self, request_id: &str) -> Option<(String, SubmittedRecord)> {
        let plans = locked(&self.plans);
        let records = locked(&self.submissions.records);
        records
            .iter()
            .filter(|((job, id), _)| id.request_id() == request_id && plans.contains_key(job))
            .max_by_key(|((_, id), _)| id.attempt())
            .map(|((job, _), record)| (job.clone(), record.clone()))
    }
}

impl JobPlans for MemoryPlans {
    async fn plan(&self, plan: &JobPlan, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        for record in records {
            self.submissions.add(&plan.job_name, record.clone());
        }
        locked(&self.plans)
            .entry(plan.job_name.clone())
            .or_insert_with(|| PlanState { plan: plan.clone(), submitted: None });
        Ok(())
    }

    async fn submitted(&self, job_name: &str, job_arn: &str, at: SystemTime) -> Result<(), BatchError> {
        match locked(&self.plans).get_mut(job_name) {
            Some(state) => {
                state.submitted = Some((job_arn.to_owned(), at));
                Ok(())
            }
            None => Err(BatchError::Corrupt(format!("job {job_name} was never planned"))),
        }
    }

    async fn unsubmitted(&self) -> Result<Vec<JobPlan>, BatchError> {
        Ok(locked(&self.plans).values().filter(|s| s.submitted.is_none()).map(|s| s.plan.clone()).collect())
    }

    async fn open(&self) -> Result<Vec<OpenJob>, BatchError> {
        let states: Vec<PlanState> = locked(&self.plans).values().cloned().collect();
        let mut open = Vec::new();
        for state in states {
            let Some((job_arn, submitted_at)) = state.submitted else { continue };
            if self.jobs.finished(&state.plan.job_name).await?.is_none() {
                open.push(OpenJob { plan: state.plan, job_arn, submitted_at });
            }
        }
        Ok(open)
    }
}

/// `GET /v1/requests/{id}` over the fakes: the latest attempt's most advanced state.
#[derive(Debug, Default, Clone)]
pub struct MemoryStatuses {
    pub pending: Arc<MemoryPending>,
    pub plans: Arc<MemoryPlans>,
    pub results: Arc<MemoryResults>,
}

impl RequestStatuses for MemoryStatuses {
    async fn status(&self, tenant: &Tenant, request_id: &str) -> Result<Option<RequestStatus>, BatchError> {
        // As the table's by-request index orders them: by attempt, then by stage (waiting,
        // in a job, done), the greatest wins.
        let pending = self
            .pending
            .all()
            .into_iter()
            .filter(|r| r.record_id.request_id() == request_id)
            .max_by_key(|r| r.record_id.attempt())
            .map(|record| ((record.record_id.attempt(), 1), RequestStatus::Pending { record }));
        let in_job = self
            .plans
            .latest_in_jobs(request_id)
            .map(|(job_name, record)| ((record.record_id.attempt(), 2), RequestStatus::InJob { job_name, record }));
        let done = self
            .results
            .latest(request_id)
            .await?
            .map(|result| ((result.record_id.attempt(), 3), RequestStatus::Done(result)));
        let status = [pending, in_job, done].into_iter().flatten().max_by_key(|(rank, _)| *rank).map(|(_, s)| s);
        let tenant_of = |status: &RequestStatus| match status {
            RequestStatus::Pending { record } | RequestStatus::InJob { record, .. } => record.tenant.clone(),
            RequestStatus::Done(result) => result.tenant.clone(),
        };
        Ok(status.filter(|status| &tenant_of(status) == tenant))
    }
}

/// S3 in memory: objects by URI.
#[derive(Debug, Default)]
pub struct MemoryFiles {
    objects: Mutex<BTreeMap<String, Vec<u8>>>,
    /// Writes refused before the next succeeds, as a failing S3 would.
    failing_writes: AtomicUsize,
}

impl MemoryFiles {
    pub fn fail_next_writes(&self, n: usize) {
        self.failing_writes.store(n, Ordering::SeqCst);
    }

    pub fn uris(&self) -> Vec<String> {
        locked(&self.objects).keys().cloned().collect()
    }

    pub fn put(&self, uri: &str, body: impl Into<Vec<u8>>) {
        locked(&self.objects).insert(uri.to_owned(), body.into());
    }

    pub fn get(&self, uri: &str) -> Option<Vec<u8>> {
        locked(&self.objects).get(uri).cloned()
    }
}

impl BatchFiles for MemoryFiles {
    type Reader = std::io::Cursor<Vec<u8>>;

    async fn write(&self, uri: &str, body: Vec<u8>) -> Result<(), BatchError> {
        let failing = self.failing_writes.load(Ordering::SeqCst);
        if failing > 0 {
            self.failing_writes.store(failing - 1, Ordering::SeqCst);
            return Err(BatchError::Remote {
                service: "s3",
                operation: "PutObject",
                label: ErrorLabel::Unavailable,
                message: "injected failure".to_owned(),
            });
        }
        self.put(uri, body);
        Ok(())
    }

    async fn list(&self, prefix_uri: &str) -> Result<Vec<String>, BatchError> {
        Ok(locked(&self.objects).keys().filter(|uri| uri.starts_with(prefix_uri)).cloned().collect())
    }

    async fn open(&self, uri: &str) -> Result<Option<Self::Reader>, BatchError> {
        Ok(self.get(uri).map(std::io::Cursor::new))
    }

    async fn delete(&self, uri: &str) -> Result<(), BatchError> {
        locked(&self.objects).remove(uri);
        Ok(())
    }
}

/// Bedrock's control plane in memory: jobs created (idempotent by name) and the status a
/// test sets for each.
#[derive(Debug, Default)]
pub struct MemoryBatchJobs {
    jobs: Mutex<BTreeMap<String, JobDescription>>,
    creates: AtomicU64,
    /// Creates that fail as a full per-model job quota before the next succeeds.
    refuse_next: AtomicUsize,
}

impl MemoryBatchJobs {
    pub fn creates(&self) -> u64 {
        self.creates.load(Ordering::SeqCst)
    }

    pub fn refuse_next(&self, n: usize) {
        self.refuse_next.store(n, Ordering::SeqCst);
    }

    pub fn set_status(&self, job_arn: &str, status: JobStatus, failure_message: Option<&str>) {
        if let Some(job) = locked(&self.jobs).values_mut().find(|job| job.job_arn == job_arn) {
            job.status = status;
            job.failure_message = failure_message.map(str::to_owned);
        }
    }

    pub fn by_name(&self, job_name: &str) -> Option<JobDescription> {
        locked(&self.jobs).get(job_name).cloned()
    }
}

impl BatchJobs for MemoryBatchJobs {
    async fn create(&self, job: &CreateJob) -> Result<String, BatchError> {
        let refuse = self.refuse_next.load(Ordering::SeqCst);
        if refuse > 0 {
            self.refuse_next.store(refuse - 1, Ordering::SeqCst);
            return Err(BatchError::Remote {
                service: "bedrock",
                operation: "CreateModelInvocationJob",
                label: ErrorLabel::QuotaExhausted,
                message: "too many batch jobs in flight for the model".to_owned(),
            });
        }
        let mut jobs = locked(&self.jobs);
        let name = &job.plan.job_name;
        if let Some(existing) = jobs.get(name) {
            return Ok(existing.job_arn.clone());
        }
        self.creates.fetch_add(1, Ordering::SeqCst);
        let job_arn = format!("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/{:012}", jobs.len() + 1);
        jobs.insert(
            name.clone(),
            JobDescription {
                job_name: name.clone(),
                job_arn: job_arn.clone(),
                status: JobStatus::Submitted,
                model_id: job.model_id.clone(),
                output_uri: job.plan.output_uri.clone(),
                failure_message: None,
            },
        );
        Ok(job_arn)
    }

    async fn describe(&self, job_arn: &str) -> Result<JobDescription, BatchError> {
        locked(&self.jobs).values().find(|job| job.job_arn == job_arn).cloned().ok_or_else(|| BatchError::Remote {
            service: "bedrock",
            operation: "GetModelInvocationJob",
            label: ErrorLabel::NotFound,
            message: format!("no job {job_arn}"),
        })
    }
}

/// Dropped files' intakes, each recorded once.
#[derive(Debug, Default)]
pub struct MemoryIntakes {
    intakes: Mutex<BTreeMap<String, FileIntake>>,
}

impl MemoryIntakes {
    pub fn len(&self) -> usize {
        locked(&self.intakes).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl FileIntakes for MemoryIntakes {
    async fn record_intake(&self, intake: &FileIntake) -> Result<bool, BatchError> {
        let mut intakes = locked(&self.intakes);
        if intakes.contains_key(&intake.file_job) {
            return Ok(false);
        }
        intakes.insert(intake.file_job.clone(), intake.clone());
        Ok(true)
    }

    async fn intake(&self, file_job: &str) -> Result<Option<FileIntake>, BatchError> {
        Ok(locked(&self.intakes).get(file_job).cloned())
    }
}

/// Every batch fake, wired as the one table and the one bucket are: the plans write the
/// submitted records the completion reads, the statuses read the pending records, plans and
/// results. Implements the completion's, the pipeline's and the submission's bundles; the
/// submission's on-demand fallback runs through a gateway over [`crate::testing::TestPorts`].
#[derive(Debug, Clone)]
pub struct MemoryPipelinePorts {
    pub submissions: Arc<MemorySubmissions>,
    pub results: Arc<MemoryResults>,
    pub jobs: Arc<MemoryJobs>,
    pub cache: Arc<crate::testing::InMemoryCacheStore>,
    pub pending: Arc<MemoryPending>,
    pub plans: Arc<MemoryPlans>,
    pub statuses: MemoryStatuses,
    pub intakes: Arc<MemoryIntakes>,
    pub remote: Arc<MemoryBatchJobs>,
    pub files: Arc<MemoryFiles>,
}

impl Default for MemoryPipelinePorts {
    fn default() -> Self {
        let submissions = Arc::new(MemorySubmissions::default());
        let jobs = Arc::new(MemoryJobs::default());
        let results = Arc::new(MemoryResults::default());
        let pending = Arc::new(MemoryPending::default());
        let plans = Arc::new(MemoryPlans::new(submissions.clone(), jobs.clone()));
        let statuses = MemoryStatuses { pending: pending.clone(), plans: plans.clone(), results: results.clone() };
        MemoryPipelinePorts {
            submissions,
            results,
            jobs,
            cache: Arc::default(),
            pending,
            plans,
            statuses,
            intakes: Arc::default(),
            remote: Arc::default(),
            files: Arc::default(),
        }
    }
}

impl BatchPorts for MemoryPipelinePorts {
    type Submissions = MemorySubmissions;
    type Results = MemoryResults;
    type Jobs = MemoryJobs;
    type Cache = crate::testing::InMemoryCacheStore;

    fn submissions(&self) -> &MemorySubmissions {
        &self.submissions
    }

    fn results(&self) -> &MemoryResults {
        &self.results
    }

    fn jobs(&self) -> &MemoryJobs {
        &self.jobs
    }

    fn cache(&self) -> &crate::testing::InMemoryCacheStore {
        &self.cache
    }
}

impl PipelinePorts for MemoryPipelinePorts {
    type Pending = MemoryPending;
    type Statuses = MemoryStatuses;
    type Plans = MemoryPlans;
    type Intakes = MemoryIntakes;
    type Remote = MemoryBatchJobs;
    type Files = MemoryFiles;

    fn pending(&self) -> &MemoryPending {
        &self.pending
    }

    fn statuses(&self) -> &MemoryStatuses {
        &self.statuses
    }

    fn plans(&self) -> &MemoryPlans {
        &self.plans
    }

    fn intakes(&self) -> &MemoryIntakes {
        &self.intakes
    }

    fn remote(&self) -> &MemoryBatchJobs {
        &self.remote
    }

    fn files(&self) -> &MemoryFiles {
        &self.files
    }
}

impl SubmissionPorts for MemoryPipelinePorts {
    type Pending = MemoryPending;
    type Plans = MemoryPlans;
    type Submissions = MemorySubmissions;
    type Results = MemoryResults;
    type Intakes = MemoryIntakes;
    type Remote = MemoryBatchJobs;
    type Files = MemoryFiles;
    type Online = crate::testing::TestPorts;

    fn pending(&self) -> &MemoryPending {
        &self.pending
    }

    fn plans(&self) -> &MemoryPlans {
        &self.plans
    }

    fn submissions(&self) -> &MemorySubmissions {
        &self.submissions
    }

    fn results(&self) -> &MemoryResults {
        &self.results
    }

    fn intakes(&self) -> &MemoryIntakes {
        &self.intakes
    }

    fn remote(&self) -> &MemoryBatchJobs {
        &self.remote
    }

    fn files(&self) -> &MemoryFiles {
        &self.files
    }
}
