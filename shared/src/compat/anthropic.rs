//! Anthropic's Messages API (`POST /v1/messages`, whole and streamed) over Converse: Claude's
//! own request shape, so the mapping is nearly one to one, `cache_control` included (a cache
//! point after the block that carries it).

use serde_json::{Map, Value, json};

use super::{
    CompatError, Tokens, check_base64, converse, image_format, invalid, is_content_filter, number, object, positive,
    string, unsupported,
};
use crate::label::ErrorLabel;
use crate::request::{ContentBlock, ConverseRequest, ReasoningContentBlock};
use crate::service::Answer;
use crate::stream::{BlockStart, Delta, ReasoningDelta, StreamEvent};

/// A Messages request, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub request: ConverseRequest,
    pub stream: bool,
}

const RENAMES: &[(&str, &str)] = &[
    ("inferenceConfig.maxTokens", "max_tokens"),
    ("inferenceConfig.temperature", "temperature"),
    ("inferenceConfig.topP", "top_p"),
    ("inferenceConfig.stopSequences", "stop_sequences"),
    ("toolConfig.tools", "tools"),
    ("toolConfig.toolChoice", "tool_choice"),
    ("modelId", "model"),
    ("messages", "messages"),
];

pub fn parse_messages_request(body: &[u8]) -> Result<MessagesRequest, CompatError> {
    let body = object(body)?;
    let mut converse_body = Map::new();
    let mut inference = Map::new();
    let mut extra = Map::new();
    let mut stream = false;
    let (mut tools, mut tool_choice) = (None, None);
    for (key, value) in &body {
        let key = key.as_str();
        match key {
            "model" => {
                converse_body.insert("modelId".into(), string(value, key)?.into());
            }
            "messages" | "system" => {}
            "max_tokens" => {
                inference.insert("maxTokens".into(), json!(positive(value, key)?));
            }
            "temperature" => {
                inference.insert("temperature".into(), json!(number(value, key)?));
            }
            "top_p" => {
                inference.insert("topP".into(), json!(number(value, key)?));
            }
            // Claude's own parameters that Converse has no field for travel in
            // additionalModelRequestFields, which Bedrock hands to the model as they are.
            "top_k" => {
                extra.insert("top_k".into(), json!(positive(value, key)?));
            }
            "thinking" => {
                extra.insert("thinking".into(), value.clone());
            }
            "stop_sequences" => {
                let stops = value.as_array().ok_or_else(|| invalid(key, "must be an array of strings"))?;
                for (i, stop) in stops.iter().enumerate() {
                    string(stop, &format!("stop_sequences[{i}]"))?;
                }
                if !stops.is_empty() {
                    inference.insert("stopSequences".into(), value.clone());
                }
            }
            "stream" => stream = value.as_bool().ok_or_else(|| invalid(key, "must be a boolean"))?,
            "tools" => tools = Some(value),
            "tool_choice" => tool_choice = Some(value),
            // Anthropic's own service: the end user's ID for abuse tracking and its capacity tier.
            "metadata" | "service_tier" => {}
            "container" | "mcp_servers" | "context_management" => {
                return Err(unsupported(key, "has no Bedrock Converse equivalent"));
            }
            other => return Err(invalid(other, "Extra inputs are not permitted")),
        }
    }
    for required in ["model", "max_tokens", "messages"] {
        if !body.contains_key(required) {
            return Err(invalid(required, "Field required"));
        }
    }
    if let Some(system) = body.get("system") {
        let blocks = system_blocks(system)?;
        if !blocks.is_empty() {
            converse_body.insert("system".into(), Value::Array(blocks));
        }
    }
    let messages = read_messages(&body["messages"])?;
    converse_body.insert("inferenceConfig".into(), Value::Object(inference));
    converse_body.insert("messages".into(), Value::Array(messages));
    if let Some(config) = tool_config(tools, tool_choice)? {
        converse_body.insert("toolConfig".into(), config);
    }
    if !extra.is_empty() {
        converse_body.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    let request = converse(&Value::Object(converse_body), RENAMES)?;
    Ok(MessagesRequest { request, stream })
}

/// A cache point for a block's `cache_control`, with its TTL.
fn cache_point(block: &Value, param: &str) -> Result<Option<Value>, CompatError> {
    let Some(control) = block.get("cache_control").filter(|c| !c.is_null()) else {
        return Ok(None);
    };
    if control.get("type").and_then(Value::as_str) != Some("ephemeral") {
        return Err(invalid(format!("{param}.cache_control.type"), "must be ephemeral"));
    }
    let mut point = json!({"type": "default"});
    match control.get("ttl").and_then(Value::as_str) {
        None => {}
        Some(ttl @ ("5m" | "1h")) => point["ttl"] = ttl.into(),
        Some(_) => return Err(invalid(format!("{param}.cache_control.ttl"), "must be 5m or 1h")),
    }
    Ok(Some(json!({"cachePoint": point})))
}

fn system_blocks(system: &Value) -> Result<Vec<Value>, CompatError> {
    match system {
        Value::String(text) if text.is_empty() => Ok(Vec::new()),
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                let param = format!("system[{i}]");
                if block.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(invalid(format!("{param}.type"), "system blocks must be text"));
                }
                out.push(json!({"text": string(&block["text"], &format!("{param}.text"))?}));
                out.extend(cache_point(block, &param)?);
            }
            Ok(out)
        }
        _ => Err(invalid("system", "must be a string or an array of text blocks")),
    }
}

