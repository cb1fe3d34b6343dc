//! The demo's streaming section: the same prompts streamed through `invoke-stream` in each of
//! its three APIs, each asked twice (a MISS answered live, then a HIT replayed from the cache),
//! with the time to first token the client saw and the one the gateway reports.

use std::time::Duration;

use serde_json::{Value, json};

use crate::http::{self, StreamTiming};
use crate::stack::{self, Stack};

/// The tenant of the streamed requests: the per-tenant figures stay the workload's.
pub const TENANT: &str = "streaming";

const PROMPTS: [&str; 4] = [
    "Explain what time to first token means for a chat application.",
    "Write a short paragraph on why caches need a time to live.",
    "List four ways to make an API gateway fail safe.",
    "Describe response streaming over server-sent events in three sentences.",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Api {
    Converse,
    OpenAi,
    Anthropic,
}

impl Api {
    const ALL: [Api; 3] = [Api::Converse, Api::OpenAi, Api::Anthropic];

    fn name(self) -> &'static str {
        match self {
            Api::Converse => "/v1/converse-stream",
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        }
    }

    fn body(self, prompt: &str) -> Value {
        match self {
            Api::Converse => json!({
                "modelId": "sonnet",
                "messages": [{"role": "user", "content": [{"text": prompt}]}],
                "inferenceConfig": {"maxTokens": 300, "temperature": 0}
            }),
            Api::OpenAi => json!({
                "model": "sonnet", "stream": true, "stream_options": {"include_usage": true},
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 300, "temperature": 0
            }),
            Api::Anthropic => json!({
                "model": "sonnet", "stream": true, "max_tokens": 300, "temperature": 0,
                "messages": [{"role": "user", "content": prompt}]
            }),
        }
    }

    /// The bytes that announce the first piece of content in this API's stream.
    fn first_content(self) -> &'static [u8] {
        match self {
            Api::Converse => b"event: contentBlockDelta",
            Api::OpenAi => b"\"content\":\"",
            Api::Anthropic => b"event: content_block_delta",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Streamed {
    api: Api,
    cache: Option<String>,
    ttft: Option<Duration>,
    total: Duration,
    /// What the gateway's own `gateway` event reported (Converse only).
    reported_ttft: Option<Duration>,
    error: Option<String>,
}

#[derive(Debug, Default)]
pub struct StreamSection {
    pub streamed: Vec<Streamed>,
    pub setup_error: Option<String>,
}

pub fn run(stack: &Stack) -> StreamSection {
    let Some(base) = stack.function_url(stack::STREAM_FUNCTION_NAME, "") else {
        return StreamSection { setup_error: Some("cargo lambda watch is not running".into()), ..Default::default() };
    };
    let agent = http::agent(Duration::from_secs(120));
    let headers = [("content-type", "application/json"), ("x-tenant-id", TENANT)];
    let mut section = StreamSection::default();
    for prompt in PROMPTS {
        for api in Api::ALL {
            // The same prompt in another API is another request: each API's first ask is a MISS.
            let prompt = format!("{prompt} ({})", api.name());
            let url = format!("{base}{}", api.name());
            for _ in 0..2 {
                let body = api.body(&prompt).to_string();
                section.streamed.push(match http::post_streamed(&agent, &url, &headers, &body, api.first_content()) {
                    Ok(timing) => streamed(api, &timing),
                    Err(e) => Streamed {
                        api,
                        cache: None,
                        ttft: None,
                        total: Duration::ZERO,
                        reported_ttft: None,
                        error: Some(e.to_string()),
                    },
                });
            }
        }
    }
    section
}

fn streamed(api: Api, timing: &StreamTiming) -> Streamed {
    let text = String::from_utf8_lossy(&timing.body);
    let failed_in_stream = text.contains("event: error") || text.contains("data: {\"error\"");
    let error = if timing.status != 200 {
        Some(format!("HTTP {}: {text}", timing.status))
    } else if failed_in_stream || timing.first_token.is_none() {
        Some(format!("the stream carried no content or ended with an error: {text}"))
    } else {
        None
    };
    Streamed {
        api,
        cache: timing.header("x-cache").map(str::to_owned),
        ttft: timing.first_token,
        total: timing.total,
        reported_ttft: timing.reported_ttft(),
        error,
    }
}

fn median_ms(mut values: Vec<Duration>) -> Option<f64> {
    values.sort();
    values.get(values.len().checked_sub(1)? / 2).map(|d| d.as_secs_f64() * 1000.0)
}

impl StreamSection {
    /// Every request streamed content, and each prompt was a MISS and then a HIT.
    pub fn passed(&self) -> bool {
        self.setup_error.is_none()
            && !self.streamed.is_empty()
            && self.streamed.iter().all(|s| s.error.is_none())
            && self.streamed.chunks(2).all(|pair| {
                pair.len() == 2 && pair[0].cache.as_deref() == Some("MISS") && pair[1].cache.as_deref() == Some("HIT")
            })
    }

    pub fn requests(&self) -> u64 {
        self.streamed.len() as u64
    }

    pub fn hits(&self) -> u64 {
        self.streamed.iter().filter(|s| s.cache.as_deref() == Some("HIT")).count() as u64
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Some(e) = &self.setup_error {
            return format!("Streaming: not run: {e}\n");
        }
        out.push_str(&format!(
            "Streaming (invoke-stream, {} requests: each prompt a MISS, then a HIT replayed as a stream)\n",
            self.streamed.len()
        ));
        out.push_str(&format!(
            "  {:<22} {:>6} {:>16} {:>16} {:>12}\n",
            "API", "cache", "TTFT p50 (client)", "TTFT (gateway)", "total p50"
        ));
        for api in Api::ALL {
            for cache in ["MISS", "HIT"] {
                let rows: Vec<&Streamed> =
                    self.streamed.iter().filter(|s| s.api == api && s.cache.as_deref() == Some(cache)).collect();
                let ttft = median_ms(rows.iter().filter_map(|s| s.ttft).collect());
                let total = median_ms(rows.iter().map(|s| s.total).collect());
                let reported = median_ms(rows.iter().filter_map(|s| s.reported_ttft).collect());
                let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} ms"));
                out.push_str(&format!(
                    "  {:<22} {:>6} {:>16} {:>16} {:>12}\n",
                    api.name(),
                    cache,
                    ms(ttft),
                    ms(reported),
                    ms(total)
                ));
            }
        }
        for s in self.streamed.iter().filter(|s| s.error.is_some()) {
            out.push_str(&format!("  FAILED {}: {}\n", s.api.name(), s.error.as_deref().unwrap_or_default()));
        }
        out
    }
}
