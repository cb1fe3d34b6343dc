//! OpenAI's Chat Completions API (`POST /v1/chat/completions`, `GET /v1/models`) over Converse.
//!
//! Parameters fall in three groups, each decided below with its reason: mapped onto Converse;
//! accepted and ignored (they change nothing about the answer, or only OpenAI-side storage);
//! and refused as unsupported when set to anything but their default, because Bedrock cannot
//! honour them and an answer that silently ignored them would not be the one asked for.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::{
    Choice, CompatError, Conversation, JsonObject, Origins, SystemPrompt, as_array, as_bool, as_f32, as_object, as_str,
    as_u32, cache_point, field, image_format, item, looks_like_base64, only_known, parse_object, present, read_tools,
    required_str, tool_config as shared_tool_config,
};
use crate::catalog::{Catalog, Tier};
use crate::label::ErrorLabel;
use crate::request::{
    BinarySource, ContentBlock, ConverseRequest, DocumentBlock, ImageBlock, InferenceConfig, Role, ServiceTier,
    SystemContentBlock, TokenUsage, Tool, ToolConfig, ToolInputSchema, ToolResultBlock, ToolResultContent, ToolSpec,
    ToolUseBlock,
};
use crate::service::{AUTO_MODEL, Answer};
use crate::stream::{BlockStart, Delta, StreamEvent};

/// OpenAI allows at most four stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;

/// Every top-level parameter of the API this module has a decision for; anything else is
/// refused the way OpenAI refuses it, so a typo is not silently dropped.
const KNOWN_PARAMETERS: &[&str] = &[
    "messages",
    "model",
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "metadata",
    "modalities",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// A Chat Completions request as the gateway will serve it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// `model_id` is the `model` as given: a tier name, `auto` or a Bedrock ID.
    pub request: ConverseRequest,
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with `usage` and no choices.
    pub include_usage: bool,
    /// The caller's end-user ID; never sent to Bedrock.
    pub user: Option<String>,
}

pub fn parse_chat_request(body: &[u8]) -> Result<ChatRequest, CompatError> {
    let root = parse_object(body)?;
    only_known(&root, "", KNOWN_PARAMETERS)?;
    refuse_what_bedrock_cannot_honour(&root)?;
    let model = required_str(&root, "", "model")?.to_owned();

    let messages = match present(&root, "messages") {
        Some(value) => as_array(value, "messages")?,
        None => return Err(CompatError::invalid("messages", "is required")),
    };
    if messages.is_empty() {
        return Err(CompatError::invalid("messages", "must contain at least one message"));
    }
    let mut system = SystemPrompt::default();
    let mut conversation = Conversation::default();
    for (i, message) in messages.iter().enumerate() {
        read_message(message, &item("messages", i), &mut system, &mut conversation)?;
    }

    let mut origins = Origins {
        tool_name: ".function.name",
        tool_schema: ".function.parameters",
        tool_choice_name: "tool_choice.function.name",
        cache_point: "prompt_cache_breakpoint",
        ..Origins::default()
    };
    let inference_config = inference_config(&root, &mut origins)?;
    let tool_config = tool_config(&root, conversation.has_tool_blocks(), &mut origins)?;
    let (stream, include_usage) = streaming(&root)?;
    let user = present(&root, "user").map(|v| as_str(v, "user").map(str::to_owned)).transpose()?;
    let service_tier = service_tier(&root)?;

    origins.messages = conversation.origins;
    origins.system = system.origins;
    let request = ConverseRequest {
        model_id: Some(model),
        messages: conversation.messages,
        system: system.blocks,
        inference_config,
        tool_config,
        additional_model_request_fields: None,
        additional_model_response_field_paths: Vec::new(),
        guardrail_config: None,
        prompt_variables: BTreeMap::new(),
        request_metadata: BTreeMap::new(),
        performance_config: None,
        service_tier,
    };
    request.validate().map_err(|e| origins.validation_error(e))?;
    Ok(ChatRequest { request, stream, include_usage, user })
}

/// A parameter, whether its value is the default (so harmless to ignore), and why any other
/// value is refused.
type DefaultCheck = (&'static str, fn(&Value) -> bool, &'static str);