fn read_messages(messages: &Value) -> Result<Vec<Value>, CompatError> {
    let items = messages.as_array().ok_or_else(|| invalid("messages", "must be an array"))?;
    if items.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, message)| {
            let param = format!("messages[{i}]");
            let role = match message.get("role").and_then(Value::as_str) {
                Some(role @ ("user" | "assistant")) => role,
                _ => return Err(invalid(format!("{param}.role"), "must be user or assistant")),
            };
            let content_param = format!("{param}.content");
            let content = match message.get("content") {
                Some(Value::String(text)) => vec![json!({"text": text})],
                Some(Value::Array(blocks)) => {
                    let mut out = Vec::new();
                    for (j, block) in blocks.iter().enumerate() {
                        let param = format!("{content_param}[{j}]");
                        out.push(content_block(block, &param)?);
                        out.extend(cache_point(block, &param)?);
                    }
                    out
                }
                _ => return Err(invalid(content_param, "must be a string or an array of content blocks")),
            };
            if content.is_empty() {
                return Err(invalid(content_param, "must not be empty"));
            }
            Ok(json!({"role": role, "content": content}))
        })
        .collect()
}

fn image(source: &Value, param: &str) -> Result<Value, CompatError> {
    if source.get("type").and_then(Value::as_str) != Some("base64") {
        return Err(invalid(format!("{param}.type"), "only base64 images: Bedrock does not fetch URLs"));
    }
    let media_type = string(&source["media_type"], &format!("{param}.media_type"))?;
    let format = image_format(media_type).ok_or_else(|| {
        invalid(format!("{param}.media_type"), "must be image/png, image/jpeg, image/gif or image/webp")
    })?;
    let data = string(&source["data"], &format!("{param}.data"))?;
    check_base64(data, &format!("{param}.data"))?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

fn content_block(block: &Value, param: &str) -> Result<Value, CompatError> {
    let field = |name: &str| format!("{param}.{name}");
    match block.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"text": string(&block["text"], &field("text"))?})),
        Some("image") => image(&block["source"], &field("source")),
        Some("tool_use") => Ok(json!({"toolUse": {
            "toolUseId": string(&block["id"], &field("id"))?,
            "name": string(&block["name"], &field("name"))?,
            "input": block.get("input").cloned().unwrap_or_else(|| json!({})),
        }})),
        Some("tool_result") => {
            let content = match block.get("content") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::String(text)) => vec![json!({"text": text})],
                Some(Value::Array(parts)) => parts
                    .iter()
                    .enumerate()
                    .map(|(k, part)| {
                        let param = format!("{}[{k}]", field("content"));
                        match part.get("type").and_then(Value::as_str) {
                            Some("text") => Ok(json!({"text": string(&part["text"], &format!("{param}.text"))?})),
                            Some("image") => image(&part["source"], &format!("{param}.source")),
                            _ => Err(invalid(param, "tool results hold text and images")),
                        }
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => return Err(invalid(field("content"), "must be a string or an array of blocks")),
            };
            let mut result =
                json!({"toolUseId": string(&block["tool_use_id"], &field("tool_use_id"))?, "content": content});
            if block.get("is_error").and_then(Value::as_bool) == Some(true) {
                result["status"] = "error".into();
            }
            Ok(json!({"toolResult": result}))
        }
        Some("thinking") => {
            let mut reasoning = json!({"text": string(&block["thinking"], &field("thinking"))?});
            if let Some(signature) = block.get("signature").and_then(Value::as_str) {
                reasoning["signature"] = signature.into();
            }
            Ok(json!({"reasoningContent": {"reasoningText": reasoning}}))
        }
        Some("redacted_thinking") => {
            Ok(json!({"reasoningContent": {"redactedContent": string(&block["data"], &field("data"))?}}))
        }
        Some(
            other @ ("document" | "search_result" | "server_tool_use" | "web_search_tool_result" | "container_upload"),
        ) => Err(unsupported(field("type"), format!("`{other}` blocks are not translated to Bedrock"))),
        _ => Err(invalid(field("type"), "unknown content block type")),
    }
}

