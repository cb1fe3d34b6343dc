//! A documented, deterministic token estimator.
//!
//! Claude's tokenizer is not public, so exact counts are only available from Bedrock
//! (CountTokens). For quota reservations, the router's features and the emulator we need a
//! count that is cheap, stable and close: English prose averages about four characters per
//! token, code and non-Latin scripts fewer. The estimate is therefore:
//!
//! * text: one token per started run of 4 characters of each whitespace-separated word,
//!   plus one token per non-ASCII character beyond that (they rarely share tokens);
//! * every message: 4 tokens of framing; the system prompt: 3; every tool: 8 plus its JSON;
//! * images: 1,600 tokens (about a 1,092 x 1,092 picture); documents: their base64 length / 6.
//!
//! It never returns 0 for a non-empty request.

use crate::request::{
    BinarySource, ContentBlock, ConverseRequest, ReasoningContentBlock, SystemContentBlock, Tool, ToolResultContent,
};

const MESSAGE_OVERHEAD: u64 = 4;
const SYSTEM_OVERHEAD: u64 = 3;
const TOOL_OVERHEAD: u64 = 8;
const IMAGE_TOKENS: u64 = 1_600;

/// Estimated tokens of a piece of text.
pub fn estimate_text(text: &str) -> u64 {
    // ASCII text (nearly all prompts) takes a byte loop with the same result: a word is a run
    // of non-whitespace bytes, each started run of 4 is a token, and ASCII has no characters
    // beyond that. This keeps the estimate out of the router's microsecond budget.
    if text.is_ascii() {
        let mut tokens = 0u64;
        let mut run = 0u64;
        for &b in text.as_bytes() {
            if b.is_ascii_whitespace() || b == 0x0b {
                tokens += run.div_ceil(4);
                run = 0;
            } else {
                run += 1;
            }
        }
        return tokens + run.div_ceil(4);
    }
    text.split_whitespace()
        .map(|word| {
            let chars = word.chars().count() as u64;
            let non_ascii = word.chars().filter(|c| !c.is_ascii()).count() as u64;
            chars.div_ceil(4) + non_ascii.saturating_sub(chars.div_ceil(4))
        })
        .sum()
}

/// The estimate of a long text from its first `sample_bytes` bytes, scaled to its length:
/// within a few percent of [`estimate_text`] on uniform text, at a bounded cost. The router
/// uses it for expected costs, which are forecasts anyway; quotas use the exact estimate.
pub fn estimate_text_sampled(text: &str, sample_bytes: usize) -> u64 {
    if text.len() <= sample_bytes {
        return estimate_text(text);
    }
    // Cut at whitespace so the sample does not end inside a word.
    let cut = text.floor_char_boundary(sample_bytes);
    let cut = text[..cut].rfind(char::is_whitespace).filter(|&i| i > 0).unwrap_or(cut);
    let sample = estimate_text(&text[..cut]);
    (sample as f64 * text.len() as f64 / cut.max(1) as f64).round() as u64
}

/// [`estimate_request`] with every text estimated from a sample of at most `sample_bytes`.
pub fn estimate_request_sampled(request: &ConverseRequest, sample_bytes: usize) -> u64 {
    estimate_request_with(request, |text| estimate_text_sampled(text, sample_bytes))
}

/// Estimated input tokens of a whole request: system prompt, every message and the tools.
pub fn estimate_request(request: &ConverseRequest) -> u64 {
    estimate_request_with(request, estimate_text)
}

fn estimate_request_with(request: &ConverseRequest, estimate_text: impl Fn(&str) -> u64 + Copy) -> u64 {
    let system: u64 = request
        .system
        .iter()
        .map(|b| match b {
            SystemContentBlock::Text(t) => estimate_text(t),
            SystemContentBlock::CachePoint(_) => 0,
        })
        .sum();
    let system = if system > 0 { system + SYSTEM_OVERHEAD } else { 0 };
    let messages: u64 = request
        .messages
        .iter()
        .map(|m| MESSAGE_OVERHEAD + m.content.iter().map(|b| estimate_block(b, estimate_text)).sum::<u64>())
        .sum();
    let tools: u64 = request.tool_config.as_ref().map_or(0, |c| {
        c.tools
            .iter()
            .map(|t| match t {
                Tool::ToolSpec(spec) => {
                    TOOL_OVERHEAD
                        + estimate_text(&spec.name)
                        + spec.description.as_deref().map_or(0, estimate_text)
                        + estimate_json(&serde_json::to_value(&spec.input_schema).unwrap_or_default())
                }
                Tool::CachePoint(_) => 0,
            })
            .sum()
    });
    (system + messages + tools).max(1)
}