/// Parameters that change what OpenAI would return, which Bedrock has no equivalent for. Each
/// is accepted at its default value, since many SDKs send the default explicitly.
fn refuse_what_bedrock_cannot_honour(root: &JsonObject) -> Result<(), CompatError> {
    if let Some(n) = present(root, "n")
        && n.as_u64() != Some(1)
    {
        return Err(CompatError::unsupported("n", "Bedrock generates one choice per request; send n = 1"));
    }
    let is_zero = |v: &Value| v.as_f64() == Some(0.0);
    let checks: [DefaultCheck; 12] = [
        ("logprobs", |v| v.as_bool() == Some(false), "Bedrock does not return token log probabilities"),
        ("top_logprobs", |v| v.as_u64() == Some(0), "Bedrock does not return token log probabilities"),
        ("presence_penalty", is_zero, "Claude on Bedrock has no presence penalty"),
        ("frequency_penalty", is_zero, "Claude on Bedrock has no frequency penalty"),
        ("logit_bias", |v| v.as_object().is_some_and(Map::is_empty), "Claude on Bedrock has no logit bias"),
        (
            "response_format",
            |v| v.get("type").and_then(Value::as_str) == Some("text"),
            "only `{\"type\": \"text\"}`: JSON modes and structured outputs are not available through Converse",
        ),
        ("audio", |_| false, "Claude generates text only"),
        (
            "modalities",
            |v| v.as_array().is_some_and(|m| m.iter().all(|x| x.as_str() == Some("text"))),
            "Claude generates text only",
        ),
        ("functions", |v| v.as_array().is_some_and(Vec::is_empty), "the deprecated functions: send tools"),
        (
            "function_call",
            |v| matches!(v.as_str(), Some("none" | "auto")),
            "the deprecated function_call: send tool_choice",
        ),
        ("prediction", |_| false, "Bedrock has no predicted outputs"),
        ("web_search_options", |_| false, "Bedrock does not search the web"),
    ];
    for (param, is_default, reason) in checks {
        if let Some(value) = present(root, param)
            && !is_default(value)
        {
            return Err(CompatError::unsupported(param, reason));
        }
    }
    // OpenAI's reasoning and verbosity knobs have no faithful Converse mapping (Claude's
    // thinking takes a token budget, not an effort level); moderation is OpenAI's own service.
    for param in ["reasoning_effort", "verbosity", "moderation"] {
        if present(root, param).is_some() {
            return Err(CompatError::unsupported(param, "Bedrock has no equivalent"));
        }
    }
    // Ignored, and never sent to Bedrock: `seed` (OpenAI itself promises no determinism, and
    // Claude has no seed), `metadata` and `store` (OpenAI's stored completions),
    // `parallel_tool_calls` (Converse has no switch; Claude may call several tools, which the
    // response carries as several tool_calls either way), `prompt_cache_key`,
    // `prompt_cache_retention`, `prompt_cache_options` (OpenAI's cache routing and lifetime;
    // Bedrock's cache points come from `prompt_cache_breakpoint` parts), `safety_identifier`.
    Ok(())
}

