//! CloudWatch metrics (PutMetricData, GetMetricData, ListMetrics) on a port of its own, in
//! the two protocols its clients pick: Smithy RPCv2-CBOR (`POST
//! /service/GraniteServiceVersion20100801/operation/<Operation>`, `aws-sdk-cloudwatch`) and
//! awsJson1_0 (`POST /` with `X-Amz-Target: GraniteServiceVersion20100801.<Operation>`,
//! boto3). Errors carry `__type` in the body and the awsQuery code in `x-amzn-query-error`,
//! which is what the SDKs match.
//!
//! Beside it, `/_emulator/cloudwatch/` injects faults per operation, counts calls and resets.
//! Data lives in memory: 15 days, and at most [`store::MAX_STORED_VALUES`] values.

mod cbor;
mod json;
mod operations;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::{Deserialize, Serialize};
use serde_json::json;

use cbor::Cbor;
use operations::CwError;
use store::Store;

const SERVICE_PATH: &str = "/service/GraniteServiceVersion20100801/operation/";
const CBOR_CONTENT_TYPE: &str = "application/cbor";
const TARGET_PREFIX: &str = "GraniteServiceVersion20100801.";
const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// The namespace of CloudWatch's Smithy model, which qualifies `__type`.
const SHAPE_NAMESPACE: &str = "com.amazonaws.cloudwatch";
/// A gzip body inflating past this is refused rather than held in memory.
const MAX_INFLATED_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codec {
    Cbor,
    Json,
}

impl Codec {
    fn decode(self, body: &[u8]) -> Result<Cbor, CwError> {
        let decoded = match self {
            Codec::Cbor => cbor::decode(body).map_err(|e| e.to_string()),
            Codec::Json => json::decode(body).map_err(|e| e.to_string()),
        };
        decoded.map_err(|e| CwError::Serialization(format!("The request body: {e}")))
    }

