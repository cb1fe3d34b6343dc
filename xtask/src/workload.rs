//! The demo workload: a reproducible, skewed request mix in which popular prompts repeat,
//! as they do in real traffic, so that the cache has something to hit.

use serde_json::{Value, json};

use crate::prompts::{Kind, PROMPTS};

pub const FULL_HAIKU_ID: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

/// Requested model and relative weight. One full inference-profile ID sits among the tier
/// names because clients send both.
const MODELS: &[(&str, u32)] = &[("haiku", 45), ("sonnet", 30), ("opus", 10), (FULL_HAIKU_ID, 15)];
const TENANTS: &[(&str, u32)] = &[("acme", 60), ("globex", 30), ("initech", 10)];
const MAX_TOKENS: &[u32] = &[200, 300, 400, 500, 600];
/// Zipf exponent: about 1 is typical of request popularity; a little above makes the head
/// heavy enough for a visible hit rate at a few hundred requests.
const ZIPF_EXPONENT: f64 = 1.1;
const CACHE_OFF_PERCENT: u64 = 5;
const SAMPLING_PERCENT: u64 = 10;

/// SplitMix64: tiny, fast and good enough for a workload generator; a fixed seed gives
/// the same plan on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Picks from `(choice, weight)` pairs; `None` only for an empty or all-zero list.
    pub fn weighted<'a, T>(&mut self, choices: &'a [(T, u32)]) -> Option<&'a T> {
        let total: u64 = choices.iter().map(|(_, w)| u64::from(*w)).sum();
        let mut pick = self.below(total);
        for (choice, weight) in choices {
            if pick < u64::from(*weight) {
                return Some(choice);
            }
            pick -= u64::from(*weight);
        }
        None
    }
}

/// Samples ranks 0..n with probability proportional to 1/(rank+1)^exponent.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, exponent: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut total = 0.0;
        for rank in 0..n {
            total += 1.0 / ((rank + 1) as f64).powf(exponent);
            cdf.push(total);
        }
        for value in &mut cdf {
            *value /= total;
        }
        Self { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.next_f64();
        self.cdf.partition_point(|&c| c <= u).min(self.cdf.len().saturating_sub(1))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRequest {
    pub prompt: usize,
    pub model: &'static str,
    pub tenant: &'static str,
    pub max_tokens: u32,
    pub temperature: f64,
    pub cache_off: bool,
    pub allow_sampling: bool,
}

/// Per-prompt settings are fixed, as they are per feature in a real application; that is
/// what lets a repeated prompt produce the same cache key.
#[derive(Debug, Clone, Copy)]
struct PromptProfile {
    model: &'static str,
    max_tokens: u32,
    temperature: f64,
    allow_sampling: bool,
}

fn prompt_profiles(seed: u64) -> Vec<PromptProfile> {
    let mut rng = Rng::new(seed ^ 0xA5A5_5A5A_C3C3_3C3C);
    (0..PROMPTS.len())
        .map(|_| {
            let model = rng.weighted(MODELS).copied().unwrap_or("haiku");
            let max_tokens = MAX_TOKENS[rng.below(MAX_TOKENS.len() as u64) as usize];
            let sampled = rng.below(100) < SAMPLING_PERCENT;
            PromptProfile {
                model,
                max_tokens,
                temperature: if sampled { 0.7 } else { 0.0 },
                allow_sampling: sampled && rng.below(2) == 0,
            }
        })
        .collect()
}

pub fn plan(requests: usize, seed: u64) -> Vec<PlannedRequest> {
    let profiles = prompt_profiles(seed);
    let mut rng = Rng::new(seed);
    // Popularity is assigned to a seeded shuffle of the list, so the most frequent prompts
    // are not simply the first few questions.
    let mut by_popularity: Vec<usize> = (0..PROMPTS.len()).collect();
    for i in (1..by_popularity.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        by_popularity.swap(i, j);
    }
    let zipf = Zipf::new(PROMPTS.len(), ZIPF_EXPONENT);
    (0..requests)
        .map(|_| {
            let prompt = by_popularity[zipf.sample(&mut rng)];
            let profile = profiles[prompt];
            PlannedRequest {
                prompt,
                model: profile.model,
                tenant: rng.weighted(TENANTS).copied().unwrap_or("acme"),
                max_tokens: profile.max_tokens,
                temperature: profile.temperature,
                cache_off: rng.below(100) < CACHE_OFF_PERCENT,
                allow_sampling: profile.allow_sampling,
            }
        })
        .collect()
}

pub fn request_body(request: &PlannedRequest) -> Value {
    let (kind, text) = PROMPTS.get(request.prompt).copied().unwrap_or((Kind::Question, "Hello"));
    json!({
        "modelId": request.model,
        "system": [{"text": kind.system_prompt()}],
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": request.max_tokens, "temperature": request.temperature},
    })
}

pub fn request_headers(request: &PlannedRequest) -> Vec<(&'static str, &'static str)> {
    let mut headers = vec![("content-type", "application/json"), ("x-tenant-id", request.tenant)];
    if request.cache_off {
        headers.push(("x-cache-mode", "off"));
    }
    if request.allow_sampling {
        headers.push(("x-cache-allow-sampling", "true"));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn the_same_seed_gives_the_same_plan() {
        assert_eq!(plan(50, 7), plan(50, 7));
        assert_ne!(plan(50, 7), plan(50, 8));
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let zipf = Zipf::new(100, 1.1);
        let mut rng = Rng::new(1);
        let mut counts = vec![0usize; 100];
        for _ in 0..20_000 {
            counts[zipf.sample(&mut rng)] += 1;
        }
        assert!(counts[0] > counts[9] * 5, "{counts:?}");
        assert!(counts[0] > 2_000);
    }

    #[test]
    fn plan_repeats_prompts_and_mixes_models_tenants_and_modes() {
        let requests = plan(400, 42);
        let mut per_prompt: HashMap<usize, usize> = HashMap::new();
        for r in &requests {
            *per_prompt.entry(r.prompt).or_default() += 1;
        }
        let repeated: usize = per_prompt.values().filter(|&&n| n > 1).map(|n| n - 1).sum();
        assert!(repeated > 150, "only {repeated} repeats");
        for model in ["haiku", "sonnet", "opus", FULL_HAIKU_ID] {
            assert!(requests.iter().any(|r| r.model == model), "{model} missing");
        }
        let tenants: std::collections::HashSet<&str> = requests.iter().map(|r| r.tenant).collect();
        assert_eq!(tenants.len(), 3);
        let off = requests.iter().filter(|r| r.cache_off).count();
        assert!((5..=40).contains(&off), "{off} cache-off requests");
        let greedy = requests.iter().filter(|r| r.temperature == 0.0).count();
        assert!(greedy * 10 > requests.len() * 7, "{greedy} at temperature 0");
        assert!(requests.iter().all(|r| (200..=600).contains(&r.max_tokens)));
    }

    #[test]
    fn bodies_are_converse_requests() {
        let request = PlannedRequest {
            prompt: 0,
            model: "sonnet",
            tenant: "acme",
            max_tokens: 300,
            temperature: 0.0,
            cache_off: true,
            allow_sampling: false,
        };
        let body = request_body(&request);
        assert_eq!(body["modelId"], "sonnet");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 300);
        assert!(request_headers(&request).contains(&("x-cache-mode", "off")));
    }
}
