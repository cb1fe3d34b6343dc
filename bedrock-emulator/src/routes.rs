//! The HTTP surface: Bedrock Runtime's REST-JSON operations and the `/_emulator` admin API.
//!
//! Handlers only translate between wire formats and [`crate::engine`]: parse the body,
//! begin the invocation, wait the modeled time, render the answer.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gateway_core::catalog::{Quota, Target};
use gateway_core::quota::QuotaKey;
use gateway_core::request::{
    CacheDetail, CacheTtl, ContentBlock, ConverseMetrics, ConverseOutput, ConverseRequest, ConverseResponse, Message,
    Role, TokenUsage, ToolUseBlock,
};
use gateway_core::tokens::{estimate_request, estimate_text};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::anthropic;
use crate::config::{FaultOverride, QuotaOverride, StreamErrorType};
use crate::engine::{self, AppState, Invocation, Outcome, Usage, bucket_of, selector_of};
use crate::errors::{ApiError, END_OF_LIFE, INVALID_MODEL};
use crate::eventstream;
use crate::faults::Selector;
use crate::generate::{self, Answer, AnswerContent};
use crate::stats::{Ending, Operation};

/// InvokeModel accepts bodies up to 25,000,000 bytes; leave room for the JSON around them.
const MAX_BODY_BYTES: usize = 26 * 1024 * 1024;
/// Words per streamed text delta, and characters per streamed tool-input delta.
const WORDS_PER_DELTA: usize = 3;
const CHARS_PER_TOOL_DELTA: usize = 24;

type Result<T, E = ApiError> = std::result::Result<T, E>;

pub fn router(state: Arc<AppState>, batch: Arc<crate::batch::BatchService>) -> Router {
    Router::new()
        // One wildcard route for every operation: the model ID is usually percent-encoded
        // (`%2F`, `%3A`), but a hand-written request may carry an ARN's `/` raw, and
        // splitting at the last `/` serves both.
        .route("/model/{*rest}", post(model_operation))
        .route("/_emulator/health", get(health))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/reset", post(reset).layer(axum::Extension(Arc::clone(&batch))))
        .route("/_emulator/quotas", get(list_quotas))
        .route("/_emulator/quotas/{*model_id}", put(set_quota).delete(clear_quota))
        .route("/_emulator/faults/{*model_id}", put(set_faults).delete(clear_faults))
        .fallback(unknown_operation)
        .with_state(Arc::clone(&state))
        // The control plane shares the port: its paths (`/model-invocation-job...`) never meet
        // the runtime's `/model/...`.
        .merge(crate::batch::api::router(batch))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(state, request_id_and_log))
}

/// Adds `x-amzn-requestid` (the SDKs expose it as the request ID) and logs the call.
async fn request_id_and_log(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let request_id = state.request_id();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    let error_type = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info!(
        %method,
        %path,
        status = response.status().as_u16(),
        error_type,
        elapsed_ms = started.elapsed().as_millis() as u64,
        request_id,
        "request"
    );
    response
}

