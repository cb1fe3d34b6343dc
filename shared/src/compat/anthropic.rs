//! Anthropic's Messages API (`POST /v1/messages`) over Converse.
//!
//! The two are close (Converse's Claude support follows the Messages API), so most of this is
//! a change of spelling. The differences that matter: Converse takes cache points as blocks
//! after the cached content where Anthropic marks the block itself (`cache_control`), Claude's
//! own knobs without a Converse field (`top_k`, `thinking`) travel in
//! `additionalModelRequestFields`, and Converse's stream has no start event for text and
//! reasoning blocks, so the encoder opens them on their first delta.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::{
    Choice, CompatError, Conversation, JsonObject, Origins, SystemPrompt, as_array, as_bool, as_f32, as_object, as_str,
    as_u32, cache_point, field, image_format, item, looks_like_base64, only_known, parse_object, present, read_tools,
    required_str, tool_config as shared_tool_config,
};
use crate::label::ErrorLabel;
use crate::request::{
    BinarySource, CachePointBlock, CacheTtl, ContentBlock, ConverseRequest, DocumentBlock, ImageBlock, InferenceConfig,
    ReasoningContentBlock, ReasoningText, Role, SystemContentBlock, TokenUsage, Tool, ToolConfig, ToolInputSchema,
    ToolResultBlock, ToolResultContent, ToolResultStatus, ToolSpec, ToolUseBlock,
};
use crate::service::Answer;
use crate::stream::{BlockStart, Delta, ReasoningDelta, StreamEvent};

/// Every top-level parameter this module has a decision for; others are refused by name.
const KNOWN_PARAMETERS: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "cache_control",
    "container",
    "context_management",
    "inference_geo",
    "mcp_servers",
    "metadata",
    "output_config",
    "service_tier",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
];

/// Asks Bedrock to report which stop sequence ended the answer: Converse's own response says
/// only `stop_sequence`, while Anthropic's names the sequence.
const STOP_SEQUENCE_POINTER: &str = "/stop_sequence";

/// A Messages request as the gateway will serve it; `model_id` is the `model` as given.
#[derive(Debug, Clone, PartialEq)]
pub struct MessagesRequest {
    pub request: ConverseRequest,
    pub stream: bool,
}

