use serde_json::{Value, json};

use super::CompatError;
use super::openai::{
    ChatRequest, ChunkEncoder, chat_completion, error_body, finish_reason, models, parse_chat_request,
};
use super::test_support::{SERVED_MODEL, answer, replayed, response, usage};
use crate::catalog::Catalog;
use crate::label::ErrorLabel;
use crate::request::{
    BinarySource, CachePointBlock, CachePointType, ContentBlock, ConverseResponse, EmptyObject, ImageBlock,
    InferenceConfig, Message, ReasoningContentBlock, ReasoningText, Role, SpecificTool, SystemContentBlock, Tool,
    ToolChoice, ToolInputSchema, ToolResultBlock, ToolResultContent, ToolSpec, ToolUseBlock,
};

const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn parse(body: Value) -> Result<ChatRequest, CompatError> {
    parse_chat_request(body.to_string().as_bytes())
}

fn parsed(body: Value) -> ChatRequest {
    parse(body).unwrap()
}

fn error_of(body: Value) -> CompatError {
    parse(body).unwrap_err()
}

fn param_of(body: Value) -> String {
    error_of(body).param().unwrap_or("<none>").to_owned()
}

/// A valid body with `extra` merged in at the top level.
fn with(extra: Value) -> Value {
    let mut body = json!({"model": "sonnet", "messages": [{"role": "user", "content": "Hi"}]});
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

fn user(text: &str) -> Message {
    Message { role: Role::User, content: vec![ContentBlock::Text(text.into())] }
}

fn cache_point() -> ContentBlock {
    ContentBlock::CachePoint(CachePointBlock { kind: CachePointType::Default, ttl: None })
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "weather",
        "description": "Current weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }})
}

#[test]
fn a_minimal_request_keeps_the_model_as_given() {
    let chat = parsed(json!({"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}));
    assert_eq!(chat.request.model_id.as_deref(), Some("auto"));
    assert_eq!(chat.request.messages, vec![user("Hello")]);
    assert!(chat.request.system.is_empty());
    assert_eq!(chat.request.inference_config, None);
    assert_eq!(chat.request.tool_config, None);
    assert!(!chat.stream && !chat.include_usage);
    assert_eq!(chat.user, None);
}

#[test]
fn system_and_developer_messages_become_the_system_prompt_wherever_they_are() {
    let chat = parsed(json!({"model": "haiku", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "One"},
        {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}, {"type": "text", "text": "No emoji."}]},
        {"role": "user", "content": "Two", "name": "alice"},
    ]}));
    assert_eq!(
        chat.request.system,
        vec![
            SystemContentBlock::Text("Be brief.".into()),
            SystemContentBlock::Text("Answer in French.".into()),
            SystemContentBlock::Text("No emoji.".into()),
        ]
    );
    // The two user turns, no longer separated, merge into one message.
    assert_eq!(
        chat.request.messages,
        vec![Message {
            role: Role::User,
            content: vec![ContentBlock::Text("One".into()), ContentBlock::Text("Two".into())]
        }]
    );
}

#[test]
fn user_parts_map_text_and_data_url_images() {
    let chat = parsed(json!({"model": "sonnet", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}"), "detail": "high"}},
        {"type": "image_url", "image_url": {"url": format!("data:image/jpg;base64,{PNG}")}},
        {"type": "image_url", "image_url": {"url": format!("data:image/webp;base64,{PNG}")}},
    ]}]}));
    let image = |format: &str| {
        ContentBlock::Image(ImageBlock { format: format.into(), source: BinarySource::Bytes(PNG.into()) })
    };
    assert_eq!(
        chat.request.messages[0].content,
        vec![ContentBlock::Text("What is this?".into()), image("png"), image("jpeg"), image("webp")]
    );
}

