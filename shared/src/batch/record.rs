//! The records of a job as submitted, and the record ID that leads back to them.
//!
//! Bedrock returns each record's `recordId` untouched but nothing else of the submission
//! (no tenant, and a `modelInput` it may have normalised), so the submission keeps what the
//! completion needs ([`SubmittedRecord`]) under the record ID, and the ID itself names the
//! request and the attempt: a retried record goes into a later job under a new ID that
//! still leads back to the same request.

use std::fmt;
use std::time::SystemTime;

use crate::cache::{CacheKey, CacheOptions, Tenant};
use crate::request::ConverseRequest;

/// Separates the request ID from the attempt number. Request IDs may contain it; the attempt
/// is what follows its last occurrence.
const SEPARATOR: char = '-';

/// `<requestId>-<attempt>`: unique per job (a request is in a job at most once) and across
/// jobs (each retry raises the attempt).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordId {
    request_id: String,
    attempt: u32,
}

impl RecordId {
    /// The first attempt is 1. `None` for an empty request ID or attempt 0.
    pub fn new(request_id: impl Into<String>, attempt: u32) -> Option<RecordId> {
        let request_id = request_id.into();
        (!request_id.is_empty() && attempt > 0).then_some(RecordId { request_id, attempt })
    }

    /// Reads a record ID Bedrock returned; `None` when it is not one this scheme wrote.
    pub fn parse(text: &str) -> Option<RecordId> {
        let (request_id, attempt) = text.rsplit_once(SEPARATOR)?;
        let digits_only = !attempt.is_empty() && attempt.bytes().all(|b| b.is_ascii_digit());
        digits_only.then(|| attempt.parse().ok()).flatten().and_then(|attempt| RecordId::new(request_id, attempt))
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The same request's record in the job that retries it.
    pub fn next_attempt(&self) -> RecordId {
        RecordId { request_id: self.request_id.clone(), attempt: self.attempt.saturating_add(1) }
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SEPARATOR}{}", self.request_id, self.attempt)
    }
}

/// One record as the submission put it into a job: everything the online path would have
/// known about the request.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmittedRecord {
    pub record_id: RecordId,
    pub tenant: Tenant,
    /// The model the cache key names, as the online path keys its first attempt: the base
    /// model ID the catalog resolved the caller's `modelId` (tier, profile or ID) to.
    pub model_id: String,
    /// The request without its `modelId`, as the online path keys it.
    pub request: ConverseRequest,
    /// The caller's cache wishes, decided with the deployment's settings as online.
    pub cache: CacheOptions,
    /// Where the work came from, so that its result goes back there.
    pub source: RecordSource,
    /// When the request first began waiting for a job. A retry keeps it: how long a record
    /// may wait for a job (before it runs on demand) counts from the caller's request, not
    /// from the latest attempt.
    pub enqueued_at: SystemTime,
}

/// Where a record's work came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordSource {
    /// Sent to the HTTP API as deferrable; the caller polls `GET /v1/requests/{id}`.
    Deferred,
    /// Line `line` (from 1) of a JSONL file dropped in S3; its result goes into the results
    /// file beside it.
    File { bucket: String, key: String, line: u64 },
}

impl SubmittedRecord {
    /// The key the online path computes for the same request (`service/prepare.rs`).
    pub fn cache_key(&self) -> CacheKey {
        CacheKey::compute(&self.tenant, &self.model_id, &self.request)
    }
}