pub fn parse_messages_request(body: &[u8]) -> Result<MessagesRequest, CompatError> {
    let root = parse_object(body)?;
    only_known(&root, "", KNOWN_PARAMETERS)?;
    refuse_what_bedrock_cannot_honour(&root)?;
    let model = required_str(&root, "", "model")?.to_owned();
    let max_tokens = match present(&root, "max_tokens") {
        Some(value) => as_u32(value, "max_tokens")?,
        None => return Err(CompatError::invalid("max_tokens", "is required")),
    };
    let messages = match present(&root, "messages") {
        Some(value) => as_array(value, "messages")?,
        None => return Err(CompatError::invalid("messages", "is required")),
    };
    if messages.is_empty() {
        return Err(CompatError::invalid("messages", "must contain at least one message"));
    }
    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        read_message(message, &item("messages", i), &mut conversation)?;
    }
    // Top-level `cache_control` marks "the last cacheable block in the request": the end of
    // the last message, where a cache point caches the whole prompt.
    if let Some(point) = cache_control(&root, "")?
        && let (Some(last), Some((_, origins))) = (conversation.messages.last_mut(), conversation.origins.last_mut())
    {
        last.content.push(ContentBlock::CachePoint(point));
        origins.push("cache_control".to_owned());
    }
    let system = system_prompt(&root)?;

    let mut origins = Origins {
        max_tokens: "max_tokens".into(),
        stop: ("stop_sequences".into(), true),
        tool_name: ".name",
        tool_schema: ".input_schema",
        tool_choice_name: "tool_choice.name",
        cache_point: "cache_control",
        ..Origins::default()
    };
    let stop_sequences = match present(&root, "stop_sequences") {
        Some(value) => as_array(value, "stop_sequences")?
            .iter()
            .enumerate()
            .map(|(i, s)| as_str(s, &item("stop_sequences", i)).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let inference_config = InferenceConfig {
        max_tokens: Some(max_tokens),
        temperature: present(&root, "temperature").map(|v| as_f32(v, "temperature")).transpose()?,
        top_p: present(&root, "top_p").map(|v| as_f32(v, "top_p")).transpose()?,
        stop_sequences,
    };
    let tool_config = tool_config(&root, conversation.has_tool_blocks(), &mut origins)?;
    let additional_model_request_fields = model_fields(&root)?;
    let stream = present(&root, "stream").map(|v| as_bool(v, "stream")).transpose()?.unwrap_or(false);
    // Ignored: `metadata` (`user_id`, for Anthropic's abuse detection) and `service_tier`
    // (`auto` may use Anthropic's priority capacity, `standard_only` never does; Bedrock's
    // standard tier serves both).

    let additional_model_response_field_paths =
        if inference_config.stop_sequences.is_empty() { Vec::new() } else { vec![STOP_SEQUENCE_POINTER.to_owned()] };
    origins.messages = conversation.origins;
    origins.system = system.origins;
    let request = ConverseRequest {
        model_id: Some(model),
        messages: conversation.messages,
        system: system.blocks,
        inference_config: Some(inference_config),
        tool_config,
        additional_model_request_fields,
        additional_model_response_field_paths,
        guardrail_config: None,
        prompt_variables: BTreeMap::new(),
        request_metadata: BTreeMap::new(),
        performance_config: None,
        service_tier: None,
    };
    request.validate().map_err(|e| origins.validation_error(e))?;
    Ok(MessagesRequest { request, stream })
}

/// Anthropic features with no Converse counterpart: dropping them would change the answer.
fn refuse_what_bedrock_cannot_honour(root: &JsonObject) -> Result<(), CompatError> {
    let refusals = [
        ("container", "code execution containers are Anthropic's"),
        ("context_management", "Converse does not edit the context"),
        ("mcp_servers", "the gateway does not connect to MCP servers"),
        // A residency constraint the gateway cannot see to: the deployment's Region and
        // inference profile decide where Bedrock runs the call.
        ("inference_geo", "where inference runs is set by the deployment's Region and inference profile"),
    ];
    for (param, reason) in refusals {
        if present(root, param).is_some() {
            return Err(CompatError::unsupported(param, reason));
        }
    }
    if let Some(config) = present(root, "output_config") {
        let config = as_object(config, "output_config")?;
        only_known(config, "output_config", &["effort", "format"])?;
        for param in ["effort", "format"] {
            if present(config, param).is_some() {
                return Err(CompatError::unsupported(field("output_config", param), "not available through Converse"));
            }
        }
    }
    Ok(())
}

fn read_message(value: &Value, path: &str, conversation: &mut Conversation) -> Result<(), CompatError> {
    let message = as_object(value, path)?;
    only_known(message, path, &["role", "content"])?;
    let role = match required_str(message, path, "role")? {
        "user" => Role::User,
        "assistant" => Role::Assistant,
        "system" => {
            return Err(CompatError::unsupported(
                field(path, "role"),
                "system turns inside the conversation; use the top-level system",
            ));
        }
        _ => return Err(CompatError::invalid(field(path, "role"), "must be `user` or `assistant`")),
    };
    let content_path = field(path, "content");
    let content = present(message, "content").ok_or_else(|| CompatError::invalid(&content_path, "is required"))?;
    let blocks = if let Some(text) = content.as_str() {
        vec![(ContentBlock::Text(text.to_owned()), content_path)]
    } else {
        let list = content
            .as_array()
            .ok_or_else(|| CompatError::invalid(&content_path, "expected a string or an array of content blocks"))?;
        if list.is_empty() {
            return Err(CompatError::invalid(content_path, "must not be empty"));
        }
        let mut blocks = Vec::with_capacity(list.len());
        for (j, block) in list.iter().enumerate() {
            let block_path = item(&content_path, j);
            let block = as_object(block, &block_path)?;
            blocks.push((content_block(block, &block_path, conversation)?, block_path.clone()));
            if let Some(point) = cache_control(block, &block_path)? {
                blocks.push((ContentBlock::CachePoint(point), field(&block_path, "cache_control")));
            }
        }
        blocks
    };
    // Anthropic merges consecutive turns of one role itself; Converse requires the merge.
    conversation.push(role, path.to_owned(), blocks);
    Ok(())
}

fn content_block(block: &JsonObject, path: &str, conversation: &mut Conversation) -> Result<ContentBlock, CompatError> {
    let kind = required_str(block, path, "type")?;
    Ok(match kind {
        "text" => ContentBlock::Text(text_block(block, path)?),
        "image" => {
            only_known(block, path, &["type", "source", "cache_control"])?;
            ContentBlock::Image(image_block(block, path)?)
        }
        "document" => ContentBlock::Document(document_block(block, path, conversation)?),
        "tool_use" => {
            // `toolset_name` is on the SDK's answer type: a client that sends an answer's blocks
            // back as it got them (the documented tool loop) sends it too.
            only_known(block, path, &["type", "id", "name", "input", "cache_control", "caller", "toolset_name"])?;
            if let Some(caller) = present(block, "caller")
                && caller.get("type").and_then(Value::as_str) != Some("direct")
            {
                return Err(CompatError::unsupported(field(path, "caller"), "only direct tool calls"));
            }
            let input_path = field(path, "input");
            let input = present(block, "input").ok_or_else(|| CompatError::invalid(&input_path, "is required"))?;
            as_object(input, &input_path)?;
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: required_str(block, path, "id")?.to_owned(),
                name: required_str(block, path, "name")?.to_owned(),
                input: input.clone(),
            })
        }
        "tool_result" => ContentBlock::ToolResult(tool_result(block, path, conversation)?),
        "thinking" => {
            only_known(block, path, &["type", "thinking", "signature"])?;
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: required_str(block, path, "thinking")?.to_owned(),
                signature: Some(required_str(block, path, "signature")?.to_owned()),
            }))
        }
        "redacted_thinking" => {
            only_known(block, path, &["type", "data"])?;
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(
                required_str(block, path, "data")?.to_owned(),
            ))
        }
        _ => {
            return Err(CompatError::unsupported(
                field(path, "type"),
                "only text, image, document, tool_use, tool_result, thinking and redacted_thinking blocks",
            ));
        }
    })
}

