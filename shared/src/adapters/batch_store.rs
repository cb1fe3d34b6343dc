//! The DynamoDB-backed batch ports over one table (`BatchTable` in template.yaml).
//!
//! Keys `pk`/`sk`; every item holds its domain value as one JSON document `doc`
//! ([`crate::batch::codec`]) beside the attributes the indexes and conditions read:
//!
//! | item             | `pk`                 | `sk`                        | also                                             |
//! |------------------|----------------------|-----------------------------|--------------------------------------------------|
//! | pending record   | `PENDING#<model_id>` | `<enqueued ms, 13>#<recId>` | `request_id`, `stage=<attempt 6>#1`, `tenant`    |
//! | job META         | `JOB#<job_name>`     | `META`                      | `open`, `planned_at`, `job_arn`, `submitted_at`  |
//! | submitted record | `JOB#<job_name>`     | `REC#<recId>`               | `request_id`, `stage=…#2`, `job_name`, `tenant`  |
//! | result           | `JOB#<job_name>`     | `RES#<recId>`               | `request_id`, `stage=…#3`, `tenant`, `state`     |
//! | summary          | `JOB#<job_name>`     | `SUMMARY`                   |                                                  |
//! | file intake      | `FILE#<file_job>`    | `META`                      |                                                  |
//!
//! GSI `by-request` (`request_id`, `stage`) finds a request's most advanced item; GSI
//! `open-jobs` (`open`, `planned_at`) is sparse: only META items of unfinished jobs carry
//! `open` (`planned`, then `submitted`). Submitted records and results expire
//! (`expires_at`) 30 days after they are written; pending records, plans and summaries
//! do not.
//!
//! A summary item leaves out the job's retries (records with their requests, which could
//! never fit in one item): [`JobLedger::finished`] rebuilds them from the job's results in
//! `retrying` state and its submitted records, in record ID order.
//!
//! An item over DynamoDB's 400 KB limit (a huge answer or a request carrying large
//! documents) is refused with [`BatchError::Store`] naming its key and size before any call:
//! cutting the answer down would store a result that is not the model's, and the record's
//! retry would fail the same way, so the failure is loud instead.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, Put, PutRequest, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
    WriteRequest,
};

use crate::batch::codec;
use crate::batch::{
    BatchError, FileIntake, FileIntakes, FinishOutcome, JobLedger, JobPlan, JobPlans, JobSummary, OpenJob,
    PendingRecords, PutOnce, RecordId, RecordResult, RequestStatus, RequestStatuses, ResultStore, SubmittedRecord,
    SubmittedRecords,
};
use crate::cache::Tenant;

/// DynamoDB's hard limit on one item, attribute names included.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// How long submitted records and results are kept.
pub const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
pub const BY_REQUEST_INDEX: &str = "by-request";
pub const OPEN_JOBS_INDEX: &str = "open-jobs";

const PK: &str = "pk";
const SK: &str = "sk";
const DOC: &str = "doc";
const REQUEST_ID: &str = "request_id";
const STAGE: &str = "stage";
const TENANT: &str = "tenant";
const JOB_NAME: &str = "job_name";
const OPEN: &str = "open";
const PLANNED_AT: &str = "planned_at";
const JOB_ARN: &str = "job_arn";
const SUBMITTED_AT: &str = "submitted_at";
/// Must match the TTL attribute of `BatchTable` in template.yaml.
pub const EXPIRES_AT: &str = "expires_at";
const STATE: &str = "state";

const META: &str = "META";
const SUMMARY: &str = "SUMMARY";
const REC: &str = "REC#";
const RES: &str = "RES#";
const OPEN_PLANNED: &str = "planned";
const OPEN_SUBMITTED: &str = "submitted";

const STAGE_PENDING: u8 = 1;
const STAGE_IN_JOB: u8 = 2;
const STAGE_DONE: u8 = 3;

/// BatchWriteItem takes at most 25 requests.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of retrying what BatchWriteItem left unprocessed, backing off from
/// [`FIRST_BACKOFF`] and doubling: about 6 s in all before giving up as throttled.
const UNPROCESSED_ROUNDS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(25);
/// Items asked per Query page; DynamoDB caps a page at 1 MB whatever the limit.
const QUERY_PAGE: usize = 100;

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, Clone)]
pub struct DynamoBatchStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoBatchStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoBatchStore { client, table }
    }
}

