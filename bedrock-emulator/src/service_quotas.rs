//! Service Quotas for service code `bedrock`, served on its own port: the AWS JSON 1.1
//! protocol (`POST /` with `X-Amz-Target: ServiceQuotasV20190624.<Operation>`) for
//! `ListServiceQuotas` and `GetServiceQuota`, enough for the unmodified
//! `aws-sdk-servicequotas` client and boto3.
//!
//! The values are the ones the emulator enforces at the moment of the call: the catalog's,
//! then the config file's, then the admin API's. Names follow AWS's current patterns
//! ([`gateway_core::quota::names::quota_name`]), codes are `L-` and 8 hex digits derived from
//! the name, so they are stable across restarts. Quotas the emulator does not limit are not
//! listed, as Service Quotas lists no quota without an applied value.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gateway_core::catalog::{Quota, Scope};
use gateway_core::quota::QuotaKey;
use gateway_core::quota::names::{QuotaMetric, QuotaScope, quota_name};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::engine::{AppState, geo_prefix};

const TARGET_PREFIX: &str = "ServiceQuotasV20190624.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
const SERVICE_CODE: &str = "bedrock";
const SERVICE_NAME: &str = "Amazon Bedrock";
/// The account the emulator pretends to be, as in its other ARNs.
const ACCOUNT: &str = "123456789012";
const DEFAULT_REGION: &str = "us-east-1";
/// `MaxResults` bounds from the API model.
const MAX_RESULTS: usize = 100;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new().route("/", post(operation)).fallback(unknown_path).with_state(state)
}

/// Service Quotas' errors: status 400, the shape name in `__type` (and the header the SDKs
/// also read), the message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SqError {
    NoSuchResource(String),
    IllegalArgument(String),
    InvalidPaginationToken,
    Serialization(String),
    UnknownOperation(String),
}

impl SqError {
    fn type_name(&self) -> &'static str {
        match self {
            SqError::NoSuchResource(_) => "NoSuchResourceException",
            SqError::IllegalArgument(_) => "IllegalArgumentException",
            SqError::InvalidPaginationToken => "InvalidPaginationTokenException",
            SqError::Serialization(_) => "SerializationException",
            SqError::UnknownOperation(_) => "UnknownOperationException",
        }
    }

    fn message(&self) -> String {
        match self {
            SqError::NoSuchResource(m)
            | SqError::IllegalArgument(m)
            | SqError::Serialization(m)
            | SqError::UnknownOperation(m) => m.clone(),
            SqError::InvalidPaginationToken => "Invalid pagination token.".into(),
        }
    }
}

impl IntoResponse for SqError {
    fn into_response(self) -> Response {
        let body = json!({"__type": self.type_name(), "Message": self.message()});
        let mut response = reply(StatusCode::BAD_REQUEST, &body);
        response.headers_mut().insert("x-amzn-errortype", HeaderValue::from_static(self.type_name()));
        response
    }
}

fn reply(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

async fn unknown_path() -> Response {
    SqError::UnknownOperation("Service Quotas is served at POST /.".into()).into_response()
}

async fn operation(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let request_id = state.request_id();
    let mut response = match handle(&state, &headers, &body) {
        Ok(value) => reply(StatusCode::OK, &value),
        Err(e) => e.into_response(),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

fn handle(state: &AppState, headers: &HeaderMap, body: &[u8]) -> Result<Value, SqError> {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let operation = target.strip_prefix(TARGET_PREFIX).unwrap_or_default();
    let input: Map<String, Value> = if body.is_empty() {
        Map::new()
    } else {
        serde_json::from_slice(body).map_err(|e| SqError::Serialization(format!("request body: {e}")))?
    };
    let region = signing_region(headers);
    match operation {
        "ListServiceQuotas" => list(state, &region, &input),
        "GetServiceQuota" => get(state, &region, &input),
        _ => Err(SqError::UnknownOperation(format!("Operation `{target}` is not supported."))),
    }
}

/// The Region the client signed for (`Credential=KEY/DATE/REGION/servicequotas/...`).
fn signing_region(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(2))
        .filter(|region| !region.is_empty())
        .unwrap_or(DEFAULT_REGION)
        .to_owned()
}

fn string_member<'a>(input: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, SqError> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(SqError::Serialization(format!("`{name}` must be a string"))),
    }
}

fn service_code(input: &Map<String, Value>) -> Result<(), SqError> {
    match string_member(input, "ServiceCode")? {
        None => Err(SqError::IllegalArgument("ServiceCode is required.".into())),
        Some(SERVICE_CODE) => Ok(()),
        Some(_) => {
            Err(SqError::NoSuchResource("The request failed because the specified service does not exist.".into()))
        }
    }
}