fn estimate_block(block: &ContentBlock, estimate_text: impl Fn(&str) -> u64 + Copy) -> u64 {
    match block {
        ContentBlock::Text(t) => estimate_text(t),
        ContentBlock::Image(_) => IMAGE_TOKENS,
        ContentBlock::Document(doc) => estimate_source(&doc.source),
        ContentBlock::ToolUse(t) => estimate_text(&t.name) + estimate_json(&t.input),
        ContentBlock::ToolResult(r) => r
            .content
            .iter()
            .map(|c| match c {
                ToolResultContent::Text(t) => estimate_text(t),
                ToolResultContent::Json(v) => estimate_json(v),
                ToolResultContent::Image(_) => IMAGE_TOKENS,
                ToolResultContent::Document(d) => estimate_source(&d.source),
            })
            .sum(),
        ContentBlock::CachePoint(_) => 0,
        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) => estimate_text(&r.text),
        ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(b)) => (b.len() as u64).div_ceil(6),
    }
}

fn estimate_source(source: &BinarySource) -> u64 {
    match source {
        BinarySource::Bytes(b64) => (b64.len() as u64).div_ceil(6),
        BinarySource::S3Location(_) => IMAGE_TOKENS,
    }
}

fn estimate_json(value: &serde_json::Value) -> u64 {
    // Punctuation in JSON tokenizes densely: count the compact text as prose at 3 chars/token.
    (value.to_string().chars().count() as u64).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_is_about_four_characters_per_token() {
        assert_eq!(estimate_text(""), 0);
        assert_eq!(estimate_text("hi"), 1);
        assert_eq!(estimate_text("hello world"), 4);
        let para = "The quick brown fox jumps over the lazy dog. ".repeat(20);
        let tokens = estimate_text(&para);
        let chars = para.len() as u64;
        assert!(tokens * 3 <= chars && chars <= tokens * 5, "{tokens} tokens for {chars} chars");
    }

    #[test]
    fn non_latin_text_costs_more_per_character() {
        assert!(estimate_text("こんにちは世界") >= 7);
    }

    #[test]
    fn request_estimate_counts_every_part() {
        let body = serde_json::json!({
            "system": [{"text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"text": "hello world"}]}]
        });
        let request = ConverseRequest::from_json(body.to_string().as_bytes()).unwrap();
        // system: 1+1+2 = 4 + 3 overhead; message: 4 + 4.
        assert_eq!(estimate_request(&request), 7 + 8);
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_general_rule() {
        let general = |text: &str| -> u64 {
            text.split_whitespace()
                .map(|w| {
                    let chars = w.chars().count() as u64;
                    let non_ascii = w.chars().filter(|c| !c.is_ascii()).count() as u64;
                    chars.div_ceil(4) + non_ascii.saturating_sub(chars.div_ceil(4))
                })
                .sum()
        };
        for text in ["", "a", "  two words\there\n", "fn main() {\x0b println!(\"x\"); }\r\n\x0c", "abcdefgh ijklm"] {
            assert_eq!(estimate_text(text), general(text), "{text:?}");
        }
    }

    #[test]
    fn samples_are_exact_when_short_and_close_when_long() {
        assert_eq!(estimate_text_sampled("short text", 100), estimate_text("short text"));
        let long = "The quick brown fox jumps over the lazy dog. ".repeat(500);
        let exact = estimate_text(&long) as f64;
        let sampled = estimate_text_sampled(&long, 2_048) as f64;
        assert!((sampled - exact).abs() / exact < 0.02, "{sampled} vs {exact}");
    }
}