#[test]
fn images_bedrock_cannot_read_are_refused_naming_the_url() {
    let image = |url: &str| {
        json!({"model": "sonnet", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Look"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}]})
    };
    let param = "messages[0].content[1].image_url.url";
    let remote = error_of(image("https://example.com/cat.png"));
    assert!(matches!(&remote, CompatError::Unsupported { param: p, .. } if p == param), "{remote:?}");
    for bad in [
        "ftp://example.com/cat.png",
        "data:image/png,iVBORw0K",
        "data:image/png;base64",
        "data:image/bmp;base64,Qk0=",
        "data:image/png;base64,not base64!",
        "data:image/png;base64,",
    ] {
        let err = error_of(image(bad));
        assert!(matches!(&err, CompatError::Invalid { param: p, .. } if p == param), "{bad}: {err:?}");
    }
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]})),
        "messages[0].content[0].image_url"
    );
    assert_eq!(
        param_of(
            json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]})
        ),
        "messages[0].content[0].type"
    );
}

#[test]
fn an_inline_pdf_becomes_a_document_and_an_uploaded_file_is_refused() {
    let chat = parsed(json!({"model": "sonnet", "messages": [{"role": "user", "content": [
        {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0x", "filename": "report.pdf"}},
        {"type": "text", "text": "Summarize"},
    ]}]}));
    match &chat.request.messages[0].content[0] {
        ContentBlock::Document(doc) => {
            assert_eq!((doc.format.as_str(), doc.name.as_str()), ("pdf", "document-1"));
            assert_eq!(doc.source, BinarySource::Bytes("JVBERi0x".into()));
        }
        other => panic!("{other:?}"),
    }
    let file = |file: Value| json!({"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": file}]}]});
    assert_eq!(param_of(file(json!({"file_id": "file-abc"}))), "messages[0].content[0].file.file_id");
    assert_eq!(
        param_of(file(json!({"file_data": "data:text/csv;base64,YSxi"}))),
        "messages[0].content[0].file.file_data"
    );
}

#[test]
fn assistant_tool_calls_become_tool_use_with_parsed_arguments() {
    let chat = parsed(json!({"model": "sonnet", "messages": [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Rome\"}"}},
            {"id": "call_3", "type": "function", "function": {"name": "clock", "arguments": ""}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18°C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "21°C"}]},
        {"role": "tool", "tool_call_id": "call_3", "content": "noon"},
        {"role": "user", "content": "Thanks. Which is warmer?"},
    ], "tools": [weather_tool(), {"type": "function", "function": {"name": "clock"}}]}));
    let messages = &chat.request.messages;
    assert_eq!(messages.len(), 3, "the tool results and the next user turn form one user message");
    let tool_use = |id: &str, name: &str, input: Value| {
        ContentBlock::ToolUse(ToolUseBlock { tool_use_id: id.into(), name: name.into(), input })
    };
    assert_eq!(
        messages[1],
        Message {
            role: Role::Assistant,
            content: vec![
                tool_use("call_1", "weather", json!({"city": "Paris"})),
                tool_use("call_2", "weather", json!({"city": "Rome"})),
                tool_use("call_3", "clock", json!({})),
            ],
        }
    );
    let result = |id: &str, text: &str| {
        ContentBlock::ToolResult(ToolResultBlock {
            tool_use_id: id.into(),
            content: vec![ToolResultContent::Text(text.into())],
            status: None,
        })
    };
    assert_eq!(
        messages[2],
        Message {
            role: Role::User,
            content: vec![
                result("call_1", "18°C"),
                result("call_2", "21°C"),
                result("call_3", "noon"),
                ContentBlock::Text("Thanks. Which is warmer?".into()),
            ],
        }
    );
}

#[test]
fn assistant_text_beside_tool_calls_is_kept_and_null_content_is_allowed() {
    let chat = parsed(json!({"model": "sonnet", "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me check."}], "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "assistant", "content": null, "refusal": "I can't share that."},
        {"role": "user", "content": "ok"},
    ], "tools": [weather_tool()]}));
    assert_eq!(chat.request.messages[1].content[0], ContentBlock::Text("Let me check.".into()));
    assert_eq!(chat.request.messages[3].content, vec![ContentBlock::Text("I can't share that.".into())]);
}

#[test]
fn bad_tool_call_arguments_name_the_param() {
    let call = |arguments: &str| {
        json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}]},
        ]})
    };
    for bad in ["{\"city\": ", "[1, 2]", "\"text\"", "{} {}"] {
        assert_eq!(param_of(call(bad)), "messages[1].tool_calls[0].function.arguments", "{bad}");
    }
    let err = error_of(call("{\"secret\": SECRET}"));
    assert!(!err.to_string().contains("SECRET"), "{err}");
    assert_eq!(
        param_of(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom", "custom": {}}]},
        ]})),
        "messages[1].tool_calls[0].type"
    );
}

