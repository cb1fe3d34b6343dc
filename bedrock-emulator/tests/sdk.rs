//! The emulator seen through the real AWS SDK for Rust: if these pass, an unmodified
//! `aws-sdk-bedrockruntime` client pointed at the emulator behaves as against Bedrock.
//!
//! Every test starts its own emulator in-process, so tests share no quota or statistics.
//! Clients make one attempt only, so that throttling and fault counts are exact.

// Lets clippy see the helpers as test code too, where unwrap and panic are allowed.
#![cfg(test)]

use std::time::{Duration, Instant};

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::config::retry::RetryConfig;
use aws_sdk_bedrockruntime::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, CachePointBlock, CachePointType, ContentBlock, ContentBlockDelta, ContentBlockStart,
    ConversationRole, ConverseStreamOutput, ConverseTokensRequest, CountTokensInput, InferenceConfiguration,
    InvokeModelTokensRequest, Message, ResponseStream, StopReason, SystemContentBlock, Tool, ToolChoice,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::Document;
use bedrock_emulator::{EmulatorConfig, FaultOverride, QuotaOverride, RunningEmulator};
use gateway_core::date::Date;
use serde_json::{Value, json};

mod common;
use common::http;

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const SONNET: &str = "global.anthropic.claude-sonnet-4-5-20250929-v1:0";
const OPUS: &str = "us.anthropic.claude-opus-4-5-20251101-v1:0";
/// Served in-Region until its end of life (2026-09-10): the tests of in-Region calls run on a
/// day before it ([`before_claude3_haiku_retired`]).
const CLAUDE3_HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";

fn before_claude3_haiku_retired(config: EmulatorConfig) -> EmulatorConfig {
    EmulatorConfig { today: Some(Date::parse("2026-06-01").unwrap()), ..config }
}

async fn start(config: EmulatorConfig) -> (RunningEmulator, Client) {
    let emulator = bedrock_emulator::spawn(config).await.unwrap();
    let client = client(&emulator.url());
    (emulator, client)
}

fn client(url: &str) -> Client {
    let config = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(url)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .build();
    Client::from_conf(config)
}

fn user(text: &str) -> Message {
    Message::builder().role(ConversationRole::User).content(ContentBlock::Text(text.to_owned())).build().unwrap()
}

fn max_tokens(n: i32) -> InferenceConfiguration {
    InferenceConfiguration::builder().max_tokens(n).build()
}

fn text_of(message: &Message) -> String {
    message.content().iter().filter_map(|b| b.as_text().ok()).cloned().collect()
}

async fn stats(emulator: &RunningEmulator) -> Value {
    http("GET", format!("{}/_emulator/stats", emulator.url()), None).await.1
}

