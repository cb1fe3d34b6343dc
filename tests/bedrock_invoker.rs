//! The Bedrock adapter against the emulator, through the real `aws-sdk-bedrockruntime`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use bedrock_emulator::QuotaOverride;
use gateway_core::adapters::BedrockInvoker;
use gateway_core::ports::{InvokeError, ModelInvoker};
use gateway_core::request::{ContentBlock, ConverseRequest};
use gateway_core::stream::{Assembler, StreamEvent};
use gateway_core::tokens;
use integration_tests::{bedrock, due, emulator};

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

fn request(json: serde_json::Value) -> ConverseRequest {
    ConverseRequest::from_json(json.to_string().as_bytes()).unwrap()
}

fn simple(text: &str, max_tokens: u32) -> ConverseRequest {
    request(serde_json::json!({
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": max_tokens}
    }))
}

#[tokio::test]
async fn converse_round_trips_through_the_sdk() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let req = request(serde_json::json!({
        "system": [{"text": "You are terse."}],
        "messages": [{"role": "user", "content": [{"text": "Name three rivers in Europe."}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 300, "topP": 0.9}
    }));
    // Claude 3.7 Sonnet takes temperature with topP (Haiku 4.5 would refuse them together).
    const SONNET_3_7: &str = "us.anthropic.claude-3-7-sonnet-20250219-v1:0";
    let answer = invoker.converse(SONNET_3_7, &req, due()).await.unwrap();
    assert_eq!(answer.output.message.role, gateway_core::request::Role::Assistant);
    assert!(!answer.text().is_empty());
    assert!(matches!(answer.stop_reason.as_str(), "end_turn" | "max_tokens"));
    assert_eq!(answer.usage.input_tokens as u64, tokens::estimate_request(&req));
    assert_eq!(answer.usage.total_tokens, answer.usage.input_tokens + answer.usage.output_tokens);
    // Same request, same answer: the emulator is deterministic.
    assert_eq!(invoker.converse(SONNET_3_7, &req, due()).await.unwrap().output, answer.output);
    let refused = invoker.converse(HAIKU, &req, due()).await.unwrap_err();
    assert!(matches!(refused, InvokeError::Rejected { .. }), "{refused:?}");
}

#[tokio::test]
async fn max_tokens_truncates_the_answer() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let answer = invoker.converse(HAIKU, &simple("Write a long essay about rivers.", 3), due()).await.unwrap();
    assert_eq!(answer.stop_reason, "max_tokens");
    assert!(answer.usage.output_tokens <= 3);
}

#[tokio::test]
async fn tool_use_and_tool_results_survive_the_conversion() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let req = request(serde_json::json!({
        "messages": [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}],
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "get_weather", "description": "Current weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
            "toolChoice": {"any": {}}
        },
        "inferenceConfig": {"temperature": 0, "maxTokens": 200}
    }));
    let answer = invoker.converse(HAIKU, &req, due()).await.unwrap();
    assert_eq!(answer.stop_reason, "tool_use");
    assert!(
        answer.output.message.content.iter().any(|b| matches!(b, ContentBlock::ToolUse(t) if t.name == "get_weather"))
    );
}

#[tokio::test]
async fn throttling_is_classified_after_the_sdk_gives_up() {
    let emu = emulator(|c| {
        c.quotas.insert(HAIKU.into(), QuotaOverride { rpm: Some(1), tpm: None });
    })
    .await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 2).await);
    invoker.converse(HAIKU, &simple("first", 50), due()).await.unwrap();
    let err = invoker.converse(HAIKU, &simple("second", 50), due()).await.unwrap_err();
    assert!(matches!(err, InvokeError::Throttled { .. }), "{err:?}");
    assert!(err.is_capacity());
}

