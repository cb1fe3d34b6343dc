//! Translations between the two chat APIs most clients already speak, OpenAI's Chat Completions
//! ([`openai`]) and Anthropic's Messages ([`anthropic`]), and the gateway's Converse types.
//!
//! Pure functions over JSON values: the handler owns HTTP, SSE framing and the call itself.
//! Requests are read field by field rather than through serde derives so that every refusal
//! names the caller's own parameter path (`messages[2].content[0].image_url`), and so that
//! each parameter Bedrock cannot honour is a decision written down here, never a silent drop.
//!
//! As in [`crate::request`], no error message repeats a value from the body: a message names
//! the parameter and what was expected, so it is safe to log.

pub mod anthropic;
pub mod openai;

use serde_json::{Map, Value};

use crate::label::ErrorLabel;
use crate::request::{
    CachePointBlock, CachePointType, CacheTtl, ContentBlock, EmptyObject, Message, RequestError, Role, SpecificTool,
    SystemContentBlock, Tool, ToolChoice, ToolConfig,
};

/// What a request's tool choice asks for, whichever API spelled it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Choice {
    Unset,
    /// No tool may be called.
    None,
    Auto,
    /// Some tool must be called (OpenAI's `required`, Anthropic's `any`).
    Any,
    /// This tool must be called.
    Tool(String),
}

/// The request's `tools` array, each item read by the dialect's `read` into its Converse
/// tools with their parameter paths (an Anthropic tool may bring a cache point after it).
pub(crate) fn read_tools(
    root: &JsonObject,
    origins: &mut Origins,
    mut read: impl FnMut(&Value, &str) -> Result<Vec<(Tool, String)>, CompatError>,
) -> Result<Vec<Tool>, CompatError> {
    let tools = match present(root, "tools") {
        Some(value) => as_array(value, "tools")?.as_slice(),
        None => &[],
    };
    let mut specs = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        for (spec, origin) in read(tool, &item("tools", i))? {
            specs.push(spec);
            origins.tools.push(origin);
        }
    }
    Ok(specs)
}

/// Converse's tool configuration from the tools and the choice; `no_tools` is the refusal
/// of a choice that forces a tool when none is given.
pub(crate) fn tool_config(
    specs: Vec<Tool>,
    choice: Choice,
    has_tool_blocks: bool,
    no_tools: &str,
) -> Result<Option<ToolConfig>, CompatError> {
    if specs.is_empty() {
        return match choice {
            Choice::Any | Choice::Tool(_) => Err(CompatError::invalid("tool_choice", no_tools)),
            _ => Ok(None),
        };
    }
    let tool_choice = match choice {
        Choice::Unset => None,
        Choice::Auto => Some(ToolChoice::Auto(EmptyObject {})),
        Choice::Any => Some(ToolChoice::Any(EmptyObject {})),
        Choice::Tool(name) => Some(ToolChoice::Tool(SpecificTool { name })),
        // Converse has no "none". Leaving the tools out is the only way to keep the model
        // from calling one, so they are dropped, unless the history already holds tool calls
        // or results: Bedrock refuses those without a toolConfig, so the tools stay (and the
        // model may, rarely, still call one).
        Choice::None if !has_tool_blocks => return Ok(None),
        Choice::None => None,
    };
    Ok(Some(ToolConfig { tools: specs, tool_choice }))
}

/// A request the caller got wrong, in terms of the API it spoke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CompatError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// Valid JSON, but not an object.
    #[error("the request body must be a JSON object")]
    NotAnObject,
    #[error("invalid '{param}': {reason}")]
    Invalid { param: String, reason: String },
    /// A parameter of the caller's API that Bedrock cannot honour; ignoring it would return an
    /// answer the caller did not ask for.
    #[error("'{param}' is not supported by this gateway: {reason}")]
    Unsupported { param: String, reason: String },
    #[error("Unrecognized request argument supplied: {param}")]
    Unrecognized { param: String },
}