#[tokio::test]
async fn converse_answers_with_consistent_usage_and_echo() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let out = client.converse().model_id(HAIKU).messages(user("What is prompt caching?")).send().await.unwrap();
    let message = out.output().unwrap().as_message().unwrap();
    assert_eq!(message.role(), &ConversationRole::Assistant);
    let text = text_of(message);
    assert!(text.starts_with("You asked: \"What is prompt caching?\"."), "{text}");
    assert_eq!(out.stop_reason(), &StopReason::EndTurn);
    let usage = out.usage().unwrap();
    assert_eq!(usage.input_tokens(), 4 + 6); // 4 tokens of message framing + 1 + 1 + 2 + 2
    assert_eq!(usage.total_tokens(), usage.input_tokens() + usage.output_tokens());
    assert_eq!(i64::from(usage.output_tokens()), gateway_core::tokens::estimate_text(&text) as i64);
    // Reported latency is the modeled one even when the emulator answers at once.
    let expected = 300 + 4 * i64::from(usage.output_tokens());
    assert_eq!(out.metrics().unwrap().latency_ms(), expected);
    assert!(out.trace().is_none());
    emulator.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_same_request_gets_the_same_answer_and_another_request_another() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let ask =
        |q: &'static str| client.converse().model_id(HAIKU).messages(user(q)).inference_config(max_tokens(500)).send();
    let a = text_of(ask("Tell me about quotas").await.unwrap().output().unwrap().as_message().unwrap());
    let b = text_of(ask("Tell me about quotas").await.unwrap().output().unwrap().as_message().unwrap());
    let c = text_of(ask("Tell me about latency").await.unwrap().output().unwrap().as_message().unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn converse_stream_sends_bedrocks_event_sequence_with_the_converse_text() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let question = "Explain the difference between RPM and TPM";
    let whole = client.converse().model_id(SONNET).messages(user(question)).send().await.unwrap();
    let mut stream = client.converse_stream().model_id(SONNET).messages(user(question)).send().await.unwrap().stream;
    let mut kinds = Vec::new();
    let mut text = String::new();
    let mut metadata = None;
    let mut stop = None;
    while let Some(event) = stream.recv().await.unwrap() {
        match &event {
            ConverseStreamOutput::MessageStart(e) => {
                assert_eq!(e.role(), &ConversationRole::Assistant);
                kinds.push("messageStart");
            }
            ConverseStreamOutput::ContentBlockDelta(e) => {
                assert_eq!(e.content_block_index(), 0);
                text.push_str(e.delta().unwrap().as_text().unwrap());
                kinds.push("delta");
            }
            ConverseStreamOutput::ContentBlockStop(_) => kinds.push("contentBlockStop"),
            ConverseStreamOutput::MessageStop(e) => {
                stop = Some(e.stop_reason().clone());
                kinds.push("messageStop");
            }
            ConverseStreamOutput::Metadata(e) => {
                metadata = Some(e.clone());
                kinds.push("metadata");
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let deltas = kinds.iter().filter(|k| **k == "delta").count();
    assert!(deltas >= 3, "{kinds:?}");
    let mut expected = vec!["messageStart"];
    expected.extend(std::iter::repeat_n("delta", deltas));
    expected.extend(["contentBlockStop", "messageStop", "metadata"]);
    assert_eq!(kinds, expected);
    assert_eq!(text, text_of(whole.output().unwrap().as_message().unwrap()));
    assert_eq!(stop, Some(StopReason::EndTurn));
    let metadata = metadata.unwrap();
    assert_eq!(metadata.usage(), whole.usage());
    assert_eq!(metadata.metrics().unwrap().latency_ms(), whole.metrics().unwrap().latency_ms());
    let s = stats(&emulator).await;
    assert_eq!(s["models"][SONNET]["streams"], 1);
    assert_eq!(s["models"][SONNET]["succeeded"], 2);
}

#[tokio::test]
async fn max_tokens_cuts_the_answer_and_stop_sequences_end_it() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let out = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Describe caching"))
        .inference_config(max_tokens(7))
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::MaxTokens);
    assert_eq!(out.usage().unwrap().output_tokens(), 7);

    let out = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Describe caching"))
        .inference_config(InferenceConfiguration::builder().stop_sequences(".").build())
        .additional_model_response_field_paths("/stop_sequence")
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::StopSequence);
    assert_eq!(text_of(out.output().unwrap().as_message().unwrap()), "You wrote: \"Describe caching\"");
    let fields = out.additional_model_response_fields().unwrap().as_object().unwrap();
    assert_eq!(fields["stop_sequence"], Document::String(".".into()));
}

fn rpm_limited(rpm: u64, window_seconds: f64) -> EmulatorConfig {
    let mut config = EmulatorConfig::instant();
    config.quota_window_seconds = window_seconds;
    config.quotas.insert(HAIKU.into(), QuotaOverride { tpm: None, rpm: Some(rpm) });
    config
}

#[tokio::test]
async fn the_request_after_rpm_is_throttled_and_admitted_again_after_the_window() {
    let (emulator, client) = start(rpm_limited(3, 1.0)).await;
    let call = || client.converse().model_id(HAIKU).messages(user("hi")).inference_config(max_tokens(10)).send();
    let started = Instant::now();
    for _ in 0..3 {
        call().await.unwrap();
    }
    let err = call().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(900), "the test relies on staying inside the window");
    let service = err.as_service_error().unwrap();
    assert!(service.is_throttling_exception(), "{service:?}");
    assert_eq!(service.meta().message(), Some("Too many requests, please wait before trying again."));
    // Another scope of the same model has its own quota.
    client.converse().model_id(HAIKU.replacen("us.", "global.", 1)).messages(user("hi")).send().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_050).saturating_sub(started.elapsed())).await;
    call().await.unwrap();
    let s = stats(&emulator).await;
    assert_eq!(s["models"][HAIKU]["throttled"]["rpm"], 1);
    assert_eq!(s["models"][HAIKU]["succeeded"], 4);
}