fn text_block(block: &JsonObject, path: &str) -> Result<String, CompatError> {
    only_known(block, path, &["type", "text", "cache_control", "citations"])?;
    // Citations on a request's text are earlier answers' references; Converse takes none.
    if present(block, "citations").is_some_and(|c| c.as_array().is_none_or(|list| !list.is_empty())) {
        return Err(CompatError::unsupported(field(path, "citations"), "citations are not passed to Bedrock"));
    }
    Ok(required_str(block, path, "text")?.to_owned())
}

fn source<'a>(block: &'a JsonObject, path: &str) -> Result<(&'a JsonObject, String), CompatError> {
    let source_path = field(path, "source");
    match present(block, "source") {
        Some(value) => Ok((as_object(value, &source_path)?, source_path)),
        None => Err(CompatError::invalid(source_path, "is required")),
    }
}

/// An image; only inline base64, since Bedrock takes bytes and the gateway fetches nothing.
fn image_block(block: &JsonObject, path: &str) -> Result<ImageBlock, CompatError> {
    let (source, source_path) = source(block, path)?;
    match required_str(source, &source_path, "type")? {
        "base64" => {}
        "url" | "file" => {
            return Err(CompatError::unsupported(
                field(&source_path, "type"),
                "Bedrock cannot fetch images; send them as base64",
            ));
        }
        _ => return Err(CompatError::invalid(field(&source_path, "type"), "must be `base64`")),
    }
    only_known(source, &source_path, &["type", "media_type", "data"])?;
    let format = image_format(required_str(source, &source_path, "media_type")?).ok_or_else(|| {
        CompatError::invalid(
            field(&source_path, "media_type"),
            "must be image/jpeg, image/png, image/gif or image/webp",
        )
    })?;
    Ok(ImageBlock { format: format.to_owned(), source: BinarySource::Bytes(base64_data(source, &source_path)?) })
}

