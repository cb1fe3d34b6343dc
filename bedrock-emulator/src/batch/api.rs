//! The control plane's REST-JSON surface: CreateModelInvocationJob, GetModelInvocationJob,
//! ListModelInvocationJobs and StopModelInvocationJob, with Bedrock's exceptions.

use std::collections::HashMap;
use std::sync::Arc;

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gateway_core::catalog::Target;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BatchError, BatchService, InvocationType, JobSpec, S3Location, Status};

/// ListModelInvocationJobs' page size when the caller gives none, and its maximum.
const DEFAULT_PAGE: usize = 1000;

impl BatchError {
    fn error_type(&self) -> &'static str {
        match self {
            BatchError::Validation(_) => "ValidationException",
            BatchError::NotFound(_) => "ResourceNotFoundException",
            BatchError::Conflict(_) => "ConflictException",
            BatchError::QuotaExceeded(_) => "ServiceQuotaExceededException",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            BatchError::NotFound(_) => StatusCode::NOT_FOUND,
            BatchError::Validation(_) | BatchError::Conflict(_) | BatchError::QuotaExceeded(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }
}

impl IntoResponse for BatchError {
    fn into_response(self) -> Response {
        let body = json!({ "message": self.to_string() }).to_string();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert("x-amzn-errortype", HeaderValue::from_static(self.error_type()));
        response
    }
}

pub fn router(service: Arc<BatchService>) -> Router {
    Router::new()
        .route("/model-invocation-job", post(create))
        .route("/model-invocation-job/{*rest}", get(get_job).post(stop_job))
        .route("/model-invocation-jobs", get(list))
        .with_state(service)
}

fn ok(body: &Value) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    job_name: Option<String>,
    role_arn: Option<String>,
    model_id: Option<String>,
    client_request_token: Option<String>,
    input_data_config: Option<Value>,
    output_data_config: Option<Value>,
    vpc_config: Option<Value>,
    timeout_duration_in_hours: Option<u32>,
    model_invocation_type: Option<String>,
}

fn invalid(message: impl Into<String>) -> BatchError {
    BatchError::Validation(message.into())
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, BatchError> {
    value.ok_or_else(|| {
        invalid(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    })
}

/// `[a-zA-Z0-9]{1,63}(-*[a-zA-Z0-9\+\-\.]){0,63}`, at most 63 characters.
fn valid_job_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `[a-zA-Z0-9]{1,256}(-*[a-zA-Z0-9]){0,256}`, 1 to 256 characters: alphanumeric runs
/// joined by hyphens, neither first nor last a hyphen.
fn valid_client_request_token(token: &str) -> bool {
    (1..=256).contains(&token.len())
        && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !token.starts_with('-')
        && !token.ends_with('-')
}

/// `arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+`
fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "iam", "", account, resource] => {
            (*partition == "aws" || partition.starts_with("aws-"))
                && (account.is_empty() || (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit())))
                && resource.strip_prefix("role/").is_some_and(|name| !name.is_empty())
        }
        _ => false,
    }
}

fn s3_config<'a>(union: &'a Value, member: &str, field: &str) -> Result<&'a Value, BatchError> {
    union.get(member).filter(|v| v.is_object()).ok_or_else(|| invalid(format!("{field} must set {member}.")))
}

fn s3_uri(config: &Value, field: &str) -> Result<String, BatchError> {
    let uri =
        config.get("s3Uri").and_then(Value::as_str).ok_or_else(|| invalid(format!("{field}.s3Uri is required.")))?;
    S3Location::parse(uri).map_err(|e| invalid(e.to_string()))?;
    Ok(uri.to_owned())
}