fn read_message(
    value: &Value,
    path: &str,
    system: &mut SystemPrompt,
    conversation: &mut Conversation,
) -> Result<(), CompatError> {
    let message = as_object(value, path)?;
    let role = required_str(message, path, "role")?;
    let content_path = field(path, "content");
    // `name` tells participants of one role apart for OpenAI's models; Converse has no
    // participant names, so it is accepted and dropped.
    match role {
        "system" | "developer" => {
            only_known(message, path, &["role", "content", "name"])?;
            let content = required_content(message, &content_path)?;
            for part in text_parts(content, &content_path, false)? {
                system.push(SystemContentBlock::Text(part.text), part.path.clone());
                if part.cache_breakpoint {
                    system.push(SystemContentBlock::CachePoint(cache_point(None)), part.path);
                }
            }
        }
        "user" => {
            only_known(message, path, &["role", "content", "name"])?;
            let content = required_content(message, &content_path)?;
            let blocks = user_content(content, &content_path, conversation)?;
            conversation.push(Role::User, path.to_owned(), blocks);
        }
        "assistant" => {
            // `annotations` is on the SDK's answer type, so a message sent back as it came carries it.
            only_known(
                message,
                path,
                &["role", "content", "name", "tool_calls", "refusal", "audio", "function_call", "annotations"],
            )?;
            let blocks = assistant_content(message, path)?;
            conversation.push(Role::Assistant, path.to_owned(), blocks);
        }
        "tool" => {
            only_known(message, path, &["role", "content", "tool_call_id"])?;
            let tool_use_id = required_str(message, path, "tool_call_id")?.to_owned();
            let content = required_content(message, &content_path)?;
            let parts = text_parts(content, &content_path, false)?;
            let cache_after = parts.iter().any(|p| p.cache_breakpoint);
            let result = ToolResultBlock {
                tool_use_id,
                content: parts.into_iter().map(|p| ToolResultContent::Text(p.text)).collect(),
                status: None,
            };
            let mut blocks = vec![(ContentBlock::ToolResult(result), path.to_owned())];
            if cache_after {
                blocks.push((ContentBlock::CachePoint(cache_point(None)), path.to_owned()));
            }
            // Converse carries tool results in a user message; consecutive tool messages
            // merge into one, as Converse requires.
            conversation.push(Role::User, path.to_owned(), blocks);
        }
        "function" => {
            return Err(CompatError::unsupported(
                field(path, "role"),
                "the deprecated function role: send tool messages",
            ));
        }
        _ => {
            return Err(CompatError::invalid(
                field(path, "role"),
                "must be one of system, developer, user, assistant, tool",
            ));
        }
    }
    Ok(())
}

fn required_content<'a>(message: &'a JsonObject, content_path: &str) -> Result<&'a Value, CompatError> {
    let content = present(message, "content").ok_or_else(|| CompatError::invalid(content_path, "is required"))?;
    if content.as_array().is_some_and(Vec::is_empty) {
        return Err(CompatError::invalid(content_path, "must not be empty"));
    }
    Ok(content)
}

/// One text of a string content or of a `text` (or `refusal`) part.
struct TextPart {
    text: String,
    path: String,
    /// OpenAI's explicit `prompt_cache_breakpoint`: the end of a prefix to cache, which is
    /// exactly what a Bedrock cache point placed after the block means.
    cache_breakpoint: bool,
}

fn text_parts(content: &Value, content_path: &str, allow_refusal: bool) -> Result<Vec<TextPart>, CompatError> {
    if let Some(text) = content.as_str() {
        return Ok(vec![TextPart { text: text.to_owned(), path: content_path.to_owned(), cache_breakpoint: false }]);
    }
    let parts = content
        .as_array()
        .ok_or_else(|| CompatError::invalid(content_path, "expected a string or an array of content parts"))?;
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let path = item(content_path, j);
        let part = as_object(part, &path)?;
        let kind = required_str(part, &path, "type")?;
        let key = match kind {
            "text" => "text",
            "refusal" if allow_refusal => "refusal",
            _ => {
                let expected = if allow_refusal { "`text` or `refusal`" } else { "`text`" };
                return Err(CompatError::invalid(field(&path, "type"), format!("must be {expected} here")));
            }
        };
        only_known(part, &path, &["type", key, "prompt_cache_breakpoint"])?;
        let text = required_str(part, &path, key)?.to_owned();
        let cache_breakpoint = cache_breakpoint(part, &path)?;
        texts.push(TextPart { text, path, cache_breakpoint });
    }
    Ok(texts)
}

fn cache_breakpoint(part: &JsonObject, path: &str) -> Result<bool, CompatError> {
    let Some(value) = present(part, "prompt_cache_breakpoint") else { return Ok(false) };
    let param = field(path, "prompt_cache_breakpoint");
    let breakpoint = as_object(value, &param)?;
    only_known(breakpoint, &param, &["mode"])?;
    match required_str(breakpoint, &param, "mode")? {
        "explicit" => Ok(true),
        _ => Err(CompatError::invalid(field(&param, "mode"), "must be `explicit`")),
    }
}

