use serde_json::json;

use super::*;
use crate::request::{ReasoningContentBlock, ReasoningText};

fn response(content: Vec<ContentBlock>, stop: &str) -> ConverseResponse {
    ConverseResponse {
        output: ConverseOutput { message: Message { role: Role::Assistant, content } },
        stop_reason: stop.into(),
        usage: TokenUsage { input_tokens: 12, output_tokens: 30, total_tokens: 42, ..TokenUsage::default() },
        metrics: ConverseMetrics { latency_ms: 640 },
        additional_model_response_fields: None,
        trace: None,
        performance_config: None,
        service_tier: None,
    }
}

fn assemble(events: &[StreamEvent]) -> Result<ConverseResponse, StreamError> {
    let mut assembler = Assembler::new();
    for event in events {
        assembler.push(event)?;
    }
    assembler.finish()
}

#[test]
fn a_replayed_answer_assembles_back_to_itself() {
    let original = response(
        vec![
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                text: "The user greets; answer briefly.".into(),
                signature: Some("c2ln".into()),
            })),
            ContentBlock::Text("  Hello there, how are\nyou doing today?  ".into()),
            ContentBlock::ToolUse(ToolUseBlock {
                tool_use_id: "tooluse_1".into(),
                name: "weather".into(),
                input: json!({"city": "Zürich", "days": [1, 2, 3], "units": "metric"}),
            }),
        ],
        "tool_use",
    );
    let events = replay(&original);
    assert_eq!(assemble(&events), Ok(original));
    let deltas = events.iter().filter(|e| matches!(e, StreamEvent::ContentBlockDelta(_))).count();
    assert!(deltas > 6, "chunked like a live answer, not one delta per block: {deltas}");
}

#[test]
fn an_empty_text_is_still_one_block() {
    let original = response(vec![ContentBlock::Text(String::new())], "end_turn");
    assert_eq!(assemble(&replay(&original)), Ok(original));
}

#[test]
fn events_read_from_bedrocks_wire_names_and_bodies() {
    let wire = [
        ("messageStart", json!({"role": "assistant"})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "Hi "}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": "there"}})),
        ("contentBlockStop", json!({"contentBlockIndex": 0})),
        ("contentBlockStart", json!({"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t1", "name": "f"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"a\":"}}})),
        ("contentBlockDelta", json!({"contentBlockIndex": 1, "delta": {"toolUse": {"input": "1}"}}})),
        ("contentBlockStop", json!({"contentBlockIndex": 1})),
        ("messageStop", json!({"stopReason": "tool_use"})),
        (
            "metadata",
            json!({"usage": {"inputTokens": 5, "outputTokens": 7, "totalTokens": 12}, "metrics": {"latencyMs": 90}}),
        ),
    ];
    let events: Vec<StreamEvent> =
        wire.iter().map(|(name, body)| StreamEvent::from_parts(name, body.clone())).collect::<Result<_, _>>().unwrap();
    for ((name, body), event) in wire.iter().zip(&events) {
        assert_eq!(event.event_type(), *name);
        assert_eq!(&event.payload(), body);
    }
    let answer = assemble(&events).unwrap();
    assert_eq!(answer.text(), "Hi there");
    assert_eq!(answer.stop_reason, "tool_use");
    assert_eq!(answer.usage.output_tokens, 7);
    let ContentBlock::ToolUse(tool) = &answer.output.message.content[1] else { panic!("{answer:?}") };
    assert_eq!(tool.input, json!({"a": 1}));
}

#[test]
fn a_cut_stream_keeps_what_was_generated_and_has_no_answer() {
    let events = replay(&response(vec![ContentBlock::Text("one two three four five six seven".into())], "end_turn"));
    let mut assembler = Assembler::new();
    for event in &events[..3] {
        assembler.push(event).unwrap();
    }
    assert!(!assembler.is_complete());
    assert_eq!(assembler.finish(), Err(StreamError::Incomplete("messageStop")));
    assert_eq!(assembler.message().unwrap().content, vec![ContentBlock::Text("one two three four five six ".into())]);
}

#[test]
fn events_out_of_grammar_are_refused() {
    let start = StreamEvent::MessageStart(MessageStart { role: Role::Assistant });
    let text = |i| {
        StreamEvent::ContentBlockDelta(ContentBlockDelta { content_block_index: i, delta: Delta::Text("x".into()) })
    };
    let tool = StreamEvent::ContentBlockDelta(ContentBlockDelta {
        content_block_index: 0,
        delta: Delta::ToolUse(ToolUseDelta { input: "{".into() }),
    });
    let stop = StreamEvent::MessageStop(MessageStop {
        stop_reason: "end_turn".into(),
        additional_model_response_fields: None,
    });
    let metadata = StreamEvent::Metadata(StreamMetadata {
        usage: TokenUsage::default(),
        metrics: ConverseMetrics::default(),
        trace: None,
        performance_config: None,
        service_tier: None,
    });
    let refused = |events: &[&StreamEvent]| {
        let mut assembler = Assembler::new();
        events.iter().try_for_each(|e| assembler.push(e)).is_err()
    };
    assert!(refused(&[&text(0)]), "a delta before messageStart");
    assert!(refused(&[&start, &start]), "two messageStarts");
    assert!(refused(&[&start, &tool]), "tool input without its start");
    assert!(refused(&[&start, &text(0), &tool]), "a tool delta into a text block");
    assert!(refused(&[&start, &metadata]), "metadata before messageStop");
    assert!(refused(&[&start, &stop, &metadata, &text(1)]), "anything after metadata");
    assert!(!refused(&[&start, &text(0), &text(1), &stop, &metadata]));
}

#[test]
fn bad_tool_input_is_named() {
    let mut original = response(
        vec![ContentBlock::ToolUse(ToolUseBlock { tool_use_id: "t".into(), name: "f".into(), input: json!({}) })],
        "tool_use",
    );
    let mut events = replay(&original);
    for event in &mut events {
        if let StreamEvent::ContentBlockDelta(ContentBlockDelta { delta: Delta::ToolUse(piece), .. }) = event {
            piece.input = "{\"a\":".into();
        }
    }
    assert!(matches!(assemble(&events), Err(StreamError::ToolInput { name, .. }) if name == "f"));
    original.output.message.content.clear();
    assert_eq!(assemble(&replay(&original)), Ok(original));
}

#[test]
fn word_chunks_concatenate_to_the_text() {
    for text in ["", " ", "a", "a b c d e f g", "  lead and trail  ", "ünï cødé\n\twörds here", "one\n\n\ntwo"] {
        let pieces: Vec<&str> = word_chunks(text, 3).collect();
        assert_eq!(pieces.concat(), text);
        assert!(!pieces.is_empty());
    }
    assert_eq!(word_chunks("a b c d e", 2).collect::<Vec<_>>(), ["a b ", "c d ", "e"]);
    assert_eq!(char_chunks("äbcdé", 2).collect::<Vec<_>>(), ["äb", "cd", "é"]);
}
