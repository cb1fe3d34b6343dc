use serde_json::{Value, json};

use super::CompatError;
use super::anthropic::{EventEncoder, MessagesRequest, error_body, message, parse_messages_request, stop_reason};
use super::test_support::{SERVED_MODEL, answer, replayed, response, usage};
use crate::label::ErrorLabel;
use crate::request::{
    BinarySource, CacheDetail, CachePointBlock, CachePointType, CacheTtl, ContentBlock, ConverseResponse, EmptyObject,
    ImageBlock, InferenceConfig, Message, ReasoningContentBlock, ReasoningText, Role, SpecificTool, SystemContentBlock,
    Tool, ToolChoice, ToolInputSchema, ToolResultBlock, ToolResultContent, ToolResultStatus, ToolSpec, ToolUseBlock,
};
use crate::stream::{
    ContentBlockDelta, ContentBlockStop, Delta, MessageStart, MessageStop, ReasoningDelta, StreamEvent, StreamMetadata,
};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn parse(body: Value) -> Result<MessagesRequest, CompatError> {
    parse_messages_request(body.to_string().as_bytes())
}

fn parsed(body: Value) -> MessagesRequest {
    parse(body).unwrap()
}

fn error_of(body: Value) -> CompatError {
    parse(body).unwrap_err()
}

fn param_of(body: Value) -> String {
    error_of(body).param().unwrap_or("<none>").to_owned()
}