fn user_content(
    content: &Value,
    content_path: &str,
    conversation: &mut Conversation,
) -> Result<Vec<(ContentBlock, String)>, CompatError> {
    if let Some(text) = content.as_str() {
        return Ok(vec![(ContentBlock::Text(text.to_owned()), content_path.to_owned())]);
    }
    let parts = content
        .as_array()
        .ok_or_else(|| CompatError::invalid(content_path, "expected a string or an array of content parts"))?;
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        let path = item(content_path, j);
        let part = as_object(part, &path)?;
        let block = match required_str(part, &path, "type")? {
            "text" => {
                only_known(part, &path, &["type", "text", "prompt_cache_breakpoint"])?;
                ContentBlock::Text(required_str(part, &path, "text")?.to_owned())
            }
            "image_url" => {
                only_known(part, &path, &["type", "image_url", "prompt_cache_breakpoint"])?;
                ContentBlock::Image(image_part(part, &path)?)
            }
            "file" => {
                only_known(part, &path, &["type", "file", "prompt_cache_breakpoint"])?;
                ContentBlock::Document(file_part(part, &path, conversation)?)
            }
            "input_audio" => {
                return Err(CompatError::unsupported(field(&path, "type"), "Claude does not take audio input"));
            }
            _ => {
                return Err(CompatError::invalid(
                    field(&path, "type"),
                    "must be one of text, image_url, file, input_audio",
                ));
            }
        };
        let cache_after = cache_breakpoint(part, &path)?;
        blocks.push((block, path.clone()));
        if cache_after {
            blocks.push((ContentBlock::CachePoint(cache_point(None)), path));
        }
    }
    Ok(blocks)
}

/// An image part. Only data URLs: Bedrock takes image bytes, never a URL to fetch, and the
/// gateway does not fetch on a caller's behalf.
fn image_part(part: &JsonObject, path: &str) -> Result<ImageBlock, CompatError> {
    let image_path = field(path, "image_url");
    let image = match present(part, "image_url") {
        Some(value) => as_object(value, &image_path)?,
        None => return Err(CompatError::invalid(image_path, "is required")),
    };
    // `detail` tunes OpenAI's image tokenization; Claude has no such setting.
    only_known(image, &image_path, &["url", "detail"])?;
    let url_path = field(&image_path, "url");
    let url = required_str(image, &image_path, "url")?;
    if url.starts_with("http://") || url.starts_with("https://") {
        return Err(CompatError::unsupported(
            url_path,
            "Bedrock cannot fetch images by URL; send the image inline as a data URL (data:image/png;base64,...)",
        ));
    }
    let (media_type, data) = data_url(url, &url_path)?;
    let format = image_format(media_type)
        .ok_or_else(|| CompatError::invalid(&url_path, "the image must be png, jpeg, gif or webp"))?;
    Ok(ImageBlock { format: format.to_owned(), source: BinarySource::Bytes(data.to_owned()) })
}

/// A `file` part: an inline PDF. OpenAI's uploaded files (`file_id`) live in OpenAI's storage.
fn file_part(part: &JsonObject, path: &str, conversation: &mut Conversation) -> Result<DocumentBlock, CompatError> {
    let file_path = field(path, "file");
    let file = match present(part, "file") {
        Some(value) => as_object(value, &file_path)?,
        None => return Err(CompatError::invalid(file_path, "is required")),
    };
    only_known(file, &file_path, &["file_data", "file_id", "filename"])?;
    if present(file, "file_id").is_some() {
        return Err(CompatError::unsupported(
            field(&file_path, "file_id"),
            "uploaded files are not available; send the file inline as file_data",
        ));
    }
    let data_path = field(&file_path, "file_data");
    let (media_type, data) = data_url(required_str(file, &file_path, "file_data")?, &data_path)?;
    if media_type != "application/pdf" {
        return Err(CompatError::unsupported(data_path, "only PDF files (data:application/pdf;base64,...)"));
    }
    Ok(DocumentBlock {
        format: "pdf".to_owned(),
        name: conversation.next_document_name(),
        source: BinarySource::Bytes(data.to_owned()),
    })
}

