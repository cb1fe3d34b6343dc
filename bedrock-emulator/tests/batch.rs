//! The batch control plane through the real `aws-sdk-bedrock` client, with input, output and
//! events in a moto server of the test's own.

#![cfg(test)]

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_bedrock::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_bedrock::error::ProvideErrorMetadata;
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig, ModelInvocationJobS3InputDataConfig,
    ModelInvocationJobS3OutputDataConfig, ModelInvocationJobStatus, ModelInvocationType,
};
use bedrock_emulator::testing::{MotoServer, fast_batch_config};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};
use serde_json::{Value, json};

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const ROLE: &str = "arn:aws:iam::123456789012:role/BedrockBatch";

fn sdk_config(url: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new("test", "test", None, None, "test")))
        .endpoint_url(url)
        .build()
}

/// Everything a test needs: moto with an input and an output bucket, an SQS queue that a
/// rule on the default bus fills with Bedrock's batch events, and the emulator pointed at it.
struct Stack {
    moto: MotoServer,
    emulator: RunningEmulator,
    bedrock: aws_sdk_bedrock::Client,
    s3: aws_sdk_s3::Client,
    queue_url: String,
}

/// moto's SQS over its JSON protocol (no SQS client is built for the emulator).
fn sqs(moto: &MotoServer, action: &str, body: Value) -> Value {
    let mut response = ureq::post(moto.url())
        .header("X-Amz-Target", &format!("AmazonSQS.{action}"))
        .header("Content-Type", "application/x-amz-json-1.0")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0",
        )
        .send(body.to_string())
        .unwrap();
    let text = response.body_mut().read_to_string().unwrap();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn stack(configure: impl FnOnce(&mut EmulatorConfig)) -> Stack {
    stack_on(MotoServer::start().unwrap(), configure).await
}

