//! The demo workload: a reproducible, skewed request mix in which popular prompts repeat,
//! as they do in real traffic, so that the cache has something to hit. A large share of it
//! asks the gateway to pick the tier (`"modelId": "auto"`), a few of those with the routing
//! knobs set.

use gateway_core::splitmix::SplitMix64;
use serde_json::{Value, json};

use crate::prompts::{Kind, PROMPTS};

pub const FULL_HAIKU_ID: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
/// The `modelId` that asks the gateway to route.
pub const AUTO_MODEL: &str = "auto";

/// Requested model and relative weight for the features that pin a model. One full
/// inference-profile ID sits among the tier names because clients send both.
const MODELS: &[(&str, u32)] = &[("haiku", 45), ("sonnet", 30), ("opus", 10), (FULL_HAIKU_ID, 15)];
/// Expected share of requests that send `"modelId": "auto"`: the assistant kinds (see
/// [`Kind::always_routed`]) always do, and seeded picks among the other prompts, weighted by
/// their popularity, make up the rest, so the share holds whatever the seed.
const ROUTED_SHARE: f64 = 0.4;
/// Prompts asked by more than this share of requests keep the deployment's routing policy.
const KNOB_MAX_POPULARITY: f64 = 0.02;
/// Per-request routing overrides (header, value) of routed prompts, with relative weights:
/// most use the deployment's policy, a few cap the tier or move the quality tolerance. The
/// most popular prompts never carry one (see [`KNOB_MAX_POPULARITY`]), so that only a few
/// requests do.
const ROUTE_KNOBS: &[(Option<(&str, &str)>, u32)] = &[
    (None, 70),
    (Some(("x-route-max-tier", "sonnet")), 10),
    (Some(("x-route-quality-tolerance", "5")), 10),
    (Some(("x-route-quality-tolerance", "30")), 10),
];
const TENANTS: &[(&str, u32)] = &[("acme", 60), ("globex", 30), ("initech", 10)];
const MAX_TOKENS: &[u32] = &[200, 300, 400, 500, 600];
/// Zipf exponent: about 1 is typical of request popularity; a little above makes the head
/// heavy enough for a visible hit rate at a few hundred requests.
const ZIPF_EXPONENT: f64 = 1.1;
const CACHE_OFF_PERCENT: u64 = 5;
const SAMPLING_PERCENT: u64 = 10;

/// The demo's generator: a fixed seed gives the same plan on every machine.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
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

    /// Probability of `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        let below = if rank == 0 { 0.0 } else { self.cdf.get(rank - 1).copied().unwrap_or(1.0) };
        self.cdf.get(rank).map_or(0.0, |c| c - below)
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
    /// A routing override header (name, value) of an `auto` request.
    pub route_knob: Option<(&'static str, &'static str)>,
}

impl PlannedRequest {
    pub fn is_routed(&self) -> bool {
        self.model == AUTO_MODEL
    }

    /// The knob as one label for the report (`x-route-max-tier: sonnet`).
    pub fn route_knob_label(&self) -> Option<String> {
        self.route_knob.map(|(name, value)| format!("{name}: {value}"))
    }
}

/// Per-prompt settings are fixed, as they are per feature in a real application; that is
/// what lets a repeated prompt produce the same cache key.
#[derive(Debug, Clone, Copy)]
struct PromptProfile {
    model: &'static str,
    max_tokens: u32,
    temperature: f64,
    allow_sampling: bool,
    route_knob: Option<(&'static str, &'static str)>,
}