    fn response(self, status: StatusCode, value: &Cbor) -> Response {
        let (content_type, bytes) = match self {
            Codec::Cbor => match cbor::encode(value) {
                Ok(bytes) => (CBOR_CONTENT_TYPE, bytes),
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            },
            Codec::Json => (JSON_CONTENT_TYPE, json::encode(value).to_string().into_bytes()),
        };
        let mut response = (status, bytes).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if self == Codec::Cbor {
            headers.insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
        }
        response
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum FaultKind {
    Throttling,
    Internal,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    error: FaultKind,
    count: u64,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    calls: BTreeMap<String, u64>,
    faults: HashMap<String, (FaultKind, u64)>,
}

#[derive(Debug)]
pub struct CloudWatch {
    inner: Mutex<Inner>,
    requests: AtomicU64,
}

impl CloudWatch {
    pub fn new() -> Self {
        CloudWatch {
            inner: Mutex::new(Inner {
                store: Store::new(store::MAX_STORED_VALUES),
                calls: BTreeMap::new(),
                faults: HashMap::new(),
            }),
            requests: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves the state whole, so a panic elsewhere does not spoil it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn call(&self, operation: &str, codec: Codec, body: &[u8], now_ms: i64) -> Result<Cbor, CwError> {
        let mut inner = self.lock();
        *inner.calls.entry(operation.to_owned()).or_default() += 1;
        if let Some((kind, remaining)) = inner.faults.get_mut(operation) {
            let kind = *kind;
            *remaining -= 1;
            if *remaining == 0 {
                inner.faults.remove(operation);
            }
            return Err(match kind {
                FaultKind::Throttling => CwError::Throttling,
                FaultKind::Internal => CwError::InternalServiceFault("Injected by the emulator's fault API.".into()),
            });
        }
        let input = codec.decode(body)?;
        if !matches!(input, Cbor::Map(_)) {
            return Err(CwError::Serialization("The request body must be a structure.".into()));
        }
        inner.store.expire(now_ms);
        match operation {
            "PutMetricData" => operations::put_metric_data(&mut inner.store, &input, now_ms),
            "GetMetricData" => operations::get_metric_data(&inner.store, &input),
            "ListMetrics" => operations::list_metrics(&inner.store, &input, now_ms),
            _ => Err(CwError::UnknownOperation(format!("The emulator does not serve the operation {operation}."))),
        }
    }
}

impl CloudWatch {
    /// A datum a service of this emulator publishes under its own `AWS/` namespace, which
    /// PutMetricData refuses to clients as CloudWatch does. Each call is one sample, as
    /// a service's per-request figures are before CloudWatch aggregates them.
    pub fn record_service_datum(
        &self,
        namespace: &str,
        name: &str,
        dimensions: &[(&str, &str)],
        unit: &str,
        value: f64,
        timestamp_ms: i64,
    ) {
        let key = store::MetricKey::new(
            namespace.to_owned(),
            name.to_owned(),
            dimensions.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect(),
        );
        let datum = store::Datum { unit: unit.to_owned(), sample: store::Sample::Values(vec![(value, 1.0)]) };
        self.lock().store.insert(key, timestamp_ms, datum);
    }
}

impl Default for CloudWatch {
    fn default() -> Self {
        CloudWatch::new()
    }
}

pub fn router(state: Arc<CloudWatch>) -> Router {
    Router::new()
        .route(&format!("{SERVICE_PATH}{{operation}}"), post(rpc_cbor))
        .route("/", post(rpc_json))
        .route("/_emulator/cloudwatch/faults/{operation}", put(set_fault))
        .route("/_emulator/cloudwatch/calls", get(calls))
        .route("/_emulator/cloudwatch/reset", post(reset))
        .fallback(unknown_path)
        .with_state(state)
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

async fn rpc_cbor(
    State(state): State<Arc<CloudWatch>>,
    Path(operation): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&state, &operation, Codec::Cbor, &headers, &body)
}

async fn rpc_json(State(state): State<Arc<CloudWatch>>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    match target.strip_prefix(TARGET_PREFIX) {
        Some(operation) => serve(&state, operation, Codec::Json, &headers, &body),
        None => error_response(
            Codec::Json,
            &CwError::UnknownOperation(format!(
                "awsJson1_0 requests need X-Amz-Target: {TARGET_PREFIX}<Operation>, not `{target}`."
            )),
        ),
    }
}

fn serve(state: &CloudWatch, operation: &str, codec: Codec, headers: &HeaderMap, body: &Bytes) -> Response {
    let request_id = format!("cw-{:012}", state.requests.fetch_add(1, Ordering::Relaxed));
    let result = inflate(headers, body).and_then(|body| state.call(operation, codec, &body, now_ms()));
    let mut response = match result {
        Ok(output) => codec.response(StatusCode::OK, &output),
        Err(error) => error_response(codec, &error),
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

/// The SDKs gzip PutMetricData bodies from 10 KiB on (its `@requestCompression` trait).
fn inflate(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, CwError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or_default();
    match encoding.trim() {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => {
            let mut inflated = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .take(MAX_INFLATED_BYTES + 1)
                .read_to_end(&mut inflated)
                .map_err(|e| CwError::Serialization(format!("The gzip body cannot be inflated: {e}")))?;
            if inflated.len() as u64 > MAX_INFLATED_BYTES {
                return Err(CwError::Serialization(format!("The gzip body inflates past {MAX_INFLATED_BYTES} bytes.")));
            }
            Ok(inflated)
        }
        other => Err(CwError::Serialization(format!("The Content-Encoding {other} is not supported."))),
    }
}

fn error_response(codec: Codec, error: &CwError) -> Response {
    let (status, fault) = match error {
        CwError::InternalServiceFault(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Receiver"),
        CwError::UnknownOperation(_) => (StatusCode::NOT_FOUND, "Sender"),
        _ => (StatusCode::BAD_REQUEST, "Sender"),
    };
    let body = Cbor::map([
        ("__type", Cbor::text(format!("{SHAPE_NAMESPACE}#{}", error.shape()))),
        ("message", Cbor::text(error.message())),
    ]);
    let mut response = codec.response(status, &body);
    if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", error.code())) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    response
}

fn admin_json(status: StatusCode, value: &serde_json::Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], value.to_string()).into_response()
}

async fn set_fault(State(state): State<Arc<CloudWatch>>, Path(operation): Path<String>, body: Bytes) -> Response {
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return admin_json(
                StatusCode::BAD_REQUEST,
                &json!({"error": format!("expected {{\"error\": \"throttling\"|\"internal\", \"count\": N}}: {e}")}),
            );
        }
    };
    let mut inner = state.lock();
    if request.count == 0 {
        inner.faults.remove(&operation);
    } else {
        inner.faults.insert(operation.clone(), (request.error, request.count));
    }
    admin_json(StatusCode::OK, &json!({"operation": operation, "error": request.error, "count": request.count}))
}

async fn calls(State(state): State<Arc<CloudWatch>>) -> Response {
    let inner = state.lock();
    admin_json(StatusCode::OK, &json!(inner.calls))
}

async fn reset(State(state): State<Arc<CloudWatch>>) -> Response {
    let mut inner = state.lock();
    inner.store.clear();
    inner.calls.clear();
    inner.faults.clear();
    admin_json(StatusCode::OK, &json!({"reset": true}))
}

async fn unknown_path() -> Response {
    error_response(
        Codec::Cbor,
        &CwError::UnknownOperation(format!(
            "CloudWatch is served at POST {SERVICE_PATH}<Operation> (Smithy RPCv2-CBOR) and POST / (awsJson1_0)."
        )),
    )
}