async fn stack_on(moto: MotoServer, configure: impl FnOnce(&mut EmulatorConfig)) -> Stack {
    let mut config = fast_batch_config(&moto);
    configure(&mut config);
    let emulator = bedrock_emulator::spawn(config).await.unwrap();
    let bedrock = aws_sdk_bedrock::Client::new(&sdk_config(&emulator.url()));
    let s3_config = aws_sdk_s3::config::Builder::from(&sdk_config(moto.url())).force_path_style(true).build();
    let s3 = aws_sdk_s3::Client::from_conf(s3_config);
    for bucket in ["batch-in", "batch-out"] {
        s3.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let queue = sqs(&moto, "CreateQueue", json!({"QueueName": "bedrock-events"}));
    let queue_url = queue["QueueUrl"].as_str().unwrap().to_owned();
    let events = aws_sdk_eventbridge::Client::new(&sdk_config(moto.url()));
    events
        .put_rule()
        .name("bedrock-batch")
        .event_pattern(
            json!({"source": ["aws.bedrock"], "detail-type": ["Batch Inference Job State Change"]}).to_string(),
        )
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("bedrock-batch")
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn("arn:aws:sqs:us-east-1:123456789012:bedrock-events")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    Stack { moto, emulator, bedrock, s3, queue_url }
}

impl Stack {
    async fn put(&self, key: &str, lines: &[Value]) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.s3.put_object().bucket("batch-in").key(key).body(body.into_bytes().into()).send().await.unwrap();
    }

    async fn read(&self, key: &str) -> String {
        let object = self.s3.get_object().bucket("batch-out").key(key).send().await.unwrap();
        String::from_utf8(object.body.collect().await.unwrap().into_bytes().to_vec()).unwrap()
    }

    async fn create(&self, name: &str, input: &str, kind: ModelInvocationType) -> String {
        self.create_request(name, input, kind).send().await.unwrap().job_arn().to_owned()
    }

    fn create_request(
        &self,
        name: &str,
        input: &str,
        kind: ModelInvocationType,
    ) -> aws_sdk_bedrock::operation::create_model_invocation_job::builders::CreateModelInvocationJobFluentBuilder {
        let input =
            ModelInvocationJobS3InputDataConfig::builder().s3_uri(format!("s3://batch-in/{input}")).build().unwrap();
        let output = ModelInvocationJobS3OutputDataConfig::builder().s3_uri("s3://batch-out/results/").build().unwrap();
        self.bedrock
            .create_model_invocation_job()
            .job_name(name)
            .role_arn(ROLE)
            .model_id(HAIKU)
            .model_invocation_type(kind)
            .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
            .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(output))
    }

    /// Polls the job until it ends; returns every status seen, in order, without repeats.
    async fn wait_end(
        &self,
        arn: &str,
    ) -> (Vec<String>, aws_sdk_bedrock::operation::get_model_invocation_job::GetModelInvocationJobOutput) {
        let started = Instant::now();
        let mut seen: Vec<String> = Vec::new();
        loop {
            let job = self.bedrock.get_model_invocation_job().job_identifier(arn).send().await.unwrap();
            let status = job.status().unwrap().as_str().to_owned();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            let terminal = matches!(
                job.status(),
                Some(
                    ModelInvocationJobStatus::Completed
                        | ModelInvocationJobStatus::PartiallyCompleted
                        | ModelInvocationJobStatus::Failed
                        | ModelInvocationJobStatus::Stopped
                        | ModelInvocationJobStatus::Expired
                )
            );
            if terminal {
                return (seen, job);
            }
            assert!(started.elapsed() < Duration::from_secs(30), "job did not end: {seen:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The `detail` of the first `count` events in the queue. A job's last event may still be
    /// on its way when Get already reports the end, so this waits for them (5 s at most).
    async fn events(&self, count: usize) -> Vec<Value> {
        let mut details = Vec::new();
        let started = Instant::now();
        while details.len() < count && started.elapsed() < Duration::from_secs(5) {
            let batch = sqs(
                &self.moto,
                "ReceiveMessage",
                json!({"QueueUrl": self.queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}),
            );
            let messages = batch["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for message in messages {
                let event: Value = serde_json::from_str(message["Body"].as_str().unwrap()).unwrap();
                assert_eq!(event["source"], "aws.bedrock");
                assert_eq!(event["detail-type"], "Batch Inference Job State Change");
                details.push(event["detail"].clone());
                sqs(
                    &self.moto,
                    "DeleteMessage",
                    json!({"QueueUrl": self.queue_url, "ReceiptHandle": message["ReceiptHandle"]}),
                );
            }
        }
        details
    }
}

fn converse_record(id: &str, text: &str) -> Value {
    json!({"recordId": id, "modelInput": {
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 64}
    }})
}

fn invoke_record(id: &str, text: &str) -> Value {
    json!({"recordId": id, "modelInput": {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]
    }})
}

fn job_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap()
}