/// The media type and base64 payload of `data:<type>;base64,<payload>`.
fn data_url<'a>(url: &'a str, param: &str) -> Result<(&'a str, &'a str), CompatError> {
    let malformed = || CompatError::invalid(param, "must be a base64 data URL (data:<media type>;base64,<data>)");
    let rest = url.strip_prefix("data:").ok_or_else(malformed)?;
    let (meta, data) = rest.split_once(',').ok_or_else(malformed)?;
    let media_type = meta.strip_suffix(";base64").ok_or_else(malformed)?;
    if !looks_like_base64(data) {
        return Err(CompatError::invalid(param, "the data URL's payload is not base64"));
    }
    Ok((media_type, data))
}

fn assistant_content(message: &JsonObject, path: &str) -> Result<Vec<(ContentBlock, String)>, CompatError> {
    for (param, reason) in
        [("audio", "Claude generates text only"), ("function_call", "the deprecated function_call: send tool_calls")]
    {
        if present(message, param).is_some() {
            return Err(CompatError::unsupported(field(path, param), reason));
        }
    }
    let calls_path = field(path, "tool_calls");
    let tool_calls = match present(message, "tool_calls") {
        Some(value) => as_array(value, &calls_path)?.as_slice(),
        None => &[],
    };
    let mut blocks = Vec::new();
    if let Some(content) = present(message, "content") {
        let content_path = field(path, "content");
        for part in text_parts(content, &content_path, true)? {
            // Clients often echo `"content": ""` beside tool calls; Converse refuses blank
            // text, and a blank text says nothing.
            if !tool_calls.is_empty() && part.text.trim().is_empty() {
                continue;
            }
            blocks.push((ContentBlock::Text(part.text), part.path.clone()));
            if part.cache_breakpoint {
                blocks.push((ContentBlock::CachePoint(cache_point(None)), part.path));
            }
        }
    }
    // A refusal is what the assistant said instead of an answer: it stays in the history.
    if let Some(refusal) = present(message, "refusal") {
        let refusal = as_str(refusal, &field(path, "refusal"))?;
        if !refusal.trim().is_empty() {
            blocks.push((ContentBlock::Text(refusal.to_owned()), field(path, "refusal")));
        }
    }
    for (k, call) in tool_calls.iter().enumerate() {
        let call_path = item(&calls_path, k);
        blocks.push((ContentBlock::ToolUse(tool_call(call, &call_path)?), call_path));
    }
    if blocks.is_empty() {
        return Err(CompatError::invalid(field(path, "content"), "an assistant message needs content or tool_calls"));
    }
    Ok(blocks)
}

fn tool_call(value: &Value, path: &str) -> Result<ToolUseBlock, CompatError> {
    let call = as_object(value, path)?;
    if let Some(kind) = present(call, "type")
        && as_str(kind, &field(path, "type"))? != "function"
    {
        return Err(CompatError::unsupported(field(path, "type"), "only function tool calls"));
    }
    only_known(call, path, &["id", "type", "function"])?;
    let tool_use_id = required_str(call, path, "id")?.to_owned();
    let function_path = field(path, "function");
    let function = match present(call, "function") {
        Some(value) => as_object(value, &function_path)?,
        None => return Err(CompatError::invalid(function_path, "is required")),
    };
    only_known(function, &function_path, &["name", "arguments"])?;
    let name = required_str(function, &function_path, "name")?.to_owned();
    let arguments_path = field(&function_path, "arguments");
    let input = tool_arguments(required_str(function, &function_path, "arguments")?, &arguments_path)?;
    Ok(ToolUseBlock { tool_use_id, name, input })
}

/// `function.arguments` is JSON text; Converse carries the parsed object.
fn tool_arguments(arguments: &str, param: &str) -> Result<Value, CompatError> {
    // A call without arguments is often sent as "" rather than "{}".
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let input: Value = serde_json::from_str(arguments).map_err(|e| {
        CompatError::invalid(param, format!("is not valid JSON (line {}, column {})", e.line(), e.column()))
    })?;
    if !input.is_object() {
        return Err(CompatError::invalid(param, "must encode a JSON object"));
    }
    Ok(input)
}