async fn model_operation(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let rest = match path {
        Ok(Path(rest)) => rest,
        Err(e) => return ApiError::validation(format!("The model ID in the path is not valid: {e}")).into_response(),
    };
    let Some((model_id, operation)) = rest.rsplit_once('/') else {
        return unknown(&Method::POST, &format!("/model/{rest}")).into_response();
    };
    let op = match operation {
        "converse" => Operation::Converse,
        "converse-stream" => Operation::ConverseStream,
        "invoke" => Operation::Invoke,
        "invoke-with-response-stream" => Operation::InvokeStream,
        "count-tokens" => Operation::CountTokens,
        _ => return unknown(&Method::POST, &format!("/model/{rest}")).into_response(),
    };
    let body = match body {
        Ok(body) => body,
        Err(e) => {
            let error = ApiError::validation(format!("The request body could not be read: {e}"));
            return reject(&state, op, error).into_response();
        }
    };
    let result = match op {
        Operation::Converse => converse(state, model_id, &body).await,
        Operation::ConverseStream => converse_stream(state, model_id, &body).await,
        Operation::Invoke => invoke(state, model_id, &body).await,
        Operation::InvokeStream => invoke_stream(state, model_id, &body).await,
        Operation::CountTokens => count_tokens(&state, model_id, &body),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Counts a request rejected before it reached a model, and passes the error on.
fn reject(state: &AppState, op: Operation, error: ApiError) -> ApiError {
    state.stats.request(None, op);
    state.stats.rejected(None, &error);
    error
}

fn parse_converse(state: &AppState, op: Operation, body: &[u8]) -> Result<ConverseRequest> {
    ConverseRequest::from_json(body).map_err(|e| reject(state, op, ApiError::validation(e.to_string())))
}

async fn converse(state: Arc<AppState>, model_id: &str, body: &[u8]) -> Result<Response> {
    let request = parse_converse(&state, Operation::Converse, body)?;
    let mut invocation = engine::begin(&state, Operation::Converse, model_id, request).await?;
    tokio::time::sleep(state.latency.scaled(invocation.modeled)).await;
    invocation.ticket.set_output(invocation.usage.output);
    invocation.ticket.finish(Ending::Completed);
    Ok(json_response(StatusCode::OK, &converse_response(&invocation.outcome())))
}

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    (status, [(header::CONTENT_TYPE, "application/json")], text).into_response()
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn latency_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn token_usage(usage: &Usage) -> TokenUsage {
    let cache = &usage.cache;
    TokenUsage {
        input_tokens: to_i64(usage.input),
        output_tokens: to_i64(usage.output),
        total_tokens: to_i64(usage.total()),
        cache_read_input_tokens: cache.used.then(|| to_i64(cache.read)),
        cache_write_input_tokens: cache.used.then(|| to_i64(cache.write)),
        cache_details: usage
            .cache_details()
            .into_iter()
            .map(|(ttl, tokens)| CacheDetail {
                ttl: match ttl {
                    CacheTtl::OneHour => "1h".to_owned(),
                    CacheTtl::FiveMinutes => "5m".to_owned(),
                },
                input_tokens: to_i64(tokens),
            })
            .collect(),
    }
}

pub(crate) fn anthropic_usage(usage: &Usage) -> anthropic::Usage {
    anthropic::Usage {
        input: usage.input,
        output: usage.output,
        cache_read: usage.cache.read,
        cache_write: usage.cache.write,
    }
}

fn trace(outcome: &Outcome<'_>) -> Option<Value> {
    let id = outcome.resolved.invoked_model_id.as_ref()?;
    Some(json!({"promptRouter": {"invokedModelId": id}}))
}

/// `additionalModelResponseFields`: each requested JSON Pointer looked up in the model's
/// native (Anthropic) response and placed at the same path.
fn response_fields(outcome: &Outcome<'_>) -> Option<Value> {
    let paths = &outcome.request.additional_model_response_field_paths;
    if paths.is_empty() {
        return None;
    }
    let native =
        anthropic::message("", &outcome.resolved.spec.model_id, outcome.answer, anthropic_usage(outcome.usage));
    let mut fields = Value::Object(Map::new());
    for path in paths {
        if let Some(value) = native.pointer(path) {
            insert_at(&mut fields, path, value.clone());
        }
    }
    Some(fields)
}

fn insert_at(root: &mut Value, pointer: &str, value: Value) {
    let segments: Vec<String> = pointer.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut node = root;
    for segment in parents {
        let Value::Object(map) = node else { return };
        node = map.entry(segment.clone()).or_insert_with(|| Value::Object(Map::new()));
    }
    if let Value::Object(map) = node {
        map.insert(last.clone(), value);
    }
}

pub(crate) fn converse_response(outcome: &Outcome<'_>) -> ConverseResponse {
    let block = match &outcome.answer.content {
        AnswerContent::Text(text) => ContentBlock::Text(text.clone()),
        AnswerContent::ToolUse(call) => ContentBlock::ToolUse(ToolUseBlock {
            tool_use_id: call.id.clone(),
            name: call.name.clone(),
            input: call.input.clone(),
        }),
    };
    ConverseResponse {
        output: ConverseOutput { message: Message { role: Role::Assistant, content: vec![block] } },
        stop_reason: outcome.answer.stop_reason.as_str().to_owned(),
        usage: token_usage(outcome.usage),
        metrics: ConverseMetrics { latency_ms: latency_ms(outcome.modeled) },
        additional_model_response_fields: response_fields(outcome),
        trace: trace(outcome),
        performance_config: outcome.request.performance_config.clone(),
        service_tier: outcome.request.service_tier.clone(),
    }
}

/// One event-stream frame and when to send it.
#[derive(Debug)]
struct Frame {
    /// Scaled wait before sending.
    delay: Duration,
    bytes: Bytes,
    /// Output tokens delivered once this frame is out.
    output_after: u64,
}

/// A stream in three parts, so that a fault can cut it among the deltas.
#[derive(Debug, Default)]
struct StreamPlan {
    head: Vec<Frame>,
    deltas: Vec<Frame>,
    tail: Vec<Frame>,
}

impl StreamPlan {
    fn frame(&mut self, part: Part, bytes: Bytes, delay: Duration, output_after: u64) {
        let frame = Frame { delay, bytes, output_after };
        match part {
            Part::Head => self.head.push(frame),
            Part::Delta => self.deltas.push(frame),
            Part::Tail => self.tail.push(frame),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Part {
    Head,
    Delta,
    Tail,
}

/// The pieces an answer streams in, with the output tokens each one carries.
fn answer_pieces(answer: &Answer) -> Vec<(String, u64)> {
    match &answer.content {
        AnswerContent::Text(text) => generate::chunks(text, WORDS_PER_DELTA)
            .into_iter()
            .map(|piece| (piece.to_owned(), estimate_text(piece)))
            .collect(),
        AnswerContent::ToolUse(call) => {
            let pieces = generate::char_chunks(&Answer::tool_input_json(call), CHARS_PER_TOOL_DELTA);
            let count = pieces.len() as u64;
            // Spread the call's tokens evenly so that the last piece completes the count.
            let total = answer.output_tokens;
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, piece)| {
                    let i = i as u64;
                    let share = total * (i + 1) / count - total * i / count;
                    (piece, share)
                })
                .collect()
        }
    }
}

/// Adds the answer's deltas to `plan`: the first one after the time to first token, each
/// one after the time its tokens take, so the last arrives at the modeled total.
fn plan_deltas(state: &AppState, invocation: &Invocation, plan: &mut StreamPlan, delta_frame: impl Fn(&str) -> Bytes) {
    let tier = invocation.resolved.spec.tier;
    let mut delivered = 0;
    for (i, (piece, tokens)) in answer_pieces(&invocation.answer).into_iter().enumerate() {
        delivered += tokens;
        let mut wait = state.latency.generation(tier, tokens);
        if i == 0 {
            wait += state.latency.time_to_first_token(tier);
        }
        plan.frame(Part::Delta, delta_frame(&piece), state.latency.scaled(wait), delivered);
    }
}

/// An InvokeModelWithResponseStream `chunk` event carrying one Anthropic stream event.
fn chunk(event: &Value) -> Bytes {
    eventstream::event("chunk", &json!({"bytes": BASE64.encode(event.to_string())}))
}

fn converse_stream_plan(state: &AppState, invocation: &Invocation) -> StreamPlan {
    let mut plan = StreamPlan::default();
    plan.frame(Part::Head, eventstream::event("messageStart", &json!({"role": "assistant"})), Duration::ZERO, 0);
    match &invocation.answer.content {
        AnswerContent::Text(_) => plan_deltas(state, invocation, &mut plan, |piece| {
            eventstream::event("contentBlockDelta", &json!({"contentBlockIndex": 0, "delta": {"text": piece}}))
        }),
        AnswerContent::ToolUse(call) => {
            let start =
                json!({"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": call.id, "name": call.name}}});
            plan.frame(Part::Head, eventstream::event("contentBlockStart", &start), Duration::ZERO, 0);
            plan_deltas(state, invocation, &mut plan, |piece| {
                let delta = json!({"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}});
                eventstream::event("contentBlockDelta", &delta)
            });
        }
    }
    let output = invocation.usage.output;
    let stop = eventstream::event("contentBlockStop", &json!({"contentBlockIndex": 0}));
    plan.frame(Part::Tail, stop, Duration::ZERO, output);
    let mut message_stop = json!({"stopReason": invocation.answer.stop_reason.as_str()});
    if let Some(fields) = response_fields(&invocation.outcome()) {
        message_stop["additionalModelResponseFields"] = fields;
    }
    plan.frame(Part::Tail, eventstream::event("messageStop", &message_stop), Duration::ZERO, output);
    let mut metadata = json!({
        "usage": token_usage(&invocation.usage),
        "metrics": {"latencyMs": latency_ms(invocation.modeled)},
    });
    if let Some(trace) = trace(&invocation.outcome()) {
        metadata["trace"] = trace;
    }
    if let Some(p) = &invocation.request.performance_config {
        metadata["performanceConfig"] = json!(p);
    }
    if let Some(t) = &invocation.request.service_tier {
        metadata["serviceTier"] = json!(t);
    }
    plan.frame(Part::Tail, eventstream::event("metadata", &metadata), Duration::ZERO, output);
    plan
}

fn stream_exception(kind: StreamErrorType) -> Bytes {
    let (name, payload) = match kind {
        StreamErrorType::ModelStreamError => (
            "modelStreamErrorException",
            json!({
                "message": "The model encountered an error while streaming the response. Retry your request.",
                "originalStatusCode": 500,
                "originalMessage": "Internal server error",
            }),
        ),
        StreamErrorType::InternalServer => {
            ("internalServerException", json!({"message": ApiError::InternalServer.to_string()}))
        }
        StreamErrorType::ServiceUnavailable => {
            ("serviceUnavailableException", json!({"message": ApiError::ServiceUnavailable.to_string()}))
        }
        StreamErrorType::Throttling => ("throttlingException", json!({"message": ApiError::TooManyTokens.to_string()})),
    };
    eventstream::exception(name, &payload)
}

/// Sends the plan's frames at their pace; an injected cut replaces everything after some
/// deltas with an exception frame. The ticket settles after the last frame, or with the
/// output delivered so far if the client goes away first.
fn stream_response(
    invocation: Invocation,
    plan: StreamPlan,
    extra_headers: &[(&'static str, &'static str)],
) -> Response {
    let StreamPlan { head, mut deltas, mut tail } = plan;
    let mut ending = Ending::Completed;
    if let Some(cut) = invocation.stream_cut {
        let keep = if deltas.is_empty() {
            0
        } else {
            let span = (deltas.len() - 1) as f64;
            (1 + (cut.fraction * span) as usize).min(deltas.len())
        };
        deltas.truncate(keep);
        let delivered = deltas.last().map_or(0, |f| f.output_after);
        tail = vec![Frame { delay: Duration::ZERO, bytes: stream_exception(cut.kind), output_after: delivered }];
        ending = Ending::StreamError;
    }
    let frames: VecDeque<Frame> = head.into_iter().chain(deltas).chain(tail).collect();
    invocation.ticket.stream_started();
    let ticket = invocation.ticket;
    let stream = futures_util::stream::unfold(Some((frames, ticket)), move |state| async move {
        let (mut frames, mut ticket) = state?;
        let frame = frames.pop_front()?;
        tokio::time::sleep(frame.delay).await;
        ticket.set_output(frame.output_after);
        if frames.is_empty() {
            ticket.finish(ending);
        }
        Some((Ok::<Bytes, Infallible>(frame.bytes), Some((frames, ticket))))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(eventstream::CONTENT_TYPE));
    for (name, value) in extra_headers {
        headers.insert(*name, HeaderValue::from_static(value));
    }
    response
}

async fn converse_stream(state: Arc<AppState>, model_id: &str, body: &[u8]) -> Result<Response> {
    let request = parse_converse(&state, Operation::ConverseStream, body)?;
    let invocation = engine::begin(&state, Operation::ConverseStream, model_id, request).await?;
    let plan = converse_stream_plan(&state, &invocation);
    Ok(stream_response(invocation, plan, &[]))
}

fn parse_anthropic(state: &AppState, op: Operation, body: &[u8]) -> Result<ConverseRequest> {
    anthropic::parse(body).map_err(|e| reject(state, op, e))
}

fn header_value(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

async fn invoke(state: Arc<AppState>, model_id: &str, body: &[u8]) -> Result<Response> {
    let request = parse_anthropic(&state, Operation::Invoke, body)?;
    let mut invocation = engine::begin(&state, Operation::Invoke, model_id, request).await?;
    tokio::time::sleep(state.latency.scaled(invocation.modeled)).await;
    invocation.ticket.set_output(invocation.usage.output);
    invocation.ticket.finish(Ending::Completed);
    let usage = anthropic_usage(&invocation.usage);
    let id = state.fresh_id("msg_bdrk_", 24);
    let message = anthropic::message(&id, &invocation.resolved.spec.model_id, &invocation.answer, usage);
    let mut response = json_response(StatusCode::OK, &message);
    let headers = response.headers_mut();
    headers.insert("x-amzn-bedrock-input-token-count", header_value(usage.input));
    headers.insert("x-amzn-bedrock-output-token-count", header_value(usage.output));
    headers.insert("x-amzn-bedrock-invocation-latency", header_value(latency_ms(invocation.modeled)));
    if invocation.usage.cache.used {
        headers.insert("x-amzn-bedrock-cache-read-input-token-count", header_value(usage.cache_read));
        headers.insert("x-amzn-bedrock-cache-write-input-token-count", header_value(usage.cache_write));
    }
    Ok(response)
}

fn invoke_stream_plan(state: &AppState, invocation: &Invocation, id: &str) -> StreamPlan {
    let usage = anthropic_usage(&invocation.usage);
    let model_id = &invocation.resolved.spec.model_id;
    let mut plan = StreamPlan::default();
    let start_usage = anthropic::Usage { output: 1, ..usage };
    let message_start = json!({
        "type": "message_start",
        "message": {
            "id": id, "type": "message", "role": "assistant", "model": anthropic::model_name(model_id),
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": start_usage.to_json(),
        }
    });
    plan.frame(Part::Head, chunk(&message_start), Duration::ZERO, 0);
    let block = match &invocation.answer.content {
        AnswerContent::Text(_) => json!({"type": "text", "text": ""}),
        AnswerContent::ToolUse(call) => json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}),
    };
    let block_start = json!({"type": "content_block_start", "index": 0, "content_block": block});
    plan.frame(Part::Head, chunk(&block_start), Duration::ZERO, 0);
    let is_text = matches!(invocation.answer.content, AnswerContent::Text(_));
    plan_deltas(state, invocation, &mut plan, |piece| {
        let delta = if is_text {
            json!({"type": "text_delta", "text": piece})
        } else {
            json!({"type": "input_json_delta", "partial_json": piece})
        };
        chunk(&json!({"type": "content_block_delta", "index": 0, "delta": delta}))
    });
    let output = usage.output;
    plan.frame(Part::Tail, chunk(&json!({"type": "content_block_stop", "index": 0})), Duration::ZERO, output);
    let message_delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": invocation.answer.stop_reason.as_str(), "stop_sequence": invocation.answer.stop_sequence},
        "usage": {"output_tokens": output},
    });
    plan.frame(Part::Tail, chunk(&message_delta), Duration::ZERO, output);
    let tier = invocation.resolved.spec.tier;
    let message_stop = json!({
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": usage.input,
            "outputTokenCount": output,
            "invocationLatency": latency_ms(invocation.modeled),
            "firstByteLatency": latency_ms(state.latency.time_to_first_token(tier)),
        }
    });
    plan.frame(Part::Tail, chunk(&message_stop), Duration::ZERO, output);
    plan
}

