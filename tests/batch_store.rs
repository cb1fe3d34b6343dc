//! The DynamoDB batch store against moto through the real SDK: every conditional write, the
//! paging and the indexes the batch ports depend on.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};
use gateway_core::adapters::batch_store::{BY_REQUEST_INDEX, DynamoBatchStore, MAX_ITEM_BYTES, OPEN_JOBS_INDEX};
use gateway_core::batch::complete::JobOutcome;
use gateway_core::batch::{
    BatchError, FinishOutcome, JobLedger, JobPlan, JobPlans, JobStatus, JobSummary, PendingRecords, PutOnce,
    RecordFailure, RecordId, RecordResult, RecordSource, RequestStatus, RequestStatuses, ResultState, ResultStore,
    SubmittedRecord, SubmittedRecords,
};
use gateway_core::cache::{CacheMode, CacheOptions, Tenant};
use gateway_core::cost::Usage;
use gateway_core::label::ErrorLabel;
use gateway_core::request::{ConverseRequest, ConverseResponse};
use integration_tests::dynamodb;

const MODEL: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(kind).build().unwrap()
}

fn index(name: &str, hash: &str, range: &str) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .unwrap()
}

/// A fresh table with BatchTable's keys and indexes (`cargo xtask test` checks the template's
/// own definition when it creates the stack's table from it).
async fn store() -> (DynamoBatchStore, aws_sdk_dynamodb::Client, String) {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let client = dynamodb().await;
    let name = format!("it-batch-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let mut create = client.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
    for attribute in ["pk", "sk", "request_id", "stage", "open", "planned_at"] {
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        );
    }
    create
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(index(BY_REQUEST_INDEX, "request_id", "stage"))
        .global_secondary_indexes(index(OPEN_JOBS_INDEX, "open", "planned_at"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
    client.wait_until_table_exists().table_name(&name).wait(Duration::from_secs(10)).await.unwrap();
    (DynamoBatchStore::new(client.clone(), name.clone()), client, name)
}

fn at_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_764_000_000_000 + ms)
}

fn record(request_id: &str, attempt: u32, tenant: &str, enqueued_at: SystemTime) -> SubmittedRecord {
    let body = format!(
        r#"{{"messages":[{{"role":"user","content":[{{"text":"prompt of {request_id}"}}]}}],"inferenceConfig":{{"temperature":0.3,"maxTokens":50}}}}"#
    );
    SubmittedRecord {
        record_id: RecordId::new(request_id, attempt).unwrap(),
        tenant: Tenant::new(tenant),
        model_id: MODEL.into(),
        request: ConverseRequest::from_json(body.as_bytes()).unwrap(),
        cache: CacheOptions { mode: Some(CacheMode::On), ttl: Some(Duration::from_secs(600)), allow_sampling: true },
        source: RecordSource::File { bucket: "drop".into(), key: "in/a.jsonl".into(), line: 7 },
        enqueued_at,
    }
}

fn response(text: &str) -> ConverseResponse {
    serde_json::from_value(serde_json::json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 10, "outputTokens": 20, "totalTokens": 30},
        "metrics": {"latencyMs": 5}
    }))
    .unwrap()
}

fn answered(job: &str, record: &SubmittedRecord, run_id: &str, text: &str) -> RecordResult {
    RecordResult {
        job_id: job.into(),
        record_id: record.record_id.clone(),
        tenant: record.tenant.clone(),
        model_id: record.model_id.clone(),
        state: ResultState::Answered {
            response: response(text),
            usage: Usage { input_tokens: 10, output_tokens: 20, ..Usage::default() },
            batch_cost_usd: Some(0.000_05),
            on_demand_cost_usd: Some(0.000_1),
        },
        missing_from_output: false,
        run_id: run_id.into(),
        stored_at_ms: 1_700_000_000_000,
    }
}

fn retrying(job: &str, record: &SubmittedRecord, run_id: &str) -> RecordResult {
    RecordResult {
        state: ResultState::Retrying {
            failure: RecordFailure { label: ErrorLabel::Throttled, code: Some(429), message: "slow down".into() },
        },
        ..answered(job, record, run_id, "")
    }
}

fn plan(job: &str, records: u64, planned_at: SystemTime) -> JobPlan {
    JobPlan {
        job_name: job.into(),
        model_id: MODEL.into(),
        input_uri: format!("s3://bucket/batch/input/{job}.jsonl"),
        output_uri: "s3://bucket/batch/output/".into(),
        records,
        planned_at,
    }
}