#[test]
fn message_errors_name_their_param() {
    let messages = |messages: Value| json!({"model": "m", "messages": messages});
    assert_eq!(param_of(messages(json!([]))), "messages");
    assert_eq!(param_of(json!({"model": "m"})), "messages");
    assert_eq!(param_of(json!({"messages": [{"role": "user", "content": "x"}]})), "model");
    assert_eq!(param_of(messages(json!("hello"))), "messages");
    assert_eq!(
        param_of(messages(json!([{"role": "user", "content": "x"}, {"role": "robot", "content": "x"}]))),
        "messages[1].role"
    );
    assert_eq!(param_of(messages(json!([{"content": "x"}]))), "messages[0].role");
    assert_eq!(param_of(messages(json!([{"role": "user"}]))), "messages[0].content");
    assert_eq!(param_of(messages(json!([{"role": "user", "content": null}]))), "messages[0].content");
    assert_eq!(param_of(messages(json!([{"role": "user", "content": []}]))), "messages[0].content");
    assert_eq!(param_of(messages(json!([{"role": "user", "content": 42}]))), "messages[0].content");
    assert_eq!(
        param_of(messages(json!([{"role": "user", "content": "x"}, {"role": "assistant", "content": null}]))),
        "messages[1].content"
    );
    assert_eq!(
        param_of(messages(json!([{"role": "user", "content": [{"type": "video"}]}]))),
        "messages[0].content[0].type"
    );
    assert_eq!(
        param_of(messages(json!([{"role": "user", "content": [{"type": "text"}]}]))),
        "messages[0].content[0].text"
    );
    assert_eq!(param_of(messages(json!([{"role": "tool", "content": "x"}]))), "messages[0].tool_call_id");
    assert_eq!(param_of(messages(json!([{"role": "user", "content": "x", "colour": "red"}]))), "messages[0].colour");
    let function = error_of(messages(json!([{"role": "function", "name": "f", "content": "x"}])));
    assert!(matches!(&function, CompatError::Unsupported { param, .. } if param == "messages[0].role"));
    assert_eq!(
        param_of(messages(json!([{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]))),
        "messages[0].content[0].type"
    );
}

#[test]
fn converse_rules_are_reported_in_the_callers_terms() {
    let messages = |messages: Value| json!({"model": "m", "messages": messages});
    // The first Converse message is the caller's second (the system one moved out).
    assert_eq!(
        param_of(messages(json!([{"role": "system", "content": "s"}, {"role": "assistant", "content": "Hi"}]))),
        "messages[1].role"
    );
    // A blank text after a merge still points at the caller's message.
    assert_eq!(
        param_of(messages(
            json!([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}, {"role": "user", "content": "  "}])
        )),
        "messages[2].content"
    );
    assert_eq!(
        param_of(messages(
            json!([{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": ""}]}])
        )),
        "messages[0].content[1]"
    );
    assert_eq!(
        param_of(messages(json!([{"role": "system", "content": " "}, {"role": "user", "content": "x"}]))),
        "messages[0].content"
    );
    assert_eq!(param_of(with(json!({"temperature": 1.5}))), "temperature");
    assert_eq!(param_of(with(json!({"top_p": 2}))), "top_p");
    assert_eq!(param_of(with(json!({"max_tokens": 0}))), "max_tokens");
    assert_eq!(param_of(with(json!({"max_completion_tokens": 0}))), "max_completion_tokens");
    assert_eq!(param_of(with(json!({"stop": ["END", ""]}))), "stop[1]");
    assert_eq!(param_of(with(json!({"stop": ""}))), "stop");
    let bad_name = json!({"type": "function", "function": {"name": "no spaces allowed"}});
    assert_eq!(param_of(with(json!({"tools": [weather_tool(), bad_name]}))), "tools[1].function.name");
    assert_eq!(param_of(with(json!({"tools": [weather_tool(), weather_tool()]}))), "tools[1].function.name");
    assert_eq!(
        param_of(with(json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]}))),
        "tools[0].function.parameters"
    );
    assert_eq!(
        param_of(with(
            json!({"tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "other"}}})
        )),
        "tool_choice.function.name"
    );
    let err = error_of(with(json!({"temperature": 1.5})));
    assert_eq!(err.label(), ErrorLabel::InvalidRequest);
    assert!(err.to_string().contains("between 0 and 1"), "{err}");
}

#[test]
fn inference_parameters_map_onto_the_inference_config() {
    let chat = parsed(with(json!({"max_tokens": 300, "temperature": 0.25, "top_p": 0.5, "stop": "END"})));
    assert_eq!(
        chat.request.inference_config,
        Some(InferenceConfig {
            max_tokens: Some(300),
            temperature: Some(0.25),
            top_p: Some(0.5),
            stop_sequences: vec!["END".into()]
        })
    );
    let chat = parsed(with(json!({"max_completion_tokens": 200, "stop": ["a", "b", "c", "d"]})));
    let config = chat.request.inference_config.unwrap();
    assert_eq!((config.max_tokens, config.stop_sequences.len()), (Some(200), 4));
    assert_eq!(parsed(with(json!({"max_tokens": 50, "max_completion_tokens": 50}))).request.max_tokens(), Some(50));
    assert_eq!(param_of(with(json!({"max_tokens": 50, "max_completion_tokens": 60}))), "max_completion_tokens");
    assert_eq!(param_of(with(json!({"stop": ["a", "b", "c", "d", "e"]}))), "stop");
    assert_eq!(param_of(with(json!({"stop": [1]}))), "stop[0]");
    assert_eq!(param_of(with(json!({"max_tokens": "many"}))), "max_tokens");
    assert_eq!(param_of(with(json!({"max_tokens": 1.5}))), "max_tokens");
    assert_eq!(param_of(with(json!({"max_tokens": -1}))), "max_tokens");
    assert_eq!(param_of(with(json!({"max_tokens": 99999999999u64}))), "max_tokens");
    assert_eq!(param_of(with(json!({"temperature": "hot"}))), "temperature");
    assert_eq!(parsed(with(json!({"stop": null, "max_tokens": null}))).request.inference_config, None);
}

#[test]
fn tools_map_onto_tool_specs_and_tool_choice() {
    let chat = parsed(with(
        json!({"tools": [weather_tool(), {"type": "function", "function": {"name": "now", "strict": true}}]}),
    ));
    let config = chat.request.tool_config.unwrap();
    assert_eq!(
        config.tools,
        vec![
            Tool::ToolSpec(ToolSpec {
                name: "weather".into(),
                description: Some("Current weather".into()),
                input_schema: ToolInputSchema::Json(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
                ),
            }),
            Tool::ToolSpec(ToolSpec {
                name: "now".into(),
                description: None,
                input_schema: ToolInputSchema::Json(json!({"type": "object", "properties": {}})),
            }),
        ]
    );
    assert_eq!(config.tool_choice, None);
    let choice =
        |choice: Value| parsed(with(json!({"tools": [weather_tool()], "tool_choice": choice}))).request.tool_config;
    assert_eq!(choice(json!("auto")).unwrap().tool_choice, Some(ToolChoice::Auto(EmptyObject {})));
    assert_eq!(choice(json!("required")).unwrap().tool_choice, Some(ToolChoice::Any(EmptyObject {})));
    assert_eq!(
        choice(json!({"type": "function", "function": {"name": "weather"}})).unwrap().tool_choice,
        Some(ToolChoice::Tool(SpecificTool { name: "weather".into() }))
    );
    assert_eq!(choice(json!("none")), None, "none drops the tools so that none can be called");
    assert_eq!(parsed(with(json!({"tools": []}))).request.tool_config, None);
    assert_eq!(parsed(with(json!({"tool_choice": "none"}))).request.tool_config, None);
}

#[test]
fn tool_choice_none_keeps_the_tools_when_the_history_holds_tool_calls() {
    let chat = parsed(json!({"model": "m", "tool_choice": "none", "tools": [weather_tool()], "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]}));
    let config = chat.request.tool_config.unwrap();
    assert_eq!((config.tools.len(), config.tool_choice), (1, None));
}

#[test]
fn tool_errors_name_their_param() {
    assert_eq!(param_of(with(json!({"tool_choice": "required"}))), "tool_choice");
    assert_eq!(param_of(with(json!({"tools": [weather_tool()], "tool_choice": "sometimes"}))), "tool_choice");
    assert_eq!(
        param_of(with(
            json!({"tools": [weather_tool()], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}})
        )),
        "tool_choice.type"
    );
    assert_eq!(param_of(with(json!({"tools": [{"type": "custom", "custom": {"name": "x"}}]}))), "tools[0].type");
    assert_eq!(param_of(with(json!({"tools": [{"type": "function"}]}))), "tools[0].function");
    assert_eq!(param_of(with(json!({"tools": [{"type": "function", "function": {}}]}))), "tools[0].function.name");
    assert_eq!(
        param_of(with(json!({"tools": [{"type": "function", "function": {"name": "f", "examples": []}}]}))),
        "tools[0].function.examples"
    );
    assert_eq!(param_of(with(json!({"tools": {"type": "function"}}))), "tools");
}

#[test]
fn parameters_without_effect_are_accepted_and_never_forwarded() {
    let baseline = parsed(with(json!({}))).request;
    let chat = parsed(with(json!({
        "seed": 7,
        "metadata": {"team": "search"},
        "store": false,
        "parallel_tool_calls": false,
        "logprobs": false,
        "top_logprobs": 0,
        "presence_penalty": 0,
        "frequency_penalty": 0.0,
        "logit_bias": {},
        "response_format": {"type": "text"},
        "modalities": ["text"],
        "n": 1,
        "user": "user-42",
        "service_tier": "auto",
        "prompt_cache_key": "k",
        "prompt_cache_retention": "24h",
        "safety_identifier": "hash",
        "functions": [],
        "function_call": "auto",
        "audio": null,
        "reasoning_effort": null,
        "stream": true,
        "stream_options": {"include_usage": true, "include_obfuscation": false},
    })));
    assert_eq!(chat.request, baseline);
    assert!(chat.stream && chat.include_usage);
    assert_eq!(chat.user.as_deref(), Some("user-42"));
}

#[test]
fn parameters_bedrock_cannot_honour_are_refused_by_name() {
    let cases = [
        ("n", json!(2)),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(3)),
        ("presence_penalty", json!(0.5)),
        ("frequency_penalty", json!(-1)),
        ("logit_bias", json!({"50256": -100})),
        ("response_format", json!({"type": "json_object"})),
        ("response_format", json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}})),
        ("audio", json!({"voice": "alloy", "format": "mp3"})),
        ("modalities", json!(["text", "audio"])),
        ("functions", json!([{"name": "f"}])),
        ("function_call", json!({"name": "f"})),
        ("prediction", json!({"type": "content", "content": "x"})),
        ("web_search_options", json!({})),
        ("reasoning_effort", json!("high")),
        ("verbosity", json!("low")),
        ("service_tier", json!("scale")),
    ];
    for (param, value) in cases {
        let err = error_of(with(json!({param: value})));
        assert!(matches!(&err, CompatError::Unsupported { param: p, .. } if p == param), "{param}: {err:?}");
        assert_eq!(err.label(), ErrorLabel::InvalidRequest);
    }
}

