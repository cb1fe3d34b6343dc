//! Bedrock's batch control plane and S3, as the batch pipeline's [`BatchJobs`] and
//! [`BatchFiles`].
//!
//! Every SDK failure of either service goes through one mapping ([`remote_error`]) into
//! `BatchError::Remote`, whose label says what the caller may do: `quota_exhausted` and
//! `throttled` are worth a later try, `invalid_request`, `not_found` and `access_denied` are
//! not, `timeout` and `transport` are the network's.

use std::pin::Pin;

use aws_config::SdkConfig;
use aws_sdk_bedrock::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrock::types::{
    ModelInvocationJobInputDataConfig, ModelInvocationJobOutputDataConfig, ModelInvocationJobS3InputDataConfig,
    ModelInvocationJobS3OutputDataConfig, ModelInvocationType, S3InputFormat,
};
use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncBufRead;

use crate::batch::{BatchError, BatchFiles, BatchJobs, CreateJob, JobDescription, JobStatus};
use crate::label::ErrorLabel;

const BEDROCK: &str = "bedrock";
const S3: &str = "s3";
const CREATE: &str = "CreateModelInvocationJob";
const GET: &str = "GetModelInvocationJob";
const LIST_JOBS: &str = "ListModelInvocationJobs";

/// The control-plane client (`bedrock`, not `bedrock-runtime`); its endpoint follows
/// `AWS_ENDPOINT_URL_BEDROCK` like every other client's.
pub fn bedrock_control_client(sdk: &SdkConfig) -> aws_sdk_bedrock::Client {
    aws_sdk_bedrock::Client::new(sdk)
}

/// The S3 client. With an endpoint override (moto, or any S3 stand-in) buckets are addressed
/// by path: `bucket.host` names no host there. Against AWS itself the default (virtual
/// hosted) style stays.
pub fn s3_client(sdk: &SdkConfig) -> aws_sdk_s3::Client {
    let overridden = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(overridden).build())
}

/// One mapping for every call of both services, by the error's code: the exception names of
/// the Bedrock control plane and S3's codes never collide.
fn remote_error<E>(service: &'static str, operation: &'static str, error: SdkError<E>) -> BatchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let label = match &error {
        SdkError::ServiceError(_) => code_label(error.code()),
        SdkError::TimeoutError(_) => ErrorLabel::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => ErrorLabel::Timeout,
        SdkError::DispatchFailure(_) => ErrorLabel::Transport,
        SdkError::ResponseError(_) => ErrorLabel::BadResponse,
        // The request could not even be built: a field this code filled in is invalid.
        SdkError::ConstructionFailure(_) => ErrorLabel::InvalidRequest,
        _ => ErrorLabel::Internal,
    };
    let message = match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("no message")),
        None => aws_sdk_bedrock::error::DisplayErrorContext(&error).to_string(),
    };
    BatchError::Remote { service, operation, label, message }
}

fn code_label(code: Option<&str>) -> ErrorLabel {
    match code {
        // Too many jobs submitted or in progress: the job waits for one to end.
        Some("ServiceQuotaExceededException") => ErrorLabel::QuotaExhausted,
        Some("ThrottlingException" | "SlowDown" | "TooManyRequestsException" | "RequestLimitExceeded") => {
            ErrorLabel::Throttled
        }
        // A job name already taken by another job (create retried past its token's life, or
        // a job made elsewhere): retrying the same name can never succeed, so it is the
        // request that is wrong, not the moment.
        Some(
            "ValidationException"
            | "ConflictException"
            | "InvalidRequest"
            | "InvalidArgument"
            | "InvalidBucketName"
            | "KeyTooLongError",
        ) => ErrorLabel::InvalidRequest,
        Some("ResourceNotFoundException" | "NoSuchBucket" | "NoSuchKey") => ErrorLabel::NotFound,
        Some("AccessDeniedException" | "AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch") => {
            ErrorLabel::AccessDenied
        }
        Some("ServiceUnavailableException" | "ServiceUnavailable") => ErrorLabel::Unavailable,
        _ => ErrorLabel::Internal,
    }
}

fn corrupt(operation: &str, what: &str) -> BatchError {
    BatchError::Corrupt(format!("{BEDROCK} {operation} answered without {what}"))
}

/// `CreateModelInvocationJob` and `GetModelInvocationJob`.
#[derive(Debug, Clone)]
pub struct BedrockBatchJobs {
    client: aws_sdk_bedrock::Client,
}

impl BedrockBatchJobs {
    pub fn new(client: aws_sdk_bedrock::Client) -> BedrockBatchJobs {
        BedrockBatchJobs { client }
    }

