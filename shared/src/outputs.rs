//! What a request without `maxTokens` reserves.
//!
//! Bedrock reserves a request's `maxTokens` against the TPM quota when the request starts, and
//! a request that gives none reserves the model's whole output limit (64K for Sonnet): the
//! most common cause of throttling far below the quota. The gateway instead sends a
//! `maxTokens` learned from the answers it has seen on the same route, a high quantile of
//! their lengths, and continues an answer that stops at that limit (see the service's call
//! stage), so the caller still receives the whole answer. An explicit `maxTokens` is never
//! changed.
//!
//! Lengths are kept per route (tenant and model) and per model, in log-linear histograms
//! whose weights halve every `half_life` observations, so the estimate follows a workload
//! that changes. A route with fewer than `min_samples` answers borrows its model's estimate,
//! and a model without enough either uses the `prior`. Memory is bounded: at most
//! `max_routes` routes are tracked, later ones use their model's histogram.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// How the learned `maxTokens` is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutputLengthSettings {
    /// The share of answers that should fit in one call, e.g. 0.99.
    pub quantile: f64,
    /// `maxTokens` before anything has been learned.
    pub prior: u32,
    /// Answers a route needs before its own estimate is used.
    pub min_samples: u32,
    /// The smallest learned `maxTokens`: a short limit would make every long answer a
    /// continuation.
    pub floor: u32,
    /// Observations after which older ones weigh half as much.
    pub half_life: u32,
    pub max_routes: usize,
}

impl Default for OutputLengthSettings {
    fn default() -> Self {
        OutputLengthSettings {
            quantile: 0.99,
            prior: 4_096,
            min_samples: 20,
            floor: 256,
            half_life: 2_000,
            max_routes: 4_096,
        }
    }
}

/// Sub-buckets per power of two: bucket bounds are within 12.5 % of any value.
const SUB_BITS: u32 = 3;
const LINEAR: u64 = 1 << (SUB_BITS + 1);
/// Enough buckets for 2^20 tokens, far beyond any model's output limit.
const BUCKETS: usize = (LINEAR as usize) + (20 - SUB_BITS as usize - 1) * (1 << SUB_BITS);

fn bucket_of(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros();
    let mantissa = (value >> (exponent - SUB_BITS)) & ((1 << SUB_BITS) - 1);
    let index = LINEAR as usize + (exponent - SUB_BITS - 1) as usize * (1 << SUB_BITS) + mantissa as usize;
    index.min(BUCKETS - 1)
}

/// The largest value that falls in `index`.
fn upper_bound(index: usize) -> u64 {
    if (index as u64) < LINEAR {
        return index as u64;
    }
    let offset = index - LINEAR as usize;
    let exponent = (offset >> SUB_BITS) as u32 + SUB_BITS + 1;
    let mantissa = (offset & ((1 << SUB_BITS) - 1)) as u64;
    (((1 << SUB_BITS) + mantissa + 1) << (exponent - SUB_BITS)) - 1
}

#[derive(Debug, Clone)]
struct Histogram {
    weights: Vec<f64>,
    total: f64,
    /// Observations, not decayed: decides whether the estimate is trusted yet.
    seen: u64,
    since_decay: u32,
}

impl Histogram {
    fn new() -> Self {
        Histogram { weights: vec![0.0; BUCKETS], total: 0.0, seen: 0, since_decay: 0 }
    }

    fn observe(&mut self, tokens: u64, half_life: u32) {
        self.weights[bucket_of(tokens)] += 1.0;
        self.total += 1.0;
        self.seen += 1;
        self.since_decay += 1;
        if self.since_decay >= half_life.max(1) {
            self.since_decay = 0;
            self.weights.iter_mut().for_each(|w| *w *= 0.5);
            self.total *= 0.5;
        }
    }

    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total <= 0.0 {
            return None;
        }
        let target = q.clamp(0.0, 1.0) * self.total;
        let mut cumulative = 0.0;
        for (index, weight) in self.weights.iter().enumerate() {
            cumulative += weight;
            if cumulative >= target && *weight > 0.0 {
                return Some(upper_bound(index));
            }
        }
        self.weights.iter().rposition(|w| *w > 0.0).map(upper_bound)
    }
}

#[derive(Debug, Default)]
struct Book {
    routes: HashMap<(String, String), Histogram>,
    models: HashMap<String, Histogram>,
}

/// The learned output lengths of one instance.
#[derive(Debug)]
pub struct OutputLengths {
    settings: OutputLengthSettings,
    book: Mutex<Book>,
}

impl OutputLengths {
    pub fn new(settings: OutputLengthSettings) -> Self {
        OutputLengths { settings, book: Mutex::new(Book::default()) }
    }

    pub fn settings(&self) -> &OutputLengthSettings {
        &self.settings
    }