#[test]
fn an_unknown_parameter_is_refused_like_openai_does() {
    let err = error_of(with(json!({"temprature": 0.5})));
    assert_eq!(err, CompatError::Unrecognized { param: "temprature".into() });
    assert_eq!(err.to_string(), "Unrecognized request argument supplied: temprature");
    assert_eq!(err.param(), Some("temprature"));
}

#[test]
fn streaming_options_are_read_and_checked() {
    let chat = parsed(with(json!({"stream": true})));
    assert!(chat.stream && !chat.include_usage);
    assert_eq!(param_of(with(json!({"stream_options": {"include_usage": true}}))), "stream_options");
    assert_eq!(param_of(with(json!({"stream": true, "stream_options": {"usage": true}}))), "stream_options.usage");
    assert_eq!(param_of(with(json!({"stream": "yes"}))), "stream");
    assert_eq!(param_of(with(json!({"user": 42}))), "user");
}

#[test]
fn service_tiers_with_a_bedrock_twin_are_forwarded() {
    let tier = |tier: &str| parsed(with(json!({"service_tier": tier}))).request.service_tier.map(|t| t.kind);
    assert_eq!(tier("default"), None);
    assert_eq!(tier("flex").as_deref(), Some("flex"));
    assert_eq!(tier("priority").as_deref(), Some("priority"));
    assert_eq!(tier("fast").as_deref(), Some("priority"));
    assert_eq!(param_of(with(json!({"service_tier": "gold"}))), "service_tier");
}