// ---- Keys and attributes. ----

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn job_pk(job_name: &str) -> String {
    format!("JOB#{job_name}")
}

fn pending_pk(model_id: &str) -> String {
    format!("PENDING#{model_id}")
}

fn epoch_millis(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

fn epoch_nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

/// Zero-padded so that string order is time order (13 digits last until the year 2286).
fn padded_millis(t: SystemTime) -> String {
    format!("{:013}", epoch_millis(t))
}

fn pending_sk(record: &SubmittedRecord) -> String {
    format!("{}#{}", padded_millis(record.enqueued_at), record.record_id)
}

/// Attempt first, then the stage rank: the by-request index's last item is the latest
/// attempt's most advanced state.
fn stage(record_id: &RecordId, rank: u8) -> String {
    format!("{:06}#{rank}", record_id.attempt())
}

fn expires_at() -> AttributeValue {
    let at = SystemTime::now() + RETENTION;
    AttributeValue::N(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string())
}

fn key(pk: String, sk: String) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn item(attributes: impl IntoIterator<Item = (&'static str, AttributeValue)>) -> Item {
    attributes.into_iter().map(|(name, value)| (name.to_owned(), value)).collect()
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

/// `pk/sk` of an item, for error messages.
fn describe(item: &Item) -> String {
    format!("{}/{}", text(item, PK).unwrap_or("?"), text(item, SK).unwrap_or("?"))
}

fn corrupt(item: &Item, reason: impl std::fmt::Display) -> BatchError {
    BatchError::Corrupt(format!("item {}: {reason}", describe(item)))
}

fn required<'a>(item: &'a Item, name: &str) -> Result<&'a str, BatchError> {
    text(item, name).ok_or_else(|| corrupt(item, format!("attribute `{name}` is missing or not a string")))
}

fn doc(item: &Item) -> Result<&str, BatchError> {
    required(item, DOC)
}

fn decode<T>(item: &Item, decode: impl FnOnce(&str) -> Result<T, String>) -> Result<T, BatchError> {
    decode(doc(item)?).map_err(|reason| corrupt(item, reason))
}

fn instant_from_nanos(item: &Item, name: &str) -> Result<SystemTime, BatchError> {
    let nanos: u128 = item
        .get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| corrupt(item, format!("attribute `{name}` is missing or not a whole number")))?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| corrupt(item, format!("`{name}` is out of range")))?;
    // The remainder of a division by 10^9 always fits.
    let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    UNIX_EPOCH
        .checked_add(Duration::new(secs, subsec))
        .ok_or_else(|| corrupt(item, format!("`{name}` is out of range")))
}

/// Item size as DynamoDB counts it: UTF-8 attribute names plus value bytes (numbers about
/// one byte per two digits plus one).
fn item_size(item: &Item) -> usize {
    item.iter()
        .map(|(name, value)| {
            name.len()
                + match value {
                    AttributeValue::S(text) => text.len(),
                    AttributeValue::N(number) => number.len().div_ceil(2) + 1,
                    AttributeValue::B(bytes) => bytes.as_ref().len(),
                    _ => 1,
                }
        })
        .sum()
}

fn check_size(item: &Item) -> Result<(), BatchError> {
    let bytes = item_size(item);
    if bytes > MAX_ITEM_BYTES {
        return Err(BatchError::Store(
            format!(
                "item {} would be {bytes} bytes, over DynamoDB's {MAX_ITEM_BYTES}-byte item limit; it is not stored",
                describe(item)
            )
            .into(),
        ));
    }
    Ok(())
}

fn pending_item(record: &SubmittedRecord) -> Result<Item, BatchError> {
    let item = item([
        (PK, s(pending_pk(&record.model_id))),
        (SK, s(pending_sk(record))),
        (DOC, s(codec::encode_record(record)?)),
        (REQUEST_ID, s(record.record_id.request_id())),
        (STAGE, s(stage(&record.record_id, STAGE_PENDING))),
        (TENANT, s(record.tenant.as_str())),
    ]);
    check_size(&item)?;
    Ok(item)
}