    /// After a `ConflictException`: the job already named `job.plan.job_name`, when it reads
    /// the plan's input, is the plan's own job (the name carries the records' hash and the
    /// input key the name), created by an earlier try whose token Bedrock no longer matches.
    async fn created_earlier(&self, job: &CreateJob) -> Result<Option<String>, BatchError> {
        let name = &job.plan.job_name;
        let mut pages = self.client.list_model_invocation_jobs().name_contains(name).into_paginator().items().send();
        while let Some(summary) = pages.next().await {
            let summary = summary.map_err(|e| remote_error(BEDROCK, LIST_JOBS, e))?;
            if summary.job_name() != name.as_str() {
                continue;
            }
            let input = summary.input_data_config().and_then(|c| c.as_s3_input_data_config().ok());
            return Ok(input.is_some_and(|c| c.s3_uri() == job.plan.input_uri).then(|| summary.job_arn().to_owned()));
        }
        Ok(None)
    }
}

impl BatchJobs for BedrockBatchJobs {
    async fn create(&self, job: &CreateJob) -> Result<String, BatchError> {
        let plan = &job.plan;
        let build_failed = |e: aws_smithy_types::error::operation::BuildError| BatchError::Remote {
            service: BEDROCK,
            operation: CREATE,
            label: ErrorLabel::InvalidRequest,
            message: e.to_string(),
        };
        let input = ModelInvocationJobS3InputDataConfig::builder()
            .s3_uri(&plan.input_uri)
            .s3_input_format(S3InputFormat::Jsonl)
            .build()
            .map_err(build_failed)?;
        let output =
            ModelInvocationJobS3OutputDataConfig::builder().s3_uri(&plan.output_uri).build().map_err(build_failed)?;
        let mut call = self
            .client
            .create_model_invocation_job()
            .job_name(&plan.job_name)
            // The name as the token: a retry of the same plan (after a lost answer, a crash,
            // a redelivered event) is the same request, and Bedrock returns the same job.
            .client_request_token(&plan.job_name)
            .role_arn(&job.role_arn)
            .model_id(&job.model_id)
            .input_data_config(ModelInvocationJobInputDataConfig::S3InputDataConfig(input))
            .output_data_config(ModelInvocationJobOutputDataConfig::S3OutputDataConfig(output));
        if let Some(kind) = &job.invocation_type {
            call = call.model_invocation_type(ModelInvocationType::from(kind.as_str()));
        }
        if let Some(hours) = job.timeout_hours {
            let hours = i32::try_from(hours).map_err(|_| BatchError::Remote {
                service: BEDROCK,
                operation: CREATE,
                label: ErrorLabel::InvalidRequest,
                message: format!("timeoutDurationInHours {hours} is out of range"),
            })?;
            call = call.timeout_duration_in_hours(hours);
        }
        match call.send().await {
            Ok(created) => Ok(created.job_arn().to_owned()),
            Err(e) if e.code() == Some("ConflictException") => {
                let conflict = remote_error(BEDROCK, CREATE, e);
                self.created_earlier(job).await?.ok_or(conflict)
            }
            Err(e) => Err(remote_error(BEDROCK, CREATE, e)),
        }
    }

    async fn describe(&self, job_arn: &str) -> Result<JobDescription, BatchError> {
        let job = self
            .client
            .get_model_invocation_job()
            .job_identifier(job_arn)
            .send()
            .await
            .map_err(|e| remote_error(BEDROCK, GET, e))?;
        let status_text = job.status().ok_or_else(|| corrupt(GET, "a status"))?.as_str();
        let status = JobStatus::parse(status_text)
            .ok_or_else(|| BatchError::Corrupt(format!("{BEDROCK} {GET}: unknown job status {status_text:?}")))?;
        let output_uri = job
            .output_data_config()
            .and_then(|c| c.as_s3_output_data_config().ok())
            .map(|c| c.s3_uri().to_owned())
            .ok_or_else(|| corrupt(GET, "an S3 output location"))?;
        Ok(JobDescription {
            job_name: job.job_name().ok_or_else(|| corrupt(GET, "a job name"))?.to_owned(),
            job_arn: job.job_arn().to_owned(),
            status,
            model_id: job.model_id().to_owned(),
            output_uri,
            failure_message: job.message().filter(|m| !m.is_empty()).map(str::to_owned),
        })
    }
}

/// `s3://bucket/key`, split once. The key may be empty only where a prefix is meant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct S3Uri<'a> {
    bucket: &'a str,
    key: &'a str,
}

impl<'a> S3Uri<'a> {
    fn parse(uri: &'a str, operation: &'static str) -> Result<S3Uri<'a>, BatchError> {
        let invalid = || BatchError::Remote {
            service: S3,
            operation,
            label: ErrorLabel::InvalidRequest,
            message: format!("{uri:?} is not an S3 URI (s3://bucket/key)"),
        };
        let rest = uri.strip_prefix("s3://").ok_or_else(invalid)?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid());
        }
        Ok(S3Uri { bucket, key })
    }

    /// An object's URI: a key is required.
    fn object(uri: &'a str, operation: &'static str) -> Result<S3Uri<'a>, BatchError> {
        let parsed = S3Uri::parse(uri, operation)?;
        if parsed.key.is_empty() {
            return Err(BatchError::Remote {
                service: S3,
                operation,
                label: ErrorLabel::InvalidRequest,
                message: format!("{uri:?} names a bucket, not an object"),
            });
        }
        Ok(parsed)
    }
}