fn base64_data(source: &JsonObject, source_path: &str) -> Result<String, CompatError> {
    let data = required_str(source, source_path, "data")?;
    if !looks_like_base64(data) {
        return Err(CompatError::invalid(field(source_path, "data"), "is not base64"));
    }
    Ok(data.to_owned())
}

/// A document: an inline PDF or plain text.
fn document_block(
    block: &JsonObject,
    path: &str,
    conversation: &mut Conversation,
) -> Result<DocumentBlock, CompatError> {
    // `title` only labels the document; Bedrock's names allow few characters, so documents
    // are numbered and the title is dropped. `context` is text for the model and would be lost.
    only_known(block, path, &["type", "source", "title", "context", "citations", "cache_control"])?;
    if present(block, "context").is_some() {
        return Err(CompatError::unsupported(field(path, "context"), "put the context in a text block"));
    }
    if present(block, "citations").and_then(|c| c.get("enabled")).and_then(Value::as_bool) == Some(true) {
        return Err(CompatError::unsupported(field(path, "citations"), "citations are not available"));
    }
    let (source, source_path) = source(block, path)?;
    let kind = required_str(source, &source_path, "type")?;
    if !matches!(kind, "base64" | "text") {
        // URL, file and content sources: Bedrock takes the bytes, and fetches nothing.
        return Err(CompatError::unsupported(field(&source_path, "type"), "only base64 PDFs and plain text documents"));
    }
    only_known(source, &source_path, &["type", "media_type", "data"])?;
    let (format, bytes) = match (kind, required_str(source, &source_path, "media_type")?) {
        ("base64", "application/pdf") => ("pdf", base64_data(source, &source_path)?),
        ("text", "text/plain") => ("txt", BASE64.encode(required_str(source, &source_path, "data")?)),
        _ => {
            return Err(CompatError::invalid(
                field(&source_path, "media_type"),
                "must be application/pdf (base64) or text/plain (text)",
            ));
        }
    };
    Ok(DocumentBlock {
        format: format.to_owned(),
        name: conversation.next_document_name(),
        source: BinarySource::Bytes(bytes),
    })
}

fn tool_result(
    block: &JsonObject,
    path: &str,
    conversation: &mut Conversation,
) -> Result<ToolResultBlock, CompatError> {
    only_known(block, path, &["type", "tool_use_id", "content", "is_error", "cache_control"])?;
    let tool_use_id = required_str(block, path, "tool_use_id")?.to_owned();
    let is_error = present(block, "is_error").map(|v| as_bool(v, &field(path, "is_error"))).transpose()?;
    let content_path = field(path, "content");
    let content = match present(block, "content") {
        None => Vec::new(),
        Some(Value::String(text)) => vec![ToolResultContent::Text(text.clone())],
        Some(value) => {
            let list = as_array(value, &content_path)?;
            let mut content = Vec::with_capacity(list.len());
            for (k, part) in list.iter().enumerate() {
                let part_path = item(&content_path, k);
                let part = as_object(part, &part_path)?;
                // A cache point cannot sit inside a tool result in Converse.
                if present(part, "cache_control").is_some() {
                    return Err(CompatError::unsupported(
                        field(&part_path, "cache_control"),
                        "mark the tool_result block itself",
                    ));
                }
                content.push(match required_str(part, &part_path, "type")? {
                    "text" => ToolResultContent::Text(text_block(part, &part_path)?),
                    "image" => {
                        only_known(part, &part_path, &["type", "source", "cache_control"])?;
                        ToolResultContent::Image(image_block(part, &part_path)?)
                    }
                    "document" => ToolResultContent::Document(document_block(part, &part_path, conversation)?),
                    _ => {
                        return Err(CompatError::unsupported(
                            field(&part_path, "type"),
                            "tool results carry text, image and document blocks",
                        ));
                    }
                });
            }
            content
        }
    };
    let status = is_error.map(|error| if error { ToolResultStatus::Error } else { ToolResultStatus::Success });
    Ok(ToolResultBlock { tool_use_id, content, status })
}

