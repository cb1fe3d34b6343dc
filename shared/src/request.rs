//! Converse-shaped requests and responses, as they travel on the wire (Bedrock's REST-JSON
//! shape, camelCase), with validation that names the offending field.
//!
//! The same types serve the gateway's HTTP API, the cache and the Bedrock emulator, so that
//! all three agree on one schema.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub(crate) mod strict;

/// Bedrock accepts at most four cache checkpoints per request.
const MAX_CACHE_POINTS: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConverseRequest {
    /// Present in the gateway's API body; Bedrock itself takes the model in the URL path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_id: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemContentBlock>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference_config: Option<InferenceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config: Option<ToolConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_request_fields: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_model_response_field_paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrail_config: Option<Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompt_variables: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub request_metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentBlock>,
}

/// One block of a message. Externally tagged, exactly as on the wire: `{"text": "..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlock {
    Text(String),
    Image(ImageBlock),
    Document(DocumentBlock),
    ToolUse(ToolUseBlock),
    ToolResult(ToolResultBlock),
    CachePoint(CachePointBlock),
    ReasoningContent(ReasoningContentBlock),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SystemContentBlock {
    Text(String),
    CachePoint(CachePointBlock),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImageBlock {
    /// `png`, `jpeg`, `gif` or `webp`.
    pub format: String,
    pub source: BinarySource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DocumentBlock {
    pub format: String,
    pub name: String,
    pub source: BinarySource,
}

/// Blob sources. JSON carries `bytes` base64-encoded; we keep the text as given so that the
/// cache key sees exactly what the caller sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BinarySource {
    Bytes(String),
    S3Location(S3Location),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Location {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_owner: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolUseBlock {
    pub tool_use_id: String,
    pub name: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolResultBlock {
    pub tool_use_id: String,
    pub content: Vec<ToolResultContent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ToolResultStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolResultContent {
    Text(String),
    Json(Value),
    Image(ImageBlock),
    Document(DocumentBlock),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ToolResultStatus {
    Success,
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CachePointBlock {
    #[serde(rename = "type")]
    pub kind: CachePointType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<CacheTtl>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CachePointType {
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheTtl {
    #[serde(rename = "5m")]
    FiveMinutes,
    #[serde(rename = "1h")]
    OneHour,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningContentBlock {
    ReasoningText(ReasoningText),
    /// Base64, as on the wire.
    RedactedContent(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReasoningText {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_sequences: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    pub tools: Vec<Tool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Tool {
    ToolSpec(ToolSpec),
    CachePoint(CachePointBlock),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub input_schema: ToolInputSchema,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolInputSchema {
    Json(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ToolChoice {
    Auto(EmptyObject),
    Any(EmptyObject),
    Tool(SpecificTool),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmptyObject {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificTool {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerformanceConfig {
    /// `standard` or `optimized`.
    pub latency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceTier {
    /// `priority`, `default`, `flex` or `reserved`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Bedrock's Converse response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    pub output: ConverseOutput,
    /// Kept as a string so that stop reasons Bedrock adds later pass through untouched.
    pub stop_reason: String,
    pub usage: TokenUsage,
    pub metrics: ConverseMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
}

impl ConverseResponse {
    /// The model a prompt router chose, when a router served the call.
    pub fn invoked_model_id(&self) -> Option<&str> {
        self.trace.as_ref()?.get("promptRouter")?.get("invokedModelId")?.as_str()
    }

    /// Concatenated text of the answer.
    pub fn text(&self) -> String {
        self.output
            .message
            .content
            .iter()
            .filter_map(|b| match b {
                ContentBlock::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseOutput {
    pub message: Message,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_details: Vec<CacheDetail>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheDetail {
    pub ttl: String,
    pub input_tokens: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseMetrics {
    pub latency_ms: u64,
}

/// A request the caller got wrong, with the JSON path of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("`{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

/// The model a request names, else the deployment's default (`DEFAULT_MODEL_ID`): one rule
/// for every endpoint, so `/v1/route` and `/v1/converse` refuse the same requests.
pub fn requested_model(model_id: Option<String>, default: Option<&str>) -> Result<String, RequestError> {
    model_id.or_else(|| default.map(str::to_owned)).ok_or_else(|| {
        RequestError::invalid(
            "modelId",
            "is required: auto, a tier (haiku, sonnet, opus), a model ID, an inference profile or an ARN",
        )
    })
}

impl RequestError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        RequestError::Invalid { field: field.into(), reason: reason.into() }
    }

    /// The offending field, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            RequestError::MalformedJson(_) => None,
            RequestError::Invalid { field, .. } => Some(field),
        }
    }

    pub fn label(&self) -> crate::label::ErrorLabel {
        match self {
            RequestError::MalformedJson(_) => crate::label::ErrorLabel::MalformedJson,
            RequestError::Invalid { .. } => crate::label::ErrorLabel::InvalidRequest,
        }
    }
}

impl ConverseRequest {
    /// Parses and validates a request body. Every error names the JSON path and, for shape
    /// errors, the expected type and the line and column; none repeats a value from the body,
    /// so an error message is safe to log. Duplicate keys anywhere are rejected rather than
    /// letting the last one silently win.
    pub fn from_json(body: &[u8]) -> Result<ConverseRequest, RequestError> {
        let text = std::str::from_utf8(body).map_err(|e| {
            RequestError::MalformedJson(format!("the body is not valid UTF-8 (byte {})", e.valid_up_to()))
        })?;
        strict::check(text)?;
        if !text.trim_start().starts_with('{') {
            return Err(RequestError::invalid("$", "the request body must be a JSON object"));
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let request: ConverseRequest = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
            let field = match e.path().to_string() {
                p if p == "." => "$".to_owned(),
                p => p,
            };
            let inner = e.into_inner();
            RequestError::invalid(
                field,
                format!("{} (line {}, column {})", strict::describe(&inner), inner.line(), inner.column()),
            )
        })?;
        request.validate()?;
        Ok(request)
    }

    /// Rules Bedrock enforces, checked up front so the caller gets a precise 400 instead of
    /// a paid round trip.
    pub fn validate(&self) -> Result<(), RequestError> {
        if self.messages.is_empty() {
            return Err(RequestError::invalid("messages", "at least one message is required"));
        }
        if self.messages[0].role != Role::User {
            return Err(RequestError::invalid("messages[0].role", "the conversation must start with a user message"));
        }
        let mut cache_points = 0;
        for (i, message) in self.messages.iter().enumerate() {
            if message.content.is_empty() {
                return Err(RequestError::invalid(format!("messages[{i}].content"), "must not be empty"));
            }
            for (j, block) in message.content.iter().enumerate() {
                let at = || format!("messages[{i}].content[{j}]");
                match block {
                    ContentBlock::Text(text) if text.trim().is_empty() => {
                        return Err(RequestError::invalid(format!("{}.text", at()), "text must not be blank"));
                    }
                    ContentBlock::ToolUse(_) if message.role != Role::Assistant => {
                        return Err(RequestError::invalid(at(), "toolUse blocks belong in assistant messages"));
                    }
                    ContentBlock::ToolResult(_) if message.role != Role::User => {
                        return Err(RequestError::invalid(at(), "toolResult blocks belong in user messages"));
                    }
                    ContentBlock::Image(image) => {
                        check_format(&image.format, IMAGE_FORMATS, &format!("{}.image.format", at()))?
                    }
                    ContentBlock::Document(doc) => {
                        check_format(&doc.format, DOCUMENT_FORMATS, &format!("{}.document.format", at()))?;
                    }
                    ContentBlock::CachePoint(_) => cache_points += 1,
                    _ => {}
                }
            }
        }
        for (i, block) in self.system.iter().enumerate() {
            match block {
                SystemContentBlock::Text(text) if text.trim().is_empty() => {
                    return Err(RequestError::invalid(format!("system[{i}].text"), "text must not be blank"));
                }
                SystemContentBlock::CachePoint(_) => cache_points += 1,
                SystemContentBlock::Text(_) => {}
            }
        }
        if let Some(config) = &self.inference_config {
            config.validate()?;
        }
        if let Some(tools) = &self.tool_config {
            cache_points += tools.validate()?;
        }
        if cache_points > MAX_CACHE_POINTS {
            return Err(RequestError::invalid(
                "cachePoint",
                format!("{cache_points} cache checkpoints given; Bedrock allows at most {MAX_CACHE_POINTS}"),
            ));
        }
        for (i, path) in self.additional_model_response_field_paths.iter().enumerate() {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(RequestError::invalid(
                    format!("additionalModelResponseFieldPaths[{i}]"),
                    "must be a JSON Pointer such as `/stop_sequence`",
                ));
            }
        }
        if let Some(p) = &self.performance_config
            && !matches!(p.latency.as_str(), "standard" | "optimized")
        {
            return Err(RequestError::invalid("performanceConfig.latency", "must be `standard` or `optimized`"));
        }
        if let Some(t) = &self.service_tier
            && !matches!(t.kind.as_str(), "priority" | "default" | "flex" | "reserved")
        {
            return Err(RequestError::invalid(
                "serviceTier.type",
                "must be one of `priority`, `default`, `flex`, `reserved`",
            ));
        }
        Ok(())
    }

    /// The sampling temperature the model will use; Claude's default is 1.0 when none is given.
    pub fn effective_temperature(&self) -> f32 {
        self.inference_config.as_ref().and_then(|c| c.temperature).unwrap_or(1.0)
    }

    pub fn max_tokens(&self) -> Option<u32> {
        self.inference_config.as_ref().and_then(|c| c.max_tokens)
    }
}

const IMAGE_FORMATS: &[&str] = &["png", "jpeg", "gif", "webp"];
const DOCUMENT_FORMATS: &[&str] = &["pdf", "csv", "doc", "docx", "xls", "xlsx", "html", "txt", "md"];

fn check_format(format: &str, allowed: &[&str], field: &str) -> Result<(), RequestError> {
    if allowed.contains(&format) {
        Ok(())
    } else {
        Err(RequestError::invalid(field, format!("must be one of {}", allowed.join(", "))))
    }
}

impl InferenceConfig {
    fn validate(&self) -> Result<(), RequestError> {
        if self.max_tokens == Some(0) {
            return Err(RequestError::invalid("inferenceConfig.maxTokens", "must be at least 1"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=1.0).contains(&t)
        {
            return Err(RequestError::invalid("inferenceConfig.temperature", "must be between 0 and 1"));
        }
        if let Some(p) = self.top_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(RequestError::invalid("inferenceConfig.topP", "must be between 0 and 1"));
        }
        if let Some(i) = self.stop_sequences.iter().position(String::is_empty) {
            return Err(RequestError::invalid(format!("inferenceConfig.stopSequences[{i}]"), "must not be empty"));
        }
        Ok(())
    }
}

impl ToolConfig {
    /// Validates the tools and returns how many cache checkpoints they hold.
    fn validate(&self) -> Result<usize, RequestError> {
        let mut names = std::collections::BTreeSet::new();
        let mut cache_points = 0;
        for (i, tool) in self.tools.iter().enumerate() {
            match tool {
                Tool::ToolSpec(spec) => {
                    let valid = !spec.name.is_empty()
                        && spec.name.len() <= 64
                        && spec.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !valid {
                        return Err(RequestError::invalid(
                            format!("toolConfig.tools[{i}].toolSpec.name"),
                            "must be 1-64 characters of letters, digits, `_` or `-`",
                        ));
                    }
                    if !names.insert(spec.name.as_str()) {
                        return Err(RequestError::invalid(
                            format!("toolConfig.tools[{i}].toolSpec.name"),
                            "names a tool already defined",
                        ));
                    }
                    let ToolInputSchema::Json(schema) = &spec.input_schema;
                    if !schema.is_object() {
                        return Err(RequestError::invalid(
                            format!("toolConfig.tools[{i}].toolSpec.inputSchema.json"),
                            "must be a JSON Schema object",
                        ));
                    }
                }
                Tool::CachePoint(_) => cache_points += 1,
            }
        }
        if names.is_empty() {
            return Err(RequestError::invalid("toolConfig.tools", "at least one toolSpec is required"));
        }
        if let Some(ToolChoice::Tool(SpecificTool { name })) = &self.tool_choice
            && !names.contains(name.as_str())
        {
            return Err(RequestError::invalid("toolConfig.toolChoice.tool.name", "is not one of the defined tools"));
        }
        Ok(cache_points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: serde_json::Value) -> Result<ConverseRequest, RequestError> {
        ConverseRequest::from_json(v.to_string().as_bytes())
    }

    fn field_of(v: serde_json::Value) -> String {
        parse(v).unwrap_err().field().unwrap_or("<none>").to_owned()
    }

    #[test]
    fn parses_a_full_request_and_round_trips() {
        let body = serde_json::json!({
            "modelId": "haiku",
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "messages": [
                {"role": "user", "content": [{"text": "What is 2+2?"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "calc", "input": {"expr": "2+2"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"value": 4}}], "status": "success"}}]}
            ],
            "inferenceConfig": {"maxTokens": 100, "temperature": 0.5, "stopSequences": ["END"]},
            "toolConfig": {"tools": [{"toolSpec": {"name": "calc", "inputSchema": {"json": {"type": "object"}}}}], "toolChoice": {"auto": {}}},
            "additionalModelRequestFields": {"top_k": 5},
            "performanceConfig": {"latency": "standard"}
        });
        let request = parse(body.clone()).unwrap();
        assert_eq!(serde_json::to_value(&request).unwrap(), body);
    }

    #[test]
    fn malformed_json_is_reported_as_such() {
        let err = ConverseRequest::from_json(b"{\"messages\": [").unwrap_err();
        assert!(matches!(err, RequestError::MalformedJson(_)));
        assert_eq!(field_of(serde_json::json!([1, 2])), "$");
    }

    #[test]
    fn shape_errors_name_the_path() {
        assert_eq!(field_of(serde_json::json!({})), "$");
        assert_eq!(
            field_of(serde_json::json!({"messages": [{"role": "user", "content": [{"video": {}}]}]})),
            "messages[0].content[0]"
        );
        assert_eq!(
            field_of(serde_json::json!({"messages": [{"role": "robot", "content": [{"text": "x"}]}]})),
            "messages[0].role"
        );
        assert_eq!(
            field_of(serde_json::json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "temprature": 0})),
            "temprature"
        );
        assert_eq!(
            field_of(
                serde_json::json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": "lots"}})
            ),
            "inferenceConfig.maxTokens"
        );
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let user = |content: serde_json::Value| serde_json::json!([{"role": "user", "content": content}]);
        assert_eq!(field_of(serde_json::json!({"messages": []})), "messages");
        assert_eq!(
            field_of(serde_json::json!({"messages": [{"role": "assistant", "content": [{"text": "hi"}]}]})),
            "messages[0].role"
        );
        assert_eq!(
            field_of(serde_json::json!({"messages": user(serde_json::json!([{"text": "  "}]))})),
            "messages[0].content[0].text"
        );
        assert_eq!(
            field_of(
                serde_json::json!({"messages": user(serde_json::json!([{"text": "x"}])), "inferenceConfig": {"temperature": 1.5}})
            ),
            "inferenceConfig.temperature"
        );
        assert_eq!(
            field_of(
                serde_json::json!({"messages": user(serde_json::json!([{"text": "x"}])), "inferenceConfig": {"maxTokens": 0}})
            ),
            "inferenceConfig.maxTokens"
        );
        assert_eq!(
            field_of(
                serde_json::json!({"messages": user(serde_json::json!([{"image": {"format": "bmp", "source": {"bytes": "AA=="}}}]))})
            ),
            "messages[0].content[0].image.format"
        );
        let five_points: Vec<_> = (0..5).map(|_| serde_json::json!({"cachePoint": {"type": "default"}})).collect();
        let mut content = vec![serde_json::json!({"text": "x"})];
        content.extend(five_points);
        assert_eq!(field_of(serde_json::json!({"messages": user(serde_json::json!(content))})), "cachePoint");
        assert_eq!(
            field_of(serde_json::json!({
                "messages": user(serde_json::json!([{"text": "x"}])),
                "toolConfig": {"tools": [{"toolSpec": {"name": "a", "inputSchema": {"json": {}}}}], "toolChoice": {"tool": {"name": "b"}}}
            })),
            "toolConfig.toolChoice.tool.name"
        );
    }

    #[test]
    fn shape_errors_carry_path_type_and_position_but_never_the_value() {
        // Finding 4: serde's message carried the prompt into the INFO log.
        let cases = [
            (
                r#"{"messages":[{"role":"user","content":"SECRET-PROMPT"}]}"#,
                "messages[0].content",
                "expected a sequence",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"stopSequences":"SECRET-STOP"}}"#,
                "inferenceConfig.stopSequences",
                "expected a sequence",
            ),
            (r#"{"modelId":12345678,"messages":[{"role":"user","content":[{"text":"x"}]}]}"#, "modelId", "string"),
            (
                r#"{"messages":[{"role":"SECRET-ROLE","content":[{"text":"x"}]}]}"#,
                "messages[0].role",
                "expected `user` or `assistant`",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"text":"x"}]}],"inferenceConfig":{"maxTokens":98765432109}}"#,
                "inferenceConfig.maxTokens",
                "u32",
            ),
        ];
        for (body, field, expected) in cases {
            let err = ConverseRequest::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}");
            let text = err.to_string();
            for secret in ["SECRET", "12345678", "98765432109"] {
                assert!(!text.contains(secret), "{text}");
            }
            assert!(text.contains(expected) && text.contains("line 1, column"), "{text}");
        }
    }

    #[test]
    fn duplicate_keys_anywhere_are_rejected_with_their_path() {
        // Finding 6: the last duplicate used to win silently.
        let user = r#"{"role":"user","content":[{"text":"x"}]}"#;
        let cases = [
            (format!(r#"{{"messages":[{user}],"messages":[{user}]}}"#), "messages"),
            (
                r#"{"messages":[{"role":"user","role":"assistant","content":[{"text":"x"}]}]}"#.to_owned(),
                "messages[0].role",
            ),
            (
                format!(r#"{{"messages":[{user}],"additionalModelRequestFields":{{"a":{{"k":1,"k":2}}}}}}"#),
                "additionalModelRequestFields.a.k",
            ),
            (
                format!(
                    r#"{{"messages":[{user}],"toolConfig":{{"tools":[{{"toolSpec":{{"name":"t","inputSchema":{{"json":{{"type":"object","type":"string"}}}}}}}}]}}}}"#
                ),
                "toolConfig.tools[0].toolSpec.inputSchema.json.type",
            ),
            (
                format!(
                    r#"{{"messages":[{user},{{"role":"assistant","content":[{{"toolUse":{{"toolUseId":"1","name":"t","input":{{"q":1,"\u0071":2}}}}}}]}}]}}"#
                ),
                "messages[1].content[0].toolUse.input.q",
            ),
        ];
        for (body, field) in cases {
            let err = ConverseRequest::from_json(body.as_bytes()).unwrap_err();
            assert_eq!(err.field(), Some(field), "{body}: {err}");
        }
        // The same key in sibling objects is not a duplicate.
        ConverseRequest::from_json(
            format!(r#"{{"messages":[{user},{{"role":"assistant","content":[{{"text":"y"}}]}},{user}]}}"#).as_bytes(),
        )
        .unwrap();
    }

    #[test]
    fn invalid_utf8_and_trailing_garbage_are_malformed() {
        let mut body = br#"{"messages":[{"role":"user","content":[{"text":"x"#.to_vec();
        body.extend_from_slice(&[0xff, 0xfe]);
        body.extend_from_slice(br#""}]}]}"#);
        assert!(
            matches!(ConverseRequest::from_json(&body), Err(RequestError::MalformedJson(m)) if m.contains("UTF-8"))
        );
        let trailing = br#"{"messages":[{"role":"user","content":[{"text":"x"}]}]} {}"#;
        assert!(matches!(ConverseRequest::from_json(trailing), Err(RequestError::MalformedJson(_))));
    }

    #[test]
    fn the_model_rule_is_one_function() {
        assert_eq!(requested_model(None, None).unwrap_err().field(), Some("modelId"));
        assert_eq!(requested_model(None, Some("auto")).unwrap(), "auto");
        assert_eq!(requested_model(Some("haiku".into()), Some("auto")).unwrap(), "haiku");
    }

    #[test]
    fn numbers_beyond_integers_survive_a_round_trip_exactly() {
        // Found by `cargo xtask fuzz`: without exact float parsing, a 60-digit integer in a tool's
        // input read back one ulp off, so the request forwarded and keyed was not the one sent.
        let body = r#"{"messages":[{"role":"user","content":[{"text":"x"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"f","input":{"n":123456789012345678901234567890123456789012345678901234567890}}}]},{"role":"user","content":[{"text":"y"}]}]}"#;
        let first = ConverseRequest::from_json(body.as_bytes()).unwrap();
        let again = ConverseRequest::from_json(serde_json::to_string(&first).unwrap().as_bytes()).unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn temperature_defaults_to_claudes_default() {
        let r = parse(serde_json::json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})).unwrap();
        assert_eq!(r.effective_temperature(), 1.0);
    }

    #[test]
    fn response_exposes_router_choice_and_text() {
        let response: ConverseResponse = serde_json::from_value(serde_json::json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}, {"text": " world"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 2, "totalTokens": 5},
            "metrics": {"latencyMs": 10},
            "trace": {"promptRouter": {"invokedModelId": "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"}}
        }))
        .unwrap();
        assert_eq!(response.text(), "Hello world");
        assert!(response.invoked_model_id().unwrap().ends_with("claude-3-haiku-20240307-v1:0"));
    }
}