fn parse_create(service: &BatchService, body: &[u8]) -> Result<JobSpec, BatchError> {
    let body: CreateBody =
        serde_json::from_slice(body).map_err(|e| invalid(format!("The request body is not valid: {e}")))?;
    let job_name = required(body.job_name, "jobName")?;
    if !valid_job_name(&job_name) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{job_name}' at 'jobName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,63}}(-*[a-zA-Z0-9\\+\\-\\.]){{0,63}}"
        )));
    }
    if let Some(token) = &body.client_request_token
        && !valid_client_request_token(token)
    {
        return Err(invalid(format!(
            "1 validation error detected: Value '{token}' at 'clientRequestToken' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9]{{1,256}}(-*[a-zA-Z0-9]){{0,256}}"
        )));
    }
    let role_arn = required(body.role_arn, "roleArn")?;
    if !valid_role_arn(&role_arn) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{role_arn}' at 'roleArn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:aws(-[^:]+)?:iam::([0-9]{{12}})?:role/.+"
        )));
    }
    let model_id = required(body.model_id, "modelId")?;
    match service.engine.catalog.resolve(&model_id) {
        Ok(Target::Model(m)) if m.spec.retired_on(service.engine.today()) => {
            return Err(BatchError::NotFound(crate::errors::END_OF_LIFE.into()));
        }
        Ok(_) => {}
        Err(_) => return Err(invalid(crate::errors::INVALID_MODEL)),
    }
    let input = required(body.input_data_config, "inputDataConfig")?;
    let s3_input = s3_config(&input, "s3InputDataConfig", "inputDataConfig")?;
    let input_uri = s3_uri(s3_input, "inputDataConfig.s3InputDataConfig")?;
    let input_format = s3_input.get("s3InputFormat").and_then(Value::as_str).map(str::to_owned);
    if input_format.as_deref().is_some_and(|f| f != "JSONL") {
        return Err(invalid("inputDataConfig.s3InputDataConfig.s3InputFormat must be JSONL."));
    }
    let output = required(body.output_data_config, "outputDataConfig")?;
    let s3_output = s3_config(&output, "s3OutputDataConfig", "outputDataConfig")?;
    let output_uri = s3_uri(s3_output, "outputDataConfig.s3OutputDataConfig")?;
    let output_kms_key = s3_output.get("s3EncryptionKeyId").and_then(Value::as_str).map(str::to_owned);
    let timeout_hours = body.timeout_duration_in_hours.unwrap_or(168);
    if !(24..=168).contains(&timeout_hours) {
        return Err(invalid(format!(
            "1 validation error detected: Value '{timeout_hours}' at 'timeoutDurationInHours' failed to satisfy constraint: Member must have value between 24 and 168"
        )));
    }
    let invocation_type = match body.model_invocation_type.as_deref() {
        None => None,
        Some(text) => Some(InvocationType::parse(text).ok_or_else(|| {
            invalid(format!(
                "1 validation error detected: Value '{text}' at 'modelInvocationType' failed to satisfy constraint: Member must satisfy enum value set: [InvokeModel, Converse]"
            ))
        })?),
    };
    Ok(JobSpec {
        job_name,
        role_arn,
        model_id,
        client_request_token: body.client_request_token,
        input_uri,
        input_format,
        output_uri,
        output_kms_key,
        vpc_config: body.vpc_config,
        timeout_hours,
        invocation_type,
    })
}

async fn create(State(service): State<Arc<BatchService>>, body: Bytes) -> Response {
    let created = parse_create(&service, &body).and_then(|spec| service.create(spec));
    match created {
        Ok(arn) => ok(&json!({ "jobArn": arn })),
        Err(e) => e.into_response(),
    }
}

/// `{jobIdentifier}` or `{jobIdentifier}/stop`; the identifier is an ARN, whose `/` may
/// arrive raw or percent-encoded.
fn split_stop(rest: &str) -> (&str, bool) {
    match rest.strip_suffix("/stop") {
        Some(id) => (id, true),
        None => (rest, false),
    }
}

async fn get_job(State(service): State<Arc<BatchService>>, Path(rest): Path<String>) -> Response {
    let (id, stop) = split_stop(&rest);
    if stop {
        return crate::routes::unknown_response("GET", &format!("/model-invocation-job/{rest}"));
    }
    match service.get(id) {
        Ok(job) => ok(&job.to_json()),
        Err(e) => e.into_response(),
    }
}

async fn stop_job(State(service): State<Arc<BatchService>>, Path(rest): Path<String>) -> Response {
    let (id, stop) = split_stop(&rest);
    if !stop {
        return crate::routes::unknown_response("POST", &format!("/model-invocation-job/{rest}"));
    }
    match service.stop(id) {
        Ok(()) => ok(&json!({})),
        Err(e) => e.into_response(),
    }
}