/// The cache point a `cache_control` asks for after its block.
fn cache_control(object: &JsonObject, path: &str) -> Result<Option<CachePointBlock>, CompatError> {
    let Some(value) = present(object, "cache_control") else { return Ok(None) };
    let param = field(path, "cache_control");
    let control = as_object(value, &param)?;
    only_known(control, &param, &["type", "ttl"])?;
    if required_str(control, &param, "type")? != "ephemeral" {
        return Err(CompatError::invalid(field(&param, "type"), "must be `ephemeral`"));
    }
    let ttl = match present(control, "ttl").map(|v| as_str(v, &field(&param, "ttl"))).transpose()? {
        None => None,
        Some("5m") => Some(CacheTtl::FiveMinutes),
        Some("1h") => Some(CacheTtl::OneHour),
        Some(_) => return Err(CompatError::invalid(field(&param, "ttl"), "must be `5m` or `1h`")),
    };
    Ok(Some(cache_point(ttl)))
}

fn system_prompt(root: &JsonObject) -> Result<SystemPrompt, CompatError> {
    let mut system = SystemPrompt::default();
    let Some(value) = present(root, "system") else { return Ok(system) };
    if let Some(text) = value.as_str() {
        system.push(SystemContentBlock::Text(text.to_owned()), "system".to_owned());
        return Ok(system);
    }
    let blocks = value
        .as_array()
        .ok_or_else(|| CompatError::invalid("system", "expected a string or an array of text blocks"))?;
    for (i, block) in blocks.iter().enumerate() {
        let path = item("system", i);
        let block = as_object(block, &path)?;
        if required_str(block, &path, "type")? != "text" {
            return Err(CompatError::invalid(field(&path, "type"), "must be `text`"));
        }
        system.push(SystemContentBlock::Text(text_block(block, &path)?), path.clone());
        if let Some(point) = cache_control(block, &path)? {
            system.push(SystemContentBlock::CachePoint(point), field(&path, "cache_control"));
        }
    }
    Ok(system)
}

fn tool_config(
    root: &JsonObject,
    has_tool_blocks: bool,
    origins: &mut Origins,
) -> Result<Option<ToolConfig>, CompatError> {
    let specs = read_tools(root, origins, |tool, path| {
        let tool = as_object(tool, path)?;
        let mut read = vec![(Tool::ToolSpec(tool_spec(tool, path)?), path.to_owned())];
        if let Some(point) = cache_control(tool, path)? {
            read.push((Tool::CachePoint(point), field(path, "cache_control")));
        }
        Ok(read)
    })?;
    let choice = match present(root, "tool_choice") {
        None => Choice::Unset,
        Some(value) => {
            let choice = as_object(value, "tool_choice")?;
            // `disable_parallel_tool_use` has no Converse switch; the answer carries however
            // many tool_use blocks Claude writes, which a client handles as a list anyway.
            only_known(choice, "tool_choice", &["type", "name", "disable_parallel_tool_use"])?;
            match required_str(choice, "tool_choice", "type")? {
                "auto" => Choice::Auto,
                "any" => Choice::Any,
                "tool" => Choice::Tool(required_str(choice, "tool_choice", "name")?.to_owned()),
                "none" => Choice::None,
                _ => return Err(CompatError::invalid("tool_choice.type", "must be auto, any, tool or none")),
            }
        }
    };
    shared_tool_config(specs, choice, has_tool_blocks, "requires tools")
}