impl CompatError {
    pub fn param(&self) -> Option<&str> {
        match self {
            CompatError::MalformedJson(_) | CompatError::NotAnObject => None,
            CompatError::Invalid { param, .. }
            | CompatError::Unsupported { param, .. }
            | CompatError::Unrecognized { param } => Some(param),
        }
    }

    pub fn label(&self) -> ErrorLabel {
        match self {
            CompatError::MalformedJson(_) => ErrorLabel::MalformedJson,
            _ => ErrorLabel::InvalidRequest,
        }
    }

    pub(crate) fn invalid(param: impl Into<String>, reason: impl Into<String>) -> Self {
        CompatError::Invalid { param: param.into(), reason: reason.into() }
    }

    pub(crate) fn unsupported(param: impl Into<String>, reason: impl Into<String>) -> Self {
        CompatError::Unsupported { param: param.into(), reason: reason.into() }
    }
}

pub(crate) type JsonObject = Map<String, Value>;

/// The body as a JSON object, held to the same syntax rules as the native API: valid UTF-8, no
/// trailing data, no key given twice (serde_json would keep the last one silently).
pub(crate) fn parse_object(body: &[u8]) -> Result<JsonObject, CompatError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| CompatError::MalformedJson(format!("the body is not valid UTF-8 (byte {})", e.valid_up_to())))?;
    crate::request::strict::check(text).map_err(|e| match e {
        RequestError::MalformedJson(reason) => CompatError::MalformedJson(reason),
        RequestError::Invalid { field, reason } => CompatError::invalid(field, reason),
    })?;
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(CompatError::NotAnObject),
        Err(e) => Err(CompatError::MalformedJson(e.to_string())),
    }
}

pub(crate) fn field(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

pub(crate) fn item(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The value under `key`, with JSON `null` read as absent: clients of both APIs send `null`
/// for parameters they leave at their default.
pub(crate) fn present<'a>(object: &'a JsonObject, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// Refuses the first key of `object` that is not in `known`.
pub(crate) fn only_known(object: &JsonObject, path: &str, known: &[&str]) -> Result<(), CompatError> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => Err(CompatError::Unrecognized { param: field(path, key) }),
        None => Ok(()),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong_type(param: &str, expected: &str, value: &Value) -> CompatError {
    CompatError::invalid(param, format!("expected {expected}, got {}", json_kind(value)))
}

pub(crate) fn as_object<'a>(value: &'a Value, param: &str) -> Result<&'a JsonObject, CompatError> {
    value.as_object().ok_or_else(|| wrong_type(param, "an object", value))
}

pub(crate) fn as_array<'a>(value: &'a Value, param: &str) -> Result<&'a Vec<Value>, CompatError> {
    value.as_array().ok_or_else(|| wrong_type(param, "an array", value))
}

pub(crate) fn as_str<'a>(value: &'a Value, param: &str) -> Result<&'a str, CompatError> {
    value.as_str().ok_or_else(|| wrong_type(param, "a string", value))
}

pub(crate) fn as_bool(value: &Value, param: &str) -> Result<bool, CompatError> {
    value.as_bool().ok_or_else(|| wrong_type(param, "a boolean", value))
}

pub(crate) fn as_u32(value: &Value, param: &str) -> Result<u32, CompatError> {
    match value.as_u64() {
        Some(n) => u32::try_from(n).map_err(|_| CompatError::invalid(param, "is too large")),
        None if value.is_number() => Err(CompatError::invalid(param, "expected a non-negative integer")),
        None => Err(wrong_type(param, "an integer", value)),
    }
}

pub(crate) fn as_f32(value: &Value, param: &str) -> Result<f32, CompatError> {
    value.as_f64().map(|n| n as f32).ok_or_else(|| wrong_type(param, "a number", value))
}

/// The required string under `key`.
pub(crate) fn required_str<'a>(object: &'a JsonObject, path: &str, key: &str) -> Result<&'a str, CompatError> {
    let param = field(path, key);
    match present(object, key) {
        Some(value) => as_str(value, &param),
        None => Err(CompatError::invalid(param, "is required")),
    }
}

