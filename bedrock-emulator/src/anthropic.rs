//! The Anthropic Messages body that InvokeModel carries for Claude on Bedrock, translated to
//! and from the Converse types so that both APIs share one engine (and give the same answer
//! to the same prompt).

use gateway_core::request::ConverseRequest;
use serde_json::{Map, Value, json};

use crate::errors::ApiError;
use crate::generate::{Answer, AnswerContent};

pub const VERSION: &str = "bedrock-2023-05-31";

const ALLOWED_KEYS: &[&str] = &[
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "messages",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
];
/// Keys with no Converse counterpart, kept as additional model fields so that they still
/// select a different answer.
const EXTRA_KEYS: &[&str] = &["top_k", "anthropic_beta", "metadata", "thinking"];

/// Bedrock reports body problems of InvokeModel in this wording.
fn malformed(detail: impl std::fmt::Display) -> ApiError {
    ApiError::validation(format!("Malformed input request: {detail}, please reformat your input and try again."))
}

/// Parses an Anthropic Messages body into the equivalent Converse request.
pub fn parse(body: &[u8]) -> Result<ConverseRequest, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| malformed(format!("invalid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(malformed("#: expected type: JSONObject"));
    };
    if let Some(key) = body.keys().find(|k| !ALLOWED_KEYS.contains(&k.as_str())) {
        return Err(malformed(format!("#: extraneous key [{key}] is not permitted")));
    }
    for key in ["anthropic_version", "max_tokens", "messages"] {
        if !body.contains_key(key) {
            return Err(malformed(format!("#: required key [{key}] not found")));
        }
    }
    if body.get("anthropic_version").and_then(Value::as_str) != Some(VERSION) {
        return Err(malformed(format!("#/anthropic_version: must be \"{VERSION}\"")));
    }
    let max_tokens = body
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n >= 1)
        .ok_or_else(|| malformed("#/max_tokens: must be an integer >= 1"))?;

    let mut converse = Map::new();
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed("#/messages: expected type: JSONArray"))?;
    let mut converted = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        let role = message
            .get("role")
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(format!("#/messages/{i}: required key [role] not found")))?;
        let content = message
            .get("content")
            .ok_or_else(|| malformed(format!("#/messages/{i}: required key [content] not found")))?;
        converted.push(json!({"role": role, "content": content_blocks(content, &format!("#/messages/{i}/content"))?}));
    }
    converse.insert("messages".into(), Value::Array(converted));
    if let Some(system) = body.get("system") {
        converse.insert("system".into(), Value::Array(system_blocks(system)?));
    }

    let mut inference = Map::new();
    inference.insert("maxTokens".into(), json!(max_tokens));
    for (from, to) in [("temperature", "temperature"), ("top_p", "topP"), ("stop_sequences", "stopSequences")] {
        if let Some(v) = body.get(from) {
            inference.insert(to.into(), v.clone());
        }
    }
    converse.insert("inferenceConfig".into(), Value::Object(inference));

    if let Some(tools) = body.get("tools") {
        let mut tool_config = Map::new();
        tool_config.insert("tools".into(), Value::Array(tool_specs(tools)?));
        if let Some(choice) = body.get("tool_choice") {
            tool_config.insert("toolChoice".into(), tool_choice(choice)?);
        }
        converse.insert("toolConfig".into(), Value::Object(tool_config));
    }
    let extra: Map<String, Value> =
        EXTRA_KEYS.iter().filter_map(|k| body.get(*k).map(|v| ((*k).to_owned(), v.clone()))).collect();
    if !extra.is_empty() {
        converse.insert("additionalModelRequestFields".into(), Value::Object(extra));
    }
    ConverseRequest::from_json(Value::Object(converse).to_string().as_bytes()).map_err(malformed)
}

fn cache_point(block: &Value) -> Option<Value> {
    let control = block.get("cache_control")?;
    Some(match control.get("ttl") {
        Some(ttl) => json!({"cachePoint": {"type": "default", "ttl": ttl}}),
        None => json!({"cachePoint": {"type": "default"}}),
    })
}

fn str_field<'a>(block: &'a Value, key: &str, at: &str) -> Result<&'a str, ApiError> {
    block.get(key).and_then(Value::as_str).ok_or_else(|| malformed(format!("{at}: required key [{key}] not found")))
}

