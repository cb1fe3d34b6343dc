//! [`ModelInvoker`] over `aws-sdk-bedrockruntime` Converse.
//!
//! Requests arrive in our wire types; the SDK wants its own builders. Conversion is total for
//! every block our request type accepts, so a valid request never fails here for shape.
//!
//! Each call's operation timeout (retries included) is what its deadline leaves, or the
//! client's configured operation timeout if that is sooner, so the SDK gives up in time on
//! its own and classifies the failure as a timeout.

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput as SdkConverseOutput};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types as sdk;
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_smithy_types::Document;
use aws_smithy_types::event_stream::RawMessage;
use aws_smithy_types::timeout::TimeoutConfig;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;

use crate::deadline::Deadline;
use crate::ports::{InvokeError, LiveEvents, ModelInvoker, ModelStream, NextEvent};
use crate::request::{
    BinarySource, CachePointBlock, CacheTtl, ContentBlock, ConverseMetrics, ConverseOutput, ConverseRequest,
    ConverseResponse, DocumentBlock, ImageBlock, Message, PerformanceConfig, ReasoningContentBlock, ReasoningText,
    Role, ServiceTier, SystemContentBlock, TokenUsage, Tool, ToolChoice, ToolInputSchema, ToolResultContent,
    ToolResultStatus,
};
use crate::stream::StreamEvent;

#[derive(Debug, Clone)]
pub struct BedrockInvoker {
    client: aws_sdk_bedrockruntime::Client,
    /// The client's own timeouts, which a per-call override would otherwise replace whole.
    timeouts: TimeoutConfig,
}

impl BedrockInvoker {
    pub fn new(client: aws_sdk_bedrockruntime::Client) -> Self {
        let timeouts = client.config().timeout_config().cloned().unwrap_or_else(TimeoutConfig::disabled);
        BedrockInvoker { client, timeouts }
    }

    /// The client's timeouts with the operation timeout cut to what `deadline` leaves.
    fn timeouts_for(&self, deadline: Deadline) -> TimeoutConfig {
        let left = deadline.remaining();
        let operation = self.timeouts.operation_timeout().map_or(left, |configured| configured.min(left));
        let mut timeouts = TimeoutConfig::builder().operation_timeout(operation).build();
        timeouts.take_defaults_from(&self.timeouts);
        timeouts
    }
}

/// Sets every field of a Converse request on a fluent builder: Converse and ConverseStream
/// take the same input through builders of different types.
macro_rules! with_request {
    ($call:expr, $request:expr) => {{
        let request: &ConverseRequest = $request;
        let messages = request.messages.iter().map(to_sdk_message).collect::<Result<Vec<_>, _>>()?;
        let system = request.system.iter().map(to_sdk_system).collect::<Result<Vec<_>, _>>()?;
        let mut call = $call.set_messages(Some(messages)).set_system((!system.is_empty()).then_some(system));
        if let Some(c) = &request.inference_config {
            call = call.inference_config(
                sdk::InferenceConfiguration::builder()
                    .set_max_tokens(c.max_tokens.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
                    .set_temperature(c.temperature)
                    .set_top_p(c.top_p)
                    .set_stop_sequences((!c.stop_sequences.is_empty()).then(|| c.stop_sequences.clone()))
                    .build(),
            );
        }
        if let Some(tools) = &request.tool_config {
            call = call.tool_config(to_sdk_tool_config(tools)?);
        }
        if let Some(fields) = &request.additional_model_request_fields {
            call = call.additional_model_request_fields(to_document(fields));
        }
        if !request.additional_model_response_field_paths.is_empty() {
            call = call
                .set_additional_model_response_field_paths(Some(request.additional_model_response_field_paths.clone()));
        }
        for (name, value) in &request.prompt_variables {
            let text = value
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| rejected(format!("promptVariables.{name} must be {{\"text\": \"...\"}}")))?;
            call = call.prompt_variables(name, sdk::PromptVariableValues::Text(text.to_owned()));
        }
        for (k, v) in &request.request_metadata {
            call = call.request_metadata(k, v);
        }
        if let Some(PerformanceConfig { latency }) = &request.performance_config {
            call = call.performance_config(
                sdk::PerformanceConfiguration::builder()
                    .latency(sdk::PerformanceConfigLatency::from(latency.as_str()))
                    .build(),
            );
        }
        if let Some(ServiceTier { kind }) = &request.service_tier {
            let tier = sdk::ServiceTier::builder()
                .r#type(sdk::ServiceTierType::from(kind.as_str()))
                .build()
                .map_err(build_error)?;
            call = call.service_tier(tier);
        }
        call
    }};
}

