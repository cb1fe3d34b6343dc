//! The batch pipeline's remote adapters through the real SDKs: `BedrockBatchJobs` against the
//! emulator's control plane, `S3BatchFiles` against a moto of the test's own (which the
//! emulator's jobs read their input from and write their output to).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use bedrock_emulator::testing::{MotoServer, fast_batch_config};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use gateway_core::adapters::batch_remote::{BedrockBatchJobs, S3BatchFiles, bedrock_control_client, s3_client};
use gateway_core::batch::{
    AsyncOutputReader, BatchError, BatchFiles, BatchJobs, CreateJob, JobPlan, JobStatus, RecordOutcome,
};
use gateway_core::label::ErrorLabel;
use integration_tests::sdk_defaults;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatch";
const BUCKET: &str = "gateway-batch";

struct Remote {
    // Kept for their lifetime: dropping either stops it.
    _moto: MotoServer,
    _emulator: RunningEmulator,
    jobs: BedrockBatchJobs,
    files: S3BatchFiles,
    /// The SDK client itself, for what the adapter does not do (list jobs, make a job it
    /// did not plan).
    bedrock: aws_sdk_bedrock::Client,
}

async fn remote(configure: impl FnOnce(&mut EmulatorConfig)) -> Remote {
    let moto = MotoServer::start().unwrap();
    let mut config = fast_batch_config(&moto);
    config.batch.publish_events = false;
    configure(&mut config);
    let emulator = bedrock_emulator::spawn(config).await.unwrap();
    let bedrock = bedrock_control_client(&sdk_defaults().endpoint_url(emulator.url()).load().await);
    // The production constructor: with moto's endpoint it must address buckets by path.
    let s3 = s3_client(&sdk_defaults().endpoint_url(moto.url()).load().await);
    s3.create_bucket().bucket(BUCKET).send().await.unwrap();
    Remote {
        _moto: moto,
        _emulator: emulator,
        jobs: BedrockBatchJobs::new(bedrock.clone()),
        files: S3BatchFiles::new(s3),
        bedrock,
    }
}

/// A plan shaped as the submission makes them, with its input written.
async fn planned(remote: &Remote, job_name: &str, records: usize) -> CreateJob {
    let input_uri = format!("s3://{BUCKET}/batch/input/{job_name}.jsonl");
    let body: String = (0..records)
        .map(|i| {
            let line = json!({"recordId": format!("req-{job_name}-{i}-1"), "modelInput": {
                "messages": [{"role": "user", "content": [{"text": format!("Question {i} of {job_name}")}]}],
                "inferenceConfig": {"maxTokens": 32}
            }});
            format!("{line}\n")
        })
        .collect();
    remote.files.write(&input_uri, body.into_bytes()).await.unwrap();
    CreateJob {
        plan: JobPlan {
            job_name: job_name.to_owned(),
            model_id: HAIKU.to_owned(),
            input_uri,
            output_uri: format!("s3://{BUCKET}/batch/output/"),
            records: records as u64,
            planned_at: SystemTime::now(),
        },
        model_id: HAIKU.to_owned(),
        role_arn: ROLE.to_owned(),
        invocation_type: Some("Converse".to_owned()),
        timeout_hours: Some(24),
    }
}