#[tokio::test]
async fn tpm_is_checked_against_the_reservation_at_start() {
    let mut config = EmulatorConfig::instant();
    config.quotas.insert(HAIKU.into(), QuotaOverride { tpm: Some(1_000), rpm: None });
    let (emulator, client) = start(config).await;
    // 496 one-token words + 4 tokens of message framing = 500 input; + 600 maxTokens = 1,100.
    let prompt = |words: usize| "word ".repeat(words);
    let err = client
        .converse()
        .model_id(HAIKU)
        .messages(user(&prompt(496)))
        .inference_config(max_tokens(600))
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().unwrap();
    assert!(service.is_throttling_exception());
    assert_eq!(service.meta().message(), Some("Too many tokens, please wait before trying again."));
    // 400 + 600 = 1,000 fits exactly; a throttled request consumed nothing.
    let out = client
        .converse()
        .model_id(HAIKU)
        .messages(user(&prompt(396)))
        .inference_config(max_tokens(600))
        .send()
        .await
        .unwrap();
    assert_eq!(out.usage().unwrap().input_tokens(), 400);
    // Settled at input + output x 5 (Haiku 4.5's burndown), the rest released.
    let settled = 400 + 5 * i64::from(out.usage().unwrap().output_tokens());
    let s = stats(&emulator).await;
    assert_eq!(s["models"][HAIKU]["window"]["tokens"], settled);
    assert_eq!(s["models"][HAIKU]["window"]["in_flight_tokens"], 0);
    assert_eq!(s["models"][HAIKU]["throttled"]["tpm"], 1);
}

#[tokio::test]
async fn default_max_tokens_reserves_the_models_maximum_output() {
    let mut config = EmulatorConfig::instant();
    // Haiku 4.5's maximum output is 64,000: one reservation without maxTokens needs more
    // than 64,000 tokens of room.
    config.quotas.insert(HAIKU.into(), QuotaOverride { tpm: Some(64_000), rpm: None });
    let (_emulator, client) = start(config).await;
    let err = client.converse().model_id(HAIKU).messages(user("hi")).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_throttling_exception());
    client.converse().model_id(HAIKU).messages(user("hi")).inference_config(max_tokens(1_000)).send().await.unwrap();
}

#[tokio::test]
async fn an_injected_stream_cut_arrives_as_an_in_stream_exception() {
    let mut config = EmulatorConfig::instant();
    config
        .faults
        .models
        .insert(HAIKU.into(), FaultOverride { stream_error_rate: Some(1.0), ..FaultOverride::default() });
    let (emulator, client) = start(config).await;
    let mut stream =
        client.converse_stream().model_id(HAIKU).messages(user("Tell me a long story")).send().await.unwrap().stream;
    let mut events = 0;
    let error = loop {
        match stream.recv().await {
            Ok(Some(_)) => events += 1,
            Ok(None) => panic!("the stream ended without the injected error"),
            Err(e) => break e,
        }
    };
    assert!(events >= 2, "messageStart and at least one delta come first");
    let service = error.as_service_error().unwrap();
    assert!(service.is_model_stream_error_exception(), "{service:?}");
    // Converse (not streaming) is unaffected by stream cuts.
    client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap();
    let s = stats(&emulator).await;
    assert_eq!(s["models"][HAIKU]["injected"]["stream_error"], 1);
}

#[tokio::test]
async fn injected_errors_surface_as_the_sdks_typed_errors() {
    let mut config = EmulatorConfig::instant();
    let rates = |f: fn(&mut FaultOverride)| {
        let mut o = FaultOverride::default();
        f(&mut o);
        o
    };
    config.faults.models.insert(HAIKU.into(), rates(|o| o.internal_error_rate = Some(1.0)));
    config.faults.models.insert(SONNET.into(), rates(|o| o.service_unavailable_rate = Some(1.0)));
    config.faults.models.insert(
        OPUS.into(),
        rates(|o| {
            o.model_timeout_rate = Some(1.0);
            o.model_timeout_ms = Some(50);
        }),
    );
    let (_emulator, client) = start(config).await;
    let call = |model: &'static str| client.converse().model_id(model).messages(user("x")).send();
    assert!(call(HAIKU).await.unwrap_err().as_service_error().unwrap().is_internal_server_exception());
    assert!(call(SONNET).await.unwrap_err().as_service_error().unwrap().is_service_unavailable_exception());
    let started = Instant::now();
    let err = call(OPUS).await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_model_timeout_exception());
    assert!(started.elapsed() >= Duration::from_millis(50));
}