fn summary(job: &str, answered: u64, retries: Vec<SubmittedRecord>) -> JobSummary {
    JobSummary {
        job_id: job.into(),
        status: JobStatus::PartiallyCompleted,
        outcome: JobOutcome::PartiallyCompleted,
        answered,
        failed: 0,
        retrying: retries.len() as u64,
        malformed_lines: 0,
        batch_cost_usd: 0.25,
        on_demand_cost_usd: 0.5,
        cache_writes: answered,
        cache_write_failures: 0,
        failures: Vec::new(),
        malformed: Vec::new(),
        retries,
    }
}

#[tokio::test]
async fn put_once_twice_keeps_and_returns_the_first_result() {
    let (store, _, _) = store().await;
    let r = record("req-1", 1, "team-a", at_ms(0));
    let first = answered("job-a", &r, "run-1", "the first answer");
    assert_eq!(store.put_once(&first).await.unwrap(), PutOnce::Written);
    let second = answered("job-a", &r, "run-2", "a different answer");
    assert_eq!(store.put_once(&second).await.unwrap(), PutOnce::AlreadyStored(Box::new(first.clone())));
    assert_eq!(store.latest("req-1").await.unwrap(), Some(first));
}

#[tokio::test]
async fn concurrent_put_once_writes_exactly_one_result() {
    let (store, _, _) = store().await;
    let store = Arc::new(store);
    let r = record("req-race", 1, "team-a", at_ms(0));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = Arc::clone(&store);
            let result = answered("job-race", &r, &format!("run-{i}"), &format!("answer {i}"));
            tokio::spawn(async move { (result.clone(), store.put_once(&result).await.unwrap()) })
        })
        .collect();
    let mut winners = Vec::new();
    let mut stored_seen = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (mine, PutOnce::Written) => winners.push(mine),
            (_, PutOnce::AlreadyStored(stored)) => stored_seen.push(*stored),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one conditional put wins");
    assert_eq!(stored_seen.len(), 7);
    assert!(stored_seen.iter().all(|stored| *stored == winners[0]), "every loser sees the winner's result");
}