/// An object's body as it arrives, chunk by chunk.
pub type S3Reader = Pin<Box<dyn AsyncBufRead + Send>>;

/// S3 by `s3://` URIs: PutObject, ListObjectsV2 (every page), a streaming GetObject and
/// DeleteObject.
#[derive(Debug, Clone)]
pub struct S3BatchFiles {
    client: aws_sdk_s3::Client,
}

impl S3BatchFiles {
    pub fn new(client: aws_sdk_s3::Client) -> S3BatchFiles {
        S3BatchFiles { client }
    }
}

impl BatchFiles for S3BatchFiles {
    type Reader = S3Reader;

    async fn write(&self, uri: &str, body: Vec<u8>) -> Result<(), BatchError> {
        const PUT: &str = "PutObject";
        let at = S3Uri::object(uri, PUT)?;
        self.client
            .put_object()
            .bucket(at.bucket)
            .key(at.key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| remote_error(S3, PUT, e))?;
        Ok(())
    }

    async fn list(&self, prefix_uri: &str) -> Result<Vec<String>, BatchError> {
        const LIST: &str = "ListObjectsV2";
        let at = S3Uri::parse(prefix_uri, LIST)?;
        let mut uris = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(at.bucket).prefix(at.key).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| remote_error(S3, LIST, e))?;
            uris.extend(page.contents().iter().filter_map(|o| o.key()).map(|key| format!("s3://{}/{key}", at.bucket)));
        }
        // General purpose buckets list in key order already; directory buckets do not.
        uris.sort();
        Ok(uris)
    }

    async fn open(&self, uri: &str) -> Result<Option<S3Reader>, BatchError> {
        const GET_OBJECT: &str = "GetObject";
        let at = S3Uri::object(uri, GET_OBJECT)?;
        match self.client.get_object().bucket(at.bucket).key(at.key).send().await {
            Ok(object) => {
                let reader: S3Reader = Box::pin(object.body.into_async_read());
                Ok(Some(reader))
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(remote_error(S3, GET_OBJECT, e)),
        }
    }

    async fn delete(&self, uri: &str) -> Result<(), BatchError> {
        const DELETE: &str = "DeleteObject";
        let at = S3Uri::object(uri, DELETE)?;
        // S3 answers a missing key with success too.
        self.client
            .delete_object()
            .bucket(at.bucket)
            .key(at.key)
            .send()
            .await
            .map_err(|e| remote_error(S3, DELETE, e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_of_either_service_has_the_label_its_caller_acts_on() {
        let cases = [
            ("ServiceQuotaExceededException", ErrorLabel::QuotaExhausted),
            ("ThrottlingException", ErrorLabel::Throttled),
            ("SlowDown", ErrorLabel::Throttled),
            ("ValidationException", ErrorLabel::InvalidRequest),
            ("ConflictException", ErrorLabel::InvalidRequest),
            ("ResourceNotFoundException", ErrorLabel::NotFound),
            ("NoSuchBucket", ErrorLabel::NotFound),
            ("AccessDeniedException", ErrorLabel::AccessDenied),
            ("AccessDenied", ErrorLabel::AccessDenied),
            ("ServiceUnavailableException", ErrorLabel::Unavailable),
            ("InternalServerException", ErrorLabel::Internal),
        ];
        for (code, label) in cases {
            assert_eq!(code_label(Some(code)), label, "{code}");
        }
        assert_eq!(code_label(None), ErrorLabel::Internal);
    }

    #[test]
    fn s3_uris_split_once_and_bad_ones_are_invalid_requests() {
        assert_eq!(
            S3Uri::parse("s3://bucket/batch/output/", "ListObjectsV2").ok(),
            Some(S3Uri { bucket: "bucket", key: "batch/output/" })
        );
        assert_eq!(S3Uri::parse("s3://bucket", "ListObjectsV2").ok(), Some(S3Uri { bucket: "bucket", key: "" }));
        for (uri, object) in
            [("https://bucket/key", false), ("s3:///key", false), ("s3://bucket/", true), ("s3://bucket", true)]
        {
            let parsed = if object { S3Uri::object(uri, "GetObject") } else { S3Uri::parse(uri, "GetObject") };
            match parsed {
                Err(BatchError::Remote { service, operation, label, .. }) => {
                    assert_eq!((service, operation, label), (S3, "GetObject", ErrorLabel::InvalidRequest), "{uri}");
                }
                other => panic!("{uri}: {other:?}"),
            }
        }
    }
}