#[tokio::test]
async fn invalid_requests_are_validation_exceptions_with_bedrocks_wording() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let err = client
        .converse()
        .model_id(HAIKU)
        .messages(user("x"))
        .inference_config(max_tokens(100_000))
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().unwrap();
    assert!(service.is_validation_exception());
    assert!(service.meta().message().unwrap().contains("exceeds the model limit of 64000"));

    let err = client.converse().model_id("anthropic.claude-v9").messages(user("x")).send().await.unwrap_err();
    let service = err.as_service_error().unwrap();
    assert!(service.is_validation_exception());
    assert_eq!(service.meta().message(), Some("The provided model identifier is invalid."));

    let err = client
        .converse()
        .model_id("anthropic.claude-haiku-4-5-20251001-v1:0")
        .messages(user("x"))
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().meta().message().unwrap().contains("inference profile"));

    // The conversation must start with a user message.
    let assistant = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text("hello".into()))
        .build()
        .unwrap();
    let err = client.converse().model_id(HAIKU).messages(assistant).send().await.unwrap_err();
    let message = err.as_service_error().unwrap().meta().message().unwrap().to_owned();
    assert!(message.contains("messages[0].role"), "{message}");

    let s = stats(&emulator).await;
    assert_eq!(s["totals"]["validation_errors"], 4);
}

