//! Bedrock's batch control plane: model invocation jobs and the states they walk.
//!
//! A job is created Submitted and then moves on by itself, in its own task: Validating (its
//! input is listed and read from S3 and checked against the batch quotas), Scheduled, then
//! InProgress (every record answered by the engine, at `record_seconds` each), and ends
//! Completed, PartiallyCompleted, Failed, Stopped or Expired. Each change is published to
//! EventBridge as Bedrock's "Batch Inference Job State Change" event.

pub mod api;
mod aws;
mod records;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::sync::watch;

pub use aws::{S3Location, Storage};
pub use records::InvocationType;

use crate::config::BatchConfig;
use crate::engine::AppState;
use aws::Event;
use records::{Record, Totals};

/// Bedrock's job statuses: the core's, so that the emulator and the completion function can
/// never spell one differently.
pub use gateway_core::batch::JobStatus as Status;

/// What CreateModelInvocationJob was asked, after validation.
#[derive(Debug, Clone)]
pub struct JobSpec {
    pub job_name: String,
    pub role_arn: String,
    pub model_id: String,
    pub client_request_token: Option<String>,
    pub input_uri: String,
    pub input_format: Option<String>,
    pub output_uri: String,
    pub output_kms_key: Option<String>,
    pub vpc_config: Option<Value>,
    pub timeout_hours: u32,
    pub invocation_type: Option<InvocationType>,
}

/// One job as GetModelInvocationJob reports it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub arn: String,
    pub spec: JobSpec,
    pub status: Status,
    pub message: Option<String>,
    pub submit_time: SystemTime,
    pub last_modified: SystemTime,
    pub end_time: Option<SystemTime>,
    pub expiration_time: SystemTime,
    pub totals: Option<Totals>,
}

pub fn timestamp(t: SystemTime) -> String {
    DateTime::from(t).fmt(Format::DateTime).unwrap_or_default()
}

impl Job {
    /// The job in the wire shape shared by GetModelInvocationJob and the list's summaries.
    pub fn to_json(&self) -> Value {
        let spec = &self.spec;
        let mut s3_input = json!({"s3Uri": spec.input_uri});
        if let Some(format) = &spec.input_format {
            s3_input["s3InputFormat"] = json!(format);
        }
        let mut s3_output = json!({"s3Uri": spec.output_uri});
        if let Some(key) = &spec.output_kms_key {
            s3_output["s3EncryptionKeyId"] = json!(key);
        }
        let mut job = json!({
            "jobArn": self.arn,
            "jobName": spec.job_name,
            "modelId": spec.model_id,
            "roleArn": spec.role_arn,
            "status": self.status.as_str(),
            "submitTime": timestamp(self.submit_time),
            "lastModifiedTime": timestamp(self.last_modified),
            "inputDataConfig": {"s3InputDataConfig": s3_input},
            "outputDataConfig": {"s3OutputDataConfig": s3_output},
            "timeoutDurationInHours": spec.timeout_hours,
            "jobExpirationTime": timestamp(self.expiration_time),
        });
        let fields = [
            ("clientRequestToken", spec.client_request_token.clone().map(Value::from)),
            ("message", self.message.clone().map(Value::from)),
            ("endTime", self.end_time.map(|t| Value::from(timestamp(t)))),
            ("vpcConfig", spec.vpc_config.clone()),
            ("modelInvocationType", spec.invocation_type.map(|t| Value::from(t.as_str()))),
        ];
        for (name, value) in fields {
            if let Some(value) = value {
                job[name] = value;
            }
        }
        if let Some(totals) = &self.totals {
            job["totalRecordCount"] = json!(totals.total);
            job["processedRecordCount"] = json!(totals.processed);
            job["successRecordCount"] = json!(totals.succeeded);
            job["errorRecordCount"] = json!(totals.errors);
        }
        job
    }
}

/// Why a control-plane call was refused; [`api`] renders each as Bedrock's exception.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    QuotaExceeded(String),
}

#[derive(Debug, Default)]
struct Book {
    jobs: BTreeMap<String, Job>,
    /// Jobs by client request token: a retried create returns the job it made.
    tokens: BTreeMap<String, String>,
    stops: BTreeMap<String, watch::Sender<bool>>,
}

