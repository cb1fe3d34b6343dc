use serde_json::{Value, json};

use super::*;
use crate::compat::test_support::{answer, response, usage};
use crate::request::{BinarySource, ContentBlock, Role, ToolChoice, ToolResultContent, ToolUseBlock};
use crate::stream::replay;

fn parse(body: Value) -> Result<ChatRequest, CompatError> {
    parse_chat_request(body.to_string().as_bytes())
}

fn param_of(body: Value) -> Option<String> {
    parse(body).err().and_then(|e| e.param().map(str::to_owned))
}

const PNG: &str = "iVBORw0KGgo=";

#[test]
fn a_conversation_maps_roles_system_images_and_sampling() {
    let chat = parse(json!({
        "model": "auto",
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in this picture?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}
            ]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "Sure?"}
        ],
        "max_completion_tokens": 120, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "stream": true, "stream_options": {"include_usage": true}, "user": "u-1", "seed": 7, "store": false, "n": 1
    }))
    .unwrap();
    let request = &chat.request;
    assert_eq!(request.model_id.as_deref(), Some("auto"));
    assert_eq!(request.system.len(), 2);
    assert_eq!(request.messages.len(), 3);
    assert_eq!(request.messages[0].role, Role::User);
    let ContentBlock::Image(image) = &request.messages[0].content[1] else { panic!("{request:?}") };
    assert_eq!((image.format.as_str(), &image.source), ("png", &BinarySource::Bytes(PNG.into())));
    let config = request.inference_config.as_ref().unwrap();
    assert_eq!((config.max_tokens, config.temperature, config.top_p), (Some(120), Some(0.2), Some(0.9)));
    assert_eq!(config.stop_sequences, ["END"]);
    assert!(chat.stream && chat.include_usage);
    assert_eq!(chat.user.as_deref(), Some("u-1"));
}

#[test]
fn tool_calls_and_results_become_tool_blocks_in_alternating_turns() {
    let chat = parse(json!({
        "model": "haiku",
        "messages": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
                {"id": "c2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "24C"}]}
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "tool_choice": {"type": "function", "function": {"name": "weather"}}
    }))
    .unwrap();
    let messages = &chat.request.messages;
    assert_eq!(messages.len(), 3, "the two tool results are one user turn");
    let ContentBlock::ToolUse(ToolUseBlock { input, .. }) = &messages[1].content[1] else { panic!("{messages:?}") };
    assert_eq!(input, &json!({"city": "Rome"}));
    let ContentBlock::ToolResult(result) = &messages[2].content[1] else { panic!("{messages:?}") };
    assert_eq!(
        (result.tool_use_id.as_str(), &result.content[..]),
        ("c2", &[ToolResultContent::Text("24C".into())][..])
    );
    let tools = chat.request.tool_config.as_ref().unwrap();
    assert_eq!(tools.tool_choice, Some(ToolChoice::Tool(crate::request::SpecificTool { name: "weather".into() })));
}

#[test]
fn tool_choice_modes() {
    let with = |choice: Value| {
        parse(json!({"model": "haiku", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": choice}))
        .unwrap()
        .request
        .tool_config
    };
    assert!(matches!(with(json!("required")).unwrap().tool_choice, Some(ToolChoice::Any(_))));
    assert!(matches!(with(json!("auto")).unwrap().tool_choice, Some(ToolChoice::Auto(_))));
    assert_eq!(with(json!("none")), None, "no tools: the model cannot call one");
}

#[test]
fn bad_input_names_its_parameter() {
    let user = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(param_of(json!({"model": "haiku", "messages": []})).as_deref(), Some("messages"));
    assert_eq!(param_of(json!({"model": "haiku"})).as_deref(), Some("messages"));
    assert_eq!(param_of(json!({"messages": user})).as_deref(), Some("model"));
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": [{"role": "wizard", "content": "hi"}]})).as_deref(),
        Some("messages[0].role")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]})).as_deref(),
        Some("messages[0].content[0].image_url.url")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}]}]})).as_deref(),
        Some("messages[0].content[0].image_url.url")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": format!("data:image/tiff;base64,{PNG}")}}]}]})).as_deref(),
        Some("messages[0].content[0].image_url.url")
    );
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": [{"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{"}}]}]})).as_deref(),
        Some("messages[0].tool_calls[0].function.arguments")
    );
    assert_eq!(param_of(json!({"model": "haiku", "messages": user, "frobnicate": 1})).as_deref(), Some("frobnicate"));
    assert!(matches!(
        parse(json!({"model": "haiku", "messages": user, "frobnicate": 1})),
        Err(CompatError::Unrecognized(_))
    ));
    for (key, value) in [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("presence_penalty", json!(0.5)),
        ("logit_bias", json!({"50256": -100})),
        ("response_format", json!({"type": "json_object"})),
        ("audio", json!({"voice": "alloy"})),
    ] {
        let mut body = json!({"model": "haiku", "messages": user});
        body[key] = value;
        assert!(matches!(parse(body), Err(CompatError::Unsupported { param, .. }) if param == key), "{key}");
    }
    for (key, value) in [
        ("n", json!(1)),
        ("logprobs", json!(false)),
        ("frequency_penalty", json!(0)),
        ("response_format", json!({"type": "text"})),
    ] {
        let mut body = json!({"model": "haiku", "messages": user});
        body[key] = value;
        assert!(parse(body).is_ok(), "{key} at its default is accepted");
    }
    let both = param_of(json!({"model": "haiku", "messages": user, "max_tokens": 10, "max_completion_tokens": 20}));
    assert!(matches!(both.as_deref(), Some("max_tokens" | "max_completion_tokens")), "{both:?}");
    assert_eq!(param_of(json!({"model": "haiku", "messages": user, "max_tokens": 0})).as_deref(), Some("max_tokens"));
    assert_eq!(
        param_of(json!({"model": "haiku", "messages": user, "stop": ["a", "b", "c", "d", "e"]})).as_deref(),
        Some("stop")
    );
    // Converse's own checks, reported under OpenAI's name.
    assert_eq!(param_of(json!({"model": "haiku", "messages": user, "temperature": 7})).as_deref(), Some("temperature"));
    let duplicate = br#"{"model": "haiku", "model": "opus", "messages": [{"role": "user", "content": "hi"}]}"#;
    assert!(parse_chat_request(duplicate).is_err(), "duplicate keys are refused");
    assert!(matches!(parse_chat_request(b"{"), Err(CompatError::MalformedJson(_))));
}