/// `image/png` → `png`, `application/pdf` → `pdf`, `text/plain` → `txt`.
fn format_of(media_type: &str) -> String {
    match media_type {
        "text/plain" => "txt".to_owned(),
        "text/markdown" => "md".to_owned(),
        other => other.rsplit('/').next().unwrap_or(other).to_owned(),
    }
}

fn binary(block: &Value, at: &str) -> Result<(String, String), ApiError> {
    let source = block.get("source").ok_or_else(|| malformed(format!("{at}: required key [source] not found")))?;
    let media_type = str_field(source, "media_type", &format!("{at}/source"))?;
    let data = str_field(source, "data", &format!("{at}/source"))?;
    Ok((format_of(media_type), data.to_owned()))
}

fn content_blocks(content: &Value, at: &str) -> Result<Vec<Value>, ApiError> {
    let blocks = match content {
        Value::String(text) => return Ok(vec![json!({"text": text})]),
        Value::Array(blocks) => blocks,
        _ => return Err(malformed(format!("{at}: expected a string or an array"))),
    };
    let mut out = Vec::with_capacity(blocks.len());
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}/{j}");
        let kind = str_field(block, "type", &at)?;
        let converted = match kind {
            "text" => json!({"text": str_field(block, "text", &at)?}),
            "image" => {
                let (format, data) = binary(block, &at)?;
                json!({"image": {"format": format, "source": {"bytes": data}}})
            }
            "document" => {
                let (format, data) = binary(block, &at)?;
                let name = block.get("title").and_then(Value::as_str).unwrap_or("document");
                json!({"document": {"format": format, "name": name, "source": {"bytes": data}}})
            }
            "tool_use" => json!({"toolUse": {
                "toolUseId": str_field(block, "id", &at)?,
                "name": str_field(block, "name", &at)?,
                "input": block.get("input").cloned().unwrap_or_else(|| json!({})),
            }}),
            "tool_result" => {
                let inner = match block.get("content") {
                    None => vec![],
                    Some(c) => content_blocks(c, &format!("{at}/content"))?,
                };
                let is_error = block.get("is_error").and_then(Value::as_bool).unwrap_or(false);
                json!({"toolResult": {
                    "toolUseId": str_field(block, "tool_use_id", &at)?,
                    "content": inner,
                    "status": if is_error { "error" } else { "success" },
                }})
            }
            "thinking" => {
                let mut text = json!({"text": str_field(block, "thinking", &at)?});
                if let Some(signature) = block.get("signature") {
                    text["signature"] = signature.clone();
                }
                json!({"reasoningContent": {"reasoningText": text}})
            }
            "redacted_thinking" => json!({"reasoningContent": {"redactedContent": str_field(block, "data", &at)?}}),
            other => return Err(malformed(format!("{at}/type: unsupported content type `{other}`"))),
        };
        out.push(converted);
        out.extend(cache_point(block));
    }
    Ok(out)
}

fn system_blocks(system: &Value) -> Result<Vec<Value>, ApiError> {
    match system {
        Value::String(text) => Ok(vec![json!({"text": text})]),
        Value::Array(blocks) => {
            let mut out = Vec::new();
            for (i, block) in blocks.iter().enumerate() {
                out.push(json!({"text": str_field(block, "text", &format!("#/system/{i}"))?}));
                out.extend(cache_point(block));
            }
            Ok(out)
        }
        _ => Err(malformed("#/system: expected a string or an array")),
    }
}

fn tool_specs(tools: &Value) -> Result<Vec<Value>, ApiError> {
    let tools = tools.as_array().ok_or_else(|| malformed("#/tools: expected type: JSONArray"))?;
    let mut out = Vec::new();
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("#/tools/{i}");
        let schema = tool
            .get("input_schema")
            .ok_or_else(|| malformed(format!("{at}: required key [input_schema] not found")))?;
        let mut spec = json!({"name": str_field(tool, "name", &at)?, "inputSchema": {"json": schema}});
        if let Some(description) = tool.get("description") {
            spec["description"] = description.clone();
        }
        out.push(json!({ "toolSpec": spec }));
        out.extend(cache_point(tool));
    }
    Ok(out)
}