/// Bedrock's image format for a media type's subtype (`png` of `image/png`).
pub(crate) fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.strip_prefix("image/")? {
        "png" => Some("png"),
        // `image/jpg` is not registered but common in data URLs built by hand.
        "jpeg" | "jpg" => Some("jpeg"),
        "gif" => Some("gif"),
        "webp" => Some("webp"),
        _ => None,
    }
}

/// Whether `data` can be base64: Bedrock decodes it, so a typo is refused here with its param
/// rather than as an opaque validation error. Only the alphabet is checked, not the decoding,
/// so a large image costs one scan.
pub(crate) fn looks_like_base64(data: &str) -> bool {
    !data.is_empty()
        && data.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'\n' | b'\r'))
}

pub(crate) fn cache_point(ttl: Option<CacheTtl>) -> CachePointBlock {
    CachePointBlock { kind: CachePointType::Default, ttl }
}

/// Where each block of the built conversation came from, to name the caller's param when
/// [`crate::request::ConverseRequest::validate`] refuses it: merging and the extraction of
/// system messages change Converse's indices.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    /// One per Converse message: the caller's path of the first message merged into it, and
    /// of each of its blocks.
    pub messages: Vec<(String, Vec<String>)>,
    pub system: Vec<String>,
    pub tools: Vec<String>,
    pub max_tokens: String,
    /// The stop parameter's name, and whether the caller gave a list (else one string).
    pub stop: (String, bool),
    /// How the caller's API spells a tool's name and schema, below `tools[i]`.
    pub tool_name: &'static str,
    pub tool_schema: &'static str,
    pub tool_choice_name: &'static str,
    pub cache_point: &'static str,
}

impl Origins {
    /// The caller's path for a Converse field path; the Converse path itself when no origin
    /// is known, which still tells the caller what was wrong.
    pub fn translate(&self, converse_field: &str) -> String {
        if let Some((i, rest)) = indexed(converse_field, "messages") {
            let Some((message_path, blocks)) = self.messages.get(i) else { return converse_field.to_owned() };
            if rest == ".role" {
                return format!("{message_path}.role");
            }
            return match indexed(rest, ".content") {
                Some((j, _)) => blocks.get(j).cloned().unwrap_or_else(|| format!("{message_path}.content")),
                None => format!("{message_path}.content"),
            };
        }
        if let Some((i, _)) = indexed(converse_field, "system") {
            return self.system.get(i).cloned().unwrap_or_else(|| "system".to_owned());
        }
        if let Some((i, rest)) = indexed(converse_field, "toolConfig.tools") {
            let Some(tool) = self.tools.get(i) else { return "tools".to_owned() };
            return match rest {
                ".toolSpec.name" => format!("{tool}{}", self.tool_name),
                ".toolSpec.inputSchema.json" => format!("{tool}{}", self.tool_schema),
                _ => tool.clone(),
            };
        }
        match converse_field {
            "toolConfig.tools" => "tools".to_owned(),
            "toolConfig.toolChoice.tool.name" => self.tool_choice_name.to_owned(),
            "inferenceConfig.maxTokens" => self.max_tokens.clone(),
            "inferenceConfig.temperature" => "temperature".to_owned(),
            "inferenceConfig.topP" => "top_p".to_owned(),
            "cachePoint" => self.cache_point.to_owned(),
            other => match indexed(other, "inferenceConfig.stopSequences") {
                Some((i, _)) if self.stop.1 => item(&self.stop.0, i),
                Some(_) => self.stop.0.clone(),
                None => other.to_owned(),
            },
        }
    }

    pub fn validation_error(&self, error: RequestError) -> CompatError {
        match error {
            RequestError::MalformedJson(reason) => CompatError::MalformedJson(reason),
            RequestError::Invalid { field, reason } => CompatError::invalid(self.translate(&field), reason),
        }
    }
}

/// `(3, ".content[0]")` for `messages[3].content[0]` and prefix `messages`.
fn indexed<'a>(path: &'a str, prefix: &str) -> Option<(usize, &'a str)> {
    let rest = path.strip_prefix(prefix)?.strip_prefix('[')?;
    let close = rest.find(']')?;
    let index = rest[..close].parse().ok()?;
    Some((index, &rest[close + 1..]))
}