fn tool_config(tools: Option<&Value>, choice: Option<&Value>) -> Result<Option<Value>, CompatError> {
    let Some(tools) = tools.filter(|t| !t.is_null()) else {
        return Ok(None);
    };
    let list = tools.as_array().ok_or_else(|| invalid("tools", "must be an array"))?;
    let mut specs = Vec::new();
    for (i, tool) in list.iter().enumerate() {
        let param = format!("tools[{i}]");
        if let Some(kind) = tool.get("type").and_then(Value::as_str).filter(|t| *t != "custom") {
            return Err(unsupported(
                format!("{param}.type"),
                format!("server tool `{kind}` has no Bedrock equivalent"),
            ));
        }
        let schema = match tool.get("input_schema") {
            Some(schema @ Value::Object(_)) => schema.clone(),
            _ => return Err(invalid(format!("{param}.input_schema"), "Field required")),
        };
        let mut spec =
            json!({"name": string(&tool["name"], &format!("{param}.name"))?, "inputSchema": {"json": schema}});
        if let Some(description) = tool.get("description").and_then(Value::as_str) {
            spec["description"] = description.into();
        }
        specs.push(json!({"toolSpec": spec}));
        specs.extend(cache_point(tool, &param)?);
    }
    if specs.is_empty() {
        return Ok(None);
    }
    let choice = match choice.filter(|c| !c.is_null()) {
        None => None,
        Some(choice) => match choice.get("type").and_then(Value::as_str) {
            Some("auto") => Some(json!({"auto": {}})),
            Some("any") => Some(json!({"any": {}})),
            Some("tool") => Some(json!({"tool": {"name": string(&choice["name"], "tool_choice.name")?}})),
            // Without tools the model cannot call one; Converse has no "none".
            Some("none") => return Ok(None),
            _ => return Err(invalid("tool_choice.type", "must be auto, any, tool or none")),
        },
    };
    let mut config = json!({"tools": specs});
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

pub fn stop_reason(bedrock: &str) -> &str {
    match bedrock {
        "end_turn" | "max_tokens" | "stop_sequence" | "tool_use" | "pause_turn" => bedrock,
        "model_context_window_exceeded" => "model_context_window_exceeded",
        reason if is_content_filter(reason) => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic's usage: like Bedrock's, `input_tokens` leaves the cached tokens out.
fn usage(tokens: Tokens) -> Value {
    json!({
        "input_tokens": tokens.input,
        "output_tokens": tokens.output,
        "cache_creation_input_tokens": tokens.cache_write,
        "cache_read_input_tokens": tokens.cache_read,
    })
}

pub fn message(answer: &Answer, id: &str) -> Value {
    let content: Vec<Value> = answer
        .response
        .output
        .message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(text) => Some(json!({"type": "text", "text": text})),
            ContentBlock::ToolUse(tool) => {
                Some(json!({"type": "tool_use", "id": tool.tool_use_id, "name": tool.name, "input": tool.input}))
            }
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => Some(
                json!({"type": "thinking", "thinking": r.text, "signature": r.signature.clone().unwrap_or_default()}),
            ),
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(data)) => {
                Some(json!({"type": "redacted_thinking", "data": data}))
            }
            _ => None,
        })
        .collect();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": answer.model_id,
        "content": content,
        "stop_reason": stop_reason(&answer.response.stop_reason),
        "stop_sequence": null,
        "usage": usage(Tokens::from(&answer.response.usage)),
    })
}