#[tokio::test]
async fn finish_twice_keeps_the_first_summary_and_closes_the_job() {
    let (store, _, _) = store().await;
    let records: Vec<_> = (0..3).map(|i| record(&format!("f{i}"), 1, "team-a", at_ms(i))).collect();
    store.plan(&plan("job-f", 3, at_ms(10)), &records).await.unwrap();
    JobPlans::submitted(&store, "job-f", "arn:job-f", at_ms(20)).await.unwrap();
    assert_eq!(store.open().await.unwrap().len(), 1);
    assert_eq!(store.finished("job-f").await.unwrap(), None);

    let first = summary("job-f", 3, Vec::new());
    assert_eq!(store.finish(&first).await.unwrap(), FinishOutcome::Recorded);
    let second = JobSummary { batch_cost_usd: 9.0, ..summary("job-f", 2, Vec::new()) };
    assert_eq!(store.finish(&second).await.unwrap(), FinishOutcome::AlreadyFinished(Box::new(first.clone())));
    assert_eq!(store.finished("job-f").await.unwrap(), Some(first));
    assert!(store.open().await.unwrap().is_empty(), "a finished job is no longer open");
    assert!(store.unsubmitted().await.unwrap().is_empty());

    // A late acceptance (recorded after the completion ran) must not reopen the job.
    JobPlans::submitted(&store, "job-f", "arn:job-f", at_ms(30)).await.unwrap();
    assert!(store.open().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_job_never_planned_here_is_still_finished_once() {
    let (store, _, _) = store().await;
    let first = summary("job-unplanned", 1, Vec::new());
    assert_eq!(store.finish(&first).await.unwrap(), FinishOutcome::Recorded);
    let again = summary("job-unplanned", 5, Vec::new());
    assert_eq!(store.finish(&again).await.unwrap(), FinishOutcome::AlreadyFinished(Box::new(first)));
}

#[tokio::test]
async fn a_finished_summary_comes_back_with_its_retries_rebuilt() {
    let (store, _, _) = store().await;
    let records: Vec<_> = (0..5).map(|i| record(&format!("q{i}"), 1, "team-a", at_ms(i))).collect();
    store.plan(&plan("job-r", 5, at_ms(10)), &records).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        let result = if i % 2 == 0 { retrying("job-r", r, "run") } else { answered("job-r", r, "run", "ok") };
        store.put_once(&result).await.unwrap();
    }
    let retries: Vec<_> = [0, 2, 4]
        .iter()
        .map(|&i: &usize| SubmittedRecord { record_id: records[i].record_id.next_attempt(), ..records[i].clone() })
        .collect();
    let done = summary("job-r", 2, retries.clone());
    assert_eq!(store.finish(&done).await.unwrap(), FinishOutcome::Recorded);
    let stored = store.finished("job-r").await.unwrap().unwrap();
    assert_eq!(stored.retries, retries, "in record ID order, each under its next attempt");
    assert_eq!(stored, done);
}

#[tokio::test]
async fn page_walks_250_records_in_pages_of_100_in_record_order() {
    let (store, _, _) = store().await;
    let records: Vec<_> = (0..250).map(|i| record(&format!("p{i:04}"), 1, "team-a", at_ms(i))).collect();
    store.plan(&plan("job-p", 250, at_ms(0)), &records).await.unwrap();
    // Results share the partition; paging the records must not see them.
    store.put_once(&answered("job-p", &records[0], "run", "x")).await.unwrap();

    let mut seen = Vec::new();
    let mut after: Option<RecordId> = None;
    let mut pages = Vec::new();
    loop {
        let page = store.page("job-p", after.as_ref(), 100).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.record_id.clone());
        pages.push(page.len());
        seen.extend(page);
    }
    assert_eq!(pages, [100, 100, 50]);
    assert_eq!(seen, records);
    assert_eq!(
        SubmittedRecords::submitted(&store, "job-p", &records[42].record_id).await.unwrap(),
        Some(records[42].clone())
    );
    assert_eq!(SubmittedRecords::submitted(&store, "job-p", &RecordId::new("nope", 1).unwrap()).await.unwrap(), None);
    assert!(store.page("job-other", None, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn pending_records_come_oldest_first_enqueue_is_idempotent_and_remove_forgets() {
    let (store, _, _) = store().await;
    // 60 records over three BatchWriteItem calls, enqueued out of order.
    let mut records: Vec<_> = (0..60).map(|i| record(&format!("w{i}"), 1, "team-a", at_ms(1000 - i * 10))).collect();
    store.enqueue(&records).await.unwrap();
    // Again, and with a duplicate inside one call: still one item per record.
    let mut again = records.clone();
    again.push(records[3].clone());
    store.enqueue(&again).await.unwrap();
    let other_model =
        SubmittedRecord { model_id: "amazon.nova-lite-v1:0".into(), ..record("n1", 1, "team-a", at_ms(0)) };
    store.enqueue(std::slice::from_ref(&other_model)).await.unwrap();

    records.sort_by_key(|r| r.enqueued_at);
    let all = store.oldest(MODEL, 1000).await.unwrap();
    assert_eq!(all, records, "oldest first, each once, this model only");
    assert_eq!(store.oldest(MODEL, 7).await.unwrap(), records[..7]);
    assert_eq!(store.oldest("amazon.nova-lite-v1:0", 10).await.unwrap(), [other_model]);

    store.remove(&records[..30]).await.unwrap();
    // Removing what is not waiting is no error.
    store.remove(&records[..2]).await.unwrap();
    assert_eq!(store.oldest(MODEL, 1000).await.unwrap(), records[30..]);
}

#[tokio::test]
async fn planning_twice_is_one_plan_and_submission_moves_it_to_open() {
    let (store, _, _) = store().await;
    let records: Vec<_> = (0..30).map(|i| record(&format!("s{i:02}"), 1, "team-a", at_ms(i))).collect();
    let older = plan("job-old", 30, at_ms(100));
    let newer = plan("job-new", 0, at_ms(200));
    store.plan(&newer, &[]).await.unwrap();
    store.plan(&older, &records).await.unwrap();
    // The same name again (a rerun after a crash): nothing changes.
    store.plan(&JobPlan { records: 99, ..older.clone() }, &records).await.unwrap();
    assert_eq!(store.unsubmitted().await.unwrap(), [older.clone(), newer.clone()], "oldest plan first");
    assert!(store.open().await.unwrap().is_empty());
    assert_eq!(store.page("job-old", None, 100).await.unwrap(), records);

    let accepted = at_ms(300) + Duration::from_nanos(123);
    JobPlans::submitted(&store, "job-old", "arn:aws:bedrock:us-east-1:1:model-invocation-job/abc", accepted)
        .await
        .unwrap();
    assert_eq!(store.unsubmitted().await.unwrap(), [newer]);
    let open = store.open().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].plan, older);
    assert_eq!(open[0].job_arn, "arn:aws:bedrock:us-east-1:1:model-invocation-job/abc");
    assert_eq!(open[0].submitted_at, accepted);

    // Re-planning a submitted job must not set it back to planned.
    store.plan(&older, &records).await.unwrap();
    assert_eq!(store.open().await.unwrap().len(), 1);

    let error = JobPlans::submitted(&store, "job-ghost", "arn:x", accepted).await.unwrap_err();
    assert!(matches!(&error, BatchError::Corrupt(m) if m.contains("job-ghost")), "{error:?}");
}

#[tokio::test]
async fn a_request_goes_pending_then_in_job_then_done_for_its_tenant_only() {
    let (store, _, _) = store().await;
    let team_a = Tenant::new("team-a");
    assert_eq!(store.status(&team_a, "req-s").await.unwrap(), None);

    let first = record("req-s", 1, "team-a", at_ms(0));
    store.enqueue(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(store.status(&team_a, "req-s").await.unwrap(), Some(RequestStatus::Pending { record: first.clone() }));
    assert_eq!(store.status(&Tenant::new("team-b"), "req-s").await.unwrap(), None, "another tenant's request");

    store.plan(&plan("job-s1", 1, at_ms(5)), std::slice::from_ref(&first)).await.unwrap();
    store.remove(std::slice::from_ref(&first)).await.unwrap();
    assert_eq!(
        store.status(&team_a, "req-s").await.unwrap(),
        Some(RequestStatus::InJob { job_name: "job-s1".into(), record: first.clone() })
    );

    let failed = retrying("job-s1", &first, "run-1");
    store.put_once(&failed).await.unwrap();
    assert_eq!(store.status(&team_a, "req-s").await.unwrap(), Some(RequestStatus::Done(failed.clone())));

    // The retry waits again: its attempt is the latest.
    let second = SubmittedRecord { record_id: first.record_id.next_attempt(), ..first.clone() };
    store.enqueue(std::slice::from_ref(&second)).await.unwrap();
    assert_eq!(store.status(&team_a, "req-s").await.unwrap(), Some(RequestStatus::Pending { record: second.clone() }));
    assert_eq!(store.latest("req-s").await.unwrap(), Some(failed), "the latest result is still attempt 1's");

    store.plan(&plan("job-s2", 1, at_ms(50)), std::slice::from_ref(&second)).await.unwrap();
    store.remove(std::slice::from_ref(&second)).await.unwrap();
    let done = answered("job-s2", &second, "run-2", "finally");
    store.put_once(&done).await.unwrap();
    assert_eq!(store.status(&team_a, "req-s").await.unwrap(), Some(RequestStatus::Done(done.clone())));
    assert_eq!(store.status(&Tenant::new("team-b"), "req-s").await.unwrap(), None);
    assert_eq!(store.latest("req-s").await.unwrap(), Some(done));
}

#[tokio::test]
async fn an_item_that_does_not_decode_is_corrupt_and_named() {
    let (store, client, table) = store().await;
    client
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("JOB#job-c".into()))
        .item("sk", AttributeValue::S("REC#bad-1".into()))
        .item("doc", AttributeValue::S(r#"{"v":1,"recordId":"bad-1"}"#.into()))
        .item("request_id", AttributeValue::S("bad".into()))
        .item("stage", AttributeValue::S("000001#2".into()))
        .item("tenant", AttributeValue::S(Tenant::new("team-a").as_str().into()))
        .send()
        .await
        .unwrap();
    let error = SubmittedRecords::submitted(&store, "job-c", &RecordId::new("bad", 1).unwrap()).await.unwrap_err();
    assert!(matches!(&error, BatchError::Corrupt(m) if m.contains("JOB#job-c/REC#bad-1")), "{error:?}");
    let error = store.page("job-c", None, 10).await.unwrap_err();
    assert!(matches!(error, BatchError::Corrupt(_)), "{error:?}");
    let error = store.status(&Tenant::new("team-a"), "bad").await.unwrap_err();
    assert!(matches!(error, BatchError::Corrupt(_)), "{error:?}");
}

#[tokio::test]
async fn a_result_over_the_item_limit_is_refused_loudly_and_nothing_is_stored() {
    let (store, _, _) = store().await;
    let r = record("req-big", 1, "team-a", at_ms(0));
    let huge = answered("job-big", &r, "run", &"x".repeat(MAX_ITEM_BYTES));
    let error = store.put_once(&huge).await.unwrap_err();
    assert!(matches!(&error, BatchError::Store(_)), "{error:?}");
    assert!(format!("{error:?}").contains("JOB#job-big/RES#req-big-1"), "{error:?}");
    assert_eq!(store.latest("req-big").await.unwrap(), None);
    // Large, but under the limit: stored whole. (moto counts item sizes more strictly than
    // DynamoDB's documented rule, so this stays well clear of the edge.)
    let large = answered("job-big", &r, "run", &"y".repeat(MAX_ITEM_BYTES / 2));
    assert_eq!(store.put_once(&large).await.unwrap(), PutOnce::Written);
    assert_eq!(store.latest("req-big").await.unwrap(), Some(large));
}
