//! Answers to translate, as the use case would hand them over.

use std::time::Duration;

use crate::request::{ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, Message, Role, TokenUsage};
use crate::service::{Answer, CacheReport, CacheResult};

pub fn usage(input: i64, output: i64, cache_read: i64, cache_write: i64) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: input + output + cache_read + cache_write,
        cache_read_input_tokens: Some(cache_read),
        cache_write_input_tokens: Some(cache_write),
        cache_details: Vec::new(),
    }
}

pub fn response(content: Vec<ContentBlock>, stop: &str, usage: TokenUsage) -> ConverseResponse {
    ConverseResponse {
        output: ConverseOutput { message: Message { role: Role::Assistant, content } },
        stop_reason: stop.into(),
        usage,
        metrics: ConverseMetrics { latency_ms: 300 },
        additional_model_response_fields: None,
        trace: None,
        performance_config: None,
        service_tier: None,
    }
}

pub fn answer(response: ConverseResponse) -> Answer {
    Answer {
        response,
        requested_model: "haiku".into(),
        model_id: "us.anthropic.claude-haiku-4-5-20251001-v1:0".into(),
        cost_usd: Some(0.001),
        latency: Duration::from_millis(320),
        cache: CacheReport {
            result: CacheResult::Miss,
            key: None,
            bypass_reason: None,
            saved_usd: None,
            age_seconds: None,
            ttl_seconds: None,
            write: None,
            error: None,
            coalesced: false,
        },
        routing: None,
        hops: Vec::new(),
        admission: None,
    }
}
