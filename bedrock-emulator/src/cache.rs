//! Prompt caching, simulated enough for usage figures to behave like Bedrock's.
//!
//! Each `cachePoint` marks the end of a prefix in Bedrock's cache order: tools, then system,
//! then messages. A request reads the longest prefix that an earlier request of the same model
//! cached and is still alive, and writes the rest up to its last checkpoint; each segment is
//! written with the TTL of the checkpoint that ends it. A hit refreshes the TTL, as Bedrock's
//! does. Token counts of prefixes come from the same estimator as the whole request, so
//! `input + cacheRead + cacheWrite` always equals the request's estimate.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use gateway_core::request::{CachePointBlock, CacheTtl, ContentBlock, ConverseRequest, SystemContentBlock, Tool};
use gateway_core::tokens::estimate_request;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheUsage {
    /// Whether the request had any checkpoint; Bedrock reports cache fields only then.
    pub used: bool,
    pub read: u64,
    pub write: u64,
    /// Written tokens per TTL, one-hour first as Bedrock sorts them, zero entries omitted.
    pub write_details: Vec<(CacheTtl, u64)>,
}

#[derive(Debug, Default)]
pub struct PromptCache {
    /// Prefix hash to expiry.
    entries: Mutex<HashMap<[u8; 32], Instant>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Checkpoint {
    hash: [u8; 32],
    tokens: u64,
    ttl: CacheTtl,
}

impl PromptCache {
    /// Looks the request's prefixes up, records them, and says what was read and written.
    pub fn apply(&self, model_id: &str, request: &ConverseRequest, now: Instant) -> CacheUsage {
        let checkpoints = checkpoints(model_id, request);
        if checkpoints.is_empty() {
            return CacheUsage::default();
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.retain(|_, expiry| *expiry > now);
        let hit = checkpoints.iter().rposition(|c| entries.contains_key(&c.hash));
        let read = hit.map_or(0, |k| checkpoints[k].tokens);
        let mut covered = read;
        let (mut one_hour, mut five_minutes) = (0, 0);
        for checkpoint in &checkpoints[hit.map_or(0, |k| k + 1)..] {
            let segment = checkpoint.tokens.saturating_sub(covered);
            covered = covered.max(checkpoint.tokens);
            match checkpoint.ttl {
                CacheTtl::OneHour => one_hour += segment,
                CacheTtl::FiveMinutes => five_minutes += segment,
            }
        }
        for checkpoint in &checkpoints {
            entries.insert(checkpoint.hash, now + ttl_duration(checkpoint.ttl));
        }
        let write_details = [(CacheTtl::OneHour, one_hour), (CacheTtl::FiveMinutes, five_minutes)]
            .into_iter()
            .filter(|(_, tokens)| *tokens > 0)
            .collect();
        CacheUsage { used: true, read, write: one_hour + five_minutes, write_details }
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Adds one element to a prefix hash; the separator keeps `["ab","c"]` and `["a","bc"]` apart.
fn feed(hasher: &mut Sha256, value: serde_json::Result<Vec<u8>>) {
    hasher.update(value.unwrap_or_default());
    hasher.update([0u8]);
}

fn ttl_duration(ttl: CacheTtl) -> Duration {
    match ttl {
        CacheTtl::FiveMinutes => Duration::from_secs(5 * 60),
        CacheTtl::OneHour => Duration::from_secs(60 * 60),
    }
}

fn ttl_of(block: &CachePointBlock) -> CacheTtl {
    block.ttl.unwrap_or(CacheTtl::FiveMinutes)
}

/// Every checkpoint that closes a non-empty prefix, in cache order, with the prefix's hash
/// (which includes the model: caches are per model) and estimated tokens.
fn checkpoints(model_id: &str, request: &ConverseRequest) -> Vec<Checkpoint> {
    let mut hasher = Sha256::new();
    hasher.update(model_id.as_bytes());
    let mut content_seen = false;
    let mut found = Vec::new();
    let mut close = |hasher: &Sha256, prefix: ConverseRequest, ttl: CacheTtl, content_seen: bool| {
        if content_seen {
            found.push(Checkpoint { hash: hasher.clone().finalize().into(), tokens: estimate_request(&prefix), ttl });
        }
    };

    let tools = request.tool_config.as_ref().map(|c| c.tools.as_slice()).unwrap_or_default();
    for (i, tool) in tools.iter().enumerate() {
        match tool {
            Tool::CachePoint(point) => {
                let mut prefix = request.clone();
                prefix.messages.clear();
                prefix.system.clear();
                if let Some(config) = &mut prefix.tool_config {
                    config.tools.truncate(i);
                }
                close(&hasher, prefix, ttl_of(point), content_seen);
            }
            Tool::ToolSpec(spec) => {
                feed(&mut hasher, serde_json::to_vec(spec));
                content_seen = true;
            }
        }
    }
    for (i, block) in request.system.iter().enumerate() {
        match block {
            SystemContentBlock::CachePoint(point) => {
                let mut prefix = request.clone();
                prefix.messages.clear();
                prefix.system.truncate(i);
                close(&hasher, prefix, ttl_of(point), content_seen);
            }
            SystemContentBlock::Text(text) => {
                feed(&mut hasher, serde_json::to_vec(text));
                content_seen = true;
            }
        }
    }
    for (i, message) in request.messages.iter().enumerate() {
        feed(&mut hasher, serde_json::to_vec(&message.role));
        for (j, block) in message.content.iter().enumerate() {
            if let ContentBlock::CachePoint(point) = block {
                let mut prefix = request.clone();
                prefix.messages.truncate(i + 1);
                if let Some(last) = prefix.messages.last_mut() {
                    last.content.truncate(j);
                }
                close(&hasher, prefix, ttl_of(point), content_seen);
            } else {
                feed(&mut hasher, serde_json::to_vec(block));
                content_seen = true;
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use gateway_core::tokens::estimate_request;
    use serde_json::json;

    use super::*;

    const MODEL: &str = "m";

    fn request(body: serde_json::Value) -> ConverseRequest {
        ConverseRequest::from_json(body.to_string().as_bytes()).unwrap()
    }

    fn with_question(question: &str) -> ConverseRequest {
        request(json!({
            "system": [{"text": "You are a helpful assistant who knows a lot about caches."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": question}]}]
        }))
    }

    #[test]
    fn first_sight_writes_and_later_identical_prefixes_read() {
        let cache = PromptCache::default();
        let t0 = Instant::now();
        let first = cache.apply(MODEL, &with_question("one?"), t0);
        assert_eq!(first.read, 0);
        assert!(first.write > 0);
        assert_eq!(first.write_details, vec![(CacheTtl::FiveMinutes, first.write)]);
        let second = cache.apply(MODEL, &with_question("two, a different question?"), t0 + Duration::from_secs(1));
        assert_eq!((second.read, second.write), (first.write, 0));
        assert!(first.write < estimate_request(&with_question("one?")));
        // Another model has its own cache.
        assert_eq!(cache.apply("other", &with_question("one?"), t0).read, 0);
    }

    #[test]
    fn entries_expire_after_their_ttl_and_hits_refresh_it() {
        let cache = PromptCache::default();
        let t0 = Instant::now();
        let q = with_question("x");
        cache.apply(MODEL, &q, t0);
        assert!(cache.apply(MODEL, &q, t0 + Duration::from_secs(299)).read > 0);
        // Refreshed at 299 s, so still alive at 500 s.
        assert!(cache.apply(MODEL, &q, t0 + Duration::from_secs(500)).read > 0);
        assert_eq!(cache.apply(MODEL, &q, t0 + Duration::from_secs(900)).read, 0);
    }

    #[test]
    fn the_longest_cached_prefix_is_read_and_the_rest_written_with_its_ttl() {
        let cache = PromptCache::default();
        let t0 = Instant::now();
        let short = request(json!({
            "system": [{"text": "Shared instructions for everyone."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "hello"}]}]
        }));
        let long = request(json!({
            "system": [{"text": "Shared instructions for everyone."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [
                {"text": "a long document to discuss in detail"}, {"cachePoint": {"type": "default", "ttl": "1h"}},
                {"text": "question"}
            ]}]
        }));
        let s = cache.apply(MODEL, &short, t0);
        let l = cache.apply(MODEL, &long, t0);
        assert_eq!(l.read, s.write);
        assert_eq!(l.write_details, vec![(CacheTtl::OneHour, l.write)]);
        assert!(l.read + l.write < estimate_request(&long));
        assert_eq!(cache.apply(MODEL, &long, t0).read, l.read + l.write);
    }

    #[test]
    fn a_checkpoint_with_nothing_before_it_caches_nothing() {
        let cache = PromptCache::default();
        let r = request(json!({
            "messages": [{"role": "user", "content": [{"cachePoint": {"type": "default"}}, {"text": "hi"}]}]
        }));
        assert_eq!(cache.apply(MODEL, &r, Instant::now()), CacheUsage::default());
    }
}