#[test]
fn a_completion_carries_text_tool_calls_finish_reason_and_openais_usage() {
    let text = answer(response(vec![ContentBlock::Text("Hello.".into())], "end_turn", usage(10, 5, 90, 4)));
    let body = chat_completion(&text, "chatcmpl-1", 1_700_000_000);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Hello.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 104, "OpenAI counts cached input in prompt_tokens");
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 90);
    assert_eq!(body["usage"]["total_tokens"], 109);

    let tool = answer(response(
        vec![ContentBlock::ToolUse(ToolUseBlock {
            tool_use_id: "t1".into(),
            name: "f".into(),
            input: json!({"a": 1}),
        })],
        "tool_use",
        usage(10, 5, 0, 0),
    ));
    let body = chat_completion(&tool, "chatcmpl-2", 0);
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(finish_reason("max_tokens"), "length");
    assert_eq!(finish_reason("guardrail_intervened"), "content_filter");
}

#[test]
fn chunks_stream_the_same_answer() {
    let original = response(
        vec![
            ContentBlock::Text("One two three four five six seven.".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "t1".into(),
                name: "f".into(),
                input: json!({"city": "Paris", "days": 3}),
            }),
        ],
        "tool_use",
        usage(12, 30, 0, 0),
    );
    for include_usage in [false, true] {
        let mut encoder = ChunkEncoder::new("chatcmpl-x", 1, "m", include_usage);
        let chunks: Vec<Value> = replay(&original).iter().flat_map(|e| encoder.push(e)).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant"}));
        let text: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
        assert_eq!(text, "One two three four five six seven.");
        let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0)).collect();
        assert_eq!(calls[0]["id"], "t1");
        assert_eq!(calls[0]["function"]["name"], "f");
        assert!(calls.iter().all(|c| c["index"] == 0));
        let arguments: String = calls.iter().filter_map(|c| c["function"]["arguments"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), json!({"city": "Paris", "days": 3}));
        let finishes: Vec<&Value> =
            chunks.iter().map(|c| &c["choices"][0]["finish_reason"]).filter(|f| !f.is_null()).collect();
        assert_eq!(finishes, [&json!("tool_calls")]);
        let last = chunks.last().unwrap();
        if include_usage {
            assert_eq!(last["choices"], json!([]));
            assert_eq!(last["usage"]["completion_tokens"], 30);
        } else {
            assert!(chunks.iter().all(|c| c.get("usage").is_none()));
        }
        assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == "chatcmpl-x"));
    }
}

#[test]
fn errors_use_openais_shape_and_types() {
    let body = error_body(429, ErrorLabel::Throttled, "slow down", None);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(body["error"]["code"], "throttled");
    assert_eq!(error_body(400, ErrorLabel::InvalidRequest, "x", Some("messages"))["error"]["param"], "messages");
    assert_eq!(error_body(502, ErrorLabel::ModelFailed, "x", None)["error"]["type"], "server_error");
}

#[test]
fn models_list_auto_tiers_and_every_id() {
    let catalog = Catalog::embedded().unwrap();
    let body = models(&catalog, 5);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(&ids[..4], ["auto", "haiku", "sonnet", "opus"]);
    assert!(ids.contains(&"us.anthropic.claude-haiku-4-5-20251001-v1:0"));
    assert!(ids.contains(&"anthropic.claude-haiku-4-5-20251001-v1:0"));
}