fn with(extra: Value) -> Value {
    let mut body = json!({"model": "sonnet", "max_tokens": 256, "messages": [{"role": "user", "content": "Hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn conversation(messages: Value) -> Value {
    json!({"model": "sonnet", "max_tokens": 256, "messages": messages})
}

fn point(ttl: Option<CacheTtl>) -> CachePointBlock {
    CachePointBlock { kind: CachePointType::Default, ttl }
}

fn weather_tool() -> Value {
    json!({"name": "weather", "description": "Current weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}})
}

#[test]
fn a_minimal_request_needs_model_max_tokens_and_messages() {
    let request = parsed(with(json!({}))).request;
    assert_eq!(request.model_id.as_deref(), Some("sonnet"));
    assert_eq!(request.messages, vec![Message { role: Role::User, content: vec![ContentBlock::Text("Hi".into())] }]);
    assert_eq!(request.inference_config, Some(InferenceConfig { max_tokens: Some(256), ..InferenceConfig::default() }));
    assert_eq!((request.tool_config, request.additional_model_request_fields), (None, None));
    assert!(request.additional_model_response_field_paths.is_empty());
    assert!(!parsed(with(json!({}))).stream);
    assert!(parsed(with(json!({"stream": true}))).stream);

    assert_eq!(param_of(json!({"max_tokens": 1, "messages": [{"role": "user", "content": "x"}]})), "model");
    assert_eq!(param_of(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})), "max_tokens");
    assert_eq!(param_of(json!({"model": "m", "max_tokens": 1})), "messages");
    assert_eq!(param_of(conversation(json!([]))), "messages");
    assert_eq!(param_of(with(json!({"max_tokens": "lots"}))), "max_tokens");
}

#[test]
fn the_system_prompt_keeps_its_cache_marks() {
    let request = parsed(with(json!({"system": "Be brief."}))).request;
    assert_eq!(request.system, vec![SystemContentBlock::Text("Be brief.".into())]);
    let request = parsed(with(json!({"system": [
        {"type": "text", "text": "Long rules", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"type": "text", "text": "Today is Monday."},
    ]})))
    .request;
    assert_eq!(
        request.system,
        vec![
            SystemContentBlock::Text("Long rules".into()),
            SystemContentBlock::CachePoint(point(Some(CacheTtl::OneHour))),
            SystemContentBlock::Text("Today is Monday.".into()),
        ]
    );
    assert_eq!(param_of(with(json!({"system": [{"type": "image", "source": {}}]}))), "system[0].type");
    assert_eq!(param_of(with(json!({"system": 3}))), "system");
    assert_eq!(param_of(with(json!({"system": [{"type": "text", "text": "  "}]}))), "system[0]");
}

#[test]
fn content_blocks_map_and_cache_control_becomes_a_cache_point_after_its_block() {
    let request = parsed(conversation(json!([{"role": "user", "content": [
        {"type": "text", "text": "A long document", "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}, "cache_control": {"type": "ephemeral", "ttl": "5m"}},
        {"type": "text", "text": "What changed?"},
    ]}])))
    .request;
    assert_eq!(
        request.messages[0].content,
        vec![
            ContentBlock::Text("A long document".into()),
            ContentBlock::CachePoint(point(None)),
            ContentBlock::Image(ImageBlock { format: "jpeg".into(), source: BinarySource::Bytes(PNG.into()) }),
            ContentBlock::CachePoint(point(Some(CacheTtl::FiveMinutes))),
            ContentBlock::Text("What changed?".into()),
        ]
    );
}

#[test]
fn top_level_cache_control_marks_the_end_of_the_last_message() {
    let request = parsed(with(json!({"cache_control": {"type": "ephemeral"}}))).request;
    assert_eq!(
        request.messages[0].content,
        vec![ContentBlock::Text("Hi".into()), ContentBlock::CachePoint(point(None))]
    );
}

#[test]
fn tool_use_tool_results_and_thinking_round_trip_a_conversation() {
    let request = parsed(conversation(json!([
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should call the tool.", "signature": "c2ln"},
            {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18°C"},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_2", "is_error": true, "content": [{"type": "text", "text": "timeout"}]},
            {"type": "tool_result", "tool_use_id": "toolu_3", "is_error": false, "content": [
                {"type": "text", "text": "chart"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            ]},
            {"type": "tool_result", "tool_use_id": "toolu_4"},
        ]},
    ])))
    .request;
    assert_eq!(request.messages.len(), 3, "the two user turns merge");
    assert_eq!(
        request.messages[1].content,
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "I should call the tool.".into(),
                signature: Some("c2ln".into()),
            })),
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent("cmVkYWN0ZWQ=".into())),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "toolu_1".into(),
                name: "weather".into(),
                input: json!({"city": "Paris"}),
            }),
        ]
    );
    let result = |id: &str, content: Vec<ToolResultContent>, status: Option<ToolResultStatus>| {
        ContentBlock::ToolResult(ToolResultBlock { tool_use_id: id.into(), content, status })
    };
    assert_eq!(
        request.messages[2].content,
        vec![
            result("toolu_1", vec![ToolResultContent::Text("18°C".into())], None),
            result("toolu_2", vec![ToolResultContent::Text("timeout".into())], Some(ToolResultStatus::Error)),
            result(
                "toolu_3",
                vec![
                    ToolResultContent::Text("chart".into()),
                    ToolResultContent::Image(ImageBlock {
                        format: "png".into(),
                        source: BinarySource::Bytes(PNG.into())
                    }),
                ],
                Some(ToolResultStatus::Success),
            ),
            result("toolu_4", Vec::new(), None),
        ]
    );
}

#[test]
fn documents_are_inline_pdfs_or_plain_text() {
    let request = parsed(conversation(json!([{"role": "user", "content": [
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}, "title": "Q3 report"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "plain words"}},
        {"type": "text", "text": "Compare them."},
    ]}])))
    .request;
    let documents: Vec<(&str, &str, &BinarySource)> = request.messages[0]
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Document(d) => Some((d.format.as_str(), d.name.as_str(), &d.source)),
            _ => None,
        })
        .collect();
    assert_eq!(
        documents,
        vec![
            ("pdf", "document-1", &BinarySource::Bytes("JVBERi0x".into())),
            ("txt", "document-2", &BinarySource::Bytes("cGxhaW4gd29yZHM=".into())),
        ]
    );
    let document =
        |source: Value| conversation(json!([{"role": "user", "content": [{"type": "document", "source": source}]}]));
    assert_eq!(
        param_of(document(json!({"type": "url", "url": "https://example.com/a.pdf"}))),
        "messages[0].content[0].source.type"
    );
    assert_eq!(
        param_of(document(json!({"type": "base64", "media_type": "text/csv", "data": "YQ=="}))),
        "messages[0].content[0].source.media_type"
    );
}