#[tokio::test]
async fn bedrock_validation_errors_are_the_callers() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    // The catalog knows this model needs a profile; Bedrock says so too.
    let err = invoker.converse("anthropic.claude-haiku-4-5-20251001-v1:0", &simple("hi", 10), due()).await.unwrap_err();
    assert!(matches!(err, InvokeError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn server_faults_are_classified() {
    let emu = emulator(|c| c.faults.service_unavailable_rate = 1.0).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let err = invoker.converse(HAIKU, &simple("hi", 10), due()).await.unwrap_err();
    assert!(matches!(err, InvokeError::Unavailable { .. }), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transport_error() {
    let invoker = BedrockInvoker::new(bedrock("http://127.0.0.1:9", 1).await);
    let err = invoker.converse(HAIKU, &simple("hi", 10), due()).await.unwrap_err();
    assert!(matches!(err, InvokeError::Transport(_) | InvokeError::Timeout(_)), "{err:?}");
}

async fn drain(stream: &mut gateway_core::ports::ModelStream) -> (Vec<StreamEvent>, Option<InvokeError>) {
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => return (events, Some(error)),
        }
    }
    (events, None)
}

fn assemble(events: &[StreamEvent]) -> gateway_core::request::ConverseResponse {
    let mut assembler = Assembler::new();
    for event in events {
        assembler.push(event).unwrap();
    }
    assembler.finish().unwrap()
}

#[tokio::test]
async fn converse_stream_assembles_to_the_buffered_answer() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let req = simple("Describe the water cycle in a few sentences.", 300);
    let mut stream = invoker.converse_stream(HAIKU, &req, due()).await.unwrap();
    let (events, error) = drain(&mut stream).await;
    assert!(error.is_none(), "{error:?}");
    assert!(matches!(events.first(), Some(StreamEvent::MessageStart(_))));
    assert!(matches!(events.last(), Some(StreamEvent::Metadata(_))));
    assert!(events.iter().filter(|e| matches!(e, StreamEvent::ContentBlockDelta(_))).count() > 1);
    let streamed = assemble(&events);
    let buffered = invoker.converse(HAIKU, &req, due()).await.unwrap();
    assert_eq!(streamed.output, buffered.output, "the emulator answers a request the same either way");
    assert_eq!(streamed.stop_reason, buffered.stop_reason);
    assert_eq!(streamed.usage, buffered.usage);
}

#[tokio::test]
async fn a_streamed_tool_call_arrives_whole() {
    let emu = emulator(|_| {}).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let req = request(serde_json::json!({
        "messages": [{"role": "user", "content": [{"text": "What is the weather in Paris?"}]}],
        "toolConfig": {
            "tools": [{"toolSpec": {"name": "get_weather",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}}],
            "toolChoice": {"tool": {"name": "get_weather"}}
        },
        "inferenceConfig": {"temperature": 0, "maxTokens": 200}
    }));
    let mut stream = invoker.converse_stream(HAIKU, &req, due()).await.unwrap();
    let (events, error) = drain(&mut stream).await;
    assert!(error.is_none());
    let answer = assemble(&events);
    assert_eq!(answer.stop_reason, "tool_use");
    let ContentBlock::ToolUse(call) = &answer.output.message.content[0] else { panic!("{answer:?}") };
    assert_eq!(call.name, "get_weather");
    assert!(call.input.get("city").is_some(), "{}", call.input);
}

#[tokio::test]
async fn an_exception_inside_the_stream_is_its_last_item() {
    let emu = emulator(|c| c.faults.stream_error_rate = 1.0).await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let mut stream =
        invoker.converse_stream(HAIKU, &simple("Write a paragraph about rivers.", 300), due()).await.unwrap();
    let (events, error) = drain(&mut stream).await;
    assert!(matches!(error, Some(InvokeError::ModelFailed { .. })), "{error:?}");
    assert!(matches!(events.first(), Some(StreamEvent::MessageStart(_))));
    assert!(!events.iter().any(|e| matches!(e, StreamEvent::Metadata(_))));
    assert!(stream.next().await.is_none(), "nothing after the exception");
}

#[tokio::test]
async fn a_throttled_stream_fails_before_it_opens() {
    let emu = emulator(|c| {
        c.quotas.insert(HAIKU.into(), QuotaOverride { rpm: Some(1), tpm: None });
    })
    .await;
    let invoker = BedrockInvoker::new(bedrock(&emu.url(), 1).await);
    let mut first = invoker.converse_stream(HAIKU, &simple("first", 50), due()).await.unwrap();
    drain(&mut first).await;
    let error = invoker.converse_stream(HAIKU, &simple("second", 50), due()).await.unwrap_err();
    assert!(matches!(error, InvokeError::Throttled { .. }), "{error:?}");
}