#[tokio::test]
async fn sampling_parameters_a_model_refuses_are_validation_exceptions_in_converse_and_invoke() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let converse = |model: &'static str, config: InferenceConfiguration| {
        let client = client.clone();
        async move { client.converse().model_id(model).messages(user("x")).inference_config(config).send().await }
    };
    let message = |err: &aws_sdk_bedrockruntime::error::SdkError<_, _>| {
        let service: &aws_sdk_bedrockruntime::operation::converse::ConverseError = err.as_service_error().unwrap();
        assert!(service.is_validation_exception());
        service.meta().message().unwrap().to_owned()
    };
    let both = InferenceConfiguration::builder().max_tokens(50).temperature(0.2).top_p(0.9).build();
    let err = converse(HAIKU, both.clone()).await.unwrap_err();
    assert_eq!(
        message(&err),
        "The model returned the following errors: `temperature` and `top_p` cannot both be specified for this \
         model. Please use only one."
    );
    // Either alone is fine, and Claude 3.7 Sonnet takes both.
    converse(HAIKU, InferenceConfiguration::builder().max_tokens(50).top_p(0.9).build()).await.unwrap();
    converse("us.anthropic.claude-3-7-sonnet-20250219-v1:0", both).await.unwrap();

    const OPUS_4_7: &str = "global.anthropic.claude-opus-4-7";
    let err =
        converse(OPUS_4_7, InferenceConfiguration::builder().max_tokens(50).top_p(0.5).build()).await.unwrap_err();
    assert_eq!(message(&err), "The model returned the following errors: `top_p` is deprecated for this model.");
    converse(OPUS_4_7, max_tokens(50)).await.unwrap();

    // The Anthropic body of InvokeModel is held to the same rule, top_k included.
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "top_k": 3,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    });
    let err = client
        .invoke_model()
        .model_id(OPUS_4_7)
        .content_type("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().unwrap();
    assert!(service.is_validation_exception());
    assert_eq!(
        service.meta().message(),
        Some("The model returned the following errors: `top_k` is deprecated for this model.")
    );

    let body = json!({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 4000,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]
    });
    let invoke = |body: Value| {
        client
            .invoke_model()
            .model_id(OPUS_4_7)
            .content_type("application/json")
            .body(Blob::new(body.to_string()))
            .send()
    };
    let err = invoke(body.clone()).await.unwrap_err();
    let message = err.as_service_error().unwrap().meta().message().unwrap().to_owned();
    assert!(message.contains(r#""thinking.type.enabled" is not supported for this model"#), "{message}");
    let mut adaptive = body;
    adaptive["thinking"] = json!({"type": "adaptive"});
    invoke(adaptive.clone()).await.unwrap();
    assert_eq!(stats(&emulator).await["totals"]["validation_errors"], 4);

    // Each model takes its own forms of thinking.
    let refused = |model: &'static str, thinking: Value| {
        let client = client.clone();
        let mut body = adaptive.clone();
        body["thinking"] = thinking;
        async move {
            let sent = client
                .invoke_model()
                .model_id(model)
                .content_type("application/json")
                .body(Blob::new(body.to_string()))
                .send()
                .await;
            sent.err().map(|err| err.as_service_error().unwrap().meta().message().unwrap().to_owned())
        }
    };
    let disabled = refused(OPUS_4_7, json!({"type": "disabled"})).await.unwrap();
    assert!(disabled.contains(r#""thinking.type.disabled" is not supported for this model"#), "{disabled}");
    assert_eq!(
        refused(HAIKU, json!({"type": "adaptive"})).await.as_deref(),
        Some("The model returned the following errors: adaptive thinking is not supported on this model")
    );
    assert_eq!(refused(HAIKU, json!({"type": "enabled", "budget_tokens": 2048})).await, None);
    assert_eq!(refused("us.anthropic.claude-sonnet-4-6", json!({"type": "adaptive"})).await, None);
    assert_eq!(
        refused("us.anthropic.claude-3-5-sonnet-20241022-v2:0", json!({"type": "disabled"})).await.as_deref(),
        Some("The model returned the following errors: thinking: Extra inputs are not permitted")
    );
    // A model that thinks takes temperature only at 1.
    let mut warm = adaptive.clone();
    warm["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    warm["temperature"] = json!(0.5);
    let err = client
        .invoke_model()
        .model_id(HAIKU)
        .content_type("application/json")
        .body(Blob::new(warm.to_string()))
        .send()
        .await
        .unwrap_err();
    let message = err.as_service_error().unwrap().meta().message().unwrap().to_owned();
    assert!(message.contains("`temperature` may only be set to 1 when thinking is enabled"), "{message}");
    // A budget is at least 1,024 tokens and below max_tokens (4,000 here).
    for (budget, refusal) in [
        (json!(512), Some("budget_tokens: Input should be greater than or equal to 1024")),
        (json!(4000), Some("`max_tokens` must be greater than `thinking.budget_tokens`.")),
        (json!(1024), None),
    ] {
        let message = refused(HAIKU, json!({"type": "enabled", "budget_tokens": budget})).await;
        match refusal {
            Some(expected) => assert!(message.as_deref().unwrap_or("").ends_with(expected), "{message:?}"),
            None => assert_eq!(message, None),
        }
    }
    assert_eq!(stats(&emulator).await["totals"]["validation_errors"], 10);
}

#[tokio::test]
async fn count_tokens_matches_the_input_tokens_of_converse_and_invoke() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let system = SystemContentBlock::Text("You are terse.".into());
    let converse = client
        .converse()
        .model_id(HAIKU)
        .system(system.clone())
        .messages(user("How many tokens is this?"))
        .send()
        .await
        .unwrap();
    let counted = client
        .count_tokens()
        .model_id(HAIKU)
        .input(CountTokensInput::Converse(
            ConverseTokensRequest::builder().system(system).messages(user("How many tokens is this?")).build(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.input_tokens(), converse.usage().unwrap().input_tokens());

    let body = json!({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 50,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "How many tokens is this?"}]
    });
    let counted = client
        .count_tokens()
        .model_id(HAIKU)
        .input(CountTokensInput::InvokeModel(
            InvokeModelTokensRequest::builder().body(Blob::new(body.to_string())).build().unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(counted.input_tokens(), converse.usage().unwrap().input_tokens());
}

#[tokio::test]
async fn invoke_model_speaks_anthropic_messages_and_agrees_with_converse() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 400,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Summarise Bedrock quotas"}]}]
    });
    let out = client
        .invoke_model()
        .model_id(HAIKU)
        .content_type("application/json")
        .accept("application/json")
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(out.content_type(), "application/json");
    let response: Value = serde_json::from_slice(out.body().as_ref()).unwrap();
    assert_eq!(response["type"], "message");
    assert_eq!(response["role"], "assistant");
    assert_eq!(response["model"], "claude-haiku-4-5-20251001");
    assert!(response["id"].as_str().unwrap().starts_with("msg_bdrk_"));
    assert_eq!(response["stop_reason"], "end_turn");
    assert_eq!(response["stop_sequence"], Value::Null);
    let usage = &response["usage"];
    assert_eq!(usage["cache_read_input_tokens"], 0);
    let converse = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Summarise Bedrock quotas"))
        .inference_config(max_tokens(400))
        .send()
        .await
        .unwrap();
    assert_eq!(response["content"][0]["text"], text_of(converse.output().unwrap().as_message().unwrap()));
    assert_eq!(usage["input_tokens"], converse.usage().unwrap().input_tokens());
    assert_eq!(usage["output_tokens"], converse.usage().unwrap().output_tokens());
    assert_eq!(stats(&emulator).await["models"][HAIKU]["operations"]["invoke"], 1);
}

#[tokio::test]
async fn invoke_model_reports_token_counts_in_headers() {
    let (emulator, _client) = start(EmulatorConfig::instant()).await;
    let url = format!("{}/model/{}/invoke", emulator.url(), HAIKU.replace(':', "%3A"));
    let headers = tokio::task::spawn_blocking(move || {
        let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]});
        ureq::post(&url).send(body.to_string().as_str()).unwrap().headers().clone()
    })
    .await
    .unwrap();
    let header = |name: &str| headers[name].to_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(header("x-amzn-bedrock-input-token-count"), 5);
    assert_eq!(header("x-amzn-bedrock-output-token-count"), 20);
    assert_eq!(header("x-amzn-bedrock-invocation-latency"), 300 + 4 * 20);
}