#[test]
fn block_errors_name_their_param() {
    let blocks = |blocks: Value| conversation(json!([{"role": "user", "content": blocks}]));
    let image = |source: Value| blocks(json!([{"type": "image", "source": source}]));
    let remote = error_of(image(json!({"type": "url", "url": "https://example.com/cat.png"})));
    assert!(matches!(&remote, CompatError::Unsupported { param, .. } if param == "messages[0].content[0].source.type"));
    assert_eq!(
        param_of(image(json!({"type": "base64", "media_type": "image/bmp", "data": PNG}))),
        "messages[0].content[0].source.media_type"
    );
    assert_eq!(
        param_of(image(json!({"type": "base64", "media_type": "image/png", "data": "not base64!"}))),
        "messages[0].content[0].source.data"
    );
    assert_eq!(
        param_of(image(json!({"type": "base64", "media_type": "image/png"}))),
        "messages[0].content[0].source.data"
    );
    assert_eq!(param_of(blocks(json!([{"type": "image"}]))), "messages[0].content[0].source");
    assert_eq!(param_of(blocks(json!([{"type": "text"}]))), "messages[0].content[0].text");
    assert_eq!(param_of(blocks(json!([{"text": "x"}]))), "messages[0].content[0].type");
    assert_eq!(
        param_of(blocks(json!([{"type": "text", "text": "x", "colour": "red"}]))),
        "messages[0].content[0].colour"
    );
    assert_eq!(param_of(blocks(json!([]))), "messages[0].content");
    assert_eq!(param_of(blocks(json!(7))), "messages[0].content");
    assert_eq!(
        param_of(blocks(json!([{"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}]))),
        "messages[0].content[0].type"
    );
    assert_eq!(
        param_of(blocks(json!([{"type": "text", "text": "x", "cache_control": {"type": "persistent"}}]))),
        "messages[0].content[0].cache_control.type"
    );
    assert_eq!(
        param_of(blocks(json!([{"type": "text", "text": "x", "cache_control": {"type": "ephemeral", "ttl": "1d"}}]))),
        "messages[0].content[0].cache_control.ttl"
    );
    assert_eq!(
        param_of(blocks(json!([{"type": "text", "text": "x", "citations": [{"type": "char_location"}]}]))),
        "messages[0].content[0].citations"
    );
    assert_eq!(
        param_of(conversation(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "text"}]},
        ]))),
        "messages[1].content[0].input"
    );
    assert_eq!(
        param_of(conversation(json!([
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": "hmm"}]},
        ]))),
        "messages[1].content[0].signature"
    );
    assert_eq!(
        param_of(blocks(
            json!([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}]}])
        )),
        "messages[0].content[0].content[0].cache_control"
    );
    assert_eq!(
        param_of(blocks(json!([{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]))),
        "messages[0].content[0].is_error"
    );
}

#[test]
fn roles_are_checked_and_runs_of_one_role_merge() {
    assert_eq!(param_of(conversation(json!([{"role": "robot", "content": "x"}]))), "messages[0].role");
    let system = error_of(conversation(json!([{"role": "system", "content": "x"}])));
    assert!(matches!(&system, CompatError::Unsupported { param, .. } if param == "messages[0].role"));
    assert_eq!(param_of(conversation(json!([{"role": "user"}]))), "messages[0].content");
    assert_eq!(param_of(conversation(json!([{"role": "user", "content": "x", "name": "bob"}]))), "messages[0].name");
    let request = parsed(conversation(json!([
        {"role": "user", "content": "one"},
        {"role": "user", "content": [{"type": "text", "text": "two"}]},
        {"role": "assistant", "content": "three"},
        {"role": "assistant", "content": "four"},
    ])))
    .request;
    assert_eq!(
        request.messages.iter().map(|m| (m.role, m.content.len())).collect::<Vec<_>>(),
        vec![(Role::User, 2), (Role::Assistant, 2)]
    );
}