/// `popularity[p]` is the probability that a request asks prompt `p`.
fn prompt_profiles(seed: u64, popularity: &[f64]) -> Vec<PromptProfile> {
    let mut rng = Rng::new(seed ^ 0xA5A5_5A5A_C3C3_3C3C);
    let mut profiles: Vec<PromptProfile> = PROMPTS
        .iter()
        .enumerate()
        .map(|(prompt, (kind, _))| {
            let pinned = rng.weighted(MODELS).copied().unwrap_or("haiku");
            let max_tokens = MAX_TOKENS[rng.below(MAX_TOKENS.len() as u64) as usize];
            let sampled = rng.below(100) < SAMPLING_PERCENT;
            let allow_sampling = sampled && rng.below(2) == 0;
            let knob = rng.weighted(ROUTE_KNOBS).copied().flatten();
            let routed = kind.always_routed();
            let knob = knob.filter(|_| popularity.get(prompt).is_some_and(|p| *p <= KNOB_MAX_POPULARITY));
            PromptProfile {
                model: if routed { AUTO_MODEL } else { pinned },
                max_tokens,
                temperature: if sampled { 0.7 } else { 0.0 },
                allow_sampling,
                route_knob: if routed { knob } else { None },
            }
        })
        .collect();
    // Move pinned prompts, in a seeded order, to `auto` until the routed share of requests
    // reaches ROUTED_SHARE; a prompt joins only if that lands closer to the target.
    let weight = |p: usize| popularity.get(p).copied().unwrap_or(0.0);
    let mut routed_share: f64 = (0..profiles.len()).filter(|p| profiles[*p].model == AUTO_MODEL).map(weight).sum();
    let mut candidates: Vec<usize> = (0..profiles.len()).filter(|p| profiles[*p].model != AUTO_MODEL).collect();
    shuffle(&mut candidates, &mut rng);
    for prompt in candidates {
        if routed_share + weight(prompt) / 2.0 > ROUTED_SHARE {
            continue;
        }
        routed_share += weight(prompt);
        let knob = rng.weighted(ROUTE_KNOBS).copied().flatten().filter(|_| weight(prompt) <= KNOB_MAX_POPULARITY);
        if let Some(profile) = profiles.get_mut(prompt) {
            profile.model = AUTO_MODEL;
            profile.route_knob = knob;
        }
    }
    profiles
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

pub fn plan(requests: usize, seed: u64) -> Vec<PlannedRequest> {
    let mut rng = Rng::new(seed);
    // Popularity is assigned to a seeded shuffle of the list, so the most frequent prompts
    // are not simply the first few questions.
    let mut by_popularity: Vec<usize> = (0..PROMPTS.len()).collect();
    shuffle(&mut by_popularity, &mut rng);
    let zipf = Zipf::new(PROMPTS.len(), ZIPF_EXPONENT);
    let mut popularity = vec![0.0; PROMPTS.len()];
    for (rank, prompt) in by_popularity.iter().enumerate() {
        popularity[*prompt] = zipf.probability(rank);
    }
    let profiles = prompt_profiles(seed, &popularity);
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
                route_knob: profile.route_knob,
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
    if let Some(knob) = request.route_knob {
        headers.push(knob);
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
            route_knob: None,
        };
        let body = request_body(&request);
        assert_eq!(body["modelId"], "sonnet");
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 300);
        assert!(request_headers(&request).contains(&("x-cache-mode", "off")));
    }

    #[test]
    fn a_large_share_is_routed_over_easy_hard_and_long_prompts() {
        let requests = plan(400, 42);
        let routed: Vec<&PlannedRequest> = requests.iter().filter(|r| r.is_routed()).collect();
        let share = routed.len() as f64 / requests.len() as f64;
        assert!((0.3..=0.5).contains(&share), "{share} routed");
        let kind_of = |r: &PlannedRequest| PROMPTS[r.prompt].0;
        for kind in [Kind::Chat, Kind::Reasoning] {
            assert!(routed.iter().any(|r| kind_of(r) == kind), "no routed {kind:?} prompt");
        }
        assert!(routed.iter().any(|r| !kind_of(r).always_routed()), "only assistant kinds routed");
        assert!(routed.iter().any(|r| PROMPTS[r.prompt].1.len() > 1_000), "no long routed prompt");
        // Every knob is exercised, and only on routed requests.
        for (knob, _) in ROUTE_KNOBS {
            assert!(routed.iter().any(|r| r.route_knob == *knob), "{knob:?} unused");
        }
        assert!(requests.iter().filter(|r| !r.is_routed()).all(|r| r.route_knob.is_none()));
        let with_knob = routed.iter().filter(|r| r.route_knob.is_some()).count();
        assert!(with_knob * 4 < routed.len(), "{with_knob} of {} routed requests carry a knob", routed.len());
        // Routed prompts repeat from the same tenant with the cache on, so they can hit.
        let mut seen = std::collections::HashSet::new();
        let cacheable = routed.iter().filter(|r| !r.cache_off && r.temperature == 0.0);
        let repeats = cacheable.filter(|r| !seen.insert((r.prompt, r.tenant))).count();
        assert!(repeats > 20, "{repeats} routed repeats");
    }

    #[test]
    fn the_routed_share_holds_for_any_seed() {
        for seed in 0..20 {
            let requests = plan(1_000, seed);
            let routed = requests.iter().filter(|r| r.is_routed()).count();
            assert!((250..=550).contains(&routed), "seed {seed}: {routed} of 1000 routed");
        }
        let zipf = Zipf::new(50, 1.1);
        let total: f64 = (0..50).map(|r| zipf.probability(r)).sum();
        assert!((total - 1.0).abs() < 1e-9);
        assert!(zipf.probability(0) > zipf.probability(1));
        assert_eq!(zipf.probability(50), 0.0);
    }

    #[test]
    fn settings_and_knobs_are_fixed_per_prompt() {
        let requests = plan(400, 3);
        let mut by_prompt: HashMap<usize, &PlannedRequest> = HashMap::new();
        for r in &requests {
            let first = *by_prompt.entry(r.prompt).or_insert(r);
            assert_eq!((first.model, first.route_knob, first.max_tokens), (r.model, r.route_knob, r.max_tokens));
        }
        for r in requests.iter().filter(|r| PROMPTS[r.prompt].0.always_routed()) {
            assert!(r.is_routed());
        }
    }

    #[test]
    fn routed_requests_carry_auto_and_their_knob() {
        let request = PlannedRequest {
            prompt: 0,
            model: AUTO_MODEL,
            tenant: "acme",
            max_tokens: 300,
            temperature: 0.0,
            cache_off: false,
            allow_sampling: false,
            route_knob: Some(("x-route-quality-tolerance", "30")),
        };
        assert_eq!(request_body(&request)["modelId"], "auto");
        assert!(request_headers(&request).contains(&("x-route-quality-tolerance", "30")));
        assert_eq!(request.route_knob_label().as_deref(), Some("x-route-quality-tolerance: 30"));
    }
}
