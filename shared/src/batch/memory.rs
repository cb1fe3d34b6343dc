//! In-memory fakes of the batch ports, with the conditional writes the DynamoDB items will
//! have, write counters, and failure injection after a number of writes (a run killed
//! mid-file).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::BatchError;
use super::complete::JobSummary;
use super::ports::{FinishOutcome, JobLedger, PutOnce, RecordResult, ResultStore, SubmittedRecords};
use super::record::{RecordId, SubmittedRecord};

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
}

impl MemoryJobs {
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl JobLedger for MemoryJobs {
    async fn finished(&self, job_id: &str) -> Result<Option<JobSummary>, BatchError> {
        Ok(locked(&self.finished).get(job_id).cloned())
    }

    async fn finish(&self, summary: &JobSummary) -> Result<FinishOutcome, BatchError> {
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
