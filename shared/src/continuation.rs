//! Continuing an answer cut at a `maxTokens` the gateway chose.
//!
//! A request that gives no `maxTokens` is sent with a learned one ([`crate::outputs`]) so that
//! it reserves little quota. When the answer stops at that limit, the gateway asks again with
//! the text so far as the start of the assistant's reply (a prefill), and joins the parts, so
//! the caller receives the whole answer, as if no limit had been sent. Every call is priced
//! and counted: usage and latency are the sums of the calls.
//!
//! Only answers made of text are continued: a cut tool call or reasoning block cannot be
//! resumed from a prefill. Anthropic's models refuse a prefill that ends in whitespace, so the
//! prefill is the text without it, and the continuation starts with it again.

use crate::request::{ContentBlock, ConverseRequest, ConverseResponse, InferenceConfig, Message, Role};

/// Bedrock's stop reason for an answer cut at `maxTokens`.
pub const MAX_TOKENS_STOP: &str = "max_tokens";

/// The text to continue from, when `response` was cut at `maxTokens` and is made of text.
pub fn continuable(response: &ConverseResponse) -> Option<&str> {
    if response.stop_reason != MAX_TOKENS_STOP {
        return None;
    }
    match response.output.message.content.as_slice() {
        [ContentBlock::Text(text)] => Some(text.trim_end()).filter(|t| !t.is_empty()),
        _ => None,
    }
}

/// The request that continues `original` from `text`, allowed `max_tokens` more.
pub fn next_request(original: &ConverseRequest, text: &str, max_tokens: u32) -> ConverseRequest {
    let mut next = original.clone();
    next.messages.push(Message { role: Role::Assistant, content: vec![ContentBlock::Text(text.to_owned())] });
    next.inference_config.get_or_insert_with(InferenceConfig::default).max_tokens = Some(max_tokens);
    next
}

/// Joins a continuation to the answer so far: one text, summed usage and latency, the last
/// call's stop reason. Returns whether the continuation could be joined (it is text).
pub fn join(answer: &mut ConverseResponse, continuation: ConverseResponse) -> bool {
    let [ContentBlock::Text(more)] = continuation.output.message.content.as_slice() else {
        return false;
    };
    let Some(ContentBlock::Text(text)) = answer.output.message.content.first_mut() else {
        return false;
    };
    text.truncate(text.trim_end().len());
    text.push_str(more);
    let (total, part) = (&mut answer.usage, &continuation.usage);
    total.input_tokens += part.input_tokens;
    total.output_tokens += part.output_tokens;
    total.total_tokens += part.total_tokens;
    let add = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
    };
    total.cache_read_input_tokens = add(total.cache_read_input_tokens, part.cache_read_input_tokens);
    total.cache_write_input_tokens = add(total.cache_write_input_tokens, part.cache_write_input_tokens);
    for detail in &part.cache_details {
        match total.cache_details.iter_mut().find(|d| d.ttl == detail.ttl) {
            Some(existing) => existing.input_tokens += detail.input_tokens,
            None => total.cache_details.push(detail.clone()),
        }
    }
    answer.metrics.latency_ms += continuation.metrics.latency_ms;
    answer.stop_reason = continuation.stop_reason;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn response(text: &str, stop: &str, input: i64, output: i64) -> ConverseResponse {
        serde_json::from_value(json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
            "metrics": {"latencyMs": 100}
        }))
        .unwrap()
    }

    #[test]
    fn only_text_cut_at_max_tokens_is_continued_and_trailing_whitespace_is_left_out() {
        assert_eq!(continuable(&response("The answer is ", "max_tokens", 1, 1)), Some("The answer is"));
        assert_eq!(continuable(&response("Done.", "end_turn", 1, 1)), None);
        assert_eq!(continuable(&response("   ", "max_tokens", 1, 1)), None);
        let mut tool = response("x", "max_tokens", 1, 1);
        tool.output.message.content = vec![ContentBlock::Text("a".into()), ContentBlock::Text("b".into())];
        assert_eq!(continuable(&tool), None);
    }

    #[test]
    fn the_next_request_prefills_the_text_and_sets_the_limit() {
        let original: ConverseRequest = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": [{"text": "Tell me"}]}],
            "inferenceConfig": {"temperature": 0.5}
        }))
        .unwrap();
        let next = next_request(&original, "Once upon", 300);
        assert_eq!(next.messages.len(), 2);
        assert_eq!(
            next.messages[1],
            Message { role: Role::Assistant, content: vec![ContentBlock::Text("Once upon".into())] }
        );
        assert_eq!(next.max_tokens(), Some(300));
        assert_eq!(next.inference_config.as_ref().and_then(|c| c.temperature), Some(0.5));
        assert_eq!(original.messages.len(), 1);
    }

    #[test]
    fn joined_parts_read_as_one_answer_with_the_usage_of_every_call() {
        let mut answer = response("Once upon ", "max_tokens", 10, 2);
        answer.usage.cache_read_input_tokens = Some(4);
        assert!(join(&mut answer, response(" a time.", "end_turn", 12, 3)));
        assert_eq!(answer.text(), "Once upon a time.");
        assert_eq!(answer.stop_reason, "end_turn");
        assert_eq!((answer.usage.input_tokens, answer.usage.output_tokens, answer.usage.total_tokens), (22, 5, 27));
        assert_eq!(answer.usage.cache_read_input_tokens, Some(4));
        assert_eq!(answer.usage.cache_write_input_tokens, None);
        assert_eq!(answer.metrics.latency_ms, 200);
    }
}