async fn invoke_stream(state: Arc<AppState>, model_id: &str, body: &[u8]) -> Result<Response> {
    let request = parse_anthropic(&state, Operation::InvokeStream, body)?;
    let invocation = engine::begin(&state, Operation::InvokeStream, model_id, request).await?;
    let id = state.fresh_id("msg_bdrk_", 24);
    let plan = invoke_stream_plan(&state, &invocation, &id);
    // The payload's type has a header of its own because the response's Content-Type is
    // taken by the event stream.
    Ok(stream_response(invocation, plan, &[("x-amzn-bedrock-content-type", "application/json")]))
}

/// CountTokens: free, and outside the model's quota, so neither faults nor throttling apply.
fn count_tokens(state: &AppState, model_id: &str, body: &[u8]) -> Result<Response> {
    let op = Operation::CountTokens;
    let input: Value = serde_json::from_slice(body)
        .map_err(|e| reject(state, op, ApiError::validation(format!("request body is not valid JSON: {e}"))))?;
    let union = input.get("input").and_then(Value::as_object).ok_or_else(|| {
        reject(state, op, ApiError::validation("`input`: required, with one of `converse` or `invokeModel`"))
    })?;
    let request = match (union.get("converse"), union.get("invokeModel"), union.len()) {
        (Some(converse), None, 1) => ConverseRequest::from_json(converse.to_string().as_bytes())
            .map_err(|e| reject(state, op, ApiError::validation(format!("input.converse.{e}"))))?,
        (None, Some(invoke), 1) => {
            let body =
                invoke.get("body").and_then(Value::as_str).and_then(|b| BASE64.decode(b).ok()).ok_or_else(|| {
                    reject(state, op, ApiError::validation("`input.invokeModel.body`: required, base64-encoded"))
                })?;
            parse_anthropic(state, op, &body)?
        }
        _ => {
            let error = ApiError::validation("`input`: exactly one of `converse` or `invokeModel` is required");
            return Err(reject(state, op, error));
        }
    };
    let bucket = match state.catalog.resolve(model_id) {
        Ok(Target::Model(m)) if m.spec.retired_on(state.today()) => {
            return Err(reject(state, op, ApiError::ResourceNotFound(END_OF_LIFE.into())));
        }
        Ok(Target::Model(m)) => QuotaKey::new(&m.spec.model_id, m.scope),
        Ok(Target::PromptRouter { .. }) => {
            let error = ApiError::validation("The provided model doesn't support counting tokens.");
            return Err(reject(state, op, error));
        }
        Err(_) => {
            // Same wording as the model operations, through the same resolution.
            let error = state.resolve(model_id, &request).err().unwrap_or_else(|| ApiError::validation(INVALID_MODEL));
            return Err(reject(state, op, error));
        }
    };
    state.stats.request(Some(&bucket), op);
    Ok(json_response(StatusCode::OK, &json!({"inputTokens": estimate_request(&request)})))
}