#[test]
fn tools_and_tool_choice_map_onto_the_tool_config() {
    let request = parsed(with(json!({
        "tools": [
            {"name": "weather", "description": "Current weather", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
            {"type": "custom", "name": "clock", "input_schema": {"type": "object", "properties": {}}, "strict": true},
        ],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
    })))
    .request;
    let config = request.tool_config.unwrap();
    assert_eq!(
        config.tools,
        vec![
            Tool::ToolSpec(ToolSpec {
                name: "weather".into(),
                description: Some("Current weather".into()),
                input_schema: ToolInputSchema::Json(json!({"type": "object"})),
            }),
            Tool::CachePoint(point(None)),
            Tool::ToolSpec(ToolSpec {
                name: "clock".into(),
                description: None,
                input_schema: ToolInputSchema::Json(json!({"type": "object", "properties": {}})),
            }),
        ]
    );
    assert_eq!(config.tool_choice, Some(ToolChoice::Auto(EmptyObject {})));
    let choice =
        |choice: Value| parsed(with(json!({"tools": [weather_tool()], "tool_choice": choice}))).request.tool_config;
    assert_eq!(choice(json!({"type": "any"})).unwrap().tool_choice, Some(ToolChoice::Any(EmptyObject {})));
    assert_eq!(
        choice(json!({"type": "tool", "name": "weather"})).unwrap().tool_choice,
        Some(ToolChoice::Tool(SpecificTool { name: "weather".into() }))
    );
    assert_eq!(choice(json!({"type": "none"})), None, "none drops the tools");
    let with_history = parsed(
        json!({"model": "m", "max_tokens": 10, "tools": [weather_tool()], "tool_choice": {"type": "none"}, "messages": [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}]},
        ]}),
    );
    assert_eq!(with_history.request.tool_config.unwrap().tool_choice, None, "Bedrock needs the tools for the history");
}