impl ModelInvoker for BedrockInvoker {
    async fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        let mut call = with_request!(self.client.converse().model_id(model_id), request);
        if let Some(guardrail) = &request.guardrail_config {
            call = call.guardrail_config(to_sdk_guardrail(guardrail)?);
        }
        let timeouts = aws_sdk_bedrockruntime::config::Builder::default().timeout_config(self.timeouts_for(deadline));
        let output = call.customize().config_override(timeouts).send().await.map_err(classify)?;
        from_sdk_output(output)
    }

    async fn converse_stream(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ModelStream, InvokeError> {
        let mut call = with_request!(self.client.converse_stream().model_id(model_id), request);
        if let Some(guardrail) = &request.guardrail_config {
            call = call.guardrail_config(to_sdk_stream_guardrail(guardrail)?);
        }
        // The operation timeout covers the stream's opening only; the core bounds every
        // event that follows by the request's deadline.
        let timeouts = aws_sdk_bedrockruntime::config::Builder::default().timeout_config(self.timeouts_for(deadline));
        let output = call.customize().config_override(timeouts).send().await.map_err(classify_stream)?;
        Ok(ModelStream::live(SdkEvents { receiver: output.stream, ended: false }))
    }
}

type SdkReceiver = aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
    sdk::ConverseStreamOutput,
    aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError,
>;

/// The SDK's event receiver as the core's stream. Events the SDK does not know (a newer
/// Bedrock) are skipped rather than failing an answer that is being paid for.
struct SdkEvents {
    receiver: SdkReceiver,
    ended: bool,
}

impl LiveEvents for SdkEvents {
    fn next(&mut self) -> NextEvent<'_> {
        Box::pin(async move {
            while !self.ended {
                match self.receiver.recv().await {
                    Ok(Some(event)) => match from_sdk_event(event) {
                        Ok(Some(event)) => return Some(Ok(event)),
                        Ok(None) => continue,
                        Err(error) => {
                            self.ended = true;
                            return Some(Err(error));
                        }
                    },
                    Ok(None) => self.ended = true,
                    Err(error) => {
                        self.ended = true;
                        return Some(Err(classify_stream_event(error)));
                    }
                }
            }
            None
        })
    }
}

fn rejected(message: String) -> InvokeError {
    InvokeError::Rejected { message }
}

fn build_error(e: aws_smithy_types::error::operation::BuildError) -> InvokeError {
    rejected(e.to_string())
}

fn classify(error: SdkError<ConverseError>) -> InvokeError {
    match error {
        SdkError::ServiceError(context) => {
            let err = context.into_err();
            let message = err.message().unwrap_or("no message").to_owned();
            match err {
                ConverseError::ThrottlingException(_) => InvokeError::Throttled { message, retry_after: None },
                ConverseError::ValidationException(_) => InvokeError::Rejected { message },
                ConverseError::AccessDeniedException(_) => InvokeError::AccessDenied { message },
                ConverseError::ResourceNotFoundException(_) => InvokeError::ModelNotFound { message },
                ConverseError::ModelNotReadyException(_) => InvokeError::ModelNotReady { message },
                ConverseError::ModelErrorException(_) => InvokeError::ModelFailed { message },
                ConverseError::ModelTimeoutException(_) => InvokeError::ModelTimeout { message },
                ConverseError::ServiceUnavailableException(_) => InvokeError::Unavailable { message },
                ConverseError::InternalServerException(_) => InvokeError::Internal { message },
                other => unknown_error(other.code(), message),
            }
        }
        other => classify_transport(other),
    }
}