fn tool_spec(tool: &JsonObject, path: &str) -> Result<ToolSpec, CompatError> {
    if let Some(kind) = present(tool, "type")
        && as_str(kind, &field(path, "type"))? != "custom"
    {
        // Anthropic-defined tools (bash, text editor, computer use, web search, ...) have no
        // Converse form.
        return Err(CompatError::unsupported(field(path, "type"), "only custom tools (name, input_schema)"));
    }
    only_known(
        tool,
        path,
        &[
            "type",
            "name",
            "description",
            "input_schema",
            "cache_control",
            "strict",
            "eager_input_streaming",
            "defer_loading",
            "allowed_callers",
            "input_examples",
        ],
    )?;
    // `strict` and `eager_input_streaming` shape how Anthropic streams and checks tool input;
    // the schema still reaches Claude, so they are accepted without those guarantees. The
    // rest change which tools Claude sees or how it is prompted.
    for param in ["defer_loading", "allowed_callers", "input_examples"] {
        if present(tool, param).is_some_and(|v| v != &Value::Bool(false)) {
            return Err(CompatError::unsupported(field(path, param), "not available through Converse"));
        }
    }
    let schema_path = field(path, "input_schema");
    let schema = present(tool, "input_schema").ok_or_else(|| CompatError::invalid(&schema_path, "is required"))?;
    as_object(schema, &schema_path)?;
    let description =
        present(tool, "description").map(|v| as_str(v, &field(path, "description")).map(str::to_owned)).transpose()?;
    Ok(ToolSpec {
        name: required_str(tool, path, "name")?.to_owned(),
        description,
        input_schema: ToolInputSchema::Json(schema.clone()),
    })
}

/// Claude's parameters without a Converse field, as Bedrock takes them for Anthropic models.
fn model_fields(root: &JsonObject) -> Result<Option<Value>, CompatError> {
    let mut fields = Map::new();
    if let Some(top_k) = present(root, "top_k") {
        fields.insert("top_k".into(), json!(as_u32(top_k, "top_k")?));
    }
    if let Some(thinking) = present(root, "thinking") {
        let config = as_object(thinking, "thinking")?;
        only_known(config, "thinking", &["type", "budget_tokens", "display"])?;
        match required_str(config, "thinking", "type")? {
            "enabled" => {
                match present(config, "budget_tokens") {
                    Some(budget) => as_u32(budget, "thinking.budget_tokens")?,
                    None => return Err(CompatError::invalid("thinking.budget_tokens", "is required")),
                };
                fields.insert("thinking".into(), thinking.clone());
            }
            "adaptive" => {
                fields.insert("thinking".into(), thinking.clone());
            }
            // Disabled is Claude's default: sending nothing keeps the request (and its cache
            // key) the same as one that never mentioned thinking.
            "disabled" => {}
            _ => return Err(CompatError::invalid("thinking.type", "must be enabled, adaptive or disabled")),
        }
    }
    Ok((!fields.is_empty()).then_some(Value::Object(fields)))
}

/// Anthropic's `stop_reason` for a Converse stop reason.
pub fn stop_reason(converse: &str) -> &'static str {
    match converse {
        "max_tokens" => "max_tokens",
        "stop_sequence" => "stop_sequence",
        "tool_use" => "tool_use",
        "model_context_window_exceeded" => "model_context_window_exceeded",
        // Anthropic's word for an answer withheld by a safety filter.
        "guardrail_intervened" | "content_filtered" => "refusal",
        _ => "end_turn",
    }
}

/// The matched stop sequence, which Bedrock reports only when asked ([`STOP_SEQUENCE_POINTER`]).
fn stop_sequence(stop_reason: &str, additional_fields: Option<&Value>) -> Value {
    if stop_reason != "stop_sequence" {
        return Value::Null;
    }
    additional_fields.and_then(|f| f.get("stop_sequence")).filter(|s| s.is_string()).cloned().unwrap_or(Value::Null)
}

/// Anthropic's usage, which counts like Bedrock's: `input_tokens` leaves out cached tokens.
pub fn usage(usage: &TokenUsage) -> Value {
    let cache_write = usage.cache_write_input_tokens.unwrap_or(0);
    let mut body = json!({
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_input_tokens": usage.cache_read_input_tokens.unwrap_or(0),
        "cache_creation_input_tokens": cache_write,
    });
    // Bedrock details the writes by TTL; the 5-minute share is the rest, as in the cost.
    if usage.cache_write_input_tokens.is_some() {
        let one_hour: i64 = usage.cache_details.iter().filter(|d| d.ttl == "1h").map(|d| d.input_tokens).sum();
        body["cache_creation"] = json!({
            "ephemeral_5m_input_tokens": (cache_write - one_hour).max(0),
            "ephemeral_1h_input_tokens": one_hour,
        });
    }
    body
}