/// Every job of one emulator, and what they need to run.
#[derive(Debug)]
pub struct BatchService {
    engine: Arc<AppState>,
    config: BatchConfig,
    seed: u64,
    storage: Storage,
    book: Mutex<Book>,
}

impl BatchService {
    pub fn new(engine: Arc<AppState>, config: &BatchConfig, seed: u64) -> BatchService {
        BatchService { engine, storage: Storage::new(config), config: config.clone(), seed, book: Mutex::default() }
    }

    /// A panic elsewhere leaves the book consistent (every update is one assignment), so a
    /// poisoned lock is still usable.
    fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn arn(&self, id: &str) -> String {
        format!("arn:aws:bedrock:{}:{}:model-invocation-job/{id}", self.config.region, self.config.account_id)
    }

    /// Registers a job and starts walking it; returns its ARN.
    pub fn create(self: &Arc<Self>, spec: JobSpec) -> Result<String, BatchError> {
        let (id, receiver) = {
            let mut book = self.book();
            if let Some(token) = &spec.client_request_token
                && let Some(existing) = book.tokens.get(token)
            {
                return Ok(self.arn(existing));
            }
            // Names are unique among the account's jobs, ended ones included: only a retry
            // carrying the first call's token gets the job back.
            if let Some(taken) = book.jobs.values().find(|job| job.spec.job_name == spec.job_name) {
                return Err(BatchError::Conflict(format!(
                    "A batch inference job named {} already exists ({}).",
                    spec.job_name, taken.arn
                )));
            }
            let active = book
                .jobs
                .values()
                .filter(|job| job.spec.model_id == spec.model_id && !job.status.is_terminal())
                .count() as u64;
            if active >= self.config.max_jobs_per_model {
                return Err(BatchError::QuotaExceeded(format!(
                    "You have reached the limit of {} submitted or in-progress batch inference jobs for model {}.",
                    self.config.max_jobs_per_model, spec.model_id
                )));
            }
            let id = self.engine.fresh_id("", 12).to_ascii_lowercase();
            let now = SystemTime::now();
            let timeout = Duration::from_secs_f64(f64::from(spec.timeout_hours) * self.config.hour_seconds);
            if let Some(token) = &spec.client_request_token {
                book.tokens.insert(token.clone(), id.clone());
            }
            let (sender, receiver) = watch::channel(false);
            book.stops.insert(id.clone(), sender);
            book.jobs.insert(
                id.clone(),
                Job {
                    arn: self.arn(&id),
                    id: id.clone(),
                    spec,
                    status: Status::Submitted,
                    message: None,
                    submit_time: now,
                    last_modified: now,
                    end_time: None,
                    expiration_time: now + timeout,
                    totals: None,
                },
            );
            (id, receiver)
        };
        let service = Arc::clone(self);
        let job_id = id.clone();
        tokio::spawn(async move { service.run(job_id, receiver).await });
        Ok(self.arn(&id))
    }

    /// A job by its ARN or ID.
    pub fn get(&self, identifier: &str) -> Result<Job, BatchError> {
        let id = identifier.rsplit_once("model-invocation-job/").map_or(identifier, |(_, id)| id);
        self.book().jobs.get(id).cloned().ok_or_else(|| {
            BatchError::NotFound(format!("The specified batch inference job {identifier} could not be found."))
        })
    }

    /// Forgets every job, as `/_emulator/reset` does: a running job's task is told to stop
    /// and its later updates find nothing to update.
    pub fn reset(&self) {
        let mut book = self.book();
        for stop in book.stops.values() {
            stop.send_replace(true);
        }
        *book = Book::default();
    }

    pub fn list(&self) -> Vec<Job> {
        self.book().jobs.values().cloned().collect()
    }

    /// Asks a job to stop. A job not yet running stops at once; a running one finishes the
    /// record it is on, writes what it has, and ends Stopped.
    pub fn stop(&self, identifier: &str) -> Result<(), BatchError> {
        let job = self.get(identifier)?;
        let mut book = self.book();
        if job.status.is_terminal() {
            return Err(BatchError::Conflict(format!(
                "The batch inference job {} is already {} and cannot be stopped.",
                job.arn,
                job.status.as_str()
            )));
        }
        if let Some(sender) = book.stops.get(&job.id) {
            sender.send_replace(true);
        }
        if let Some(job) = book.jobs.get_mut(&job.id)
            && job.status != Status::Stopping
        {
            job.status = Status::Stopping;
            job.last_modified = SystemTime::now();
        }
        Ok(())
    }