fn submitted_item(job_name: &str, record: &SubmittedRecord) -> Result<Item, BatchError> {
    let item = item([
        (PK, s(job_pk(job_name))),
        (SK, s(format!("{REC}{}", record.record_id))),
        (DOC, s(codec::encode_record(record)?)),
        (REQUEST_ID, s(record.record_id.request_id())),
        (STAGE, s(stage(&record.record_id, STAGE_IN_JOB))),
        (JOB_NAME, s(job_name)),
        (TENANT, s(record.tenant.as_str())),
        (EXPIRES_AT, expires_at()),
    ]);
    check_size(&item)?;
    Ok(item)
}

fn result_item(result: &RecordResult) -> Result<Item, BatchError> {
    let item = item([
        (PK, s(job_pk(&result.job_id))),
        (SK, s(format!("{RES}{}", result.record_id))),
        (DOC, s(codec::encode_result(result)?)),
        (REQUEST_ID, s(result.record_id.request_id())),
        (STAGE, s(stage(&result.record_id, STAGE_DONE))),
        (JOB_NAME, s(&result.job_id)),
        (TENANT, s(result.tenant.as_str())),
        (STATE, s(codec::state_name(&result.state))),
        (EXPIRES_AT, expires_at()),
    ]);
    check_size(&item)?;
    Ok(item)
}

// ---- Errors. ----

/// The one mapping of SDK failures: the client giving up is a timeout, DynamoDB shedding
/// load is throttling (retry later), anything else is the store failing.
fn classify<E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static>(error: SdkError<E>) -> BatchError {
    let timed_out = match &error {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout(),
        _ => false,
    };
    if timed_out {
        return BatchError::Timeout(format!("the DynamoDB client gave up: {error}"));
    }
    match error.code() {
        Some("ProvisionedThroughputExceededException" | "RequestLimitExceeded" | "ThrottlingException") => {
            BatchError::Throttled(Box::new(error))
        }
        _ => BatchError::Store(Box::new(error)),
    }
}

