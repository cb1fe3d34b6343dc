//! The three APIs a caller may speak: Bedrock's Converse, OpenAI's Chat Completions and
//! Anthropic's Messages. Each is only a translation into the same [`ConverseRequest`] and out
//! of the same [`Answer`] and stream events (the mappings are `gateway_core::compat`'s); this
//! module adds the HTTP framing: bodies, error bodies and server-sent events.

use gateway_core::compat::{anthropic, openai};
use gateway_core::label::ErrorLabel;
use gateway_core::request::ConverseRequest;
use gateway_core::service::{Answer, Ending, StreamEnd};
use gateway_core::stream::StreamEvent;
use serde_json::{Map, Value, json};

use crate::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Converse,
    OpenAi,
    Anthropic,
}

/// A request body read in its dialect.
#[derive(Debug)]
pub struct Parsed {
    pub request: ConverseRequest,
    /// The body asked for a stream (`stream: true`); Converse asks by its route instead.
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`.
    pub include_usage: bool,
}

impl Dialect {
    pub fn parse(self, body: &[u8]) -> Result<Parsed, ApiError> {
        match self {
            Dialect::Converse => {
                Ok(Parsed { request: ConverseRequest::from_json(body)?, stream: false, include_usage: false })
            }
            Dialect::OpenAi => {
                let chat = openai::parse_chat_request(body)?;
                Ok(Parsed { request: chat.request, stream: chat.stream, include_usage: chat.include_usage })
            }
            Dialect::Anthropic => {
                let messages = anthropic::parse_messages_request(body)?;
                Ok(Parsed { request: messages.request, stream: messages.stream, include_usage: false })
            }
        }
    }

    /// The body of an error in this dialect's shape.
    pub fn error_body(
        self,
        status: u16,
        label: ErrorLabel,
        message: &str,
        field: Option<&str>,
        request_id: &str,
    ) -> Option<Value> {
        match self {
            // The gateway's own shape, with its extra fields, is built by `ApiError`.
            Dialect::Converse => None,
            Dialect::OpenAi => Some(openai::error_body(status, label, message, field)),
            Dialect::Anthropic => {
                let mut body = anthropic::error_body(status, label, message);
                if let Some(map) = body.as_object_mut() {
                    // Anthropic's responses carry their request ID at the top level.
                    map.insert("request_id".into(), request_id.into());
                }
                Some(body)
            }
        }
    }

    /// A buffered answer's body in this dialect (`id` names it where the API has one).
    pub fn answer_body(self, answer: &Answer, id: &str, created: u64) -> Value {
        match self {
            Dialect::Converse => converse_body(answer),
            Dialect::OpenAi => openai::chat_completion(answer, &format!("chatcmpl-{id}"), created),
            Dialect::Anthropic => anthropic::message(answer, &format!("msg_{id}")),
        }
    }
}

/// Bedrock's response with the gateway's report beside it.
pub fn converse_body(answer: &Answer) -> Value {
    let mut body = serde_json::to_value(&answer.response).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.extend(report(answer));
    }
    body
}

/// What the gateway adds to an answer: which model served, what it cost, the cache, the
/// router's decision, the calls made and admission.
fn report(answer: &Answer) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("modelId".into(), answer.model_id.clone().into());
    map.insert("requestedModelId".into(), answer.requested_model.clone().into());
    map.insert("costUsd".into(), answer.cost_usd.into());
    map.insert("latencyMs".into(), (answer.latency.as_millis() as u64).into());
    map.insert("cache".into(), serde_json::to_value(&answer.cache).unwrap_or_default());
    if let Some(decision) = &answer.routing {
        map.insert("routing".into(), serde_json::to_value(decision).unwrap_or_default());
    }
    if !answer.hops.is_empty() {
        map.insert("hops".into(), serde_json::to_value(&answer.hops).unwrap_or_default());
    }
    if let Some(admission) = &answer.admission {
        map.insert("admission".into(), serde_json::to_value(admission).unwrap_or_default());
    }
    map
}

/// One server-sent event: `event:` only when the dialect names its events.
fn sse(event: Option<&str>, data: &Value) -> String {
    match event {
        Some(name) => format!("event: {name}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

/// Turns a stream's events into the dialect's server-sent events.
#[derive(Debug)]
pub enum Encoder {
    /// Bedrock's event names and bodies, then a `gateway` event with the report.
    Converse,
    OpenAi(openai::ChunkEncoder),
    Anthropic(anthropic::EventEncoder),
}

impl Encoder {
    pub fn new(dialect: Dialect, id: &str, created: u64, model: &str, include_usage: bool) -> Encoder {
        match dialect {
            Dialect::Converse => Encoder::Converse,
            Dialect::OpenAi => {
                Encoder::OpenAi(openai::ChunkEncoder::new(&format!("chatcmpl-{id}"), created, model, include_usage))
            }
            Dialect::Anthropic => Encoder::Anthropic(anthropic::EventEncoder::new(&format!("msg_{id}"), model)),
        }
    }

    pub fn event(&mut self, event: &StreamEvent) -> String {
        match self {
            Encoder::Converse => sse(Some(event.event_type()), &event.payload()),
            Encoder::OpenAi(chunks) => chunks.push(event).iter().map(|chunk| sse(None, chunk)).collect(),
            Encoder::Anthropic(events) => events.push(event).iter().map(|(name, data)| sse(Some(name), data)).collect(),
        }
    }

    /// What follows the last event: the report, or the failure that cut the stream (sent as
    /// an error event, never as a silent end), and the dialect's terminator.
    pub fn end(&mut self, end: StreamEnd, request_id: &str) -> String {
        let StreamEnd { answer, ending, time_to_first_token, output_tokens_per_second } = end;
        let failure = match ending {
            Ending::Failed(error) => Some(ApiError::Gateway(error)),
            Ending::Completed | Ending::CallerGone => None,
        };
        match (self, failure) {
            (Encoder::Converse, None) => {
                let mut summary = report(&answer);
                if let Some(ttft) = time_to_first_token {
                    summary.insert("timeToFirstTokenMs".into(), (ttft.as_millis() as u64).into());
                }
                if let Some(rate) = output_tokens_per_second {
                    summary.insert("outputTokensPerSecond".into(), json!((rate * 10.0).round() / 10.0));
                }
                sse(Some("gateway"), &Value::Object(summary))
            }
            (Encoder::Converse, Some(error)) => {
                let body =
                    json!({"type": error.label().as_str(), "message": error.to_string(), "requestId": request_id});
                sse(Some("error"), &body)
            }
            (Encoder::OpenAi(_), None) => "data: [DONE]\n\n".to_owned(),
            (Encoder::OpenAi(_), Some(error)) => {
                let status = error.status().as_u16();
                let body = openai::error_body(status, error.label(), &error.to_string(), None);
                format!("{}data: [DONE]\n\n", sse(None, &body))
            }
            (Encoder::Anthropic(_), None) => String::new(),
            (Encoder::Anthropic(_), Some(error)) => {
                let body = anthropic::error_body(error.status().as_u16(), error.label(), &error.to_string());
                sse(Some("error"), &body)
            }
        }
    }
}