    fn update(&self, id: &str, change: impl FnOnce(&mut Job)) -> Option<Job> {
        let mut book = self.book();
        let job = book.jobs.get_mut(id)?;
        change(job);
        job.last_modified = SystemTime::now();
        if job.status.is_terminal() {
            job.end_time = Some(job.last_modified);
            book.stops.remove(id);
        }
        book.jobs.get(id).cloned()
    }

    /// Waits `seconds`; true when a stop was asked for before or during the wait.
    async fn wait(&self, seconds: f64, stop: &mut watch::Receiver<bool>) -> bool {
        if *stop.borrow() {
            return true;
        }
        let pause = tokio::time::sleep(Duration::from_secs_f64(seconds));
        let interrupted = tokio::select! {
            () = pause => false,
            _ = stop.wait_for(|stopped| *stopped) => true,
        };
        interrupted || *stop.borrow()
    }

    async fn run(self: Arc<Self>, id: String, mut stop: watch::Receiver<bool>) {
        let mut events = EventQueue::new(self.seed, &id);
        let Ok(job) = self.get(&id) else { return };
        self.announce(&mut events, &job).await;
        let end = self.walk(&id, &mut stop, &mut events).await;
        let (status, message) = match end {
            Ok(end) => end,
            Err(e) => (Status::Failed, Some(e)),
        };
        if let Some(job) = self.update(&id, |job| {
            job.status = status;
            job.message = message;
        }) {
            tracing::info!(job = %job.arn, status = status.as_str(), "batch job ended");
            self.announce(&mut events, &job).await;
        }
        events.flush(&self).await;
    }

    /// Moves the job to `status` and announces it, unless a stop was asked for meanwhile.
    async fn enter(&self, id: &str, status: Status, events: &mut EventQueue) {
        let job = self.update(id, |job| {
            if job.status != Status::Stopping {
                job.status = status;
            }
        });
        if let Some(job) = job
            && job.status == status
        {
            self.announce(events, &job).await;
        }
    }

    /// The job's life up to its final status and message.
    async fn walk(
        &self,
        id: &str,
        stop: &mut watch::Receiver<bool>,
        events: &mut EventQueue,
    ) -> Result<(Status, Option<String>), String> {
        let config = &self.config;
        if self.wait(config.submitted_seconds, stop).await {
            return Ok((Status::Stopped, None));
        }
        self.enter(id, Status::Validating, events).await;
        let job = self.get(id).map_err(|e| e.to_string())?;
        let inputs = match self.validate(&job).await {
            Ok(inputs) => inputs,
            Err(reason) => return Ok((Status::Failed, Some(reason))),
        };
        let total = inputs.iter().map(|(_, records)| records.len() as u64).sum();
        self.update(id, |job| job.totals = Some(Totals { total, ..Totals::default() }));
        if self.wait(config.validating_seconds, stop).await {
            return Ok((Status::Stopped, None));
        }
        self.enter(id, Status::Scheduled, events).await;
        let expires = job.expiration_time;
        let until_expiry = expires.duration_since(SystemTime::now()).unwrap_or_default().as_secs_f64();
        if config.scheduled_seconds >= until_expiry {
            if self.wait(until_expiry, stop).await {
                return Ok((Status::Stopped, None));
            }
            return Ok((
                Status::Expired,
                Some("The job was scheduled but did not begin before its timeout duration.".to_owned()),
            ));
        }
        if self.wait(config.scheduled_seconds, stop).await {
            return Ok((Status::Stopped, None));
        }
        self.enter(id, Status::InProgress, events).await;
        let (totals, stopped) = self.process(&job, inputs, stop).await?;
        self.update(id, |job| job.totals = Some(totals));
        Ok(if stopped {
            (Status::Stopped, None)
        } else if totals.errors == 0 {
            (Status::Completed, None)
        } else if totals.succeeded == 0 {
            (Status::Failed, Some(format!("All {} records of the job failed.", totals.errors)))
        } else {
            (Status::PartiallyCompleted, Some(format!("{} of {} records failed.", totals.errors, totals.total)))
        })
    }

