//! OpenAI's Chat Completions (`POST /v1/chat/completions`, whole and streamed) and its model
//! list, over Converse.
//!
//! Parameters Bedrock cannot honour are refused with OpenAI's error shape rather than passed
//! on to fail there or, worse, silently ignored; parameters that only tune OpenAI's own
//! service (`store`, `metadata`, `user`, `seed` ...) are accepted and left out.

use serde_json::{Map, Value, json};

use super::{
    CompatError, Tokens, check_base64, converse, image_format, invalid, is_content_filter, number, object, positive,
    string, unsupported,
};
use crate::catalog::{Catalog, Tier};
use crate::label::ErrorLabel;
use crate::request::{ContentBlock, ConverseRequest};
use crate::service::{AUTO_MODEL, Answer};
use crate::stream::{BlockStart, Delta, StreamEvent};

/// A Chat Completions request, translated.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// `modelId` is the request's `model` as given: a tier name, `auto` or a Bedrock ID.
    pub request: ConverseRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage and no choices.
    pub include_usage: bool,
    pub user: Option<String>,
}

/// Converse paths and the parameters they came from, for errors found by Converse's checks.
const RENAMES: &[(&str, &str)] = &[
    ("inferenceConfig.maxTokens", "max_tokens"),
    ("inferenceConfig.temperature", "temperature"),
    ("inferenceConfig.topP", "top_p"),
    ("inferenceConfig.stopSequences", "stop"),
    ("toolConfig.tools", "tools"),
    ("toolConfig.toolChoice", "tool_choice"),
    ("modelId", "model"),
    ("messages", "messages"),
];

pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, CompatError> {
    let body = object(body)?;
    let mut converse_body = Map::new();
    let mut inference = Map::new();
    let (mut stream, mut include_usage, mut user) = (false, false, None);
    let mut tools: Option<&Value> = None;
    let mut tool_choice: Option<&Value> = None;
    let mut max_tokens: Option<(u64, &str)> = None;
    for (key, value) in &body {
        let key = key.as_str();
        match key {
            "model" => {
                converse_body.insert("modelId".into(), string(value, key)?.into());
            }
            "messages" => {}
            "max_tokens" | "max_completion_tokens" if value.is_null() => {}
            "max_tokens" | "max_completion_tokens" => {
                let n = positive(value, key)?;
                if let Some((other, name)) = max_tokens
                    && other != n
                {
                    return Err(invalid(key, format!("differs from `{name}`; give one of them")));
                }
                max_tokens = Some((n, key));
            }
            "temperature" | "top_p" if value.is_null() => {}
            "temperature" => {
                inference.insert("temperature".into(), json!(number(value, key)?));
            }
            "top_p" => {
                inference.insert("topP".into(), json!(number(value, key)?));
            }
            "stop" => {
                let stops = match value {
                    Value::Null => Vec::new(),
                    Value::String(s) => vec![s.clone()],
                    Value::Array(items) => items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| string(s, &format!("stop[{i}]")).map(str::to_owned))
                        .collect::<Result<_, _>>()?,
                    _ => return Err(invalid(key, "must be a string or an array of strings")),
                };
                if stops.len() > 4 {
                    return Err(invalid(key, "at most 4 stop sequences"));
                }
                if !stops.is_empty() {
                    inference.insert("stopSequences".into(), json!(stops));
                }
            }
            "stream" => stream = value.as_bool().ok_or_else(|| invalid(key, "must be a boolean"))?,
            "stream_options" => match value {
                Value::Null => {}
                Value::Object(options) => {
                    for (option, setting) in options {
                        match option.as_str() {
                            "include_usage" => {
                                include_usage = setting
                                    .as_bool()
                                    .ok_or_else(|| invalid("stream_options.include_usage", "must be a boolean"))?
                            }
                            // Obfuscation pads chunks against length side channels on OpenAI's network.
                            "include_obfuscation" => {}
                            other => return Err(CompatError::Unrecognized(format!("stream_options.{other}"))),
                        }
                    }
                }
                _ => return Err(invalid(key, "must be an object")),
            },
            "tools" => tools = Some(value).filter(|v| !v.is_null()),
            "tool_choice" => tool_choice = Some(value).filter(|v| !v.is_null()),
            "user" | "safety_identifier" => {
                user = value.as_str().map(str::to_owned);
            }
            // OpenAI's own service: storage, tagging, its prompt cache's routing, sampling
            // seeds Bedrock has no equivalent for. Nothing about the answer depends on them.
            "store" | "metadata" | "seed" | "prompt_cache_key" | "service_tier" | "parallel_tool_calls" => {}
            "n" => {
                if !(value.is_null() || value.as_u64() == Some(1)) {
                    return Err(unsupported(key, "Bedrock returns one choice per request; send n = 1"));
                }
            }
            "logprobs" => {
                if !(value.is_null() || value == &Value::Bool(false)) {
                    return Err(unsupported(key, "Bedrock does not return token log probabilities"));
                }
            }
            "top_logprobs" => {
                if !(value.is_null() || value.as_u64() == Some(0)) {
                    return Err(unsupported(key, "Bedrock does not return token log probabilities"));
                }
            }
            "presence_penalty" | "frequency_penalty" => {
                if !(value.is_null() || value.as_f64() == Some(0.0)) {
                    return Err(unsupported(key, "Claude on Bedrock has no repetition penalties"));
                }
            }
            "logit_bias" => {
                if !(value.is_null() || value.as_object().is_some_and(Map::is_empty)) {
                    return Err(unsupported(key, "Claude on Bedrock takes no token biases"));
                }
            }
            "response_format" => {
                let kind = value.get("type").and_then(Value::as_str);
                if !(value.is_null() || kind == Some("text")) {
                    return Err(unsupported(
                        key,
                        "structured output formats are not translated; describe the format in the prompt or use a tool",
                    ));
                }
            }
            "modalities" => {
                if !(value.is_null() || value == &json!(["text"])) {
                    return Err(unsupported(key, "only text answers"));
                }
            }
            "audio" | "prediction" | "web_search_options" | "reasoning_effort" | "verbosity" | "functions"
            | "function_call" => {
                if !value.is_null() {
                    return Err(unsupported(key, "has no Bedrock Converse equivalent"));
                }
            }
            other => return Err(CompatError::Unrecognized(other.to_owned())),
        }
    }
    let messages = body.get("messages").ok_or_else(|| invalid("messages", "is required"))?;
    if !body.contains_key("model") {
        return Err(invalid("model", "is required"));
    }
    let (system, messages) = read_messages(messages)?;
    if messages.is_empty() {
        return Err(invalid("messages", "at least one user or assistant message is required"));
    }
    let uses_tools = messages.iter().any(|m| {
        m["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b.get("toolUse").is_some() || b.get("toolResult").is_some()))
    });
    if let Some((n, _)) = max_tokens {
        inference.insert("maxTokens".into(), json!(n));
    }
    if !inference.is_empty() {
        converse_body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if !system.is_empty() {
        converse_body.insert("system".into(), Value::Array(system));
    }
    converse_body.insert("messages".into(), Value::Array(messages));
    if let Some(config) = tool_config(tools, tool_choice, uses_tools)? {
        converse_body.insert("toolConfig".into(), config);
    }
    let request = converse(&Value::Object(converse_body), RENAMES)?;
    Ok(ChatRequest { request, stream, include_usage, user })
}

/// OpenAI's content: a string, or an array of parts of which `allowed` says which kinds count.
fn text_parts(content: &Value, param: &str) -> Result<Vec<String>, CompatError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, part)| {
                let param = format!("{param}[{i}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => Ok(string(&part["text"], &format!("{param}.text"))?.to_owned()),
                    _ => Err(invalid(param, "only text parts are allowed here")),
                }
            })
            .collect(),
        _ => Err(invalid(param, "must be a string or an array of content parts")),
    }
}

fn user_blocks(content: &Value, param: &str) -> Result<Vec<Value>, CompatError> {
    let Value::Array(parts) = content else {
        return Ok(text_parts(content, param)?.into_iter().map(|t| json!({"text": t})).collect());
    };
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let param = format!("{param}[{i}]");
            match part.get("type").and_then(Value::as_str) {
                Some("text") => Ok(json!({"text": string(&part["text"], &format!("{param}.text"))?})),
                Some("image_url") => image(&part["image_url"], &format!("{param}.image_url")),
                Some(other @ ("input_audio" | "file")) => {
                    Err(unsupported(param, format!("`{other}` parts are not translated to Bedrock")))
                }
                _ => Err(invalid(param, "unknown content part type")),
            }
        })
        .collect()
}

/// Bedrock takes image bytes, never a URL it would fetch: only `data:` URLs are accepted.
fn image(image_url: &Value, param: &str) -> Result<Value, CompatError> {
    let url = match image_url {
        Value::String(url) => url.as_str(),
        other => string(&other["url"], &format!("{param}.url"))?,
    };
    let param = format!("{param}.url");
    let Some(rest) = url.strip_prefix("data:") else {
        return Err(invalid(
            param,
            "only data URLs (data:image/png;base64,...) are accepted: Bedrock does not fetch URLs",
        ));
    };
    let (media_type, data) = rest
        .split_once(";base64,")
        .ok_or_else(|| invalid(&param, "a data URL must be base64 (data:<media type>;base64,<data>)"))?;
    let format = image_format(media_type)
        .ok_or_else(|| invalid(&param, "the image must be image/png, image/jpeg, image/gif or image/webp"))?;
    check_base64(data, &param)?;
    Ok(json!({"image": {"format": format, "source": {"bytes": data}}}))
}

