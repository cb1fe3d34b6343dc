use serde_json::{Value, json};

use super::*;
use crate::compat::test_support::{answer, response, usage};
use crate::request::{ContentBlock, ReasoningText, Role, SystemContentBlock, ToolResultStatus, ToolUseBlock};
use crate::stream::replay;

fn parse(body: Value) -> Result<MessagesRequest, CompatError> {
    parse_messages_request(body.to_string().as_bytes())
}

fn param_of(body: Value) -> Option<String> {
    parse(body).err().and_then(|e| e.param().map(str::to_owned))
}

#[test]
fn a_request_maps_system_cache_control_tools_and_claudes_own_fields() {
    let request = parse(json!({
        "model": "sonnet", "max_tokens": 512, "temperature": 0.5, "top_k": 40, "stream": true,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "u"},
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "Weather?", "cache_control": {"type": "ephemeral"}},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQ"}}
            ]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Use the tool.", "signature": "sig"},
                {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}}
            ]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "-3C", "is_error": true}]}
        ],
        "tools": [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"}
    }))
    .unwrap();
    assert!(request.stream);
    let r = &request.request;
    assert_eq!(r.system.len(), 2);
    assert!(matches!(&r.system[1], SystemContentBlock::CachePoint(p) if p.ttl.is_some()));
    assert_eq!(r.messages[0].content.len(), 3, "text, its cache point, the image");
    assert!(matches!(r.messages[0].content[1], ContentBlock::CachePoint(_)));
    let ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText { signature, .. })) =
        &r.messages[1].content[0]
    else {
        panic!("{r:?}")
    };
    assert_eq!(signature.as_deref(), Some("sig"));
    let ContentBlock::ToolResult(result) = &r.messages[2].content[0] else { panic!("{r:?}") };
    assert_eq!(result.status, Some(ToolResultStatus::Error));
    assert_eq!(r.messages[2].role, Role::User);
    let extra = r.additional_model_request_fields.as_ref().unwrap();
    assert_eq!((extra["top_k"].clone(), extra["thinking"]["budget_tokens"].clone()), (json!(40), json!(2048)));
    assert_eq!(r.inference_config.as_ref().unwrap().max_tokens, Some(512));
}

#[test]
fn bad_input_names_its_field() {
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(param_of(json!({"model": "haiku", "messages": user})).as_deref(), Some("max_tokens"));
    assert_eq!(param_of(json!({"model": "haiku", "max_tokens": 5, "messages": []})).as_deref(), Some("messages"));
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": user, "temprature": 1})).as_deref(),
        Some("temprature")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": [{"role": "system", "content": "hi"}]}))
            .as_deref(),
        Some("messages[0].role")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x"}}]}]})).as_deref(),
        Some("messages[0].content[0].source.type")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "%%%"}}]}]})).as_deref(),
        Some("messages[0].content[0].source.data")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": user, "tools": [{"type": "web_search_20250305", "name": "web_search"}]})).as_deref(),
        Some("tools[0].type")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "max_tokens": 5, "messages": [{"role": "user", "content": []}]})).as_deref(),
        Some("messages[0].content")
    );
}

#[test]
fn a_message_carries_blocks_stop_reason_and_usage_as_anthropic_counts_it() {
    let a = answer(response(
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "hm".into(),
                signature: Some("s".into()),
            })),
            ContentBlock::Text("Hi.".into()),
            ContentBlock::ToolUse(ToolUseBlock { tool_use_id: "t".into(), name: "f".into(), input: json!({"x": 1}) }),
        ],
        "tool_use",
        usage(10, 5, 90, 4),
    ));
    let body = message(&a, "msg_1");
    assert_eq!(body["type"], "message");
    let kinds: Vec<&str> = body["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["thinking", "text", "tool_use"]);
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 10, "output_tokens": 5, "cache_creation_input_tokens": 4, "cache_read_input_tokens": 90})
    );
    assert_eq!(stop_reason("guardrail_intervened"), "refusal");
}

#[test]
fn events_follow_anthropics_order_with_matching_indices() {
    let original = response(
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "think it over".into(),
                signature: Some("sig".into()),
            })),
            ContentBlock::Text("One two three four.".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "t1".into(),
                name: "f".into(),
                input: json!({"a": [1, 2]}),
            }),
        ],
        "tool_use",
        usage(3, 21, 0, 0),
    );
    let mut encoder = EventEncoder::new("msg_x", "m");
    let events: Vec<(&str, Value)> = replay(&original).iter().flat_map(|e| encoder.push(e)).collect();
    for (name, data) in &events {
        assert_eq!(data["type"], *name, "the SSE name is the data's type");
    }
    let names: Vec<&str> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    let starts: Vec<(u64, &str)> = events
        .iter()
        .filter(|(n, _)| *n == "content_block_start")
        .map(|(_, d)| (d["index"].as_u64().unwrap(), d["content_block"]["type"].as_str().unwrap()))
        .collect();
    assert_eq!(starts, [(0, "thinking"), (1, "text"), (2, "tool_use")]);
    let stops = events.iter().filter(|(n, _)| *n == "content_block_stop").count();
    assert_eq!(stops, 3);
    let of = |index: u64, kind: &str, field: &str| -> String {
        events
            .iter()
            .filter(|(n, d)| *n == "content_block_delta" && d["index"] == index && d["delta"]["type"] == kind)
            .filter_map(|(_, d)| d["delta"][field].as_str())
            .collect()
    };
    assert_eq!(of(0, "thinking_delta", "thinking"), "think it over");
    assert_eq!(of(0, "signature_delta", "signature"), "sig");
    assert_eq!(of(1, "text_delta", "text"), "One two three four.");
    assert_eq!(
        serde_json::from_str::<Value>(&of(2, "input_json_delta", "partial_json")).unwrap(),
        json!({"a": [1, 2]})
    );
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(
        (delta["delta"]["stop_reason"].clone(), delta["usage"]["output_tokens"].clone()),
        (json!("tool_use"), json!(21))
    );
}

#[test]
fn errors_use_anthropics_shape_and_types() {
    let body = error_body(503, ErrorLabel::Unavailable, "busy");
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(error_body(400, ErrorLabel::InvalidRequest, "x")["error"]["type"], "invalid_request_error");
    assert_eq!(error_body(429, ErrorLabel::Throttled, "x")["error"]["type"], "rate_limit_error");
}