    /// Bedrock's Validating checks: the input is readable, each file and the whole job are
    /// within the size limits, and the record count is within the job's minimum and maximum.
    /// `modelInput` is not looked at here.
    async fn validate(&self, job: &Job) -> Result<Vec<(String, Vec<Record>)>, String> {
        let config = &self.config;
        let at = S3Location::parse(&job.spec.input_uri).map_err(|e| e.to_string())?;
        S3Location::parse(&job.spec.output_uri).map_err(|e| e.to_string())?;
        let objects = self.storage.list_inputs(&at).await.map_err(|e| e.to_string())?;
        if objects.is_empty() {
            return Err(format!("No .jsonl input files were found at {}.", job.spec.input_uri));
        }
        let bytes: u64 = objects.iter().map(|o| o.size).sum();
        if bytes > config.max_job_bytes {
            return Err(format!(
                "The input of the job is {bytes} bytes, more than the maximum of {} bytes per job.",
                config.max_job_bytes
            ));
        }
        let mut files = Vec::new();
        for object in objects {
            // A prefix only ever lists `.jsonl` objects; a URI naming one object may not.
            if !object.key.ends_with(".jsonl") {
                return Err(format!(
                    "The input file s3://{}/{} does not have the .jsonl extension.",
                    at.bucket, object.key
                ));
            }
            if object.size > config.max_file_bytes {
                return Err(format!(
                    "The input file s3://{}/{} is {} bytes, more than the maximum of {} bytes per file.",
                    at.bucket, object.key, object.size, config.max_file_bytes
                ));
            }
            let body = self.storage.get(&at.bucket, &object.key).await.map_err(|e| e.to_string())?;
            let text = String::from_utf8(body)
                .map_err(|_| format!("The input file s3://{}/{} is not UTF-8 text.", at.bucket, object.key))?;
            let records = records::parse_file(&text, || self.engine.fresh_id("", 11).to_ascii_uppercase());
            if records.len() as u64 > config.max_records_per_file {
                return Err(format!(
                    "The input file s3://{}/{} has {} records, more than the maximum of {} per file.",
                    at.bucket,
                    object.key,
                    records.len(),
                    config.max_records_per_file
                ));
            }
            files.push((object.key, records));
        }
        let total: u64 = files.iter().map(|(_, records)| records.len() as u64).sum();
        if total < config.min_records_per_job {
            return Err(format!(
                "The job has {total} records, fewer than the minimum of {} records per batch inference job.",
                config.min_records_per_job
            ));
        }
        if total > config.max_records_per_job {
            return Err(format!(
                "The job has {total} records, more than the maximum of {} records per batch inference job.",
                config.max_records_per_job
            ));
        }
        Ok(files)
    }