    /// The `maxTokens` to send for a request of `tenant` to `model` that gives none, at most
    /// the model's limit.
    pub fn max_tokens(&self, tenant: &str, model: &str, model_max: u32) -> u32 {
        let s = &self.settings;
        let book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        let trusted = |h: &Histogram| (h.seen >= u64::from(s.min_samples)).then(|| h.quantile(s.quantile)).flatten();
        let learned = book
            .routes
            .get(&(tenant.to_owned(), model.to_owned()))
            .and_then(trusted)
            .or_else(|| book.models.get(model).and_then(trusted));
        let tokens = learned.map_or(u64::from(s.prior), |t| t.max(u64::from(s.floor)));
        tokens.min(u64::from(model_max)).max(1) as u32
    }

    /// Records the length of a whole answer (continuations included).
    pub fn observe(&self, tenant: &str, model: &str, output_tokens: u64) {
        let half_life = self.settings.half_life;
        let mut book = self.book.lock().unwrap_or_else(PoisonError::into_inner);
        book.models.entry(model.to_owned()).or_insert_with(Histogram::new).observe(output_tokens, half_life);
        let key = (tenant.to_owned(), model.to_owned());
        if let Some(route) = book.routes.get_mut(&key) {
            route.observe(output_tokens, half_life);
        } else if book.routes.len() < self.settings.max_routes {
            let mut route = Histogram::new();
            route.observe(output_tokens, half_life);
            book.routes.insert(key, route);
        }
    }
}

impl Default for OutputLengths {
    fn default() -> Self {
        OutputLengths::new(OutputLengthSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitmix::SplitMix64;

    #[test]
    fn every_value_falls_in_a_bucket_whose_bound_is_within_an_eighth_above_it() {
        let mut previous_bound = 0;
        for index in 0..BUCKETS {
            let bound = upper_bound(index);
            assert!(index == 0 || bound > previous_bound, "bounds increase at {index}");
            assert_eq!(bucket_of(bound), index, "{bound}");
            previous_bound = bound;
        }
        for value in [1u64, 15, 16, 17, 31, 32, 100, 1_000, 4_095, 4_096, 64_000, 200_000] {
            let bound = upper_bound(bucket_of(value));
            assert!(bound >= value, "{value} -> {bound}");
            assert!(bound as f64 <= value as f64 * 1.125 + 1.0, "{value} -> {bound}");
        }
    }

    #[test]
    fn the_prior_is_used_until_enough_answers_are_seen_and_never_beyond_the_model_limit() {
        let lengths = OutputLengths::default();
        assert_eq!(lengths.max_tokens("t", "m", 64_000), 4_096);
        assert_eq!(lengths.max_tokens("t", "m", 1_000), 1_000);
        for _ in 0..19 {
            lengths.observe("t", "m", 300);
        }
        assert_eq!(lengths.max_tokens("t", "m", 64_000), 4_096);
        lengths.observe("t", "m", 300);
        let learned = lengths.max_tokens("t", "m", 64_000);
        assert!((300..=340).contains(&learned), "{learned}");
    }

    #[test]
    fn the_learned_limit_covers_the_quantile_of_answers() {
        let lengths = OutputLengths::new(OutputLengthSettings { floor: 1, ..OutputLengthSettings::default() });
        let mut rng = SplitMix64::new(7);
        let mut seen = Vec::new();
        for _ in 0..1_000 {
            // Long-tailed like real answers: mostly short, a few long.
            let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            let tokens = (50.0 / (1.0 - u * 0.98)) as u64;
            seen.push(tokens);
            lengths.observe("t", "m", tokens);
        }
        let limit = u64::from(lengths.max_tokens("t", "m", 64_000));
        let covered = seen.iter().filter(|t| **t <= limit).count() as f64 / seen.len() as f64;
        assert!(covered >= 0.99, "{covered} of answers fit in {limit}");
    }

    #[test]
    fn a_new_route_borrows_its_model_estimate_and_routes_are_bounded() {
        let lengths = OutputLengths::new(OutputLengthSettings { max_routes: 1, floor: 1, ..Default::default() });
        for _ in 0..50 {
            lengths.observe("a", "m", 500);
        }
        for _ in 0..50 {
            lengths.observe("b", "m", 500);
        }
        let borrowed = lengths.max_tokens("c", "m", 64_000);
        assert!((500..=570).contains(&borrowed), "{borrowed}");
        let book = lengths.book.lock().unwrap();
        assert_eq!(book.routes.len(), 1);
    }

    #[test]
    fn old_answers_fade_so_the_estimate_follows_the_workload() {
        let lengths = OutputLengths::new(OutputLengthSettings { half_life: 100, floor: 1, ..Default::default() });
        for _ in 0..1_000 {
            lengths.observe("t", "m", 2_000);
        }
        for _ in 0..1_000 {
            lengths.observe("t", "m", 200);
        }
        let learned = lengths.max_tokens("t", "m", 64_000);
        assert!(learned < 300, "{learned}");
    }
}