fn condition_failed<E: ProvideErrorMetadata>(error: &SdkError<E>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

// ---- Reads. ----

impl DynamoBatchStore {
    async fn get(&self, pk: String, sk: String) -> Result<Option<Item>, BatchError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }

    /// Items of partition `pk` whose sort key begins with `prefix`, in sort key order, after
    /// sort key `after` when given, until `limit` items or the end. DynamoDB's `Limit` counts
    /// items read, and a page also ends at 1 MB, so this pages until it has enough.
    async fn query_prefix(
        &self,
        pk: &str,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<Item>, BatchError> {
        let mut items = Vec::new();
        let mut start = after.map(|sk| key(pk.to_owned(), sk));
        while items.len() < limit {
            let page = (limit - items.len()).min(QUERY_PAGE);
            let query = self.client.query().table_name(&self.table).expression_attribute_names("#pk", PK);
            // DynamoDB refuses an empty string even as a prefix: no prefix is no sort key condition.
            let query = if prefix.is_empty() {
                query.key_condition_expression("#pk = :pk")
            } else {
                query
                    .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                    .expression_attribute_names("#sk", SK)
                    .expression_attribute_values(":prefix", s(prefix))
            };
            let output = query
                .expression_attribute_values(":pk", s(pk))
                .consistent_read(true)
                .limit(i32::try_from(page).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        items.truncate(limit);
        Ok(items)
    }

    /// Every item of the open-jobs index in state `open`, oldest plan first.
    async fn open_jobs(&self, open: &str) -> Result<Vec<Item>, BatchError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OPEN_JOBS_INDEX)
                .key_condition_expression("#open = :open")
                .expression_attribute_names("#open", OPEN)
                .expression_attribute_values(":open", s(open))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(items),
            }
        }
    }

    /// The first item of the request's by-request entries, latest stage first, that `keep`
    /// accepts.
    async fn latest_by_request(
        &self,
        request_id: &str,
        keep: impl Fn(&Item) -> bool,
    ) -> Result<Option<Item>, BatchError> {
        let mut start = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(BY_REQUEST_INDEX)
                .key_condition_expression("#request = :request")
                .expression_attribute_names("#request", REQUEST_ID)
                .expression_attribute_values(":request", s(request_id))
                .scan_index_forward(false)
                .limit(i32::try_from(QUERY_PAGE).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(classify)?;
            if let Some(found) = output.items.unwrap_or_default().into_iter().find(|item| keep(item)) {
                return Ok(Some(found));
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(None),
            }
        }
    }

    /// The job's records to retry, rebuilt from its results: those in `retrying` state,
    /// each its submitted record under the next attempt's ID.
    async fn retries(&self, job_name: &str) -> Result<Vec<SubmittedRecord>, BatchError> {
        let pk = job_pk(job_name);
        let mut retrying = HashSet::new();
        let mut after = None;
        loop {
            let page = self.query_prefix(&pk, RES, after.take(), QUERY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(required(last, SK)?.to_owned());
            for item in &page {
                if text(item, STATE) == Some("retrying") {
                    let sk = required(item, SK)?;
                    retrying.insert(sk.trim_start_matches(RES).to_owned());
                }
            }
        }
        let mut retries = Vec::with_capacity(retrying.len());
        let mut after = None;
        while !retrying.is_empty() {
            let page = self.query_prefix(&pk, REC, after.take(), QUERY_PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(required(last, SK)?.to_owned());
            for item in &page {
                if retrying.remove(required(item, SK)?.trim_start_matches(REC)) {
                    let record = decode(item, codec::decode_record)?;
                    retries.push(SubmittedRecord { record_id: record.record_id.next_attempt(), ..record });
                }
            }
        }
        if let Some(orphan) = retrying.iter().next() {
            return Err(BatchError::Corrupt(format!(
                "job {job_name} has a retrying result for record {orphan} it never submitted"
            )));
        }
        Ok(retries)
    }

    async fn summary(&self, item: &Item) -> Result<JobSummary, BatchError> {
        let mut summary = decode(item, codec::decode_summary)?;
        summary.retries = self.retries(&summary.job_id).await?;
        Ok(summary)
    }
}

// ---- Writes. ----

impl DynamoBatchStore {
    /// BatchWriteItem in chunks of 25, retrying what DynamoDB leaves unprocessed with
    /// backoff; still unprocessed after the last round is throttling.
    async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), BatchError> {
        let mut requests = requests.into_iter().peekable();
        while requests.peek().is_some() {
            let mut chunk: Vec<WriteRequest> = requests.by_ref().take(BATCH_WRITE_MAX).collect();
            let mut backoff = FIRST_BACKOFF;
            for round in 0.. {
                let output =
                    self.client.batch_write_item().request_items(&self.table, chunk).send().await.map_err(classify)?;
                chunk = output.unprocessed_items.and_then(|mut left| left.remove(&self.table)).unwrap_or_default();
                if chunk.is_empty() {
                    break;
                }
                if round + 1 >= UNPROCESSED_ROUNDS {
                    return Err(BatchError::Throttled(
                        format!("{} writes still unprocessed after {UNPROCESSED_ROUNDS} rounds", chunk.len()).into(),
                    ));
                }
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Ok(())
    }

    /// A conditional put of a summary alone, for a job whose META item does not exist.
    async fn put_summary(&self, summary_item: Item, job_id: &str) -> Result<FinishOutcome, BatchError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(summary_item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(FinishOutcome::Recorded),
            Err(e) if condition_failed(&e) => self.already_finished(job_id).await,
            Err(e) => Err(classify(e)),
        }
    }

    async fn already_finished(&self, job_id: &str) -> Result<FinishOutcome, BatchError> {
        match self.finished(job_id).await? {
            Some(stored) => Ok(FinishOutcome::AlreadyFinished(Box::new(stored))),
            None => Err(BatchError::Store(
                format!("job {job_id}'s summary failed its condition but cannot be read back").into(),
            )),
        }
    }
}

/// Distinct by key, first wins: BatchWriteItem refuses two requests for one key.
fn distinct_by_key(items: Vec<Item>) -> Vec<Item> {
    let mut seen = HashSet::new();
    items
        .into_iter()
        .filter(|item| seen.insert((text(item, PK).map(str::to_owned), text(item, SK).map(str::to_owned))))
        .collect()
}

fn put_request(item: Item) -> Result<WriteRequest, BatchError> {
    let put = PutRequest::builder().set_item(Some(item)).build().map_err(|e| BatchError::Store(Box::new(e)))?;
    Ok(WriteRequest::builder().put_request(put).build())
}

fn delete_request(key: Item) -> Result<WriteRequest, BatchError> {
    let delete = DeleteRequest::builder().set_key(Some(key)).build().map_err(|e| BatchError::Store(Box::new(e)))?;
    Ok(WriteRequest::builder().delete_request(delete).build())
}

fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> BatchError {
    BatchError::Store(Box::new(e))
}

// ---- The ports. ----

impl SubmittedRecords for DynamoBatchStore {
    async fn submitted(&self, job_id: &str, record_id: &RecordId) -> Result<Option<SubmittedRecord>, BatchError> {
        match self.get(job_pk(job_id), format!("{REC}{record_id}")).await? {
            Some(item) => decode(&item, codec::decode_record).map(Some),
            None => Ok(None),
        }
    }

    async fn page(
        &self,
        job_id: &str,
        after: Option<&RecordId>,
        limit: usize,
    ) -> Result<Vec<SubmittedRecord>, BatchError> {
        let after = after.map(|id| format!("{REC}{id}"));
        let items = self.query_prefix(&job_pk(job_id), REC, after, limit).await?;
        items.iter().map(|item| decode(item, codec::decode_record)).collect()
    }
}

impl ResultStore for DynamoBatchStore {
    async fn put_once(&self, result: &RecordResult) -> Result<PutOnce, BatchError> {
        let item = result_item(result)?;
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(PutOnce::Written),
            Err(e) if condition_failed(&e) => {
                let returned = match &e {
                    SdkError::ServiceError(service) => match service.err() {
                        PutItemError::ConditionalCheckFailedException(failed) => failed.item().cloned(),
                        _ => None,
                    },
                    _ => None,
                };
                let stored = match returned {
                    Some(item) => item,
                    // A backend that does not return the item: read it (consistently).
                    None => self.get(job_pk(&result.job_id), format!("{RES}{}", result.record_id)).await?.ok_or_else(
                        || {
                            BatchError::Store(
                                format!("the result of {} failed its condition but is not there", result.record_id)
                                    .into(),
                            )
                        },
                    )?,
                };
                Ok(PutOnce::AlreadyStored(Box::new(decode(&stored, codec::decode_result)?)))
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn latest(&self, request_id: &str) -> Result<Option<RecordResult>, BatchError> {
        let done = format!("#{STAGE_DONE}");
        let found =
            self.latest_by_request(request_id, |item| text(item, STAGE).is_some_and(|s| s.ends_with(&done))).await?;
        found.map(|item| decode(&item, codec::decode_result)).transpose()
    }
}

impl JobLedger for DynamoBatchStore {
    async fn finished(&self, job_id: &str) -> Result<Option<JobSummary>, BatchError> {
        match self.get(job_pk(job_id), SUMMARY.to_owned()).await? {
            Some(item) => self.summary(&item).await.map(Some),
            None => Ok(None),
        }
    }

    async fn finish(&self, summary: &JobSummary) -> Result<FinishOutcome, BatchError> {
        let pk = job_pk(&summary.job_id);
        let summary_item = item([
            (PK, s(&pk)),
            (SK, s(SUMMARY)),
            (DOC, s(codec::encode_summary(summary)?)),
            (JOB_NAME, s(&summary.job_id)),
        ]);
        check_size(&summary_item)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(summary_item.clone()))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        // Closing the job in the same transaction: a job is never finished yet still open.
        let close = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(pk, META.to_owned())))
            .update_expression("REMOVE #open")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#open", OPEN)
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build_error)?;
        let outcome = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(close).build())
            .send()
            .await;
        let error = match outcome {
            Ok(_) => return Ok(FinishOutcome::Recorded),
            Err(error) => error,
        };
        let reasons: Vec<Option<String>> = match &error {
            SdkError::ServiceError(service) => match service.err() {
                TransactWriteItemsError::TransactionCanceledException(canceled) => {
                    canceled.cancellation_reasons().iter().map(|r| r.code().map(str::to_owned)).collect()
                }
                _ => return Err(classify(error)),
            },
            _ => return Err(classify(error)),
        };
        let failed = |i: usize| reasons.get(i).and_then(Option::as_deref) == Some("ConditionalCheckFailed");
        if failed(0) {
            return self.already_finished(&summary.job_id).await;
        }
        if failed(1) {
            // No META: a job this store never planned (planned elsewhere, or before plans
            // were stored). There is nothing to close; the summary still goes in once.
            return self.put_summary(summary_item, &summary.job_id).await;
        }
        let contended = reasons.iter().flatten().any(|code| {
            matches!(code.as_str(), "TransactionConflict" | "ThrottlingError" | "ProvisionedThroughputExceeded")
        });
        if contended { Err(BatchError::Throttled(Box::new(error))) } else { Err(classify(error)) }
    }
}