async fn health() -> Response {
    json_response(StatusCode::OK, &json!({"status": "ok"}))
}

fn catalog_quota(state: &AppState, bucket: &QuotaKey) -> Option<Quota> {
    state.catalog.by_model_id(&bucket.model_id).and_then(|spec| spec.quota(&bucket.scope))
}

/// A bucket's limits and what its window holds now.
fn window_json(state: &AppState, bucket: &QuotaKey, now: Instant) -> Value {
    let limits = state.quotas.limits(bucket, catalog_quota(state, bucket));
    let usage = state.quotas.usage(bucket, now);
    json!({
        "seconds": state.quotas.window().as_secs_f64(),
        "requests": usage.requests,
        "tokens": usage.tokens,
        "in_flight_tokens": usage.in_flight_tokens,
        "rpm_limit": limits.and_then(|q| q.rpm_limit()),
        "tpm_limit": limits.map(|q| q.tpm),
    })
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let (totals, models) = state.stats.snapshot();
    let now = Instant::now();
    let models: Map<String, Value> = models
        .into_iter()
        .map(|(bucket, counters)| {
            let mut value = serde_json::to_value(counters).unwrap_or_default();
            value["window"] = window_json(&state, &bucket, now);
            (bucket.to_string(), value)
        })
        .collect();
    json_response(StatusCode::OK, &json!({"totals": totals, "models": models}))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetParams {
    model: Option<String>,
}

/// Without `model`: everything back to the state at startup, batch jobs included. With it:
/// that bucket's window, runtime quota override, fault counter and statistics.
async fn reset(
    State(state): State<Arc<AppState>>,
    axum::Extension(batch): axum::Extension<Arc<crate::batch::BatchService>>,
    params: Result<Query<ResetParams>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let params = match params {
        Ok(Query(params)) => params,
        Err(e) => return ApiError::validation(e.body_text()).into_response(),
    };
    match params.model {
        None => {
            state.reset_all();
            batch.reset();
            json_response(StatusCode::OK, &json!({"reset": "all"}))
        }
        Some(id) => match bucket_of(&state.catalog, &id) {
            Ok(bucket) => {
                state.reset_bucket(&bucket);
                json_response(StatusCode::OK, &json!({"reset": bucket.to_string()}))
            }
            Err(e) => ApiError::validation(format!("`{id}`: {e}")).into_response(),
        },
    }
}

async fn list_quotas(State(state): State<Arc<AppState>>) -> Response {
    let now = Instant::now();
    let mut buckets = Vec::new();
    for spec in state.catalog.models() {
        for scope in spec.scopes() {
            let bucket = QuotaKey::new(&spec.model_id, scope);
            buckets.push(json!({"model": bucket.to_string(), "window": window_json(&state, &bucket, now)}));
        }
    }
    json_response(StatusCode::OK, &json!({"quotas": buckets}))
}

fn admin_bucket(state: &AppState, id: &str) -> Result<QuotaKey> {
    bucket_of(&state.catalog, id).map_err(|e| ApiError::validation(format!("`{id}`: {e}")))
}

fn admin_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| ApiError::validation(format!("request body: {e}")))
}