/// Turns ConverseStream events into Anthropic's named events. Bedrock opens only tool blocks
/// explicitly; text and reasoning blocks start with their first delta, so their
/// `content_block_start` is sent then. The stop reason waits for the usage (Bedrock sends it
/// after `messageStop`), since Anthropic carries both in `message_delta`.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    id: String,
    model: String,
    open: Vec<u32>,
    stop_reason: Option<String>,
}

impl EventEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        EventEncoder { id: id.into(), model: model.into(), open: Vec::new(), stop_reason: None }
    }

    pub fn push(&mut self, event: &StreamEvent) -> Vec<(&'static str, Value)> {
        match event {
            StreamEvent::MessageStart(_) => vec![(
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                }}),
            )],
            StreamEvent::ContentBlockStart(start) => {
                let BlockStart::ToolUse(tool) = &start.start;
                self.open.push(start.content_block_index);
                vec![(
                    "content_block_start",
                    json!({"type": "content_block_start", "index": start.content_block_index,
                        "content_block": {"type": "tool_use", "id": tool.tool_use_id, "name": tool.name, "input": {}}}),
                )]
            }
            StreamEvent::ContentBlockDelta(delta) => {
                let index = delta.content_block_index;
                let mut events = Vec::new();
                if !self.open.contains(&index) {
                    self.open.push(index);
                    let block = match &delta.delta {
                        Delta::ReasoningContent(ReasoningDelta::RedactedContent(data)) => {
                            json!({"type": "redacted_thinking", "data": data})
                        }
                        Delta::ReasoningContent(_) => json!({"type": "thinking", "thinking": "", "signature": ""}),
                        Delta::Text(_) | Delta::ToolUse(_) => json!({"type": "text", "text": ""}),
                    };
                    events.push((
                        "content_block_start",
                        json!({"type": "content_block_start", "index": index, "content_block": block}),
                    ));
                }
                let body = match &delta.delta {
                    Delta::Text(text) => json!({"type": "text_delta", "text": text}),
                    Delta::ToolUse(piece) => json!({"type": "input_json_delta", "partial_json": piece.input}),
                    Delta::ReasoningContent(ReasoningDelta::Text(text)) => {
                        json!({"type": "thinking_delta", "thinking": text})
                    }
                    Delta::ReasoningContent(ReasoningDelta::Signature(s)) => {
                        json!({"type": "signature_delta", "signature": s})
                    }
                    // Sent whole in its content_block_start.
                    Delta::ReasoningContent(ReasoningDelta::RedactedContent(_)) => return events,
                };
                events.push((
                    "content_block_delta",
                    json!({"type": "content_block_delta", "index": index, "delta": body}),
                ));
                events
            }
            StreamEvent::ContentBlockStop(stop) => {
                if !self.open.contains(&stop.content_block_index) {
                    return Vec::new();
                }
                vec![("content_block_stop", json!({"type": "content_block_stop", "index": stop.content_block_index}))]
            }
            StreamEvent::MessageStop(stop) => {
                self.stop_reason = Some(stop_reason(&stop.stop_reason).to_owned());
                Vec::new()
            }
            StreamEvent::Metadata(metadata) => vec![
                (
                    "message_delta",
                    json!({"type": "message_delta",
                        "delta": {"stop_reason": self.stop_reason.take().unwrap_or_else(|| "end_turn".into()), "stop_sequence": null},
                        "usage": usage(Tokens::from(&metadata.usage))}),
                ),
                ("message_stop", json!({"type": "message_stop"})),
            ],
        }
    }
}

/// Anthropic's error `type` for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// `label` is the gateway's name for the failure; Anthropic's shape has no field for it, so
/// it rides in the message's first words.
pub fn error_body(status: u16, label: ErrorLabel, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": format!("{}: {message}", label.as_str())}})
}

#[cfg(test)]
mod tests;