fn content_json(block: &ContentBlock) -> Option<Value> {
    Some(match block {
        ContentBlock::Text(text) => json!({"type": "text", "text": text}),
        ContentBlock::ToolUse(tool) => {
            json!({"type": "tool_use", "id": tool.tool_use_id, "name": tool.name, "input": tool.input})
        }
        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(reasoning)) => json!({
            "type": "thinking",
            "thinking": reasoning.text,
            "signature": reasoning.signature.as_deref().unwrap_or_default(),
        }),
        ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(data)) => {
            json!({"type": "redacted_thinking", "data": data})
        }
        ContentBlock::Image(_)
        | ContentBlock::Document(_)
        | ContentBlock::ToolResult(_)
        | ContentBlock::CachePoint(_) => {
            return None;
        }
    })
}

/// The non-streaming response body; `model` is what served the call (`answer.model_id`).
pub fn message(answer: &Answer, id: &str) -> Value {
    let response = &answer.response;
    let content: Vec<Value> = response.output.message.content.iter().filter_map(content_json).collect();
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": answer.model_id,
        "content": content,
        "stop_reason": stop_reason(&response.stop_reason),
        "stop_sequence": stop_sequence(&response.stop_reason, response.additional_model_response_fields.as_ref()),
        "usage": usage(&response.usage),
    })
}

#[derive(Debug, Clone)]
enum OpenBlock {
    Text,
    ToolUse,
    /// The signature is sent whole before the block stops: Anthropic's clients replace the
    /// signature on each `signature_delta` rather than append to it.
    Thinking {
        signature: String,
    },
    /// Anthropic sends redacted thinking whole in its `content_block_start`, so the pieces
    /// are gathered until the block stops.
    Redacted {
        data: String,
    },
}

/// Turns ConverseStream events into the Messages API's SSE events.
#[derive(Debug, Clone)]
pub struct EventEncoder {
    id: String,
    model: String,
    started: bool,
    /// Blocks begun and not yet stopped: Converse index, Anthropic index, kind.
    open: Vec<(u32, u32, OpenBlock)>,
    /// Anthropic numbers blocks from 0 in the order they begin.
    next_index: u32,
    stop_reason: Option<&'static str>,
    stop_sequence: Value,
}