fn classify_stream(error: SdkError<ConverseStreamError>) -> InvokeError {
    match error {
        SdkError::ServiceError(context) => {
            let err = context.into_err();
            let message = err.message().unwrap_or("no message").to_owned();
            match err {
                ConverseStreamError::ThrottlingException(_) => InvokeError::Throttled { message, retry_after: None },
                ConverseStreamError::ValidationException(_) => InvokeError::Rejected { message },
                ConverseStreamError::AccessDeniedException(_) => InvokeError::AccessDenied { message },
                ConverseStreamError::ResourceNotFoundException(_) => InvokeError::ModelNotFound { message },
                ConverseStreamError::ModelNotReadyException(_) => InvokeError::ModelNotReady { message },
                ConverseStreamError::ModelErrorException(_) | ConverseStreamError::ModelStreamErrorException(_) => {
                    InvokeError::ModelFailed { message }
                }
                ConverseStreamError::ModelTimeoutException(_) => InvokeError::ModelTimeout { message },
                ConverseStreamError::ServiceUnavailableException(_) => InvokeError::Unavailable { message },
                ConverseStreamError::InternalServerException(_) => InvokeError::Internal { message },
                other => unknown_error(other.code(), message),
            }
        }
        other => classify_transport(other),
    }
}

/// The exceptions Bedrock sends inside a stream that has begun (an HTTP 200 already).
fn classify_stream_event(error: SdkError<ConverseStreamOutputError, RawMessage>) -> InvokeError {
    match error {
        SdkError::ServiceError(context) => {
            let err = context.into_err();
            let message = err.message().unwrap_or("no message").to_owned();
            match err {
                ConverseStreamOutputError::ThrottlingException(_) => {
                    InvokeError::Throttled { message, retry_after: None }
                }
                ConverseStreamOutputError::ValidationException(_) => InvokeError::Rejected { message },
                ConverseStreamOutputError::ModelStreamErrorException(_) => InvokeError::ModelFailed { message },
                ConverseStreamOutputError::ServiceUnavailableException(_) => InvokeError::Unavailable { message },
                ConverseStreamOutputError::InternalServerException(_) => InvokeError::Internal { message },
                other => unknown_error(other.code(), message),
            }
        }
        other => classify_transport(other),
    }
}

fn unknown_error(code: Option<&str>, message: String) -> InvokeError {
    InvokeError::Internal { message: format!("{}: {message}", code.unwrap_or("unknown error")) }
}

/// The failures that are not Bedrock's answer: time, the connection, the response's shape.
fn classify_transport<E, R>(error: SdkError<E, R>) -> InvokeError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match error {
        SdkError::TimeoutError(_) => InvokeError::Timeout(Box::new(error)),
        SdkError::DispatchFailure(ref failure) if failure.is_timeout() => InvokeError::Timeout(Box::new(error)),
        SdkError::DispatchFailure(_) => InvokeError::Transport(Box::new(error)),
        SdkError::ResponseError(_) => InvokeError::BadResponse(error.to_string()),
        SdkError::ConstructionFailure(_) => InvokeError::Rejected { message: error.to_string() },
        other => InvokeError::Transport(Box::new(other)),
    }
}

fn to_sdk_message(message: &Message) -> Result<sdk::Message, InvokeError> {
    let role = match message.role {
        Role::User => sdk::ConversationRole::User,
        Role::Assistant => sdk::ConversationRole::Assistant,
    };
    let content = message.content.iter().map(to_sdk_block).collect::<Result<Vec<_>, _>>()?;
    sdk::Message::builder().role(role).set_content(Some(content)).build().map_err(build_error)
}

fn decode_blob(b64: &str, what: &str) -> Result<Blob, InvokeError> {
    BASE64.decode(b64).map(Blob::new).map_err(|e| rejected(format!("{what} bytes are not valid base64: {e}")))
}

fn to_sdk_s3(location: &crate::request::S3Location) -> Result<sdk::S3Location, InvokeError> {
    sdk::S3Location::builder()
        .uri(&location.uri)
        .set_bucket_owner(location.bucket_owner.clone())
        .build()
        .map_err(build_error)
}

fn to_sdk_image(image: &ImageBlock) -> Result<sdk::ImageBlock, InvokeError> {
    let source = match &image.source {
        BinarySource::Bytes(b64) => sdk::ImageSource::Bytes(decode_blob(b64, "image")?),
        BinarySource::S3Location(loc) => sdk::ImageSource::S3Location(to_sdk_s3(loc)?),
    };
    sdk::ImageBlock::builder()
        .format(sdk::ImageFormat::from(image.format.as_str()))
        .source(source)
        .build()
        .map_err(build_error)
}