#[test]
fn prompt_cache_breakpoints_become_cache_points_after_their_part() {
    let breakpoint = json!({"mode": "explicit"});
    let chat = parsed(json!({"model": "m", "messages": [
        {"role": "system", "content": [{"type": "text", "text": "Long instructions", "prompt_cache_breakpoint": breakpoint}]},
        {"role": "user", "content": [
            {"type": "text", "text": "Long document", "prompt_cache_breakpoint": breakpoint},
            {"type": "text", "text": "Question"},
        ]},
    ]}));
    assert_eq!(
        chat.request.system,
        vec![
            SystemContentBlock::Text("Long instructions".into()),
            SystemContentBlock::CachePoint(CachePointBlock { kind: CachePointType::Default, ttl: None }),
        ]
    );
    assert_eq!(
        chat.request.messages[0].content,
        vec![ContentBlock::Text("Long document".into()), cache_point(), ContentBlock::Text("Question".into())]
    );
    let many: Vec<Value> = (0..5)
        .map(|i| json!({"type": "text", "text": format!("part {i}"), "prompt_cache_breakpoint": breakpoint}))
        .collect();
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": many}]})),
        "prompt_cache_breakpoint"
    );
    assert_eq!(
        param_of(json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "x", "prompt_cache_breakpoint": {"mode": "implicit"}}
        ]}]})),
        "messages[0].content[0].prompt_cache_breakpoint.mode"
    );
}