type Event = (&'static str, Value);

impl EventEncoder {
    pub fn new(id: &str, model: &str) -> Self {
        EventEncoder {
            id: id.to_owned(),
            model: model.to_owned(),
            started: false,
            open: Vec::new(),
            next_index: 0,
            stop_reason: None,
            stop_sequence: Value::Null,
        }
    }

    /// `(SSE event name, data)` pairs, each one `event:` and one `data:` line.
    pub fn push(&mut self, event: &StreamEvent) -> Vec<Event> {
        let mut events = Vec::new();
        if !self.started {
            self.started = true;
            events.push(self.message_start());
        }
        match event {
            StreamEvent::MessageStart(_) => {}
            StreamEvent::ContentBlockStart(start) => {
                let BlockStart::ToolUse(tool) = &start.start;
                let index = self.begin(start.content_block_index, OpenBlock::ToolUse);
                events.push(block_start(
                    index,
                    json!({"type": "tool_use", "id": tool.tool_use_id, "name": tool.name, "input": {}}),
                ));
            }
            StreamEvent::ContentBlockDelta(delta) => self.delta(delta.content_block_index, &delta.delta, &mut events),
            StreamEvent::ContentBlockStop(stop) => self.stop(stop.content_block_index, &mut events),
            StreamEvent::MessageStop(stop) => {
                self.stop_reason = Some(stop_reason(&stop.stop_reason));
                self.stop_sequence = stop_sequence(&stop.stop_reason, stop.additional_model_response_fields.as_ref());
            }
            // Converse reports usage after messageStop, so Anthropic's closing pair waits
            // for it: message_delta carries the stop reason and the final usage together.
            StreamEvent::Metadata(metadata) => {
                events.push((
                    "message_delta",
                    json!({
                        "type": "message_delta",
                        "delta": {
                            "stop_reason": self.stop_reason.unwrap_or("end_turn"),
                            "stop_sequence": self.stop_sequence,
                        },
                        "usage": usage(&metadata.usage),
                    }),
                ));
                events.push(("message_stop", json!({"type": "message_stop"})));
            }
        }
        events
    }

    /// Usage is unknown until Converse's metadata; Anthropic's clients take the final
    /// counts from message_delta.
    fn message_start(&self) -> Event {
        (
            "message_start",
            json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }),
        )
    }

    fn begin(&mut self, converse_index: u32, block: OpenBlock) -> u32 {
        let index = self.next_index;
        self.next_index += 1;
        self.open.push((converse_index, index, block));
        index
    }

    fn delta(&mut self, converse_index: u32, delta: &Delta, events: &mut Vec<Event>) {
        let position = self.open.iter().position(|(i, _, _)| *i == converse_index);
        let (index, block) = match position {
            Some(p) => {
                let (_, index, block) = &mut self.open[p];
                (*index, block)
            }
            None => {
                let (kind, start) = match delta {
                    Delta::Text(_) => (OpenBlock::Text, Some(json!({"type": "text", "text": ""}))),
                    Delta::ReasoningContent(ReasoningDelta::Text(_) | ReasoningDelta::Signature(_)) => (
                        OpenBlock::Thinking { signature: String::new() },
                        Some(json!({"type": "thinking", "thinking": "", "signature": ""})),
                    ),
                    Delta::ReasoningContent(ReasoningDelta::RedactedContent(_)) => {
                        (OpenBlock::Redacted { data: String::new() }, None)
                    }
                    // Tool input before its contentBlockStart: the stream is broken upstream
                    // (the gateway's assembler refuses it); nothing sensible to send.
                    Delta::ToolUse(_) => return,
                };
                let index = self.begin(converse_index, kind);
                if let Some(start) = start {
                    events.push(block_start(index, start));
                }
                let Some((_, _, block)) = self.open.last_mut() else { return };
                (index, block)
            }
        };
        let body = match (delta, block) {
            (Delta::Text(text), OpenBlock::Text) => json!({"type": "text_delta", "text": text}),
            (Delta::ToolUse(piece), OpenBlock::ToolUse) => {
                json!({"type": "input_json_delta", "partial_json": piece.input})
            }
            (Delta::ReasoningContent(ReasoningDelta::Text(text)), OpenBlock::Thinking { .. }) => {
                json!({"type": "thinking_delta", "thinking": text})
            }
            (Delta::ReasoningContent(ReasoningDelta::Signature(piece)), OpenBlock::Thinking { signature }) => {
                signature.push_str(piece);
                return;
            }
            (Delta::ReasoningContent(ReasoningDelta::RedactedContent(piece)), OpenBlock::Redacted { data }) => {
                data.push_str(piece);
                return;
            }
            // A delta of another kind than its block: broken upstream, as above.
            _ => return,
        };
        events.push(("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": body})));
    }

    fn stop(&mut self, converse_index: u32, events: &mut Vec<Event>) {
        let Some(position) = self.open.iter().position(|(i, _, _)| *i == converse_index) else { return };
        let (_, index, block) = self.open.remove(position);
        match block {
            OpenBlock::Thinking { signature } if !signature.is_empty() => events.push((
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "signature_delta", "signature": signature}}),
            )),
            OpenBlock::Redacted { data } => events.push(block_start(index, json!({"type": "redacted_thinking", "data": data}))),
            _ => {}
        }
        events.push(("content_block_stop", json!({"type": "content_block_stop", "index": index})));
    }
}

fn block_start(index: u32, content_block: Value) -> Event {
    ("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": content_block}))
}

/// Anthropic's error `type` for a status, from its documented table (other 4xx are
/// `invalid_request_error`, as Anthropic does).
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        // 503 is Bedrock's "service unavailable": the same retry-later meaning as 529.
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// Anthropic's error body. The label does not appear: Anthropic's body has no code field,
/// and its `type` comes from the status.
pub fn error_body(status: u16, _label: ErrorLabel, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}