    /// Answers every record and writes each file's `.jsonl.out` and the manifest under
    /// `<output>/<jobId>/`, the output going up part by part as it is produced. A stop ends
    /// the work after the current record; what was done is still written.
    async fn process(
        &self,
        job: &Job,
        files: Vec<(String, Vec<Record>)>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(Totals, bool), String> {
        let kind = job.spec.invocation_type.unwrap_or(InvocationType::InvokeModel);
        let output = S3Location::parse(&job.spec.output_uri).map_err(|e| e.to_string())?;
        let total = files.iter().map(|(_, records)| records.len() as u64).sum();
        let mut totals = Totals { total, ..Totals::default() };
        let mut stopped = false;
        for (key, records) in &files {
            let name = key.rsplit('/').next().unwrap_or(key);
            let out_key = output.child(&format!("{}/{name}.out", job.id));
            let mut out = self.storage.writer(&output.bucket, &out_key, self.config.output_part_bytes);
            for (index, record) in records.iter().enumerate() {
                if self.wait(self.config.record_seconds, stop).await {
                    stopped = true;
                    break;
                }
                let fail = records::injected_failure(
                    self.seed,
                    &job.spec.job_name,
                    name,
                    index,
                    self.config.record_failure_rate,
                );
                let result = records::run(&self.engine, &job.spec.model_id, kind, record, fail);
                totals.add(&result);
                let mut line = result.line.to_string();
                line.push('\n');
                if let Err(e) = out.write(line.as_bytes()).await {
                    out.abort().await;
                    return Err(e.to_string());
                }
                let progress = totals;
                self.update(&job.id, |job| job.totals = Some(progress));
            }
            if self.get(&job.id).is_err() {
                // Reset while running: a forgotten job leaves nothing behind.
                out.abort().await;
                return Err("The job was removed by a reset.".to_owned());
            }
            if let Err(e) = out.finish().await {
                out.abort().await;
                return Err(e.to_string());
            }
            if stopped {
                break;
            }
        }
        let manifest_key = output.child(&format!("{}/manifest.json.out", job.id));
        let manifest = totals.manifest().to_string().into_bytes();
        self.storage.put(&output.bucket, &manifest_key, manifest).await.map_err(|e| e.to_string())?;
        Ok((totals, stopped))
    }

    async fn announce(&self, events: &mut EventQueue, job: &Job) {
        if !self.config.publish_events {
            return;
        }
        let event = Event {
            resource: job.arn.clone(),
            detail: json!({
                "version": "0.0",
                "accountId": self.config.account_id,
                "batchJobName": job.spec.job_name,
                "batchJobArn": job.arn,
                "batchModelId": job.spec.model_id,
                "status": job.status.as_str(),
                "failureMessage": job.message.clone().unwrap_or_default(),
                "creationTime": creation_time(job.submit_time),
            }),
            terminal: job.status.is_terminal(),
        };
        events.push(self, event).await;
    }
}

/// `Aug 28, 2024, 10:47:53 PM`, the shape of `creationTime` in Bedrock's events.
fn creation_time(t: SystemTime) -> String {
    // The HTTP date (`Wed, 28 Aug 2024 22:47:53 GMT`) has every part, in a fixed layout.
    let http = DateTime::from(t).fmt(Format::HttpDate).unwrap_or_default();
    let parts: Vec<&str> = http.split([' ', ':']).collect();
    let [_, day, month, year, hour, minute, second, _] = parts.as_slice() else { return http };
    let hour: u32 = hour.parse().unwrap_or(0);
    let (hour12, half) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    let day = day.trim_start_matches('0');
    format!("{month} {day}, {year}, {hour12}:{minute}:{second} {half}")
}

/// One job's events on their way to EventBridge, with the configured duplicates and
/// reordering: a held-back event goes out right after the job's next one.
#[derive(Debug)]
struct EventQueue {
    rng: crate::generate::Rng,
    held: Option<Event>,
}

impl EventQueue {
    fn new(seed: u64, job_id: &str) -> EventQueue {
        let mut bytes = [0u8; 32];
        let digest = sha2::Sha256::digest([&seed.to_le_bytes()[..], job_id.as_bytes()].concat());
        bytes.copy_from_slice(&digest);
        EventQueue { rng: crate::generate::Rng::new(&bytes), held: None }
    }

    fn draw(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    async fn push(&mut self, service: &BatchService, event: Event) {
        let config = &service.config;
        if self.held.is_none() && !event.terminal && self.draw() < config.event_reorder_rate {
            self.held = Some(event);
            return;
        }
        self.send(service, &event).await;
        if let Some(held) = self.held.take() {
            self.send(service, &held).await;
        }
    }

    async fn send(&mut self, service: &BatchService, event: &Event) {
        let copies = if self.draw() < service.config.event_duplicate_rate { 2 } else { 1 };
        for _ in 0..copies {
            // EventBridge delivery is best effort on AWS too: a failed publish never fails the job.
            if let Err(e) = service.storage.publish(event).await {
                tracing::warn!(error = %e, "batch job event not published");
            }
        }
    }

    async fn flush(&mut self, service: &BatchService) {
        if let Some(held) = self.held.take() {
            self.send(service, &held).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creation_time_has_the_shape_of_bedrock_events() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_885_273);
        assert_eq!(creation_time(t), "Aug 28, 2024, 10:47:53 PM");
        let morning = SystemTime::UNIX_EPOCH + Duration::from_secs(1_724_803_200 + 5);
        assert_eq!(creation_time(morning), "Aug 28, 2024, 12:00:05 AM");
    }
}