/// The conversation as Converse wants it: consecutive messages of one role merged, since
/// Converse requires the roles to alternate while both APIs accept runs of one role (several
/// tool results in a row, or a user turn split in two).
#[derive(Debug, Default)]
pub(crate) struct Conversation {
    pub messages: Vec<Message>,
    pub origins: Vec<(String, Vec<String>)>,
    documents: usize,
}

impl Conversation {
    /// Appends one caller message's blocks, each with its param path.
    pub fn push(&mut self, role: Role, message_path: String, blocks: Vec<(ContentBlock, String)>) {
        let (content, paths): (Vec<_>, Vec<_>) = blocks.into_iter().unzip();
        match (self.messages.last_mut(), self.origins.last_mut()) {
            (Some(last), Some((_, last_paths))) if last.role == role => {
                last.content.extend(content);
                last_paths.extend(paths);
            }
            _ => {
                self.messages.push(Message { role, content });
                self.origins.push((message_path, paths));
            }
        }
    }

    /// Bedrock requires a name per document and allows only letters, digits, single spaces,
    /// hyphens, parentheses and brackets; a caller's file name would need rewriting, so each
    /// document is numbered instead.
    pub fn next_document_name(&mut self) -> String {
        self.documents += 1;
        format!("document-{}", self.documents)
    }

    pub fn has_tool_blocks(&self) -> bool {
        self.messages
            .iter()
            .flat_map(|m| &m.content)
            .any(|b| matches!(b, ContentBlock::ToolUse(_) | ContentBlock::ToolResult(_)))
    }
}

/// The system prompt with the param path of each block.
#[derive(Debug, Default)]
pub(crate) struct SystemPrompt {
    pub blocks: Vec<SystemContentBlock>,
    pub origins: Vec<String>,
}

impl SystemPrompt {
    pub fn push(&mut self, block: SystemContentBlock, origin: String) {
        self.blocks.push(block);
        self.origins.push(origin);
    }
}

#[cfg(test)]
mod anthropic_tests;
#[cfg(test)]
mod openai_tests;

#[cfg(test)]
pub(crate) mod test_support {
    use std::time::Duration;

    use crate::request::{ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, Message, Role, TokenUsage};
    use crate::service::{Answer, CacheReport, CacheResult};
    use crate::stream::StreamEvent;

    pub const SERVED_MODEL: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

    pub fn response(content: Vec<ContentBlock>, stop_reason: &str, usage: TokenUsage) -> ConverseResponse {
        ConverseResponse {
            output: ConverseOutput { message: Message { role: Role::Assistant, content } },
            stop_reason: stop_reason.into(),
            usage,
            metrics: ConverseMetrics { latency_ms: 420 },
            additional_model_response_fields: None,
            trace: None,
            performance_config: None,
            service_tier: None,
        }
    }

    pub fn usage(input: i64, output: i64, cache_read: Option<i64>, cache_write: Option<i64>) -> TokenUsage {
        TokenUsage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output + cache_read.unwrap_or(0) + cache_write.unwrap_or(0),
            cache_read_input_tokens: cache_read,
            cache_write_input_tokens: cache_write,
            cache_details: Vec::new(),
        }
    }

    /// Answer has no constructor outside the use case; only the fields the encoders read
    /// matter here.
    pub fn answer(response: ConverseResponse) -> Answer {
        Answer {
            response,
            requested_model: "auto".into(),
            model_id: SERVED_MODEL.into(),
            cost_usd: Some(0.0012),
            latency: Duration::from_millis(430),
            cache: CacheReport {
                result: CacheResult::Miss,
                key: None,
                bypass_reason: None,
                saved_usd: None,
                age_seconds: None,
                ttl_seconds: None,
                write: None,
                error: None,
                coalesced: false,
            },
            routing: None,
            hops: Vec::new(),
            admission: None,
        }
    }

    pub fn replayed(response: &ConverseResponse) -> Vec<StreamEvent> {
        crate::stream::replay(response)
    }
}