#[test]
fn tool_errors_name_their_param() {
    let web_search =
        error_of(with(json!({"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]})));
    assert!(matches!(&web_search, CompatError::Unsupported { param, .. } if param == "tools[0].type"));
    assert_eq!(param_of(with(json!({"tools": [{"name": "f"}]}))), "tools[0].input_schema");
    assert_eq!(param_of(with(json!({"tools": [{"input_schema": {}}]}))), "tools[0].name");
    assert_eq!(
        param_of(with(json!({"tools": [{"name": "f", "input_schema": {}, "defer_loading": true}]}))),
        "tools[0].defer_loading"
    );
    assert_eq!(param_of(with(json!({"tool_choice": {"type": "any"}}))), "tool_choice");
    assert_eq!(param_of(with(json!({"tools": [weather_tool()], "tool_choice": {"type": "tool"}}))), "tool_choice.name");
    assert_eq!(param_of(with(json!({"tools": [weather_tool()], "tool_choice": {"type": "some"}}))), "tool_choice.type");
    // The cache point after the first tool shifts Converse's indices; the error still names
    // the caller's second tool.
    let first = json!({"name": "a", "input_schema": {}, "cache_control": {"type": "ephemeral"}});
    assert_eq!(param_of(with(json!({"tools": [first, {"name": "b c", "input_schema": {}}]}))), "tools[1].name");
    assert_eq!(
        param_of(with(json!({"tools": [weather_tool()], "tool_choice": {"type": "tool", "name": "other"}}))),
        "tool_choice.name"
    );
}

#[test]
fn sampling_thinking_and_stop_sequences_map_onto_converse() {
    let request = parsed(with(json!({
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END", "STOP"],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "metadata": {"user_id": "u-1"},
        "service_tier": "standard_only",
    })))
    .request;
    assert_eq!(
        request.inference_config,
        Some(InferenceConfig {
            max_tokens: Some(256),
            temperature: Some(0.5),
            top_p: Some(0.9),
            stop_sequences: vec!["END".into(), "STOP".into()],
        })
    );
    assert_eq!(
        request.additional_model_request_fields,
        Some(json!({"top_k": 40, "thinking": {"type": "enabled", "budget_tokens": 2048}}))
    );
    assert_eq!(request.additional_model_response_field_paths, vec!["/stop_sequence".to_owned()]);
    assert!(request.request_metadata.is_empty() && request.service_tier.is_none());

    let thinking =
        |thinking: Value| parsed(with(json!({"thinking": thinking}))).request.additional_model_request_fields;
    assert_eq!(thinking(json!({"type": "disabled"})), None);
    assert_eq!(thinking(json!({"type": "adaptive"})), Some(json!({"thinking": {"type": "adaptive"}})));
    assert_eq!(param_of(with(json!({"thinking": {"type": "enabled"}}))), "thinking.budget_tokens");
    assert_eq!(param_of(with(json!({"thinking": {"type": "maybe"}}))), "thinking.type");
    assert_eq!(param_of(with(json!({"top_k": -3}))), "top_k");
}

#[test]
fn converse_rules_are_reported_in_the_callers_terms() {
    assert_eq!(param_of(with(json!({"temperature": 1.5}))), "temperature");
    assert_eq!(param_of(with(json!({"top_p": -0.1}))), "top_p");
    assert_eq!(param_of(with(json!({"max_tokens": 0}))), "max_tokens");
    assert_eq!(param_of(with(json!({"stop_sequences": ["END", ""]}))), "stop_sequences[1]");
    assert_eq!(param_of(conversation(json!([{"role": "assistant", "content": "Hi"}]))), "messages[0].role");
    assert_eq!(
        param_of(conversation(
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": " "}]}])
        )),
        "messages[0].content[1]"
    );
    assert_eq!(
        param_of(conversation(
            json!([{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}])
        )),
        "messages[0].content[0]"
    );
    let marked: Vec<Value> = (0..5)
        .map(|i| json!({"type": "text", "text": format!("part {i}"), "cache_control": {"type": "ephemeral"}}))
        .collect();
    assert_eq!(param_of(conversation(json!([{"role": "user", "content": marked}]))), "cache_control");
}

#[test]
fn features_bedrock_lacks_and_unknown_fields_are_refused_by_name() {
    for (param, value) in [
        ("container", json!("container_1")),
        ("inference_geo", json!("us")),
        ("mcp_servers", json!([{"type": "url", "url": "https://mcp.example.com", "name": "x"}])),
        ("context_management", json!({"edits": []})),
    ] {
        let err = error_of(with(json!({param: value})));
        assert!(matches!(&err, CompatError::Unsupported { param: p, .. } if p == param), "{param}: {err:?}");
    }
    assert_eq!(param_of(with(json!({"output_config": {"format": {"type": "json_schema"}}}))), "output_config.format");
    assert_eq!(param_of(with(json!({"output_config": {"effort": "high"}}))), "output_config.effort");
    assert!(parse(with(json!({"output_config": {}}))).is_ok());
    let unknown = error_of(with(json!({"top_n": 3})));
    assert_eq!(unknown, CompatError::Unrecognized { param: "top_n".into() });
    assert_eq!(unknown.label(), ErrorLabel::InvalidRequest);
    let malformed = parse_messages_request(b"{\"model\": [").unwrap_err();
    assert_eq!(malformed.label(), ErrorLabel::MalformedJson);
}

fn text_answer() -> ConverseResponse {
    let mut usage = usage(10, 20, Some(100), Some(50));
    usage.cache_details =
        vec![CacheDetail { ttl: "1h".into(), input_tokens: 20 }, CacheDetail { ttl: "5m".into(), input_tokens: 30 }];
    response(
        vec![ContentBlock::Text(
            "Bonjour! Comment puis-je vous aider aujourd'hui, avec quelle question précise?".into(),
        )],
        "end_turn",
        usage,
    )
}

fn tool_answer() -> ConverseResponse {
    response(
        vec![
            ContentBlock::Text("Let me look.".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "tooluse_1".into(),
                name: "weather".into(),
                input: json!({"city": "Zürich", "days": [1, 2, 3], "units": "metric", "hourly": false}),
            }),
        ],
        "tool_use",
        usage(40, 30, None, None),
    )
}

fn reasoning_answer() -> ConverseResponse {
    response(
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "Six times seven; that is forty-two, no doubt about it.".into(),
                signature: Some("RXF1YWxzIDQy".into()),
            })),
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent("cmVkYWN0ZWQ=".into())),
            ContentBlock::Text("42".into()),
        ],
        "end_turn",
        usage(8, 60, None, None),
    )
}