fn parse_time(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime>, BatchError> {
    params
        .get(name)
        .map(|text| {
            DateTime::from_str(text, Format::DateTime).map_err(|_| invalid(format!("{name} is not a timestamp.")))
        })
        .transpose()
}

async fn list(State(service): State<Arc<BatchService>>, Query(params): Query<HashMap<String, String>>) -> Response {
    list_jobs(&service, &params).unwrap_or_else(IntoResponse::into_response)
}

fn list_jobs(service: &BatchService, params: &HashMap<String, String>) -> Result<Response, BatchError> {
    let status = params
        .get("statusEquals")
        .map(|text| Status::parse(text).ok_or_else(|| invalid(format!("statusEquals '{text}' is not a job status."))))
        .transpose()?;
    let after = parse_time(params, "submitTimeAfter")?;
    let before = parse_time(params, "submitTimeBefore")?;
    let page = match params.get("maxResults") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=DEFAULT_PAGE).contains(n))
            .ok_or_else(|| invalid(format!("maxResults {text} must be between 1 and {DEFAULT_PAGE}.")))?,
    };
    if params.get("sortBy").is_some_and(|s| s != "CreationTime") {
        return Err(invalid("sortBy must be CreationTime."));
    }
    let ascending = match params.get("sortOrder").map(String::as_str) {
        None | Some("Descending") => false,
        Some("Ascending") => true,
        Some(other) => return Err(invalid(format!("sortOrder '{other}' must be Ascending or Descending."))),
    };
    let start = match params.get("nextToken") {
        None => 0,
        Some(token) => token.parse::<usize>().map_err(|_| invalid("The nextToken is not valid."))?,
    };
    let mut jobs: Vec<_> = service
        .list()
        .into_iter()
        .filter(|job| status.is_none_or(|s| job.status == s))
        .filter(|job| params.get("nameContains").is_none_or(|part| job.spec.job_name.contains(part.as_str())))
        .filter(|job| after.is_none_or(|t| DateTime::from(job.submit_time) > t))
        .filter(|job| before.is_none_or(|t| DateTime::from(job.submit_time) < t))
        .collect();
    // Equal submit times (a fast test) fall back on the ARN, so pages never overlap.
    jobs.sort_by(|a, b| a.submit_time.cmp(&b.submit_time).then_with(|| a.arn.cmp(&b.arn)));
    if !ascending {
        jobs.reverse();
    }
    if start > jobs.len() {
        return Err(invalid("The nextToken is not valid."));
    }
    let end = (start + page).min(jobs.len());
    let summaries: Vec<Value> = jobs[start..end].iter().map(|job| job.to_json()).collect();
    let mut body = json!({ "invocationJobSummaries": summaries });
    if end < jobs.len() {
        body["nextToken"] = json!(end.to_string());
    }
    Ok(ok(&body))
}

#[cfg(test)]
mod tests {
    use super::super::timestamp;
    use super::*;

    #[test]
    fn job_names_and_role_arns_follow_bedrock_patterns() {
        assert!(valid_job_name("nightly-batch.v2"));
        assert!(!valid_job_name("-starts-with-dash"));
        assert!(!valid_job_name("has space"));
        assert!(!valid_job_name(&"a".repeat(64)));
        assert!(valid_role_arn("arn:aws:iam::123456789012:role/BedrockBatch"));
        assert!(valid_role_arn("arn:aws-us-gov:iam:::role/x"));
        assert!(!valid_role_arn("arn:aws:iam::1234:role/x"));
        assert!(!valid_role_arn("arn:aws:s3:::bucket"));
        assert!(valid_client_request_token("gw-20261202141500-0123456789ab"));
        assert!(valid_client_request_token("3f1c2a9e-8b7d-4c6e-9f0a-1b2c3d4e5f60"));
        assert!(!valid_client_request_token("has.dot"));
        assert!(!valid_client_request_token("-leading"));
        assert!(!valid_client_request_token("trailing-"));
        assert!(!valid_client_request_token(""));
        assert!(!valid_client_request_token(&"a".repeat(257)));
    }

    #[test]
    fn errors_carry_bedrock_status_and_type() {
        let r = BatchError::NotFound("x".into()).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()["x-amzn-errortype"], "ResourceNotFoundException");
        assert_eq!(BatchError::Conflict("x".into()).status(), StatusCode::BAD_REQUEST);
        assert_eq!(BatchError::QuotaExceeded("x".into()).error_type(), "ServiceQuotaExceededException");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_724_885_273);
        assert_eq!(timestamp(t), "2024-08-28T22:47:53Z");
    }
}