impl PendingRecords for DynamoBatchStore {
    /// A record already waiting is written again with the same key and content; one that was
    /// removed (taken into a job) and is enqueued again waits again, as in the memory fake.
    async fn enqueue(&self, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        // Every item is encoded and checked before the first write, so that an oversized
        // record fails the call without leaving part of it enqueued.
        let items = records.iter().map(pending_item).collect::<Result<Vec<_>, _>>()?;
        let requests = distinct_by_key(items).into_iter().map(put_request).collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }

    async fn oldest(&self, model_id: &str, limit: usize) -> Result<Vec<SubmittedRecord>, BatchError> {
        let items = self.query_prefix(&pending_pk(model_id), "", None, limit).await?;
        items.iter().map(|item| decode(item, codec::decode_record)).collect()
    }

    async fn remove(&self, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        let keys = records.iter().map(|r| key(pending_pk(&r.model_id), pending_sk(r))).collect();
        let requests = distinct_by_key(keys).into_iter().map(delete_request).collect::<Result<Vec<_>, _>>()?;
        self.batch_write(requests).await
    }
}

impl JobPlans for DynamoBatchStore {
    async fn plan(&self, plan: &JobPlan, records: &[SubmittedRecord]) -> Result<(), BatchError> {
        let items = records.iter().map(|r| submitted_item(&plan.job_name, r)).collect::<Result<Vec<_>, _>>()?;
        let meta = item([
            (PK, s(job_pk(&plan.job_name))),
            (SK, s(META)),
            (DOC, s(codec::encode_plan(plan)?)),
            (OPEN, s(OPEN_PLANNED)),
            (PLANNED_AT, s(padded_millis(plan.planned_at))),
            (JOB_NAME, s(&plan.job_name)),
        ]);
        check_size(&meta)?;
        // Records first: a job whose META exists has all its records, even when the process
        // dies in between (a rerun writes the same records again, then the META).
        self.batch_write(distinct_by_key(items).into_iter().map(put_request).collect::<Result<Vec<_>, _>>()?).await?;
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(meta))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Planned before, possibly submitted or finished since: that state stands.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    async fn submitted(&self, job_name: &str, job_arn: &str, at: SystemTime) -> Result<(), BatchError> {
        let meta_key = key(job_pk(job_name), META.to_owned());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key.clone()))
            .update_expression("SET #arn = :arn, #at = :at, #open = :submitted")
            .condition_expression("attribute_exists(#pk) AND attribute_exists(#open)")
            .expression_attribute_names("#arn", JOB_ARN)
            .expression_attribute_names("#at", SUBMITTED_AT)
            .expression_attribute_names("#open", OPEN)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":arn", s(job_arn))
            .expression_attribute_values(":at", AttributeValue::N(epoch_nanos(at).to_string()))
            .expression_attribute_values(":submitted", s(OPEN_SUBMITTED))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(e) if condition_failed(&e) => e,
            Err(e) => return Err(classify(e)),
        };
        let returned = match &error {
            SdkError::ServiceError(service) => match service.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => failed.item().cloned(),
                _ => None,
            },
            _ => None,
        };
        let exists = match returned {
            Some(item) => !item.is_empty(),
            None => self.get(job_pk(job_name), META.to_owned()).await?.is_some(),
        };
        if !exists {
            return Err(BatchError::Corrupt(format!("job {job_name} was never planned")));
        }
        // Finished already (its completion ran before this acceptance was recorded): keep
        // the ARN, but never reopen the job.
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key))
            .update_expression("SET #arn = :arn, #at = :at")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#arn", JOB_ARN)
            .expression_attribute_names("#at", SUBMITTED_AT)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":arn", s(job_arn))
            .expression_attribute_values(":at", AttributeValue::N(epoch_nanos(at).to_string()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn unsubmitted(&self) -> Result<Vec<JobPlan>, BatchError> {
        let items = self.open_jobs(OPEN_PLANNED).await?;
        items.iter().map(|item| decode(item, codec::decode_plan)).collect()
    }

    async fn open(&self) -> Result<Vec<OpenJob>, BatchError> {
        let items = self.open_jobs(OPEN_SUBMITTED).await?;
        items
            .iter()
            .map(|item| {
                Ok(OpenJob {
                    plan: decode(item, codec::decode_plan)?,
                    job_arn: required(item, JOB_ARN)?.to_owned(),
                    submitted_at: instant_from_nanos(item, SUBMITTED_AT)?,
                })
            })
            .collect()
    }
}

impl RequestStatuses for DynamoBatchStore {
    async fn status(&self, tenant: &Tenant, request_id: &str) -> Result<Option<RequestStatus>, BatchError> {
        let Some(item) = self.latest_by_request(request_id, |_| true).await? else {
            return Ok(None);
        };
        // Another tenant's request is as unknown as no request: nothing of it is decoded.
        if text(&item, TENANT) != Some(tenant.as_str()) {
            return Ok(None);
        }
        let rank = required(&item, STAGE)?.rsplit_once('#').map(|(_, rank)| rank.to_owned());
        let status = match rank.as_deref() {
            Some("1") => RequestStatus::Pending { record: decode(&item, codec::decode_record)? },
            Some("2") => RequestStatus::InJob {
                job_name: required(&item, JOB_NAME)?.to_owned(),
                record: decode(&item, codec::decode_record)?,
            },
            Some("3") => RequestStatus::Done(decode(&item, codec::decode_result)?),
            _ => return Err(corrupt(&item, "attribute `stage` names no stage")),
        };
        Ok(Some(status))
    }
}

impl FileIntakes for DynamoBatchStore {
    async fn record_intake(&self, intake: &FileIntake) -> Result<bool, BatchError> {
        let item = item([
            (PK, s(format!("FILE#{}", intake.file_job))),
            (SK, s(META)),
            (DOC, s(codec::encode_intake(intake)?)),
        ]);
        check_size(&item)?;
        let outcome = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    async fn intake(&self, file_job: &str) -> Result<Option<FileIntake>, BatchError> {
        let found = self.get(format!("FILE#{file_job}"), META.to_owned()).await?;
        found.map(|item| decode(&item, codec::decode_intake)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_sort_by_attempt_then_progress() {
        let first = RecordId::new("r", 1).unwrap();
        let second = first.next_attempt();
        let mut stages = vec![
            stage(&second, STAGE_PENDING),
            stage(&first, STAGE_DONE),
            stage(&first, STAGE_PENDING),
            stage(&first, STAGE_IN_JOB),
        ];
        stages.sort();
        assert_eq!(stages, ["000001#1", "000001#2", "000001#3", "000002#1"]);
    }

    #[test]
    fn pending_keys_sort_by_time_across_digit_counts() {
        let early = UNIX_EPOCH + Duration::from_millis(999);
        let late = UNIX_EPOCH + Duration::from_millis(1_000);
        assert!(padded_millis(early) < padded_millis(late));
        assert_eq!(padded_millis(late).len(), 13);
    }

    #[test]
    fn an_oversized_item_is_refused_naming_its_key() {
        let big = item([(PK, s("JOB#j")), (SK, s("RES#r-1")), (DOC, s("x".repeat(MAX_ITEM_BYTES)))]);
        let error = check_size(&big).unwrap_err();
        assert!(matches!(error, BatchError::Store(_)));
        assert!(format!("{error:?}").contains("JOB#j/RES#r-1"), "{error:?}");
        let fits = item([(PK, s("JOB#j")), (SK, s("RES#r-1")), (DOC, s("x".repeat(1000)))]);
        assert!(check_size(&fits).is_ok());
    }
}