#[tokio::test]
async fn invoke_model_with_response_stream_sends_anthropic_events() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let body = json!({
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 300,
        "messages": [{"role": "user", "content": "Stream please"}]
    });
    let whole = client.invoke_model().model_id(HAIKU).body(Blob::new(body.to_string())).send().await.unwrap();
    let whole: Value = serde_json::from_slice(whole.body().as_ref()).unwrap();
    let mut stream = client
        .invoke_model_with_response_stream()
        .model_id(HAIKU)
        .body(Blob::new(body.to_string()))
        .send()
        .await
        .unwrap()
        .body;
    let mut types = Vec::new();
    let mut text = String::new();
    let mut last = Value::Null;
    while let Some(event) = stream.recv().await.unwrap() {
        let ResponseStream::Chunk(part) = event else { panic!("unexpected {event:?}") };
        let event: Value = serde_json::from_slice(part.bytes().unwrap().as_ref()).unwrap();
        if event["type"] == "content_block_delta" {
            text.push_str(event["delta"]["text"].as_str().unwrap());
        }
        types.push(event["type"].as_str().unwrap().to_owned());
        last = event;
    }
    assert_eq!(types.first().map(String::as_str), Some("message_start"));
    assert_eq!(types[1], "content_block_start");
    assert_eq!(&types[types.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(text, whole["content"][0]["text"].as_str().unwrap());
    let metrics = &last["amazon-bedrock-invocationMetrics"];
    assert_eq!(metrics["outputTokenCount"], whole["usage"]["output_tokens"]);
}

#[tokio::test]
async fn url_encoded_arns_and_raw_arns_reach_the_right_model() {
    let (emulator, client) = start(before_claude3_haiku_retired(EmulatorConfig::instant())).await;
    let profile_arn = format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{HAIKU}");
    client.converse().model_id(&profile_arn).messages(user("x")).send().await.unwrap();
    let model_arn = format!("arn:aws:bedrock:us-east-1::foundation-model/{CLAUDE3_HAIKU}");
    client.converse().model_id(&model_arn).messages(user("x")).send().await.unwrap();
    // A hand-written request may leave the ARN's `/` and `:` unencoded.
    let (status, _) = http(
        "POST",
        format!("{}/model/{profile_arn}/converse", emulator.url()),
        Some(json!({"messages": [{"role": "user", "content": [{"text": "x"}]}]})),
    )
    .await;
    assert_eq!(status, 200);
    let s = stats(&emulator).await;
    assert_eq!(s["models"][HAIKU]["requests"], 2);
    assert_eq!(s["models"][CLAUDE3_HAIKU]["requests"], 1);
}

#[tokio::test]
async fn a_prompt_router_reports_the_model_it_chose() {
    let (_emulator, client) = start(before_claude3_haiku_retired(EmulatorConfig::instant())).await;
    let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let out = client.converse().model_id(router).messages(user("Hi!")).send().await.unwrap();
    let invoked = out.trace().unwrap().prompt_router().unwrap().invoked_model_id().unwrap();
    assert_eq!(
        invoked,
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
    );
    let long = "Please analyse this in depth. ".repeat(60);
    let out = client.converse().model_id(router).messages(user(&long)).send().await.unwrap();
    let invoked = out.trace().unwrap().prompt_router().unwrap().invoked_model_id().unwrap();
    assert!(invoked.ends_with("us.anthropic.claude-3-5-sonnet-20241022-v2:0"), "{invoked}");
}

#[tokio::test]
async fn a_model_past_its_end_of_life_is_a_resource_not_found_exception_with_bedrocks_wording() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    // Claude 3.5 Haiku's end of life (2026-06-19) has passed on the real calendar.
    for id in ["us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"] {
        let err = client.converse().model_id(id).messages(user("x")).send().await.unwrap_err();
        let service = err.as_service_error().unwrap();
        assert!(service.is_resource_not_found_exception(), "{id}: {service:?}");
        assert!(service.meta().message().unwrap().contains("reached the end of its life"), "{service:?}");
        let body = json!({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 16, "messages": [{"role": "user", "content": "x"}]});
        let err = client.invoke_model().model_id(id).body(Blob::new(body.to_string())).send().await.unwrap_err();
        assert!(err.as_service_error().unwrap().is_resource_not_found_exception(), "{id}");
    }
    let (status, body) = http(
        "POST",
        format!("{}/model/anthropic.claude-3-5-haiku-20241022-v1:0/count-tokens", emulator.url()),
        Some(json!({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "x"}]}]}}})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    // The day a test pins decides: before it, the model answers.
    let (_emulator, client) =
        start(EmulatorConfig { today: Some(Date::parse("2026-06-18").unwrap()), ..EmulatorConfig::instant() }).await;
    client.converse().model_id("us.anthropic.claude-3-5-haiku-20241022-v1:0").messages(user("x")).send().await.unwrap();
}