#[test]
fn bodies_that_are_not_json_objects_are_told_apart() {
    let malformed = parse_chat_request(b"{\"model\": ").unwrap_err();
    assert!(matches!(malformed, CompatError::MalformedJson(_)));
    assert_eq!(malformed.label(), ErrorLabel::MalformedJson);
    assert_eq!(malformed.param(), None);
    let not_utf8 = parse_chat_request(b"{\"model\": \"\xff\"}").unwrap_err();
    assert!(matches!(not_utf8, CompatError::MalformedJson(m) if m.contains("UTF-8")));
    let array = parse_chat_request(b"[1]").unwrap_err();
    assert_eq!(
        (array.clone(), array.label(), array.param()),
        (CompatError::NotAnObject, ErrorLabel::InvalidRequest, None)
    );
    let duplicate =
        parse_chat_request(br#"{"model":"m","messages":[{"role":"user","role":"system","content":"x"}]}"#).unwrap_err();
    assert_eq!(duplicate.param(), Some("messages[0].role"));
}

fn text_answer() -> ConverseResponse {
    response(
        vec![ContentBlock::Text("Paris is the capital of France, on the Seine.".into())],
        "end_turn",
        usage(10, 20, Some(100), Some(50)),
    )
}

fn tool_answer() -> ConverseResponse {
    response(
        vec![
            ContentBlock::Text("Checking both.".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "tooluse_a".into(),
                name: "weather".into(),
                input: json!({"city": "Paris", "units": "metric", "days": [1, 2, 3], "detail": {"hourly": true}}),
            }),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "tooluse_b".into(),
                name: "weather".into(),
                input: json!({"city": "Rome"}),
            }),
        ],
        "tool_use",
        usage(30, 40, None, None),
    )
}

fn reasoning_answer() -> ConverseResponse {
    response(
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "The user wants a number; 6 times 7 is 42.".into(),
                signature: Some("c2lnbmF0dXJl".into()),
            })),
            ContentBlock::Text("42".into()),
        ],
        "end_turn",
        usage(5, 25, None, None),
    )
}

#[test]
fn a_text_answer_is_a_chat_completion() {
    let body = chat_completion(&answer(text_answer()), "chatcmpl-1", 1_700_000_000);
    assert_eq!(
        body,
        json!({
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": SERVED_MODEL,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": "Paris is the capital of France, on the Seine.", "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": {
                "prompt_tokens": 160,
                "completion_tokens": 20,
                "total_tokens": 180,
                "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 50},
            },
        })
    );
}

