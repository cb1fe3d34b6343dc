//! The grading request and the strict reading of its answer.
//!
//! The grader is forced to call one tool whose input schema is the grade, so the answer is
//! structured by Bedrock rather than parsed out of prose. The reading is strict all the same:
//! anything but exactly `{score: integer 1..10, reason: string}` in that tool call is a missing
//! grade, never a guessed one.

use serde_json::{Value, json};

use crate::request::{
    ContentBlock, ConverseRequest, ConverseResponse, InferenceConfig, Message, Role, SpecificTool, SystemContentBlock,
    Tool, ToolChoice, ToolConfig, ToolInputSchema, ToolSpec,
};

pub const GRADE_TOOL: &str = "record_grade";

const GRADER_SYSTEM: &str = "You grade answers. You are given a conversation, a reference answer (your own) and a \
candidate answer. Score how well the candidate answers the last user turn, compared with the reference: 10 means \
as good as the reference, 1 means useless or wrong. Call the record_grade tool exactly once.";

/// The grade's JSON schema, as the tool declares it.
pub fn grade_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "reason": {"type": "string"}
        },
        "required": ["score", "reason"],
        "additionalProperties": false
    })
}

/// The grader's request for one candidate answer.
pub fn grading_request(system: &str, cell: &str, reference: &str, candidate: &str) -> ConverseRequest {
    let mut prompt = String::new();
    if !system.is_empty() {
        prompt.push_str("<system>\n");
        prompt.push_str(system);
        prompt.push_str("\n</system>\n");
    }
    for (tag, text) in [("conversation", cell), ("reference_answer", reference), ("candidate_answer", candidate)] {
        prompt.push_str(&format!("<{tag}>\n{text}\n</{tag}>\n"));
    }
    text_request(
        vec![Message { role: Role::User, content: vec![ContentBlock::Text(prompt)] }],
        vec![SystemContentBlock::Text(GRADER_SYSTEM.to_owned())],
        InferenceConfig { max_tokens: Some(512), temperature: Some(0.0), ..Default::default() },
        Some(ToolConfig {
            tools: vec![Tool::ToolSpec(ToolSpec {
                name: GRADE_TOOL.to_owned(),
                description: Some("Records the grade of the candidate answer.".to_owned()),
                input_schema: ToolInputSchema::Json(grade_schema()),
            })],
            tool_choice: Some(ToolChoice::Tool(SpecificTool { name: GRADE_TOOL.to_owned() })),
        }),
    )
}

/// A batch record's `modelInput`: the job names the model, so no `modelId`.
pub(crate) fn text_request(
    messages: Vec<Message>,
    system: Vec<SystemContentBlock>,
    inference: InferenceConfig,
    tools: Option<ToolConfig>,
) -> ConverseRequest {
    ConverseRequest {
        model_id: None,
        messages,
        system,
        inference_config: Some(inference),
        tool_config: tools,
        additional_model_request_fields: None,
        additional_model_response_field_paths: Vec::new(),
        guardrail_config: None,
        prompt_variables: Default::default(),
        request_metadata: Default::default(),
        performance_config: None,
        service_tier: None,
    }
}

/// Why a grade is missing: the reason goes to the log, the dataset only says `null`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GradeError {
    #[error("the grader called no {GRADE_TOOL} tool")]
    NoToolCall,
    #[error("the grader called {GRADE_TOOL} more than once")]
    SeveralCalls,
    #[error("the grade is not an object of exactly `score` and `reason`")]
    Shape,
    #[error("the score is not an integer from 1 to 10")]
    Score,
}

/// The score of a grading answer, strictly.
pub fn parse_grade(response: &ConverseResponse) -> Result<u8, GradeError> {
    let mut calls = response.output.message.content.iter().filter_map(|block| match block {
        ContentBlock::ToolUse(call) if call.name == GRADE_TOOL => Some(&call.input),
        _ => None,
    });
    let input = calls.next().ok_or(GradeError::NoToolCall)?;
    if calls.next().is_some() {
        return Err(GradeError::SeveralCalls);
    }
    let Value::Object(fields) = input else {
        return Err(GradeError::Shape);
    };
    if fields.len() != 2 || !fields.get("reason").is_some_and(Value::is_string) {
        return Err(GradeError::Shape);
    }
    // `as_u64` is `None` for 7.0 and for negatives: a float is not an integer grade.
    let score = fields.get("score").and_then(Value::as_u64).ok_or(GradeError::Score)?;
    match u8::try_from(score) {
        Ok(score @ 1..=10) => Ok(score),
        _ => Err(GradeError::Score),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::ToolUseBlock;

    fn answered(content: Vec<ContentBlock>) -> ConverseResponse {
        serde_json::from_value(json!({
            "output": {"message": {"role": "assistant", "content": content}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
            "metrics": {"latencyMs": 0}
        }))
        .unwrap()
    }

    fn call(input: Value) -> ContentBlock {
        ContentBlock::ToolUse(ToolUseBlock { tool_use_id: "t".into(), name: GRADE_TOOL.into(), input })
    }

    #[test]
    fn a_well_formed_grade_is_read() {
        assert_eq!(parse_grade(&answered(vec![call(json!({"score": 7, "reason": "close"}))])), Ok(7));
        assert_eq!(parse_grade(&answered(vec![call(json!({"score": 1, "reason": ""}))])), Ok(1));
        assert_eq!(parse_grade(&answered(vec![call(json!({"score": 10, "reason": "same"}))])), Ok(10));
    }

    #[test]
    fn anything_else_is_missing_never_guessed() {
        let cases = [
            (vec![ContentBlock::Text("score: 7".into())], GradeError::NoToolCall),
            (vec![call(json!({"score": 0, "reason": "r"}))], GradeError::Score),
            (vec![call(json!({"score": 11, "reason": "r"}))], GradeError::Score),
            (vec![call(json!({"score": 7.0, "reason": "r"}))], GradeError::Score),
            (vec![call(json!({"score": "7", "reason": "r"}))], GradeError::Score),
            (vec![call(json!({"score": -3, "reason": "r"}))], GradeError::Score),
            (vec![call(json!({"score": 7}))], GradeError::Shape),
            (vec![call(json!({"score": 7, "reason": 3}))], GradeError::Shape),
            (vec![call(json!({"score": 7, "reason": "r", "extra": 1}))], GradeError::Shape),
            (vec![call(json!([7]))], GradeError::Shape),
            (
                vec![call(json!({"score": 7, "reason": "r"})), call(json!({"score": 8, "reason": "r"}))],
                GradeError::SeveralCalls,
            ),
        ];
        for (content, expected) in cases {
            assert_eq!(parse_grade(&answered(content.clone())), Err(expected), "{content:?}");
        }
    }

    #[test]
    fn the_request_forces_the_grade_tool_and_is_valid() {
        let request = grading_request("be brief", r#"[{"role":"user","content":"q"}]"#, "ref", "cand");
        request.validate().unwrap();
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(json["toolConfig"]["toolChoice"]["tool"]["name"], GRADE_TOOL);
        assert_eq!(
            json["toolConfig"]["tools"][0]["toolSpec"]["inputSchema"]["json"]["required"],
            json!(["score", "reason"])
        );
        let text = json["messages"][0]["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("<reference_answer>\nref\n") && text.contains("<candidate_answer>\ncand\n"));
    }
}