fn to_sdk_document(doc: &DocumentBlock) -> Result<sdk::DocumentBlock, InvokeError> {
    let source = match &doc.source {
        BinarySource::Bytes(b64) => sdk::DocumentSource::Bytes(decode_blob(b64, "document")?),
        BinarySource::S3Location(loc) => sdk::DocumentSource::S3Location(to_sdk_s3(loc)?),
    };
    sdk::DocumentBlock::builder()
        .format(sdk::DocumentFormat::from(doc.format.as_str()))
        .name(&doc.name)
        .source(source)
        .build()
        .map_err(build_error)
}

fn to_sdk_cache_point(point: &CachePointBlock) -> Result<sdk::CachePointBlock, InvokeError> {
    let ttl = point.ttl.map(|ttl| match ttl {
        CacheTtl::FiveMinutes => sdk::CacheTtl::FiveMinutes,
        CacheTtl::OneHour => sdk::CacheTtl::OneHour,
    });
    sdk::CachePointBlock::builder().r#type(sdk::CachePointType::Default).set_ttl(ttl).build().map_err(build_error)
}

fn to_sdk_block(block: &ContentBlock) -> Result<sdk::ContentBlock, InvokeError> {
    Ok(match block {
        ContentBlock::Text(text) => sdk::ContentBlock::Text(text.clone()),
        ContentBlock::Image(image) => sdk::ContentBlock::Image(to_sdk_image(image)?),
        ContentBlock::Document(doc) => sdk::ContentBlock::Document(to_sdk_document(doc)?),
        ContentBlock::ToolUse(tool_use) => sdk::ContentBlock::ToolUse(
            sdk::ToolUseBlock::builder()
                .tool_use_id(&tool_use.tool_use_id)
                .name(&tool_use.name)
                .input(to_document(&tool_use.input))
                .build()
                .map_err(build_error)?,
        ),
        ContentBlock::ToolResult(result) => {
            let content = result
                .content
                .iter()
                .map(|c| {
                    Ok(match c {
                        ToolResultContent::Text(t) => sdk::ToolResultContentBlock::Text(t.clone()),
                        ToolResultContent::Json(v) => sdk::ToolResultContentBlock::Json(to_document(v)),
                        ToolResultContent::Image(i) => sdk::ToolResultContentBlock::Image(to_sdk_image(i)?),
                        ToolResultContent::Document(d) => sdk::ToolResultContentBlock::Document(to_sdk_document(d)?),
                    })
                })
                .collect::<Result<Vec<_>, InvokeError>>()?;
            let status = result.status.map(|s| match s {
                ToolResultStatus::Success => sdk::ToolResultStatus::Success,
                ToolResultStatus::Error => sdk::ToolResultStatus::Error,
            });
            sdk::ContentBlock::ToolResult(
                sdk::ToolResultBlock::builder()
                    .tool_use_id(&result.tool_use_id)
                    .set_content(Some(content))
                    .set_status(status)
                    .build()
                    .map_err(build_error)?,
            )
        }
        ContentBlock::CachePoint(point) => sdk::ContentBlock::CachePoint(to_sdk_cache_point(point)?),
        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => {
            sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::ReasoningText(
                sdk::ReasoningTextBlock::builder()
                    .text(&r.text)
                    .set_signature(r.signature.clone())
                    .build()
                    .map_err(build_error)?,
            ))
        }
        ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(b64)) => {
            sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::RedactedContent(decode_blob(
                b64,
                "redacted reasoning",
            )?))
        }
    })
}

fn to_sdk_system(block: &SystemContentBlock) -> Result<sdk::SystemContentBlock, InvokeError> {
    Ok(match block {
        SystemContentBlock::Text(text) => sdk::SystemContentBlock::Text(text.clone()),
        SystemContentBlock::CachePoint(point) => sdk::SystemContentBlock::CachePoint(to_sdk_cache_point(point)?),
    })
}