/// Describes the job until it ends; every status seen, in order, without repeats.
async fn walk(remote: &Remote, job_arn: &str) -> Vec<JobStatus> {
    let started = Instant::now();
    let mut seen = Vec::new();
    loop {
        let job = remote.jobs.describe(job_arn).await.unwrap();
        if seen.last() != Some(&job.status) {
            seen.push(job.status);
        }
        if job.status.is_terminal() {
            return seen;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "job did not end: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn remote_label<T>(result: Result<T, BatchError>) -> (&'static str, &'static str, ErrorLabel) {
    match result {
        Err(BatchError::Remote { service, operation, label, .. }) => (service, operation, label),
        Err(other) => panic!("expected a remote error, got {other:?}"),
        Ok(_) => panic!("expected a remote error, got a success"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_is_idempotent_by_job_name_and_describe_walks_the_job_to_completed() {
    let remote = remote(|_| {}).await;
    let job = planned(&remote, "gw-20261202141500-0123456789ab", 4).await;
    let arn = remote.jobs.create(&job).await.unwrap();
    let again = remote.jobs.create(&job).await.unwrap();
    assert_eq!(again, arn);
    let listed = remote.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert_eq!(listed.invocation_job_summaries().len(), 1);
    let created = &listed.invocation_job_summaries()[0];
    assert_eq!(created.client_request_token(), Some(job.plan.job_name.as_str()));
    assert_eq!(created.model_invocation_type().map(|t| t.as_str()), Some("Converse"));
    assert_eq!(created.timeout_duration_in_hours(), Some(24));

    let seen = walk(&remote, &arn).await;
    assert!(!seen[0].is_terminal(), "{seen:?}");
    assert_eq!(seen.last(), Some(&JobStatus::Completed), "{seen:?}");
    let described = remote.jobs.describe(&arn).await.unwrap();
    assert_eq!(described.job_name, job.plan.job_name);
    assert_eq!(described.job_arn, arn);
    assert_eq!(described.model_id, HAIKU);
    assert_eq!(described.output_uri, job.plan.output_uri);
    assert_eq!(described.failure_message, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_output_is_listed_and_streamed_and_a_missing_object_is_none() {
    let remote = remote(|_| {}).await;
    let job = planned(&remote, "gw-20261202141501-abcdefabcdef", 5).await;
    let arn = remote.jobs.create(&job).await.unwrap();
    assert_eq!(walk(&remote, &arn).await.last(), Some(&JobStatus::Completed));

    let job_id = arn.rsplit('/').next().unwrap();
    let output = remote.files.list(&job.plan.output_uri).await.unwrap();
    let out_uri = format!("{}{job_id}/{}.jsonl.out", job.plan.output_uri, job.plan.job_name);
    let manifest_uri = format!("{}{job_id}/manifest.json.out", job.plan.output_uri);
    assert_eq!(output, [out_uri.clone(), manifest_uri]);

    // Line by line as it arrives, through the completion's own reader.
    let mut reader = AsyncOutputReader::new(remote.files.open(&out_uri).await.unwrap().unwrap());
    let mut answered = BTreeSet::new();
    while let Some(outcome) = reader.next_outcome().await.unwrap() {
        match outcome {
            RecordOutcome::Answered { record_id, response, .. } => {
                assert!(response.usage.output_tokens > 0, "{record_id}");
                answered.insert(record_id);
            }
            other => panic!("{other:?}"),
        }
    }
    let expected: BTreeSet<String> = (0..5).map(|i| format!("req-{}-{i}-1", job.plan.job_name)).collect();
    assert_eq!(answered, expected);

    // The input reads back as written, one line at a time.
    let mut input = remote.files.open(&job.plan.input_uri).await.unwrap().unwrap().lines();
    let mut lines = 0;
    while let Some(line) = input.next_line().await.unwrap() {
        let record: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(record["recordId"].as_str().unwrap().starts_with("req-"));
        lines += 1;
    }
    assert_eq!(lines, 5);

    assert!(remote.files.open(&format!("s3://{BUCKET}/batch/output/nothing.jsonl.out")).await.unwrap().is_none());
    assert!(remote.files.list(&format!("s3://{BUCKET}/batch/nothing/")).await.unwrap().is_empty());
    let missing_bucket = remote.files.open("s3://no-such-bucket/key").await;
    assert_eq!(remote_label(missing_bucket), ("s3", "GetObject", ErrorLabel::NotFound));
    for bad in ["https://bucket/key", "s3:///key", &format!("s3://{BUCKET}")] {
        assert_eq!(
            remote_label(remote.files.write(bad, Vec::new()).await),
            ("s3", "PutObject", ErrorLabel::InvalidRequest)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_job_quota_is_quota_exhausted_and_other_refusals_keep_their_labels() {
    let remote = remote(|c| {
        c.batch.submitted_seconds = 30.0;
        c.batch.max_jobs_per_model = 1;
    })
    .await;
    let first = planned(&remote, "gw-20261202141502-000000000001", 3).await;
    remote.jobs.create(&first).await.unwrap();
    let second = planned(&remote, "gw-20261202141502-000000000002", 3).await;
    let refused = remote.jobs.create(&second).await;
    assert_eq!(remote_label(refused), ("bedrock", "CreateModelInvocationJob", ErrorLabel::QuotaExhausted));

    let mut too_short = second.clone();
    too_short.timeout_hours = Some(2);
    assert_eq!(
        remote_label(remote.jobs.create(&too_short).await),
        ("bedrock", "CreateModelInvocationJob", ErrorLabel::InvalidRequest)
    );
    let unknown = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/nosuchjob123";
    assert_eq!(
        remote_label(remote.jobs.describe(unknown).await),
        ("bedrock", "GetModelInvocationJob", ErrorLabel::NotFound)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_made_under_another_token_is_found_by_its_name_unless_it_reads_other_input() {
    let remote = remote(|c| c.batch.submitted_seconds = 30.0).await;
    let job = planned(&remote, "gw-20261202141503-fedcbafedcba", 3).await;
    // As if an earlier try's token had been forgotten by Bedrock: the name is taken by a job
    // whose token is not the name.
    let earlier = remote
        .bedrock
        .create_model_invocation_job()
        .job_name(&job.plan.job_name)
        .client_request_token("an-earlier-token")
        .role_arn(ROLE)
        .model_id(HAIKU)
        .input_data_config(aws_sdk_bedrock::types::ModelInvocationJobInputDataConfig::S3InputDataConfig(
            aws_sdk_bedrock::types::ModelInvocationJobS3InputDataConfig::builder()
                .s3_uri(&job.plan.input_uri)
                .build()
                .unwrap(),
        ))
        .output_data_config(aws_sdk_bedrock::types::ModelInvocationJobOutputDataConfig::S3OutputDataConfig(
            aws_sdk_bedrock::types::ModelInvocationJobS3OutputDataConfig::builder()
                .s3_uri(&job.plan.output_uri)
                .build()
                .unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(remote.jobs.create(&job).await.unwrap(), earlier.job_arn());

    // The same name over another input is somebody else's job: a conflict, never retried.
    let mut other = job.clone();
    other.plan.input_uri = format!("s3://{BUCKET}/batch/input/elsewhere.jsonl");
    assert_eq!(
        remote_label(remote.jobs.create(&other).await),
        ("bedrock", "CreateModelInvocationJob", ErrorLabel::InvalidRequest)
    );
    let listed = remote.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert_eq!(listed.invocation_job_summaries().len(), 1);
}