#[test]
fn a_tool_answer_carries_tool_calls_with_json_string_arguments() {
    let original = tool_answer();
    let body = chat_completion(&answer(original.clone()), "chatcmpl-2", 1);
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "Checking both.");
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0]["id"], "tooluse_a");
    assert_eq!(calls[0]["type"], "function");
    assert_eq!(calls[0]["function"]["name"], "weather");
    let arguments: Value = serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    let ContentBlock::ToolUse(first) = &original.output.message.content[1] else { panic!() };
    assert_eq!(arguments, first.input);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 30, "completion_tokens": 40, "total_tokens": 70, "prompt_tokens_details": {"cached_tokens": 0}})
    );

    let only_tools = response(original.output.message.content[1..].to_vec(), "tool_use", usage(1, 1, None, None));
    let body = chat_completion(&answer(only_tools), "chatcmpl-3", 1);
    assert_eq!(body["choices"][0]["message"]["content"], Value::Null);
}

#[test]
fn reasoning_is_not_part_of_the_content() {
    let body = chat_completion(&answer(reasoning_answer()), "chatcmpl-4", 1);
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "42");
    assert!(message.get("reasoning_content").is_none() && message.get("tool_calls").is_none());
}

#[test]
fn finish_reasons_follow_openais_vocabulary() {
    for (converse, openai) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("content_filtered", "content_filter"),
        ("guardrail_intervened", "content_filter"),
        ("malformed_model_output", "stop"),
        ("something_new", "stop"),
    ] {
        assert_eq!(finish_reason(converse), openai, "{converse}");
    }
}

fn encode(response: &ConverseResponse, include_usage: bool) -> Vec<Value> {
    let mut encoder = ChunkEncoder::new("chatcmpl-s", 1_700_000_001, "sonnet", include_usage);
    replayed(response).iter().flat_map(|event| encoder.push(event)).collect()
}

fn choice_chunks(chunks: &[Value]) -> Vec<&Value> {
    chunks.iter().filter(|c| !c["choices"].as_array().unwrap().is_empty()).collect()
}

fn streamed_text(chunks: &[Value]) -> String {
    choice_chunks(chunks).iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect()
}

#[test]
fn a_streamed_text_answer_concatenates_to_the_text() {
    let original = text_answer();
    let chunks = encode(&original, false);
    assert!(chunks.len() > 4, "chunked: {}", chunks.len());
    for chunk in &chunks {
        assert_eq!(chunk["id"], "chatcmpl-s");
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["created"], 1_700_000_001u64);
        assert_eq!(chunk["model"], "sonnet");
        assert!(chunk.get("usage").is_none(), "no usage field without include_usage");
        assert_eq!(chunk["choices"].as_array().unwrap().len(), 1);
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[1..].iter().all(|c| c["choices"][0]["delta"].get("role").is_none()));
    assert_eq!(streamed_text(&chunks), original.text());
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
}

#[test]
fn the_usage_chunk_comes_last_and_only_when_asked_for() {
    let chunks = encode(&text_answer(), true);
    let (last, rest) = chunks.split_last().unwrap();
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 160);
    assert_eq!(last["usage"]["completion_tokens"], 20);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
    assert!(rest.iter().all(|c| c.get("usage") == Some(&Value::Null)), "the other chunks carry usage: null");
    assert_eq!(rest.last().unwrap()["choices"][0]["finish_reason"], "stop");
}

#[test]
fn streamed_tool_calls_carry_index_id_and_arguments_that_concatenate_to_json() {
    let original = tool_answer();
    let chunks = encode(&original, false);
    assert_eq!(streamed_text(&chunks), "Checking both.");
    let calls: Vec<&Value> = choice_chunks(&chunks)
        .into_iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .map(|calls| {
            assert_eq!(calls.len(), 1);
            &calls[0]
        })
        .collect();
    let expected: Vec<&ToolUseBlock> = original
        .output
        .message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::ToolUse(t) => Some(t),
            _ => None,
        })
        .collect();
    for (index, tool) in expected.iter().enumerate() {
        let pieces: Vec<&&Value> = calls.iter().filter(|c| c["index"] == index).collect();
        let first = pieces[0];
        assert_eq!(first["id"], tool.tool_use_id.as_str());
        assert_eq!(first["type"], "function");
        assert_eq!(first["function"]["name"], tool.name.as_str());
        assert!(pieces[1..].iter().all(|p| p.get("id").is_none() && p["function"].get("name").is_none()));
        let arguments: String = pieces.iter().filter_map(|p| p["function"]["arguments"].as_str()).collect();
        assert_eq!(serde_json::from_str::<Value>(&arguments).unwrap(), tool.input);
    }
    assert!(calls.iter().filter(|c| c["index"] == 0).count() > 2, "the long arguments arrive in pieces");
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], "tool_calls");
}