fn to_sdk_tool_config(config: &crate::request::ToolConfig) -> Result<sdk::ToolConfiguration, InvokeError> {
    let tools = config
        .tools
        .iter()
        .map(|tool| {
            Ok(match tool {
                Tool::ToolSpec(spec) => {
                    let ToolInputSchema::Json(schema) = &spec.input_schema;
                    sdk::Tool::ToolSpec(
                        sdk::ToolSpecification::builder()
                            .name(&spec.name)
                            .set_description(spec.description.clone())
                            .input_schema(sdk::ToolInputSchema::Json(to_document(schema)))
                            .build()
                            .map_err(build_error)?,
                    )
                }
                Tool::CachePoint(point) => sdk::Tool::CachePoint(to_sdk_cache_point(point)?),
            })
        })
        .collect::<Result<Vec<_>, InvokeError>>()?;
    let choice = match &config.tool_choice {
        None => None,
        Some(ToolChoice::Auto(_)) => Some(sdk::ToolChoice::Auto(sdk::AutoToolChoice::builder().build())),
        Some(ToolChoice::Any(_)) => Some(sdk::ToolChoice::Any(sdk::AnyToolChoice::builder().build())),
        Some(ToolChoice::Tool(t)) => {
            Some(sdk::ToolChoice::Tool(sdk::SpecificToolChoice::builder().name(&t.name).build().map_err(build_error)?))
        }
    };
    sdk::ToolConfiguration::builder().set_tools(Some(tools)).set_tool_choice(choice).build().map_err(build_error)
}

fn to_sdk_guardrail(value: &Value) -> Result<sdk::GuardrailConfiguration, InvokeError> {
    let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_owned);
    let identifier = field("guardrailIdentifier")
        .ok_or_else(|| rejected("guardrailConfig.guardrailIdentifier is required".into()))?;
    let version =
        field("guardrailVersion").ok_or_else(|| rejected("guardrailConfig.guardrailVersion is required".into()))?;
    Ok(sdk::GuardrailConfiguration::builder()
        .guardrail_identifier(identifier)
        .guardrail_version(version)
        .set_trace(field("trace").map(|t| sdk::GuardrailTrace::from(t.as_str())))
        .build())
}

/// ConverseStream's guardrail settings: those of Converse and how the stream is checked
/// (`sync` by default, as Bedrock does).
fn to_sdk_stream_guardrail(value: &Value) -> Result<sdk::GuardrailStreamConfiguration, InvokeError> {
    let buffered = to_sdk_guardrail(value)?;
    let mode = value.get("streamProcessingMode").and_then(Value::as_str).unwrap_or("sync");
    Ok(sdk::GuardrailStreamConfiguration::builder()
        .guardrail_identifier(buffered.guardrail_identifier)
        .guardrail_version(buffered.guardrail_version)
        .trace(buffered.trace)
        .stream_processing_mode(sdk::GuardrailStreamProcessingMode::from(mode))
        .build())
}

fn index(i: i32) -> Result<u32, InvokeError> {
    u32::try_from(i).map_err(|_| InvokeError::BadResponse(format!("negative content block index {i}")))
}