fn inference_config(root: &JsonObject, origins: &mut Origins) -> Result<Option<InferenceConfig>, CompatError> {
    let read = |key: &str| present(root, key).map(|v| as_u32(v, key)).transpose();
    let max_tokens = read("max_tokens")?;
    let max_completion_tokens = read("max_completion_tokens")?;
    origins.max_tokens = if max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" }.into();
    let max_tokens = match (max_tokens, max_completion_tokens) {
        (Some(a), Some(b)) if a != b => {
            return Err(CompatError::invalid(
                "max_completion_tokens",
                "differs from max_tokens; send one of the two (max_tokens is deprecated)",
            ));
        }
        (a, b) => b.or(a),
    };
    let temperature = present(root, "temperature").map(|v| as_f32(v, "temperature")).transpose()?;
    let top_p = present(root, "top_p").map(|v| as_f32(v, "top_p")).transpose()?;
    let stop_sequences = match present(root, "stop") {
        None => Vec::new(),
        Some(Value::String(stop)) => {
            origins.stop = ("stop".into(), false);
            vec![stop.clone()]
        }
        Some(value) => {
            origins.stop = ("stop".into(), true);
            let list = as_array(value, "stop")?;
            if list.len() > MAX_STOP_SEQUENCES {
                return Err(CompatError::invalid("stop", "at most 4 stop sequences"));
            }
            list.iter()
                .enumerate()
                .map(|(i, s)| as_str(s, &item("stop", i)).map(str::to_owned))
                .collect::<Result<_, _>>()?
        }
    };
    let config = InferenceConfig { max_tokens, temperature, top_p, stop_sequences };
    Ok((config != InferenceConfig::default()).then_some(config))
}

fn tool_config(
    root: &JsonObject,
    has_tool_blocks: bool,
    origins: &mut Origins,
) -> Result<Option<ToolConfig>, CompatError> {
    let specs =
        read_tools(root, origins, |tool, path| Ok(vec![(Tool::ToolSpec(tool_spec(tool, path)?), path.to_owned())]))?;
    let choice = match present(root, "tool_choice") {
        None => Choice::Unset,
        Some(value) => tool_choice(value)?,
    };
    shared_tool_config(specs, choice, has_tool_blocks, "names a tool choice but no tools are given")
}

fn tool_spec(value: &Value, path: &str) -> Result<ToolSpec, CompatError> {
    let tool = as_object(value, path)?;
    match required_str(tool, path, "type")? {
        "function" => {}
        "custom" => return Err(CompatError::unsupported(field(path, "type"), "only function tools")),
        _ => return Err(CompatError::invalid(field(path, "type"), "must be `function`")),
    }
    only_known(tool, path, &["type", "function"])?;
    let function_path = field(path, "function");
    let function = match present(tool, "function") {
        Some(value) => as_object(value, &function_path)?,
        None => return Err(CompatError::invalid(function_path, "is required")),
    };
    // `strict` asks OpenAI to enforce the schema; Claude is given the same schema and follows
    // it closely, so the flag is accepted without a guarantee rather than breaking the SDKs
    // that set it by default.
    only_known(function, &function_path, &["name", "description", "parameters", "strict"])?;
    let name = required_str(function, &function_path, "name")?.to_owned();
    let description = present(function, "description")
        .map(|v| as_str(v, &field(&function_path, "description")).map(str::to_owned))
        .transpose()?;
    // OpenAI: "Omitting `parameters` defines a function with an empty parameter list."
    let schema =
        present(function, "parameters").cloned().unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    Ok(ToolSpec { name, description, input_schema: ToolInputSchema::Json(schema) })
}

fn tool_choice(value: &Value) -> Result<Choice, CompatError> {
    if let Some(mode) = value.as_str() {
        return match mode {
            "none" => Ok(Choice::None),
            "auto" => Ok(Choice::Auto),
            "required" => Ok(Choice::Any),
            _ => Err(CompatError::invalid("tool_choice", "must be none, auto, required or a named function")),
        };
    }
    let choice = as_object(value, "tool_choice")?;
    match required_str(choice, "tool_choice", "type")? {
        "function" => {
            only_known(choice, "tool_choice", &["type", "function"])?;
            let function = match present(choice, "function") {
                Some(value) => as_object(value, "tool_choice.function")?,
                None => return Err(CompatError::invalid("tool_choice.function", "is required")),
            };
            only_known(function, "tool_choice.function", &["name"])?;
            Ok(Choice::Tool(required_str(function, "tool_choice.function", "name")?.to_owned()))
        }
        "allowed_tools" | "custom" => Err(CompatError::unsupported(
            "tool_choice.type",
            "Converse can require any tool or one named tool, not a subset",
        )),
        _ => Err(CompatError::invalid("tool_choice.type", "must be `function`")),
    }
}

