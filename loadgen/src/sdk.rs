//! Converse through the AWS SDK, and the strategies that decide when to call it.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::ConverseError;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, InferenceConfiguration, Message};
use gateway_core::catalog::ModelSpec;
use gateway_core::cost::Usage;

use crate::Job;
use crate::summary::{Outcome, Record};

/// A failed call, in the load's vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    Throttled,
    Timeout,
    Other,
}

impl CallError {
    pub fn label(self) -> &'static str {
        match self {
            CallError::Throttled => "throttled",
            CallError::Timeout => "timeout",
            CallError::Other => "error",
        }
    }

    pub fn outcome(self) -> Outcome {
        match self {
            CallError::Throttled => Outcome::LostThrottled,
            CallError::Timeout => Outcome::LostTimeout,
            CallError::Other => Outcome::LostError,
        }
    }
}

/// The configured SDK loader every client of this process starts from: the local endpoint,
/// fixed test credentials, one region.
pub fn sdk_loader(endpoint: &str) -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(aws_sdk_bedrockruntime::config::Credentials::new("test", "test", None, None, "loadgen"))
        .endpoint_url(endpoint)
}

/// A Bedrock Runtime client with `retry`; `patience` bounds each operation, so no call
/// outlives its caller.
pub async fn bedrock(endpoint: &str, retry: RetryConfig, patience: Duration) -> aws_sdk_bedrockruntime::Client {
    let sdk = sdk_loader(endpoint).load().await;
    let config = aws_sdk_bedrockruntime::config::Builder::from(&sdk)
        .retry_config(retry)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_timeout(patience)
                .operation_attempt_timeout(patience.min(Duration::from_secs(30)))
                .build(),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(config)
}

/// One Converse call of `job`; on success, the usage as the gateway counts it.
pub async fn converse(client: &aws_sdk_bedrockruntime::Client, model: &str, job: &Job) -> Result<Usage, CallError> {
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(job.prompt.prompt.clone()))
        .build()
        .map_err(|_| CallError::Other)?;
    let max_tokens = i32::try_from(job.prompt.max_tokens).unwrap_or(i32::MAX);
    let sent = client
        .converse()
        .model_id(model)
        .messages(message)
        .inference_config(InferenceConfiguration::builder().max_tokens(max_tokens).build())
        .send()
        .await;
    match sent {
        Ok(output) => {
            let tokens = |n: i32| u64::try_from(n).unwrap_or(0);
            let usage = output.usage();
            let cache_write = usage.and_then(|u| u.cache_write_input_tokens()).map(tokens).unwrap_or(0);
            Ok(Usage {
                input_tokens: usage.map(|u| tokens(u.input_tokens())).unwrap_or(0),
                output_tokens: usage.map(|u| tokens(u.output_tokens())).unwrap_or(0),
                cache_read_input_tokens: usage.and_then(|u| u.cache_read_input_tokens()).map(tokens).unwrap_or(0),
                cache_write_input_tokens: cache_write,
                cache_write_1h_input_tokens: 0,
            })
        }
        Err(error) => Err(classify(&error)),
    }
}

fn classify(error: &SdkError<ConverseError>) -> CallError {
    match error {
        SdkError::TimeoutError(_) => CallError::Timeout,
        SdkError::ServiceError(service) => match service.err() {
            ConverseError::ThrottlingException(_) => CallError::Throttled,
            ConverseError::ModelTimeoutException(_) => CallError::Timeout,
            other if other.code() == Some("ThrottlingException") => CallError::Throttled,
            _ => CallError::Other,
        },
        _ => CallError::Other,
    }
}

/// The SDK strategies: the SDK's own retries decide everything.
#[derive(Debug, Clone)]
pub struct SdkCaller {
    client: aws_sdk_bedrockruntime::Client,
    model: String,
    spec: Arc<ModelSpec>,
}

impl SdkCaller {
    pub async fn new(retry: RetryConfig, bedrock_url: &str, model: String, spec: Arc<ModelSpec>) -> SdkCaller {
        // The SDK's retries are what these strategies measure; the patience only stops a hung call.
        let client = bedrock(bedrock_url, retry, Duration::from_secs(120)).await;
        SdkCaller { client, model, spec }
    }

    pub async fn send(&self, job: &Job, mut record: Record) -> Record {
        record.calls = 1;
        let called = tokio::time::timeout(job.patience, converse(&self.client, &self.model, job)).await;
        match called {
            Ok(Ok(usage)) => {
                record.outcome = Outcome::Answered;
                record.settled_tokens = self.spec.quota_tokens(&usage);
            }
            Ok(Err(error)) => {
                record.outcome = error.outcome();
                record.throttled_calls = u32::from(error == CallError::Throttled);
                record.error = Some(error.label().to_owned());
            }
            Err(_) => {
                record.outcome = Outcome::LostTimeout;
                record.error = Some(CallError::Timeout.label().to_owned());
            }
        }
        record
    }
}