#[test]
fn streamed_reasoning_is_left_out() {
    let chunks = encode(&reasoning_answer(), false);
    assert_eq!(streamed_text(&chunks), "42");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    for chunk in &chunks {
        let text = chunk.to_string();
        assert!(!text.contains("6 times 7") && !text.contains("c2lnbmF0dXJl"), "{text}");
    }
}

#[test]
fn error_bodies_follow_openais_shape() {
    assert_eq!(
        error_body(400, ErrorLabel::InvalidRequest, "Invalid value for 'temperature'", Some("temperature")),
        json!({"error": {
            "message": "Invalid value for 'temperature'",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "invalid_request",
        }})
    );
    for (status, label, kind) in [
        (401, ErrorLabel::Unauthenticated, "invalid_request_error"),
        (403, ErrorLabel::AccessDenied, "invalid_request_error"),
        (404, ErrorLabel::UnknownModel, "invalid_request_error"),
        (429, ErrorLabel::Throttled, "rate_limit_exceeded"),
        (429, ErrorLabel::QuotaExhausted, "rate_limit_exceeded"),
        (500, ErrorLabel::Internal, "server_error"),
        (503, ErrorLabel::Unavailable, "server_error"),
        (504, ErrorLabel::DeadlineExceeded, "server_error"),
    ] {
        let body = error_body(status, label, "m", None);
        assert_eq!(body["error"]["type"], kind, "{status}");
        assert_eq!(body["error"]["code"], label.as_str());
        assert_eq!(body["error"]["param"], Value::Null);
    }
}

#[test]
fn the_model_list_names_auto_the_tiers_and_every_catalog_model() {
    let catalog = Catalog::embedded().unwrap();
    let body = models(&catalog, 1_700_000_002);
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    let ids: Vec<&str> = data.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(&ids[..4], ["auto", "haiku", "sonnet", "opus"]);
    for model in catalog.models() {
        assert!(ids.contains(&model.model_id.as_str()), "{}", model.model_id);
        for profile in &model.profiles {
            let id = format!("{profile}.{}", model.model_id);
            assert!(ids.contains(&id.as_str()), "{id}");
        }
    }
    let profiles: usize = catalog.models().iter().map(|m| m.profiles.len()).sum();
    assert_eq!(ids.len(), 4 + catalog.models().len() + profiles);
    for entry in data {
        assert_eq!(entry["object"], "model");
        assert_eq!(entry["created"], 1_700_000_002u64);
        assert!(entry["owned_by"].is_string());
    }
}

#[test]
fn a_parsed_request_is_a_valid_converse_request_on_the_wire() {
    let chat = parsed(
        json!({"model": "sonnet", "max_tokens": 100, "tools": [weather_tool()], "tool_choice": "auto", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}, {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]},
        ]}),
    );
    let wire = serde_json::to_vec(&chat.request).unwrap();
    assert_eq!(crate::request::ConverseRequest::from_json(&wire).unwrap(), chat.request);
}

#[test]
fn an_answer_sent_back_as_the_sdk_gave_it_is_accepted() {
    // What `completion.choices[0].message.model_dump()` holds in openai 3.x.
    let echoed = json!({"role": "assistant", "content": "It is sunny.", "refusal": null, "annotations": [],
        "audio": null, "function_call": null, "tool_calls": null});
    let chat = parsed(json!({"model": "haiku", "messages": [
        {"role": "user", "content": "Weather?"}, echoed, {"role": "user", "content": "Thanks"}
    ]}));
    assert_eq!(chat.request.messages.len(), 3);
}