/// One SDK stream event in the core's terms; `None` for what the core does not carry (events
/// and deltas of kinds newer than it, citations, images and tool results in the stream).
fn from_sdk_event(event: sdk::ConverseStreamOutput) -> Result<Option<StreamEvent>, InvokeError> {
    use crate::stream as core;
    Ok(Some(match event {
        sdk::ConverseStreamOutput::MessageStart(start) => core::StreamEvent::MessageStart(core::MessageStart {
            role: match start.role {
                sdk::ConversationRole::User => Role::User,
                _ => Role::Assistant,
            },
        }),
        sdk::ConverseStreamOutput::ContentBlockStart(start) => match start.start {
            Some(sdk::ContentBlockStart::ToolUse(tool)) => {
                core::StreamEvent::ContentBlockStart(core::ContentBlockStart {
                    content_block_index: index(start.content_block_index)?,
                    start: core::BlockStart::ToolUse(core::ToolUseStart {
                        tool_use_id: tool.tool_use_id,
                        name: tool.name,
                    }),
                })
            }
            _ => return Ok(None),
        },
        sdk::ConverseStreamOutput::ContentBlockDelta(delta) => {
            let content_block_index = index(delta.content_block_index)?;
            let delta = match delta.delta {
                Some(sdk::ContentBlockDelta::Text(text)) => core::Delta::Text(text),
                Some(sdk::ContentBlockDelta::ToolUse(tool)) => {
                    core::Delta::ToolUse(core::ToolUseDelta { input: tool.input })
                }
                Some(sdk::ContentBlockDelta::ReasoningContent(reasoning)) => {
                    core::Delta::ReasoningContent(match reasoning {
                        sdk::ReasoningContentBlockDelta::Text(text) => core::ReasoningDelta::Text(text),
                        sdk::ReasoningContentBlockDelta::Signature(signature) => {
                            core::ReasoningDelta::Signature(signature)
                        }
                        sdk::ReasoningContentBlockDelta::RedactedContent(blob) => {
                            core::ReasoningDelta::RedactedContent(BASE64.encode(blob.into_inner()))
                        }
                        _ => return Ok(None),
                    })
                }
                _ => return Ok(None),
            };
            core::StreamEvent::ContentBlockDelta(core::ContentBlockDelta { content_block_index, delta })
        }
        sdk::ConverseStreamOutput::ContentBlockStop(stop) => {
            core::StreamEvent::ContentBlockStop(core::ContentBlockStop {
                content_block_index: index(stop.content_block_index)?,
            })
        }
        sdk::ConverseStreamOutput::MessageStop(stop) => core::StreamEvent::MessageStop(core::MessageStop {
            stop_reason: stop.stop_reason.as_str().to_owned(),
            additional_model_response_fields: stop.additional_model_response_fields.as_ref().map(from_document),
        }),
        sdk::ConverseStreamOutput::Metadata(metadata) => core::StreamEvent::Metadata(core::StreamMetadata {
            usage: metadata
                .usage
                .map(from_sdk_usage)
                .ok_or_else(|| InvokeError::BadResponse("the stream's metadata has no usage".into()))?,
            metrics: ConverseMetrics {
                latency_ms: metadata.metrics.map_or(0, |m| u64::try_from(m.latency_ms).unwrap_or(0)),
            },
            trace: metadata
                .trace
                .and_then(|t| t.prompt_router)
                .and_then(|r| r.invoked_model_id)
                .map(|id| serde_json::json!({"promptRouter": {"invokedModelId": id}})),
            performance_config: metadata
                .performance_config
                .map(|p| PerformanceConfig { latency: p.latency.as_str().to_owned() }),
            service_tier: metadata.service_tier.map(|t| ServiceTier { kind: t.r#type.as_str().to_owned() }),
        }),
        _ => return Ok(None),
    }))
}

fn from_sdk_usage(u: sdk::TokenUsage) -> TokenUsage {
    TokenUsage {
        input_tokens: i64::from(u.input_tokens),
        output_tokens: i64::from(u.output_tokens),
        total_tokens: i64::from(u.total_tokens),
        cache_read_input_tokens: u.cache_read_input_tokens.map(i64::from),
        cache_write_input_tokens: u.cache_write_input_tokens.map(i64::from),
        cache_details: u
            .cache_details
            .unwrap_or_default()
            .into_iter()
            .map(|d| crate::request::CacheDetail {
                ttl: d.ttl.as_str().to_owned(),
                input_tokens: i64::from(d.input_tokens),
            })
            .collect(),
    }
}

fn from_sdk_output(output: SdkConverseOutput) -> Result<ConverseResponse, InvokeError> {
    let message = match output.output {
        Some(sdk::ConverseOutput::Message(m)) => m,
        _ => return Err(InvokeError::BadResponse("Converse returned no message".into())),
    };
    let role = match message.role {
        sdk::ConversationRole::User => Role::User,
        _ => Role::Assistant,
    };
    let content = message.content.into_iter().filter_map(from_sdk_block).collect();
    let usage = output.usage.map(from_sdk_usage);
    let trace = output
        .trace
        .and_then(|t| t.prompt_router)
        .and_then(|r| r.invoked_model_id)
        .map(|id| serde_json::json!({"promptRouter": {"invokedModelId": id}}));
    Ok(ConverseResponse {
        output: ConverseOutput { message: Message { role, content } },
        stop_reason: output.stop_reason.as_str().to_owned(),
        usage: usage.ok_or_else(|| InvokeError::BadResponse("Converse returned no usage".into()))?,
        metrics: ConverseMetrics { latency_ms: output.metrics.map_or(0, |m| u64::try_from(m.latency_ms).unwrap_or(0)) },
        additional_model_response_fields: output.additional_model_response_fields.as_ref().map(from_document),
        trace,
        performance_config: output
            .performance_config
            .map(|p| PerformanceConfig { latency: p.latency.as_str().to_owned() }),
        service_tier: output.service_tier.map(|t| ServiceTier { kind: t.r#type.as_str().to_owned() }),
    })
}

/// Blocks a model can answer with; anything newer is dropped with a log line rather than
/// failing an answer that was already paid for.
fn from_sdk_block(block: sdk::ContentBlock) -> Option<ContentBlock> {
    match block {
        sdk::ContentBlock::Text(text) => Some(ContentBlock::Text(text)),
        sdk::ContentBlock::ToolUse(t) => Some(ContentBlock::ToolUse(crate::request::ToolUseBlock {
            tool_use_id: t.tool_use_id,
            name: t.name,
            input: from_document(&t.input),
        })),
        sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::ReasoningText(r)) => {
            Some(ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: r.text,
                signature: r.signature,
            })))
        }
        sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::RedactedContent(blob)) => {
            Some(ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(BASE64.encode(blob.as_ref()))))
        }
        other => {
            tracing::warn!(block = ?std::mem::discriminant(&other), "dropping an answer block this gateway does not model");
            None
        }
    }
}