/// OpenAI's messages as Converse's: system and developer messages into `system`, the others
/// in order with consecutive messages of one role merged (Converse wants the roles to
/// alternate; an OpenAI conversation may send several tool results in a row).
fn read_messages(messages: &Value) -> Result<(Vec<Value>, Vec<Value>), CompatError> {
    let items = messages.as_array().ok_or_else(|| invalid("messages", "must be an array"))?;
    if items.is_empty() {
        return Err(invalid("messages", "at least one message is required"));
    }
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in items.iter().enumerate() {
        let param = format!("messages[{i}]");
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("{param}.role"), "is required"))?;
        let content = message.get("content").unwrap_or(&Value::Null);
        let content_param = format!("{param}.content");
        let (role, blocks) = match role {
            "system" | "developer" => {
                let texts = text_parts(content, &content_param)?;
                if texts.iter().all(|t| t.trim().is_empty()) {
                    return Err(invalid(content_param, "must not be empty"));
                }
                system.extend(texts.into_iter().map(|t| json!({"text": t})));
                continue;
            }
            "user" => {
                let blocks = user_blocks(content, &content_param)?;
                ("user", blocks)
            }
            "assistant" => {
                let mut blocks: Vec<Value> = text_parts(content, &content_param)?
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .map(|t| json!({"text": t}))
                    .collect();
                if let Some(calls) = message.get("tool_calls").filter(|c| !c.is_null()) {
                    let calls =
                        calls.as_array().ok_or_else(|| invalid(format!("{param}.tool_calls"), "must be an array"))?;
                    for (j, call) in calls.iter().enumerate() {
                        blocks.push(tool_use(call, &format!("{param}.tool_calls[{j}]"))?);
                    }
                }
                ("assistant", blocks)
            }
            "tool" => {
                let id = string(message.get("tool_call_id").unwrap_or(&Value::Null), &format!("{param}.tool_call_id"))?;
                let texts = text_parts(content, &content_param)?;
                let content: Vec<Value> = texts.into_iter().map(|t| json!({"text": t})).collect();
                ("user", vec![json!({"toolResult": {"toolUseId": id, "content": content}})])
            }
            "function" => {
                return Err(unsupported(format!("{param}.role"), "`function` messages are deprecated; use `tool`"));
            }
            _ => return Err(invalid(format!("{param}.role"), "must be system, developer, user, assistant or tool")),
        };
        if blocks.is_empty() {
            return Err(invalid(content_param, "a message needs content (or tool calls)"));
        }
        match turns.last_mut() {
            Some((last, so_far)) if *last == role => so_far.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages = turns.into_iter().map(|(role, content)| json!({"role": role, "content": content})).collect();
    Ok((system, messages))
}

fn tool_use(call: &Value, param: &str) -> Result<Value, CompatError> {
    let id = string(&call["id"], &format!("{param}.id"))?;
    let function = &call["function"];
    let name = string(&function["name"], &format!("{param}.function.name"))?;
    let arguments = string(&function["arguments"], &format!("{param}.function.arguments"))?;
    let input: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(arguments)
            .map_err(|_| invalid(format!("{param}.function.arguments"), "must be a JSON text"))?
    };
    Ok(json!({"toolUse": {"toolUseId": id, "name": name, "input": input}}))
}

fn tool_config(
    tools: Option<&Value>,
    choice: Option<&Value>,
    history_uses_tools: bool,
) -> Result<Option<Value>, CompatError> {
    let Some(tools) = tools else {
        if choice.is_some_and(|c| c != "none" && c != "auto") {
            return Err(invalid("tool_choice", "needs `tools`"));
        }
        return Ok(None);
    };
    let list = tools.as_array().ok_or_else(|| invalid("tools", "must be an array"))?;
    let specs = list
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let param = format!("tools[{i}]");
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return Err(unsupported(format!("{param}.type"), "only `function` tools are translated"));
            }
            let function = &tool["function"];
            let name = string(&function["name"], &format!("{param}.function.name"))?;
            let schema = match function.get("parameters") {
                None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => return Err(invalid(format!("{param}.function.parameters"), "must be a JSON Schema object")),
            };
            let mut spec = json!({"name": name, "inputSchema": {"json": schema}});
            if let Some(description) = function.get("description").and_then(Value::as_str) {
                spec["description"] = description.into();
            }
            Ok(json!({"toolSpec": spec}))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if specs.is_empty() {
        return Ok(None);
    }
    let choice = match choice {
        None => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"auto": {}})),
            "required" => Some(json!({"any": {}})),
            // Converse has no "none": without tools the model cannot call one. A conversation
            // that already holds tool calls must keep the tools (Bedrock requires them there).
            "none" if history_uses_tools => None,
            "none" => return Ok(None),
            _ => return Err(invalid("tool_choice", "must be none, auto, required or a named function")),
        },
        Some(named) => {
            let name = string(&named["function"]["name"], "tool_choice.function.name")?;
            Some(json!({"tool": {"name": name}}))
        }
    };
    let mut config = json!({"tools": specs});
    if let Some(choice) = choice {
        config["toolChoice"] = choice;
    }
    Ok(Some(config))
}

pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        reason if is_content_filter(reason) => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's usage: `prompt_tokens` counts every input token, the cached ones among them.
fn usage(tokens: Tokens) -> Value {
    let prompt = tokens.input + tokens.cache_read + tokens.cache_write;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": tokens.output,
        "total_tokens": prompt + tokens.output,
        "prompt_tokens_details": {"cached_tokens": tokens.cache_read},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

pub fn chat_completion(answer: &Answer, id: &str, created: u64) -> Value {
    let blocks = &answer.response.output.message.content;
    let text: String = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let calls: Vec<Value> = blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(tool) => Some(json!({
                "id": tool.tool_use_id,
                "type": "function",
                "function": {"name": tool.name, "arguments": tool.input.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({"role": "assistant", "content": (!text.is_empty() || calls.is_empty()).then_some(text), "refusal": null});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": answer.model_id,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason(&answer.response.stop_reason),
        }],
        "usage": usage(Tokens::from(&answer.response.usage)),
    })
}

/// Turns ConverseStream events into `chat.completion.chunk` bodies.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// Bedrock block index of each tool call, in order: its OpenAI `index`.
    tool_blocks: Vec<u32>,
}

impl ChunkEncoder {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        ChunkEncoder { id: id.into(), created, model: model.into(), include_usage, tool_blocks: Vec::new() }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    pub fn push(&mut self, event: &StreamEvent) -> Vec<Value> {
        match event {
            StreamEvent::MessageStart(_) => vec![self.chunk(json!({"role": "assistant"}), None)],
            StreamEvent::ContentBlockStart(start) => {
                let BlockStart::ToolUse(tool) = &start.start;
                let index = self.tool_blocks.len();
                self.tool_blocks.push(start.content_block_index);
                let call = json!({"index": index, "id": tool.tool_use_id, "type": "function",
                    "function": {"name": tool.name, "arguments": ""}});
                vec![self.chunk(json!({"tool_calls": [call]}), None)]
            }
            StreamEvent::ContentBlockDelta(delta) => match &delta.delta {
                Delta::Text(text) if text.is_empty() => Vec::new(),
                Delta::Text(text) => vec![self.chunk(json!({"content": text}), None)],
                Delta::ToolUse(piece) => {
                    let Some(index) = self.tool_blocks.iter().position(|b| *b == delta.content_block_index) else {
                        return Vec::new();
                    };
                    let call = json!({"index": index, "function": {"arguments": piece.input}});
                    vec![self.chunk(json!({"tool_calls": [call]}), None)]
                }
                // Chat Completions has no place for the model's reasoning.
                Delta::ReasoningContent(_) => Vec::new(),
            },
            StreamEvent::ContentBlockStop(_) => Vec::new(),
            StreamEvent::MessageStop(stop) => vec![self.chunk(json!({}), Some(finish_reason(&stop.stop_reason)))],
            StreamEvent::Metadata(metadata) if self.include_usage => vec![json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(Tokens::from(&metadata.usage)),
            })],
            StreamEvent::Metadata(_) => Vec::new(),
        }
    }
}

/// OpenAI's error `type` for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

pub fn error_body(status: u16, label: ErrorLabel, message: &str, param: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": error_type(status), "param": param, "code": label.as_str()}})
}

/// The model list: `auto`, the tier names, and every catalog model by its Bedrock IDs.
pub fn models(catalog: &Catalog, created: u64) -> Value {
    let entry = |id: &str| json!({"id": id, "object": "model", "created": created, "owned_by": "bedrock-gateway"});
    let mut data = vec![entry(AUTO_MODEL)];
    data.extend(Tier::ALL.iter().map(|t| entry(t.as_str())));
    for spec in catalog.models() {
        data.push(entry(&spec.model_id));
        data.extend(spec.profiles.iter().map(|p| entry(&format!("{p}.{}", spec.model_id))));
    }
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests;