#[test]
fn a_text_answer_is_a_message_with_anthropics_usage() {
    let body = message(&answer(text_answer()), "msg_1");
    assert_eq!(
        body,
        json!({
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": SERVED_MODEL,
            "content": [{"type": "text", "text": "Bonjour! Comment puis-je vous aider aujourd'hui, avec quelle question précise?"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 20,
                "cache_read_input_tokens": 100,
                "cache_creation_input_tokens": 50,
                "cache_creation": {"ephemeral_5m_input_tokens": 30, "ephemeral_1h_input_tokens": 20},
            },
        })
    );
}

#[test]
fn tool_use_and_thinking_blocks_come_back_in_order() {
    let body = message(&answer(tool_answer()), "msg_2");
    assert_eq!(
        body["content"],
        json!([
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "tooluse_1", "name": "weather", "input": {"city": "Zürich", "days": [1, 2, 3], "units": "metric", "hourly": false}},
        ])
    );
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 40, "output_tokens": 30, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0})
    );
    let body = message(&answer(reasoning_answer()), "msg_3");
    assert_eq!(
        body["content"],
        json!([
            {"type": "thinking", "thinking": "Six times seven; that is forty-two, no doubt about it.", "signature": "RXF1YWxzIDQy"},
            {"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="},
            {"type": "text", "text": "42"},
        ])
    );
}

#[test]
fn the_matched_stop_sequence_is_reported() {
    let mut stopped = response(vec![ContentBlock::Text("1, 2, 3".into())], "stop_sequence", usage(5, 5, None, None));
    stopped.additional_model_response_fields = Some(json!({"stop_sequence": "4"}));
    let body = message(&answer(stopped.clone()), "msg_4");
    assert_eq!((body["stop_reason"].clone(), body["stop_sequence"].clone()), (json!("stop_sequence"), json!("4")));
    let streamed = encode(&stopped);
    let delta = &streamed.iter().find(|(name, _)| *name == "message_delta").unwrap().1;
    assert_eq!(delta["delta"], json!({"stop_reason": "stop_sequence", "stop_sequence": "4"}));
}

#[test]
fn stop_reasons_follow_anthropics_vocabulary() {
    for (converse, anthropic) in [
        ("end_turn", "end_turn"),
        ("max_tokens", "max_tokens"),
        ("stop_sequence", "stop_sequence"),
        ("tool_use", "tool_use"),
        ("model_context_window_exceeded", "model_context_window_exceeded"),
        ("guardrail_intervened", "refusal"),
        ("content_filtered", "refusal"),
        ("malformed_tool_use", "end_turn"),
        ("something_new", "end_turn"),
    ] {
        assert_eq!(stop_reason(converse), anthropic, "{converse}");
    }
}

fn encode_events(events: &[StreamEvent]) -> Vec<(&'static str, Value)> {
    let mut encoder = EventEncoder::new("msg_s", "sonnet");
    events.iter().flat_map(|event| encoder.push(event)).collect()
}

fn encode(response: &ConverseResponse) -> Vec<(&'static str, Value)> {
    encode_events(&replayed(response))
}

