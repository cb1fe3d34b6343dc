//! ConverseStream's events as domain values, in Bedrock's JSON shape.
//!
//! Serialized externally tagged (`{"contentBlockDelta": {...}}`), which is how boto3 and the
//! SDKs present each event of a ConverseStream answer, so the gateway can forward them as they
//! are and callers that know Bedrock's stream read ours without a new vocabulary.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::request::{ConverseMetrics, PerformanceConfig, Role, ServiceTier, TokenUsage};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamEvent {
    MessageStart(MessageStart),
    ContentBlockStart(ContentBlockStart),
    ContentBlockDelta(ContentBlockDelta),
    ContentBlockStop(ContentBlockStop),
    MessageStop(MessageStop),
    Metadata(StreamMetadata),
}

impl StreamEvent {
    /// The event's name on Bedrock's wire (`:event-type`), also its SSE `event:` line.
    pub fn event_type(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart(_) => "messageStart",
            StreamEvent::ContentBlockStart(_) => "contentBlockStart",
            StreamEvent::ContentBlockDelta(_) => "contentBlockDelta",
            StreamEvent::ContentBlockStop(_) => "contentBlockStop",
            StreamEvent::MessageStop(_) => "messageStop",
            StreamEvent::Metadata(_) => "metadata",
        }
    }

    /// The event's body without its name, as Bedrock frames it.
    pub fn payload(&self) -> Value {
        let value = match self {
            StreamEvent::MessageStart(e) => serde_json::to_value(e),
            StreamEvent::ContentBlockStart(e) => serde_json::to_value(e),
            StreamEvent::ContentBlockDelta(e) => serde_json::to_value(e),
            StreamEvent::ContentBlockStop(e) => serde_json::to_value(e),
            StreamEvent::MessageStop(e) => serde_json::to_value(e),
            StreamEvent::Metadata(e) => serde_json::to_value(e),
        };
        value.unwrap_or(Value::Null)
    }

    /// Reads one event from its wire name and body (what an SDK or an SSE reader holds).
    pub fn from_parts(event_type: &str, payload: Value) -> Result<StreamEvent, serde_json::Error> {
        let mut tagged = serde_json::Map::with_capacity(1);
        tagged.insert(event_type.to_owned(), payload);
        serde_json::from_value(Value::Object(tagged))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStart {
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStart {
    pub content_block_index: u32,
    pub start: BlockStart,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockStart {
    ToolUse(ToolUseStart),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseStart {
    pub tool_use_id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDelta {
    pub content_block_index: u32,
    pub delta: Delta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Delta {
    Text(String),
    /// A piece of the tool call's input JSON; only the concatenation of every piece parses.
    ToolUse(ToolUseDelta),
    ReasoningContent(ReasoningDelta),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseDelta {
    pub input: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningDelta {
    Text(String),
    Signature(String),
    /// Base64, as on the wire.
    RedactedContent(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStop {
    pub content_block_index: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStop {
    /// Kept as a string, like [`crate::request::ConverseResponse::stop_reason`].
    pub stop_reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamMetadata {
    pub usage: TokenUsage,
    pub metrics: ConverseMetrics,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
}