fn lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converse_job_walks_every_status_to_completed_with_output_manifest_and_events() {
    let stack = stack(|_| {}).await;
    let records: Vec<Value> =
        (0..4).map(|i| converse_record(&format!("r{i}"), &format!("Name {i} uses of a cache."))).collect();
    stack.put("jobs/prompts.jsonl", &records).await;
    let arn = stack.create("nightly-1", "jobs/prompts.jsonl", ModelInvocationType::Converse).await;
    assert!(arn.starts_with("arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/"), "{arn}");

    let (seen, job) = stack.wait_end(&arn).await;
    assert_eq!(seen.first().map(String::as_str), Some("Submitted"));
    assert_eq!(seen.last().map(String::as_str), Some("Completed"));
    assert_eq!(job.total_record_count(), Some(4));
    assert_eq!(job.processed_record_count(), Some(4));
    assert_eq!(job.success_record_count(), Some(4));
    assert_eq!(job.error_record_count(), Some(0));
    assert!(job.end_time().is_some());
    assert_eq!(job.model_invocation_type(), Some(&ModelInvocationType::Converse));

    let out = lines(&stack.read(&format!("results/{}/prompts.jsonl.out", job_id(&arn))).await);
    assert_eq!(out.len(), 4);
    // The batch answer is the online answer to the same request.
    let runtime = aws_sdk_bedrockruntime::Client::new(&sdk_config(&stack.emulator.url()));
    let online = runtime
        .converse()
        .model_id(HAIKU)
        .messages(
            aws_sdk_bedrockruntime::types::Message::builder()
                .role(aws_sdk_bedrockruntime::types::ConversationRole::User)
                .content(aws_sdk_bedrockruntime::types::ContentBlock::Text("Name 2 uses of a cache.".into()))
                .build()
                .unwrap(),
        )
        .inference_config(aws_sdk_bedrockruntime::types::InferenceConfiguration::builder().max_tokens(64).build())
        .send()
        .await
        .unwrap();
    let online_text = online.output().unwrap().as_message().unwrap().content()[0].as_text().unwrap().clone();
    let line = out.iter().find(|l| l["recordId"] == "r2").unwrap();
    assert_eq!(line["modelInput"], records[2]["modelInput"]);
    assert_eq!(line["modelOutput"]["output"]["message"]["content"][0]["text"], online_text.as_str());
    assert_eq!(line["modelOutput"]["usage"]["outputTokens"], online.usage().unwrap().output_tokens());

    let manifest: Value =
        serde_json::from_str(&stack.read(&format!("results/{}/manifest.json.out", job_id(&arn))).await).unwrap();
    assert_eq!(manifest["totalRecordCount"], 4);
    assert_eq!(manifest["successRecordCount"], 4);
    assert_eq!(manifest["errorRecordCount"], 0);
    let output_tokens: u64 = out.iter().map(|l| l["modelOutput"]["usage"]["outputTokens"].as_u64().unwrap()).sum();
    assert_eq!(manifest["outputTokenCount"], output_tokens);
    assert!(manifest["inputTokenCount"].as_u64().unwrap() > 0);

    let events = stack.events(5).await;
    let statuses: Vec<&str> = events.iter().map(|d| d["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["Submitted", "Validating", "Scheduled", "InProgress", "Completed"]);
    let last = events.last().unwrap();
    assert_eq!(last["batchJobArn"], arn.as_str());
    assert_eq!(last["batchJobName"], "nightly-1");
    assert_eq!(last["batchModelId"], HAIKU);
    assert_eq!(last["failureMessage"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_below_the_minimum_record_count_fails_validation() {
    let stack = stack(|c| c.batch.min_records_per_job = 100).await;
    let records: Vec<Value> = (0..5).map(|i| invoke_record(&format!("r{i}"), "hello")).collect();
    stack.put("small.jsonl", &records).await;
    let arn = stack.create("too-small", "small.jsonl", ModelInvocationType::InvokeModel).await;
    let (seen, job) = stack.wait_end(&arn).await;
    assert_eq!(seen.last().map(String::as_str), Some("Failed"), "{seen:?}");
    let message = job.message().unwrap();
    assert!(message.contains("5 records") && message.contains("minimum of 100"), "{message}");
    let events = stack.events(3).await;
    let failed = events.iter().find(|d| d["status"] == "Failed").unwrap();
    assert_eq!(failed["failureMessage"], message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_share_gives_partially_completed_with_per_record_errors() {
    let stack = stack(|c| c.batch.record_failure_rate = 0.5).await;
    let mut records: Vec<Value> = (0..20).map(|i| invoke_record(&format!("r{i}"), &format!("question {i}"))).collect();
    records.push(
        json!({"recordId": "bad", "modelInput": {"anthropic_version": "bedrock-2023-05-31", "messages": "nope"}}),
    );
    stack.put("mixed.jsonl", &records).await;
    let arn = stack.create("mixed", "mixed.jsonl", ModelInvocationType::InvokeModel).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::PartiallyCompleted));
    let out = lines(&stack.read(&format!("results/{}/mixed.jsonl.out", job_id(&arn))).await);
    assert_eq!(out.len(), 21);
    let errors: Vec<&Value> = out.iter().filter(|l| l.get("error").is_some()).collect();
    let successes: Vec<&Value> = out.iter().filter(|l| l.get("modelOutput").is_some()).collect();
    assert_eq!(errors.len() + successes.len(), 21);
    assert!((3..=18).contains(&errors.len()), "{}", errors.len());
    assert_eq!(job.error_record_count(), Some(errors.len() as i64));
    assert_eq!(job.success_record_count(), Some(successes.len() as i64));
    for error in &errors {
        assert!(error["error"]["errorCode"].is_u64());
        assert!(error["error"]["errorMessage"].is_string());
        assert!(error.get("modelOutput").is_none());
    }
    let bad = out.iter().find(|l| l["recordId"] == "bad").unwrap();
    assert_eq!(bad["error"]["errorCode"], 400);
    for success in &successes {
        assert_eq!(success["modelOutput"]["type"], "message");
        assert!(success["modelOutput"]["usage"]["output_tokens"].as_u64().unwrap() > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_can_be_stopped_and_keeps_what_it_did() {
    let stack = stack(|c| c.batch.record_seconds = 0.1).await;
    let records: Vec<Value> = (0..50).map(|i| converse_record(&format!("r{i}"), "long job")).collect();
    stack.put("long.jsonl", &records).await;
    let arn = stack.create("long", "long.jsonl", ModelInvocationType::Converse).await;
    let started = Instant::now();
    loop {
        let job = stack.bedrock.get_model_invocation_job().job_identifier(&arn).send().await.unwrap();
        if job.status() == Some(&ModelInvocationJobStatus::InProgress) && job.processed_record_count() >= Some(2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stack.bedrock.stop_model_invocation_job().job_identifier(&arn).send().await.unwrap();
    let (seen, job) = stack.wait_end(&arn).await;
    // Polling may miss the short Stopping state on a loaded machine; nothing else may show.
    assert!(seen.iter().all(|s| s == "Stopping" || s == "Stopped") && !seen.is_empty(), "{seen:?}");
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Stopped));
    let processed = job.processed_record_count().unwrap();
    assert!((2..50).contains(&processed), "{processed}");
    let out = lines(&stack.read(&format!("results/{}/long.jsonl.out", job_id(&arn))).await);
    assert_eq!(out.len() as i64, processed);

    // A job that has ended cannot be stopped again.
    let err = stack.bedrock.stop_model_invocation_job().job_identifier(&arn).send().await.unwrap_err();
    assert_eq!(err.code(), Some("ConflictException"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_list_and_the_documented_errors() {
    let stack = stack(|c| c.batch.submitted_seconds = 30.0).await;
    stack.put("a.jsonl", &[invoke_record("r0", "x")]).await;
    let first = stack.create("alpha-job", "a.jsonl", ModelInvocationType::InvokeModel).await;
    let second = stack.create("beta-job", "a.jsonl", ModelInvocationType::InvokeModel).await;

    // By ARN or by ID.
    let got = stack.bedrock.get_model_invocation_job().job_identifier(job_id(&first)).send().await.unwrap();
    assert_eq!(got.job_arn(), first);
    assert_eq!(got.job_name(), Some("alpha-job"));
    assert_eq!(got.role_arn(), ROLE);
    assert_eq!(got.timeout_duration_in_hours(), Some(168));
    assert!(got.job_expiration_time().is_some());

    let all = stack.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert_eq!(all.invocation_job_summaries().len(), 2);
    let named = stack.bedrock.list_model_invocation_jobs().name_contains("beta").send().await.unwrap();
    let arns: Vec<&str> = named.invocation_job_summaries().iter().map(|s| s.job_arn()).collect();
    assert_eq!(arns, [second.as_str()]);
    let page = stack.bedrock.list_model_invocation_jobs().max_results(1).send().await.unwrap();
    assert_eq!(page.invocation_job_summaries().len(), 1);
    let rest = stack
        .bedrock
        .list_model_invocation_jobs()
        .max_results(1)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.invocation_job_summaries().len(), 1);
    assert_ne!(rest.invocation_job_summaries()[0].job_arn(), page.invocation_job_summaries()[0].job_arn());
    assert!(rest.next_token().is_none());
    let completed = stack
        .bedrock
        .list_model_invocation_jobs()
        .status_equals(ModelInvocationJobStatus::Completed)
        .send()
        .await
        .unwrap();
    assert!(completed.invocation_job_summaries().is_empty());

    let missing = "arn:aws:bedrock:us-east-1:123456789012:model-invocation-job/nosuchjob123";
    let err = stack.bedrock.get_model_invocation_job().job_identifier(missing).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_resource_not_found_exception(), "{err:?}");
    let err = stack.bedrock.stop_model_invocation_job().job_identifier(missing).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_resource_not_found_exception(), "{err:?}");

    let err = stack.create_request("-bad name", "a.jsonl", ModelInvocationType::Converse).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_validation_exception(), "{err:?}");
    let err = stack
        .create_request("unknown-model", "a.jsonl", ModelInvocationType::Converse)
        .model_id("gpt-4o")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_validation_exception(), "{err:?}");
    let err = stack
        .create_request("short-timeout", "a.jsonl", ModelInvocationType::Converse)
        .timeout_duration_in_hours(2)
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_validation_exception(), "{err:?}");

    // A retried create with the same client token is the same job.
    let again = stack.create_request("gamma", "a.jsonl", ModelInvocationType::Converse).client_request_token("tok-1");
    let a = again.clone().send().await.unwrap();
    let b = again.send().await.unwrap();
    assert_eq!(a.job_arn(), b.job_arn());

    // Stopping a job that has not started ends it at once.
    stack.bedrock.stop_model_invocation_job().job_identifier(&first).send().await.unwrap();
    let (_, job) = stack.wait_end(&first).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Stopped));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_per_model_beyond_the_quota_are_refused() {
    let stack = stack(|c| {
        c.batch.submitted_seconds = 30.0;
        c.batch.max_jobs_per_model = 1;
    })
    .await;
    stack.put("a.jsonl", &[invoke_record("r0", "x")]).await;
    stack.create("one", "a.jsonl", ModelInvocationType::InvokeModel).await;
    let err = stack.create_request("two", "a.jsonl", ModelInvocationType::InvokeModel).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_service_quota_exceeded_exception(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_scheduled_past_its_timeout_expires() {
    let stack = stack(|c| {
        c.batch.hour_seconds = 0.01;
        c.batch.scheduled_seconds = 5.0;
    })
    .await;
    let records: Vec<Value> = (0..3).map(|i| invoke_record(&format!("r{i}"), "x")).collect();
    stack.put("a.jsonl", &records).await;
    let arn = stack.create("late", "a.jsonl", ModelInvocationType::InvokeModel).await;
    let (seen, _) = stack.wait_end(&arn).await;
    assert_eq!(seen.last().map(String::as_str), Some("Expired"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_duplicates_and_reordering_reach_eventbridge() {
    let stack = stack(|c| {
        c.batch.event_duplicate_rate = 1.0;
        c.batch.event_reorder_rate = 1.0;
    })
    .await;
    let records: Vec<Value> = (0..3).map(|i| invoke_record(&format!("r{i}"), "x")).collect();
    stack.put("a.jsonl", &records).await;
    let arn = stack.create("noisy", "a.jsonl", ModelInvocationType::InvokeModel).await;
    stack.wait_end(&arn).await;
    let events = stack.events(10).await;
    let statuses: Vec<&str> = events.iter().map(|d| d["status"].as_str().unwrap()).collect();
    // Every event twice, and each held-back one after the next.
    assert_eq!(
        statuses,
        [
            "Validating",
            "Validating",
            "Submitted",
            "Submitted",
            "InProgress",
            "InProgress",
            "Scheduled",
            "Scheduled",
            "Completed",
            "Completed"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_runs_every_jsonl_file_and_invoke_model_records_answer_as_invoke_model_does() {
    let stack = stack(|_| {}).await;
    stack.put("day/a.jsonl", &[invoke_record("a0", "first file"), invoke_record("a1", "first file again")]).await;
    stack.put("day/b.jsonl", &[invoke_record("b0", "second file")]).await;
    stack.put("day/notes.txt", &[json!({"not": "input"})]).await;
    let arn = stack.create("by-prefix", "day/", ModelInvocationType::InvokeModel).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Completed), "{:?}", job.message());
    assert_eq!(job.total_record_count(), Some(3));
    let a = lines(&stack.read(&format!("results/{}/a.jsonl.out", job_id(&arn))).await);
    let b = lines(&stack.read(&format!("results/{}/b.jsonl.out", job_id(&arn))).await);
    assert_eq!((a.len(), b.len()), (2, 1));

    let runtime = aws_sdk_bedrockruntime::Client::new(&sdk_config(&stack.emulator.url()));
    let body = invoke_record("b0", "second file")["modelInput"].to_string();
    let online = runtime
        .invoke_model()
        .model_id(HAIKU)
        .content_type("application/json")
        .body(aws_sdk_bedrockruntime::primitives::Blob::new(body))
        .send()
        .await
        .unwrap();
    let online: Value = serde_json::from_slice(online.body().as_ref()).unwrap();
    assert_eq!(b[0]["modelOutput"]["content"], online["content"]);
    assert_eq!(b[0]["modelOutput"]["usage"], online["usage"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_size_limit_or_a_missing_input_fails_validation() {
    let stack = stack(|c| c.batch.max_file_bytes = 200).await;
    let records: Vec<Value> = (0..5).map(|i| invoke_record(&format!("r{i}"), "a prompt long enough")).collect();
    stack.put("big.jsonl", &records).await;
    let arn = stack.create("too-big", "big.jsonl", ModelInvocationType::InvokeModel).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Failed));
    assert!(job.message().unwrap().contains("maximum of 200 bytes per file"), "{:?}", job.message());

    let arn = stack.create("nothing-there", "missing/", ModelInvocationType::InvokeModel).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Failed));
    assert!(job.message().unwrap().contains("No .jsonl input files"), "{:?}", job.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_job_name_is_a_conflict_unless_the_call_retries_the_first_token() {
    let stack = stack(|c| c.batch.submitted_seconds = 30.0).await;
    stack.put("a.jsonl", &[invoke_record("r0", "x")]).await;
    let first = stack
        .create_request("nightly", "a.jsonl", ModelInvocationType::InvokeModel)
        .client_request_token("token-1")
        .send()
        .await
        .unwrap();
    let retried = stack
        .create_request("nightly", "a.jsonl", ModelInvocationType::InvokeModel)
        .client_request_token("token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(retried.job_arn(), first.job_arn());

    let other_token = stack
        .create_request("nightly", "a.jsonl", ModelInvocationType::InvokeModel)
        .client_request_token("token-2")
        .send()
        .await
        .unwrap_err();
    assert_eq!(other_token.code(), Some("ConflictException"), "{other_token:?}");
    assert!(other_token.message().unwrap().contains("nightly"), "{other_token:?}");
    // Without a token of the caller's the SDK sends a fresh one: a new request, refused too.
    let no_token =
        stack.create_request("nightly", "a.jsonl", ModelInvocationType::InvokeModel).send().await.unwrap_err();
    assert_eq!(no_token.code(), Some("ConflictException"), "{no_token:?}");

    // An ended job keeps its name.
    stack.bedrock.stop_model_invocation_job().job_identifier(first.job_arn()).send().await.unwrap();
    stack.wait_end(first.job_arn()).await;
    let after_end =
        stack.create_request("nightly", "a.jsonl", ModelInvocationType::InvokeModel).send().await.unwrap_err();
    assert_eq!(after_end.code(), Some("ConflictException"), "{after_end:?}");

    let all = stack.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert_eq!(all.invocation_job_summaries().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_token_outside_bedrock_s_pattern_is_a_validation_error() {
    let stack = stack(|c| c.batch.submitted_seconds = 30.0).await;
    for token in ["has.dot", "-leading", "trailing-", &"a".repeat(257)] {
        let err = stack
            .create_request("tokens", "a.jsonl", ModelInvocationType::InvokeModel)
            .client_request_token(token)
            .send()
            .await
            .unwrap_err();
        assert!(err.as_service_error().unwrap().is_validation_exception(), "{token}: {err:?}");
    }
    let all = stack.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert!(all.invocation_job_summaries().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_forgets_every_batch_job_and_frees_their_names() {
    let stack = stack(|c| c.batch.submitted_seconds = 30.0).await;
    stack.put("a.jsonl", &[invoke_record("r0", "x")]).await;
    let arn = stack.create("before-reset", "a.jsonl", ModelInvocationType::InvokeModel).await;

    let url = format!("{}/_emulator/reset", stack.emulator.url());
    let status =
        tokio::task::spawn_blocking(move || ureq::post(&url).send_empty().unwrap().status().as_u16()).await.unwrap();
    assert_eq!(status, 200);

    let err = stack.bedrock.get_model_invocation_job().job_identifier(&arn).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_resource_not_found_exception(), "{err:?}");
    let all = stack.bedrock.list_model_invocation_jobs().send().await.unwrap();
    assert!(all.invocation_job_summaries().is_empty());
    let again = stack.create("before-reset", "a.jsonl", ModelInvocationType::InvokeModel).await;
    assert_ne!(again, arn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_ids_are_any_string_and_come_back_untouched() {
    let stack = stack(|_| {}).await;
    let ids = ["req-7f3a9c-1", "a.b/c d", "zürich#2", "11CHARSXXXX"];
    let mut records: Vec<Value> = ids.iter().map(|id| converse_record(id, "hello")).collect();
    records.push(json!({"modelInput": converse_record("", "no id")["modelInput"]}));
    stack.put("ids.jsonl", &records).await;
    let arn = stack.create("record-ids", "ids.jsonl", ModelInvocationType::Converse).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Completed), "{:?}", job.message());
    let out = lines(&stack.read(&format!("results/{}/ids.jsonl.out", job_id(&arn))).await);
    let returned: Vec<&str> = out.iter().map(|l| l["recordId"].as_str().unwrap()).collect();
    assert_eq!(&returned[..4], ids);
    // Bedrock names a record that came without an ID.
    let added = returned[4];
    assert!(!added.is_empty() && added.chars().all(|c| c.is_ascii_alphanumeric()), "{added}");
    assert!(out.iter().all(|l| l.get("modelOutput").is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_object_without_the_jsonl_extension_fails_validation() {
    let stack = stack(|_| {}).await;
    let records: Vec<Value> = (0..3).map(|i| invoke_record(&format!("r{i}"), "x")).collect();
    stack.put("prompts.json", &records).await;
    let arn = stack.create("wrong-extension", "prompts.json", ModelInvocationType::InvokeModel).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Failed));
    assert!(job.message().unwrap().contains(".jsonl extension"), "{:?}", job.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_larger_than_a_part_goes_up_in_parts_and_reads_back_whole() {
    // moto accepts small parts when told to; S3 wants 5 MiB.
    let moto = MotoServer::start_with_env(&[("S3_UPLOAD_PART_MIN_SIZE", "256")]).unwrap();
    let stack = stack_on(moto, |c| c.batch.output_part_bytes = 1024).await;
    let records: Vec<Value> = (0..12).map(|i| converse_record(&format!("r{i}"), &format!("part {i}"))).collect();
    stack.put("parts.jsonl", &records).await;
    let arn = stack.create("in-parts", "parts.jsonl", ModelInvocationType::Converse).await;
    let (_, job) = stack.wait_end(&arn).await;
    assert_eq!(job.status(), Some(&ModelInvocationJobStatus::Completed), "{:?}", job.message());

    let key = format!("results/{}/parts.jsonl.out", job_id(&arn));
    let head = stack.s3.head_object().bucket("batch-out").key(&key).send().await.unwrap();
    // A multipart object's ETag ends in `-<parts>`.
    let etag = head.e_tag().unwrap().trim_matches('"');
    let parts: u32 = etag.rsplit_once('-').map(|(_, n)| n.parse().unwrap()).unwrap_or(1);
    assert!(parts > 1, "{etag}");
    let out = lines(&stack.read(&key).await);
    let ids: Vec<&str> = out.iter().map(|l| l["recordId"].as_str().unwrap()).collect();
    let expected: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    assert_eq!(ids, expected);
    assert!(out.iter().all(|l| l.get("modelOutput").is_some()));
}