fn list(state: &AppState, region: &str, input: &Map<String, Value>) -> Result<Value, SqError> {
    service_code(input)?;
    let max_results = match input.get("MaxResults") {
        None | Some(Value::Null) => MAX_RESULTS,
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| SqError::IllegalArgument(format!("MaxResults must be between 1 and {MAX_RESULTS}.")))?,
    };
    match string_member(input, "QuotaAppliedAtLevel")? {
        None | Some("ACCOUNT" | "ALL") => {}
        Some("RESOURCE") => return Ok(json!({"Quotas": []})),
        Some(other) => return Err(SqError::IllegalArgument(format!("Invalid QuotaAppliedAtLevel `{other}`."))),
    }
    let start = match string_member(input, "NextToken")? {
        None => 0,
        Some(token) => decode_token(token).ok_or(SqError::InvalidPaginationToken)?,
    };
    let mut quotas = enforced_quotas(state, region);
    if let Some(code) = string_member(input, "QuotaCode")? {
        quotas.retain(|q| q["QuotaCode"] == code);
    }
    let total = quotas.len();
    if start > total {
        return Err(SqError::InvalidPaginationToken);
    }
    let end = (start + max_results).min(total);
    let page: Vec<Value> = quotas.drain(start..end).collect();
    let mut output = json!({"Quotas": page});
    if end < total {
        output["NextToken"] = Value::String(BASE64.encode(format!("offset/{end}")));
    }
    Ok(output)
}

fn decode_token(token: &str) -> Option<usize> {
    let text = String::from_utf8(BASE64.decode(token).ok()?).ok()?;
    text.strip_prefix("offset/")?.parse().ok()
}

fn get(state: &AppState, region: &str, input: &Map<String, Value>) -> Result<Value, SqError> {
    service_code(input)?;
    let code =
        string_member(input, "QuotaCode")?.ok_or_else(|| SqError::IllegalArgument("QuotaCode is required.".into()))?;
    enforced_quotas(state, region)
        .into_iter()
        .find(|q| q["QuotaCode"] == code)
        .map(|quota| json!({"Quota": quota}))
        .ok_or_else(|| SqError::NoSuchResource(format!("The quota `{code}` does not exist for service `bedrock`.")))
}

/// Every per-minute quota the emulator enforces, in catalog order.
fn enforced_quotas(state: &AppState, region: &str) -> Vec<Value> {
    let mut quotas = Vec::new();
    let region_prefix = geo_prefix(region);
    for spec in state.catalog.models() {
        let scopes = spec.scopes();
        // One cross-Region quota per model: the one of the Region's geographic profile.
        let geo = scopes
            .iter()
            .find(|s| matches!(s, Scope::Geo(p) if p == region_prefix))
            .or_else(|| scopes.iter().find(|s| matches!(s, Scope::Geo(_))));
        let representatives = scopes.iter().filter(|s| !matches!(s, Scope::Geo(_))).chain(geo);
        for scope in representatives {
            let key = QuotaKey::new(&spec.model_id, scope.clone());
            let Some(limits) = state.quotas.limits(&key, spec.quota(scope)) else {
                continue;
            };
            for (metric, value) in
                [(QuotaMetric::TokensPerMinute, limits.tpm), (QuotaMetric::RequestsPerMinute, limits.rpm)]
            {
                if value == Quota::UNLIMITED {
                    continue;
                }
                let Some(name) = quota_name(spec, QuotaScope::of(scope), metric) else {
                    continue;
                };
                quotas.push(quota_json(region, &name, value));
            }
        }
    }
    quotas
}

/// `L-` and 8 hex digits: stable for a name, like AWS's codes.
fn quota_code(name: &str) -> String {
    let digest = Sha256::digest(name.as_bytes());
    format!("L-{}", hex::encode_upper(&digest[..4]))
}

fn quota_json(region: &str, name: &str, value: u64) -> Value {
    let code = quota_code(name);
    json!({
        "ServiceCode": SERVICE_CODE,
        "ServiceName": SERVICE_NAME,
        "QuotaArn": format!("arn:aws:servicequotas:{region}:{ACCOUNT}:{SERVICE_CODE}/{code}"),
        "QuotaCode": code,
        "QuotaName": name,
        "Value": value as f64,
        "Unit": "None",
        "Adjustable": true,
        "GlobalQuota": false,
        "QuotaAppliedAtLevel": "ACCOUNT",
        "Period": {"PeriodValue": 1, "PeriodUnit": "MINUTE"},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_shaped_like_aws() {
        let code = quota_code("Cross-region model inference tokens per minute for Anthropic Claude Haiku 4.5");
        assert_eq!(code, quota_code("Cross-region model inference tokens per minute for Anthropic Claude Haiku 4.5"));
        assert_eq!(code.len(), 10);
        assert!(code.starts_with("L-") && code[2..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        assert_ne!(code, quota_code("Cross-region model inference requests per minute for Anthropic Claude Haiku 4.5"));
    }

    #[test]
    fn the_region_is_read_from_the_signature() {
        let mut headers = HeaderMap::new();
        assert_eq!(signing_region(&headers), "us-east-1");
        let auth = "AWS4-HMAC-SHA256 Credential=test/20261202/eu-west-1/servicequotas/aws4_request, SignedHeaders=host";
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(auth));
        assert_eq!(signing_region(&headers), "eu-west-1");
    }

    #[test]
    fn pagination_tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_token(&BASE64.encode("offset/7")), Some(7));
        assert_eq!(decode_token("not base64!"), None);
        assert_eq!(decode_token(&BASE64.encode("page 7")), None);
    }
}