fn streaming(root: &JsonObject) -> Result<(bool, bool), CompatError> {
    let stream = present(root, "stream").map(|v| as_bool(v, "stream")).transpose()?.unwrap_or(false);
    let Some(options) = present(root, "stream_options") else { return Ok((stream, false)) };
    if !stream {
        return Err(CompatError::invalid("stream_options", "is only allowed when stream is true"));
    }
    let options = as_object(options, "stream_options")?;
    // Obfuscation pads chunks against a side channel of OpenAI's; the gateway adds none.
    only_known(options, "stream_options", &["include_usage", "include_obfuscation"])?;
    if let Some(obfuscation) = present(options, "include_obfuscation") {
        as_bool(obfuscation, "stream_options.include_obfuscation")?;
    }
    let include_usage = present(options, "include_usage")
        .map(|v| as_bool(v, "stream_options.include_usage"))
        .transpose()?
        .unwrap_or(false);
    Ok((stream, include_usage))
}

/// OpenAI's and Bedrock's tiers share names and meaning for `flex` and `priority`; `fast`
/// is OpenAI's alias of `priority`.
fn service_tier(root: &JsonObject) -> Result<Option<ServiceTier>, CompatError> {
    let Some(value) = present(root, "service_tier") else { return Ok(None) };
    let kind = match as_str(value, "service_tier")? {
        "auto" | "default" => return Ok(None),
        "priority" | "fast" => "priority",
        "flex" => "flex",
        "scale" => return Err(CompatError::unsupported("service_tier", "Bedrock has no scale tier")),
        _ => return Err(CompatError::invalid("service_tier", "must be auto, default, flex, priority or fast")),
    };
    Ok(Some(ServiceTier { kind: kind.to_owned() }))
}

/// OpenAI's `finish_reason` for a Converse stop reason.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "content_filtered" | "guardrail_intervened" => "content_filter",
        _ => "stop",
    }
}

/// OpenAI's usage: its `prompt_tokens` include cached ones, while Bedrock's `inputTokens`
/// leave out both the tokens read from and those written to the cache.
pub fn usage(usage: &TokenUsage) -> Value {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let prompt_tokens = usage.input_tokens + cache_read + usage.cache_write_input_tokens.unwrap_or(0);
    let mut details = json!({"cached_tokens": cache_read});
    if let Some(written) = usage.cache_write_input_tokens {
        details["cache_write_tokens"] = json!(written);
    }
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt_tokens + usage.output_tokens,
        "prompt_tokens_details": details,
    })
}

/// The non-streaming response body. `model` is what served the call (`answer.model_id`).
/// Reasoning is left out: Chat Completions has no standard field for it.
pub fn chat_completion(answer: &Answer, id: &str, created: u64) -> Value {
    let response = &answer.response;
    let text = response.text();
    let tool_calls: Vec<Value> = response
        .output
        .message
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::ToolUse(tool) => Some(json!({
                "id": tool.tool_use_id,
                "type": "function",
                "function": {"name": tool.name, "arguments": tool.input.to_string()},
            })),
            _ => None,
        })
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() { Value::Null } else { Value::String(text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = Value::Array(tool_calls);
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
            "finish_reason": finish_reason(&response.stop_reason),
        }],
        "usage": usage(&response.usage),
    })
}

/// Turns ConverseStream events into `chat.completion.chunk` bodies, one SSE `data:` line each.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    role_sent: bool,
    /// Converse block index of each tool call so far; the position is OpenAI's tool call index.
    tool_blocks: Vec<u32>,
}