/// What Anthropic's SDK builds from the events (its stream accumulator), checking the grammar
/// on the way: one message_start first, blocks numbered from 0 and never interleaved, deltas
/// only inside their block, message_delta then message_stop last.
fn accumulate(events: &[(&'static str, Value)]) -> Value {
    let names: Vec<&str> = events.iter().map(|(name, _)| *name).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    assert_eq!(names.iter().filter(|n| **n == "message_start").count(), 1);
    let mut message = events[0].1["message"].clone();
    assert_eq!(message["content"], json!([]));
    let mut open: Option<u64> = None;
    let mut partial_json = String::new();
    for (name, data) in &events[1..] {
        assert_eq!(data["type"], *name, "the data names its event");
        match *name {
            "content_block_start" => {
                assert_eq!(open, None, "blocks never interleave");
                let index = data["index"].as_u64().unwrap();
                assert_eq!(index as usize, message["content"].as_array().unwrap().len(), "numbered from 0");
                message["content"].as_array_mut().unwrap().push(data["content_block"].clone());
                open = Some(index);
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap();
                assert_eq!(open, Some(index));
                let block = &mut message["content"][index as usize];
                let delta = &data["delta"];
                match delta["type"].as_str().unwrap() {
                    "text_delta" => {
                        block["text"] =
                            json!(format!("{}{}", block["text"].as_str().unwrap(), delta["text"].as_str().unwrap()))
                    }
                    "thinking_delta" => {
                        block["thinking"] = json!(format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        ))
                    }
                    "signature_delta" => block["signature"] = delta["signature"].clone(),
                    "input_json_delta" => partial_json.push_str(delta["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap();
                assert_eq!(open.take(), Some(index));
                if !partial_json.is_empty() {
                    message["content"][index as usize]["input"] = serde_json::from_str(&partial_json).unwrap();
                    partial_json.clear();
                }
            }
            "message_delta" => {
                assert_eq!(open, None, "every block stopped before the message ends");
                message["stop_reason"] = data["delta"]["stop_reason"].clone();
                message["stop_sequence"] = data["delta"]["stop_sequence"].clone();
                for (key, value) in data["usage"].as_object().unwrap() {
                    message["usage"][key] = value.clone();
                }
            }
            "message_stop" => {}
            other => panic!("unexpected event {other}"),
        }
    }
    message
}

#[test]
fn streamed_answers_accumulate_to_the_buffered_message() {
    for original in [text_answer(), tool_answer(), reasoning_answer()] {
        let events = encode(&original);
        let streamed = accumulate(&events);
        let mut buffered = message(&answer(original), "msg_s");
        buffered["model"] = json!("sonnet");
        assert_eq!(streamed, buffered);
    }
}

#[test]
fn a_streamed_text_answer_arrives_in_pieces_in_one_block() {
    let original = text_answer();
    let events = encode(&original);
    let deltas: Vec<&Value> = events.iter().filter(|(n, _)| *n == "content_block_delta").map(|(_, d)| d).collect();
    assert!(deltas.len() > 3, "chunked: {}", deltas.len());
    assert!(deltas.iter().all(|d| d["index"] == 0 && d["delta"]["type"] == "text_delta"));
    let text: String = deltas.iter().map(|d| d["delta"]["text"].as_str().unwrap()).collect();
    assert_eq!(text, original.text());
    assert_eq!(
        events[1],
        (
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
        )
    );
    let start = &events[0].1["message"];
    assert_eq!(
        (start["id"].clone(), start["model"].clone(), start["role"].clone()),
        (json!("msg_s"), json!("sonnet"), json!("assistant"))
    );
    let (_, delta) = &events[events.len() - 2];
    assert_eq!(delta["usage"]["output_tokens"], 20);
    assert_eq!(delta["usage"]["input_tokens"], 10);
    assert_eq!(events.last().unwrap().1, json!({"type": "message_stop"}));
}

#[test]
fn streamed_tool_input_concatenates_to_its_json() {
    let events = encode(&tool_answer());
    let start =
        events.iter().find(|(n, d)| *n == "content_block_start" && d["content_block"]["type"] == "tool_use").unwrap();
    assert_eq!(start.1["index"], 1);
    assert_eq!(
        start.1["content_block"],
        json!({"type": "tool_use", "id": "tooluse_1", "name": "weather", "input": {}})
    );
    let pieces: Vec<&str> = events
        .iter()
        .filter(|(n, d)| *n == "content_block_delta" && d["index"] == 1)
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap()
        })
        .collect();
    assert!(pieces.len() > 1);
    let input: Value = serde_json::from_str(&pieces.concat()).unwrap();
    assert_eq!(input, json!({"city": "Zürich", "days": [1, 2, 3], "units": "metric", "hourly": false}));
    assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

#[test]
fn streamed_thinking_ends_with_one_whole_signature_and_redacted_thinking_arrives_whole() {
    let events = encode(&reasoning_answer());
    let of_block =
        |index: u64| -> Vec<&(&'static str, Value)> { events.iter().filter(|(_, d)| d["index"] == index).collect() };
    let thinking = of_block(0);
    assert_eq!(thinking[0].1["content_block"], json!({"type": "thinking", "thinking": "", "signature": ""}));
    let signatures: Vec<&Value> =
        thinking.iter().filter(|(_, d)| d["delta"]["type"] == "signature_delta").map(|(_, d)| d).collect();
    assert_eq!(signatures.len(), 1);
    assert_eq!(signatures[0]["delta"]["signature"], "RXF1YWxzIDQy");
    let (before_stop, stop) = (thinking[thinking.len() - 2], thinking[thinking.len() - 1]);
    assert_eq!((before_stop.1["delta"]["type"].clone(), stop.0), (json!("signature_delta"), "content_block_stop"));
    let redacted = of_block(1);
    assert_eq!(
        redacted.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        ["content_block_start", "content_block_stop"],
        "no delta: the data comes whole in the start"
    );
    assert_eq!(redacted[0].1["content_block"], json!({"type": "redacted_thinking", "data": "cmVkYWN0ZWQ="}));
    assert_eq!(of_block(2)[0].1["content_block"]["type"], "text");
}

#[test]
fn blocks_are_renumbered_from_zero_and_a_split_signature_is_joined() {
    let delta = |index: u32, delta: Delta| {
        StreamEvent::ContentBlockDelta(ContentBlockDelta { content_block_index: index, delta })
    };
    let events = [
        StreamEvent::MessageStart(MessageStart { role: Role::Assistant }),
        delta(3, Delta::ReasoningContent(ReasoningDelta::Text("hmm".into()))),
        delta(3, Delta::ReasoningContent(ReasoningDelta::Signature("abc".into()))),
        delta(3, Delta::ReasoningContent(ReasoningDelta::Signature("def".into()))),
        StreamEvent::ContentBlockStop(ContentBlockStop { content_block_index: 3 }),
        delta(7, Delta::Text("ok".into())),
        StreamEvent::ContentBlockStop(ContentBlockStop { content_block_index: 7 }),
        StreamEvent::MessageStop(MessageStop {
            stop_reason: "max_tokens".into(),
            additional_model_response_fields: None,
        }),
        StreamEvent::Metadata(StreamMetadata {
            usage: usage(1, 2, None, None),
            metrics: crate::request::ConverseMetrics { latency_ms: 1 },
            trace: None,
            performance_config: None,
            service_tier: None,
        }),
    ];
    let message = accumulate(&encode_events(&events));
    assert_eq!(
        message["content"],
        json!([{"type": "thinking", "thinking": "hmm", "signature": "abcdef"}, {"type": "text", "text": "ok"}])
    );
    assert_eq!(message["stop_reason"], "max_tokens");
}

#[test]
fn error_bodies_follow_anthropics_table() {
    assert_eq!(
        error_body(400, ErrorLabel::InvalidRequest, "temperature: must be between 0 and 1"),
        json!({"type": "error", "error": {"type": "invalid_request_error", "message": "temperature: must be between 0 and 1"}})
    );
    for (status, kind) in [
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (529, "overloaded_error"),
    ] {
        assert_eq!(error_body(status, ErrorLabel::Internal, "m")["error"]["type"], kind, "{status}");
    }
}

#[test]
fn an_answer_sent_back_as_the_sdk_gave_it_is_accepted() {
    // What `message.content[i].model_dump()` holds in anthropic 2.x.
    let request = parsed(json!({"model": "haiku", "max_tokens": 50, "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Let me look.", "citations": null},
            {"type": "tool_use", "id": "t1", "name": "weather", "input": {"city": "Oslo"}, "caller": null, "toolset_name": null}
        ]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "-3C"}]}
    ], "tools": [{"name": "weather", "input_schema": {"type": "object"}}]}));
    assert_eq!(request.request.messages.len(), 3);
}