fn weather_tools() -> ToolConfiguration {
    let schema = json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"]
    });
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .input_schema(ToolInputSchema::Json(json_to_document(&schema)))
                .build()
                .unwrap(),
        ))
        .tool_choice(ToolChoice::Any(AnyToolChoice::builder().build()))
        .build()
        .unwrap()
}

fn json_to_document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(aws_smithy_types::Number::Float(n.as_f64().unwrap())),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(json_to_document).collect()),
        Value::Object(map) => Document::Object(map.iter().map(|(k, v)| (k.clone(), json_to_document(v))).collect()),
    }
}

#[tokio::test]
async fn tool_choice_any_gets_a_tool_use_in_converse_and_in_the_stream() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let out = client
        .converse()
        .model_id(HAIKU)
        .messages(user("Weather in Oslo"))
        .tool_config(weather_tools())
        .send()
        .await
        .unwrap();
    assert_eq!(out.stop_reason(), &StopReason::ToolUse);
    let message = out.output().unwrap().as_message().unwrap();
    let tool_use = message.content()[0].as_tool_use().unwrap();
    assert_eq!(tool_use.name(), "get_weather");
    let input = tool_use.input().as_object().unwrap();
    assert_eq!(input["city"], Document::String("Weather in Oslo".into()));

    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("Weather in Oslo"))
        .tool_config(weather_tools())
        .send()
        .await
        .unwrap()
        .stream;
    let mut json_text = String::new();
    let mut started = None;
    while let Some(event) = stream.recv().await.unwrap() {
        match event {
            ConverseStreamOutput::ContentBlockStart(e) => {
                let ContentBlockStart::ToolUse(start) = e.start().unwrap() else { panic!() };
                started = Some((start.tool_use_id().to_owned(), start.name().to_owned()));
            }
            ConverseStreamOutput::ContentBlockDelta(e) => {
                let ContentBlockDelta::ToolUse(delta) = e.delta().unwrap() else { panic!() };
                json_text.push_str(delta.input());
            }
            ConverseStreamOutput::MessageStop(e) => assert_eq!(e.stop_reason(), &StopReason::ToolUse),
            _ => {}
        }
    }
    assert_eq!(started, Some((tool_use.tool_use_id().to_owned(), "get_weather".to_owned())));
    let streamed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(streamed, json!({"city": "Weather in Oslo"}));
}