pub(crate) fn to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(if let Some(u) = n.as_u64() {
            aws_smithy_types::Number::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            aws_smithy_types::Number::NegInt(i)
        } else {
            aws_smithy_types::Number::Float(n.as_f64().unwrap_or(0.0))
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(to_document).collect()),
        Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), to_document(v))).collect()),
    }
}

pub(crate) fn from_document(doc: &Document) -> Value {
    match doc {
        Document::Null => Value::Null,
        Document::Bool(b) => Value::Bool(*b),
        Document::Number(aws_smithy_types::Number::PosInt(u)) => Value::from(*u),
        Document::Number(aws_smithy_types::Number::NegInt(i)) => Value::from(*i),
        Document::Number(aws_smithy_types::Number::Float(f)) => {
            serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
        }
        Document::String(s) => Value::String(s.clone()),
        Document::Array(items) => Value::Array(items.iter().map(from_document).collect()),
        Document::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), from_document(v))).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_round_trip() {
        let value = serde_json::json!({"a": [1, -2, 2.5, "x", true, null], "b": {"c": {}}});
        assert_eq!(from_document(&to_document(&value)), value);
    }

    #[test]
    fn every_request_block_converts() {
        let body = serde_json::json!({
            "system": [{"text": "s"}, {"cachePoint": {"type": "default", "ttl": "1h"}}],
            "messages": [
                {"role": "user", "content": [
                    {"text": "t"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                    {"document": {"format": "txt", "name": "notes", "source": {"s3Location": {"uri": "s3://b/k"}}}},
                    {"cachePoint": {"type": "default"}}
                ]},
                {"role": "assistant", "content": [
                    {"reasoningContent": {"reasoningText": {"text": "hmm", "signature": "sig"}}},
                    {"toolUse": {"toolUseId": "1", "name": "f", "input": {"x": 1}}}
                ]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "1", "content": [{"text": "ok"}, {"json": [1]}], "status": "error"}}]}
            ],
            "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}, {"cachePoint": {"type": "default"}}], "toolChoice": {"tool": {"name": "f"}}}
        });
        let request = ConverseRequest::from_json(body.to_string().as_bytes()).unwrap();
        for message in &request.messages {
            to_sdk_message(message).unwrap();
        }
        for block in &request.system {
            to_sdk_system(block).unwrap();
        }
        to_sdk_tool_config(request.tool_config.as_ref().unwrap()).unwrap();
    }

    #[test]
    fn bad_base64_is_the_callers_mistake() {
        let err = decode_blob("***", "image").unwrap_err();
        assert!(matches!(err, InvokeError::Rejected { .. }));
    }
}