impl ChunkEncoder {
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        ChunkEncoder {
            id: id.to_owned(),
            created,
            model: model.to_owned(),
            include_usage,
            role_sent: false,
            tool_blocks: Vec::new(),
        }
    }

    pub fn push(&mut self, event: &StreamEvent) -> Vec<Value> {
        match event {
            StreamEvent::MessageStart(_) if !self.role_sent => vec![self.chunk(json!({"content": ""}), None)],
            StreamEvent::MessageStart(_) | StreamEvent::ContentBlockStop(_) => Vec::new(),
            StreamEvent::ContentBlockStart(start) => {
                let BlockStart::ToolUse(tool) = &start.start;
                let index = self.tool_blocks.len();
                self.tool_blocks.push(start.content_block_index);
                let delta = json!({"tool_calls": [{
                    "index": index,
                    "id": tool.tool_use_id,
                    "type": "function",
                    "function": {"name": tool.name, "arguments": ""},
                }]});
                vec![self.chunk(delta, None)]
            }
            StreamEvent::ContentBlockDelta(delta) => match &delta.delta {
                Delta::Text(text) if !text.is_empty() => vec![self.chunk(json!({"content": text}), None)],
                Delta::ToolUse(piece) if !piece.input.is_empty() => {
                    match self.tool_blocks.iter().position(|&i| i == delta.content_block_index) {
                        Some(index) => {
                            let delta =
                                json!({"tool_calls": [{"index": index, "function": {"arguments": piece.input}}]});
                            vec![self.chunk(delta, None)]
                        }
                        None => Vec::new(),
                    }
                }
                // Reasoning has no place in Chat Completions' delta.
                _ => Vec::new(),
            },
            StreamEvent::MessageStop(stop) => vec![self.chunk(json!({}), Some(finish_reason(&stop.stop_reason)))],
            StreamEvent::Metadata(metadata) if self.include_usage => {
                let mut chunk = self.envelope(Vec::new());
                chunk["usage"] = usage(&metadata.usage);
                vec![chunk]
            }
            StreamEvent::Metadata(_) => Vec::new(),
        }
    }

    /// One choice's delta; the first chunk of a stream names the role, as OpenAI's does.
    fn chunk(&mut self, mut delta: Value, finish_reason: Option<&str>) -> Value {
        if !self.role_sent {
            self.role_sent = true;
            delta["role"] = json!("assistant");
        }
        self.envelope(vec![json!({
            "index": 0,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        })])
    }

    fn envelope(&self, choices: Vec<Value>) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        // OpenAI: with include_usage, "all other chunks will also include a usage field, but
        // with a null value"; the last one overwrites it.
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        chunk
    }
}

/// OpenAI's error `type` for a status. OpenAI itself uses `invalid_request_error` for every
/// client error it reports with a body (bad keys and unknown models included) and
/// `server_error` for its own failures; on 429 it names the exhausted limit, which the gateway
/// cannot tell, so `rate_limit_exceeded`, OpenAI's code for the condition, stands in.
pub fn error_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_exceeded",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// OpenAI's error body for a status the gateway chose; `code` carries the gateway's label.
pub fn error_body(status: u16, label: ErrorLabel, message: &str, param: Option<&str>) -> Value {
    json!({
        "error": {
            "message": message,
            "type": error_type(status),
            "param": param,
            "code": label.as_str(),
        }
    })
}

/// `GET /v1/models`: what `model` may name. `auto` and the tiers are the gateway's own; the
/// Bedrock IDs are the catalog's.
pub fn models(catalog: &Catalog, created: u64) -> Value {
    let entry =
        |id: &str, owned_by: &str| json!({"id": id, "object": "model", "created": created, "owned_by": owned_by});
    let mut data = vec![entry(AUTO_MODEL, "gateway")];
    data.extend(Tier::ALL.iter().map(|tier| entry(tier.as_str(), "gateway")));
    for model in catalog.models() {
        data.push(entry(&model.model_id, "anthropic"));
        // The inference profiles are what on-demand calls name, so they are listed too.
        data.extend(model.profiles.iter().map(|p| entry(&format!("{p}.{}", model.model_id), "anthropic")));
    }
    json!({"object": "list", "data": data})
}