#[tokio::test]
async fn cache_points_write_first_and_read_later() {
    let (_emulator, client) = start(EmulatorConfig::instant()).await;
    let system = "You are a careful assistant. ".repeat(50);
    let ask = |question: &'static str| {
        client
            .converse()
            .model_id(HAIKU)
            .system(SystemContentBlock::Text(system.clone()))
            .system(SystemContentBlock::CachePoint(
                CachePointBlock::builder().r#type(CachePointType::Default).build().unwrap(),
            ))
            .messages(user(question))
            .send()
    };
    let first = ask("First question?").await.unwrap();
    let second = ask("Second question?").await.unwrap();
    let (u1, u2) = (first.usage().unwrap(), second.usage().unwrap());
    let written = u1.cache_write_input_tokens().unwrap();
    assert!(written > 100);
    assert_eq!(u1.cache_read_input_tokens(), Some(0));
    assert_eq!(u2.cache_read_input_tokens(), Some(written));
    assert_eq!(u2.cache_write_input_tokens(), Some(0));
    assert_eq!(u1.input_tokens(), u2.input_tokens());
    assert_eq!(u1.cache_details().len(), 1);
    assert_eq!(u2.total_tokens(), u2.input_tokens() + written + u2.output_tokens());
}

#[tokio::test]
async fn latency_is_modeled_and_scaled() {
    let mut config = EmulatorConfig::default();
    config.latency.haiku.ttft_ms = Some(200);
    config.latency.haiku.per_token_ms = Some(1.0);
    config.latency_scale = 1.0;
    let (_emulator, client) = start(config).await;
    let started = Instant::now();
    let out =
        client.converse().model_id(HAIKU).messages(user("x")).inference_config(max_tokens(20)).send().await.unwrap();
    assert_eq!(out.metrics().unwrap().latency_ms(), 220);
    assert!(started.elapsed() >= Duration::from_millis(220), "{:?}", started.elapsed());

    let mut stream = client
        .converse_stream()
        .model_id(HAIKU)
        .messages(user("x"))
        .inference_config(max_tokens(20))
        .send()
        .await
        .unwrap()
        .stream;
    let started = Instant::now();
    let mut first_delta = None;
    while let Some(event) = stream.recv().await.unwrap() {
        if matches!(event, ConverseStreamOutput::ContentBlockDelta(_)) && first_delta.is_none() {
            first_delta = Some(started.elapsed());
        }
    }
    assert!(first_delta.unwrap() >= Duration::from_millis(200));
    assert!(started.elapsed() >= Duration::from_millis(220));
}

#[tokio::test]
async fn the_admin_api_reports_resets_and_overrides_quotas() {
    let (emulator, client) = start(EmulatorConfig::instant()).await;
    let base = emulator.url();
    let (status, health) = http("GET", format!("{base}/_emulator/health"), None).await;
    assert_eq!((status, health), (200, json!({"status": "ok"})));

    let encoded = HAIKU.replace(':', "%3A");
    let (status, body) = http("PUT", format!("{base}/_emulator/quotas/{encoded}"), Some(json!({"rpm": 1}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["window"]["rpm_limit"], 1);
    client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap();
    let err = client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_throttling_exception());

    let (status, _) = http("POST", format!("{base}/_emulator/reset?model={encoded}"), None).await;
    assert_eq!(status, 200);
    let s = stats(&emulator).await;
    assert!(s["models"].get(HAIKU).is_none());
    // The runtime override is gone with the reset: the catalog's 1,000 RPM applies again.
    client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap();
    client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap();

    let (status, body) =
        http("PUT", format!("{base}/_emulator/faults/{encoded}"), Some(json!({"service_unavailable_rate": 1.0}))).await;
    assert_eq!(status, 200, "{body}");
    let err = client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap_err();
    assert!(err.as_service_error().unwrap().is_service_unavailable_exception());
    http("DELETE", format!("{base}/_emulator/faults/{encoded}"), None).await;
    client.converse().model_id(HAIKU).messages(user("x")).send().await.unwrap();

    let (status, _) = http("POST", format!("{base}/_emulator/reset"), None).await;
    assert_eq!(status, 200);
    assert_eq!(stats(&emulator).await["totals"]["requests"], 0);

    let (status, body) = http("PUT", format!("{base}/_emulator/quotas/gpt-4o"), Some(json!({"rpm": 1}))).await;
    assert_eq!(status, 400, "{body}");
    let (_, quotas) = http("GET", format!("{base}/_emulator/quotas"), None).await;
    assert!(quotas["quotas"].as_array().unwrap().iter().any(|q| q["model"] == HAIKU));
}

#[tokio::test]
async fn a_bad_config_is_refused_at_spawn() {
    let mut config = EmulatorConfig::instant();
    config.quotas.insert("not-a-model".into(), QuotaOverride::default());
    let err = bedrock_emulator::spawn(config).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("not-a-model"), "{err}");
}