fn tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice.get("type").and_then(Value::as_str) {
        // Converse has no `none`; the tools stay in the prompt and the model answers in prose
        // unless the user names a tool, which is close enough for an emulator.
        Some("auto" | "none") => Ok(json!({"auto": {}})),
        Some("any") => Ok(json!({"any": {}})),
        Some("tool") => Ok(json!({"tool": {"name": str_field(choice, "name", "#/tool_choice")?}})),
        _ => Err(malformed("#/tool_choice/type: must be one of auto, any, tool, none")),
    }
}

/// The model name Anthropic reports: the base ID without provider and version suffix.
pub fn model_name(model_id: &str) -> String {
    let name = model_id.strip_prefix("anthropic.").unwrap_or(model_id);
    match name.rsplit_once("-v") {
        Some((stem, version)) if version.contains(':') => stem.to_owned(),
        _ => name.to_owned(),
    }
}

/// The content array of an Anthropic response.
pub fn content(answer: &Answer) -> Value {
    match &answer.content {
        AnswerContent::Text(text) => json!([{"type": "text", "text": text}]),
        AnswerContent::ToolUse(call) => {
            json!([{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}])
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl Usage {
    pub fn to_json(self) -> Value {
        json!({
            "input_tokens": self.input,
            "output_tokens": self.output,
            "cache_creation_input_tokens": self.cache_write,
            "cache_read_input_tokens": self.cache_read,
        })
    }
}

/// A complete Anthropic Messages response.
pub fn message(id: &str, model_id: &str, answer: &Answer, usage: Usage) -> Value {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model_name(model_id),
        "content": content(answer),
        "stop_reason": answer.stop_reason.as_str(),
        "stop_sequence": answer.stop_sequence,
        "usage": usage.to_json(),
    })
}

#[cfg(test)]
mod tests {
    use gateway_core::request::{ContentBlock, SystemContentBlock, Tool, ToolChoice};

    use super::*;

    fn parse_json(v: Value) -> Result<ConverseRequest, ApiError> {
        parse(v.to_string().as_bytes())
    }

    #[test]
    fn a_full_body_maps_onto_converse() {
        let r = parse_json(json!({
            "anthropic_version": VERSION,
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "What is 2+2?"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "calc", "input": {"e": "2+2"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "4"}]}
            ],
            "temperature": 0.5,
            "top_k": 10,
            "stop_sequences": ["END"],
            "tools": [{"name": "calc", "description": "math", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any"}
        }))
        .unwrap();
        assert_eq!(r.max_tokens(), Some(100));
        assert!(matches!(r.system[1], SystemContentBlock::CachePoint(_)));
        assert!(matches!(r.messages[0].content[0], ContentBlock::Text(ref t) if t == "What is 2+2?"));
        assert!(matches!(r.messages[2].content[0], ContentBlock::ToolResult(_)));
        let tools = r.tool_config.unwrap();
        assert!(matches!(tools.tools[0], Tool::ToolSpec(_)));
        assert!(matches!(tools.tool_choice, Some(ToolChoice::Any(_))));
        assert_eq!(r.additional_model_request_fields.unwrap()["top_k"], 10);
    }

    #[test]
    fn missing_or_extra_keys_are_reported_like_bedrock() {
        let err = parse_json(json!({"anthropic_version": VERSION, "messages": []})).unwrap_err();
        assert!(err.to_string().contains("required key [max_tokens] not found"), "{err}");
        let err = parse_json(json!({"max_tokens": 5, "messages": []})).unwrap_err();
        assert!(err.to_string().contains("required key [anthropic_version]"), "{err}");
        let err = parse_json(json!({"anthropic_version": VERSION, "max_tokens": 5, "messages": [], "prompt": "x"}))
            .unwrap_err();
        assert!(err.to_string().contains("extraneous key [prompt]"), "{err}");
        let err = parse_json(json!({"anthropic_version": VERSION, "max_tokens": 5, "messages": []})).unwrap_err();
        assert!(err.to_string().starts_with("Malformed input request"), "{err}");
    }

    #[test]
    fn model_names_drop_provider_and_version() {
        assert_eq!(model_name("anthropic.claude-3-haiku-20240307-v1:0"), "claude-3-haiku-20240307");
        assert_eq!(model_name("anthropic.claude-3-5-sonnet-20241022-v2:0"), "claude-3-5-sonnet-20241022");
    }
}