/// Sets a bucket's limits at runtime and empties its window.
async fn set_quota(State(state): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Result<Response> {
    let bucket = admin_bucket(&state, &id)?;
    let quota: QuotaOverride = admin_json(&body)?;
    if quota.tpm == Some(0) || quota.rpm == Some(0) {
        return Err(ApiError::validation("limits must be at least 1"));
    }
    state.quotas.set_runtime(&bucket, quota);
    Ok(json_response(
        StatusCode::OK,
        &json!({"model": bucket.to_string(), "window": window_json(&state, &bucket, Instant::now())}),
    ))
}

async fn clear_quota(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response> {
    let bucket = admin_bucket(&state, &id)?;
    state.quotas.reset_bucket(&bucket);
    Ok(json_response(
        StatusCode::OK,
        &json!({"model": bucket.to_string(), "window": window_json(&state, &bucket, Instant::now())}),
    ))
}

fn admin_selector(state: &AppState, id: &str) -> Result<Selector> {
    selector_of(&state.catalog, id).map_err(|e| ApiError::validation(format!("`{id}`: {e}")))
}

/// Overrides fault rates at runtime for a model (base ID: every scope) or one bucket.
async fn set_faults(State(state): State<Arc<AppState>>, Path(id): Path<String>, body: Bytes) -> Result<Response> {
    let selector = admin_selector(&state, &id)?;
    let rates: FaultOverride = admin_json(&body)?;
    let probe = match &selector {
        Selector::Bucket(bucket) => bucket.clone(),
        Selector::Model(model_id) => QuotaKey::new(model_id, gateway_core::catalog::Scope::Global),
    };
    rates.apply_to(state.faults.rates(&probe)).validate("faults").map_err(|e| ApiError::validation(e.to_string()))?;
    state.faults.set_runtime(selector, rates);
    let effective = match admin_selector(&state, &id)? {
        Selector::Bucket(bucket) => json!(state.faults.rates(&bucket)),
        Selector::Model(_) => Value::Null,
    };
    Ok(json_response(StatusCode::OK, &json!({"model": id, "override": rates, "effective": effective})))
}

async fn clear_faults(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Result<Response> {
    let selector = admin_selector(&state, &id)?;
    state.faults.clear_runtime(&selector);
    Ok(json_response(StatusCode::OK, &json!({"model": id, "override": null})))
}

fn unknown(method: &Method, path: &str) -> ApiError {
    ApiError::UnknownOperation(format!("No operation matches {method} {path}."))
}

pub(crate) fn unknown_response(method: &str, path: &str) -> Response {
    ApiError::UnknownOperation(format!("No operation matches {method} {path}.")).into_response()
}

async fn unknown_operation(method: Method, uri: Uri) -> Response {
    unknown(&method, uri.path()).into_response()
}
