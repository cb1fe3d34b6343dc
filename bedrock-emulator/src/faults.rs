//! Deterministic fault injection.
//!
//! Each bucket (model and scope) numbers its requests 0, 1, 2, ... and the decision for
//! request `n` is a pure function of `(seed, bucket, n)` (a counter-based generator, no
//! hidden state), so a test that sends requests in order gets the same faults on every run,
//! and a reset starts the sequence again. A rate of 1.0 faults every request and 0 none.

use gateway_core::quota::QuotaKey;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use crate::config::{FaultOverride, FaultRates, StreamErrorType};

/// A fault that replaces the whole response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttling,
    InternalServer,
    ServiceUnavailable,
    /// Hang this long, then answer `ModelTimeoutException`.
    ModelTimeout(Duration),
}

/// A stream that is cut by an exception frame after `fraction` of its deltas.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamCut {
    pub kind: StreamErrorType,
    pub fraction: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Decision {
    pub fault: Option<Fault>,
    pub stream_cut: Option<StreamCut>,
}

/// What a fault override applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Selector {
    /// Every way of calling the model with this base ID.
    Model(String),
    /// One model through one scope.
    Bucket(QuotaKey),
}

#[derive(Debug)]
pub struct FaultInjector {
    seed: u64,
    global: FaultRates,
    configured: HashMap<Selector, FaultOverride>,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    runtime: HashMap<Selector, FaultOverride>,
    counters: HashMap<QuotaKey, u64>,
}

impl FaultInjector {
    pub fn new(seed: u64, global: FaultRates, configured: HashMap<Selector, FaultOverride>) -> FaultInjector {
        FaultInjector { seed, global, configured, inner: Mutex::new(Inner::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Rates for a bucket: global, then the model's and the bucket's configured overrides,
    /// then the runtime ones, each layer overriding only the fields it names.
    pub fn rates(&self, bucket: &QuotaKey) -> FaultRates {
        let inner = self.lock();
        rates_for(bucket, self.global, &self.configured, &inner.runtime)
    }

    /// Decides the fate of the bucket's next request.
    pub fn next(&self, bucket: &QuotaKey, streaming: bool) -> Decision {
        let mut inner = self.lock();
        let rates = rates_for(bucket, self.global, &self.configured, &inner.runtime);
        let counter = inner.counters.entry(bucket.clone()).or_default();
        let n = *counter;
        *counter += 1;
        decide(&rates, self.seed, &bucket.to_string(), n, streaming)
    }

    pub fn set_runtime(&self, selector: Selector, rates: FaultOverride) {
        self.lock().runtime.insert(selector, rates);
    }

    pub fn clear_runtime(&self, selector: &Selector) {
        self.lock().runtime.remove(selector);
    }

    /// Forgets a bucket's counter (its sequence of decisions restarts).
    pub fn reset_bucket(&self, bucket: &QuotaKey) {
        self.lock().counters.remove(bucket);
    }

    pub fn reset_all(&self) {
        let mut inner = self.lock();
        inner.runtime.clear();
        inner.counters.clear();
    }
}

fn rates_for(
    bucket: &QuotaKey,
    global: FaultRates,
    configured: &HashMap<Selector, FaultOverride>,
    runtime: &HashMap<Selector, FaultOverride>,
) -> FaultRates {
    let model = Selector::Model(bucket.model_id.clone());
    let exact = Selector::Bucket(bucket.clone());
    [configured.get(&model), configured.get(&exact), runtime.get(&model), runtime.get(&exact)]
        .into_iter()
        .flatten()
        .fold(global, |rates, o| o.apply_to(rates))
}

/// The decision for request `n` of bucket `key`: one uniform draw picks at most one of the
/// response faults (their rates partition `[0, 1)`), a second independent draw decides the
/// stream cut and a third where the cut falls.
pub fn decide(rates: &FaultRates, seed: u64, key: &str, n: u64, streaming: bool) -> Decision {
    let u = uniform(seed, key, n, 1);
    let mut threshold = 0.0;
    let mut fault = None;
    let candidates = [
        (rates.throttling_rate, Fault::Throttling),
        (rates.internal_error_rate, Fault::InternalServer),
        (rates.service_unavailable_rate, Fault::ServiceUnavailable),
        (rates.model_timeout_rate, Fault::ModelTimeout(Duration::from_millis(rates.model_timeout_ms))),
    ];
    for (rate, candidate) in candidates {
        threshold += rate;
        if u < threshold {
            fault = Some(candidate);
            break;
        }
    }
    let stream_cut = (streaming && uniform(seed, key, n, 2) < rates.stream_error_rate)
        .then(|| StreamCut { kind: rates.stream_error_type, fraction: uniform(seed, key, n, 3) });
    Decision { fault, stream_cut }
}

/// A uniform number in `[0, 1)` from a stateless mix of its inputs (SplitMix64 finalizer).
fn uniform(seed: u64, key: &str, n: u64, salt: u64) -> f64 {
    let mut x = seed ^ fnv1a(key);
    for word in [n, salt] {
        x = mix(x ^ word.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    }
    // 53 random bits make every f64 in [0, 1) with that spacing equally likely.
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3))
}

#[cfg(test)]
mod tests {
    use gateway_core::catalog::Scope;

    use super::*;

    fn rates(throttling: f64, stream: f64) -> FaultRates {
        FaultRates { throttling_rate: throttling, stream_error_rate: stream, ..FaultRates::default() }
    }

    #[test]
    fn decisions_are_a_function_of_seed_key_and_counter() {
        let r = FaultRates {
            throttling_rate: 0.2,
            internal_error_rate: 0.2,
            service_unavailable_rate: 0.2,
            stream_error_rate: 0.5,
            ..FaultRates::default()
        };
        let run = |seed| (0..200).map(|n| decide(&r, seed, "m", n, true)).collect::<Vec<_>>();
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert_ne!(
            (0..50).map(|n| decide(&r, 1, "a", n, true)).collect::<Vec<_>>(),
            (0..50).map(|n| decide(&r, 1, "b", n, true)).collect::<Vec<_>>()
        );
    }

    #[test]
    fn rates_of_zero_and_one_are_exact() {
        for n in 0..1_000 {
            assert_eq!(decide(&rates(1.0, 1.0), 9, "m", n, false).fault, Some(Fault::Throttling));
            assert!(decide(&rates(0.0, 1.0), 9, "m", n, true).stream_cut.is_some());
            assert_eq!(decide(&rates(0.0, 0.0), 9, "m", n, true), Decision::default());
            // Stream cuts only apply to streams.
            assert!(decide(&rates(0.0, 1.0), 9, "m", n, false).stream_cut.is_none());
        }
    }

    #[test]
    fn observed_frequencies_match_the_rates() {
        let r = FaultRates {
            throttling_rate: 0.1,
            internal_error_rate: 0.2,
            service_unavailable_rate: 0.3,
            ..FaultRates::default()
        };
        let mut counts = [0u32; 4];
        for n in 0..20_000 {
            let i = match decide(&r, 3, "m", n, false).fault {
                Some(Fault::Throttling) => 0,
                Some(Fault::InternalServer) => 1,
                Some(Fault::ServiceUnavailable) => 2,
                _ => 3,
            };
            counts[i] += 1;
        }
        for (count, expected) in counts.iter().zip([0.1, 0.2, 0.3, 0.4]) {
            let observed = f64::from(*count) / 20_000.0;
            assert!((observed - expected).abs() < 0.015, "{observed} vs {expected}");
        }
    }

    #[test]
    fn counters_advance_per_bucket_and_overrides_layer() {
        let us = QuotaKey::new("m", Scope::Geo("us".into()));
        let global = QuotaKey::new("m", Scope::Global);
        let configured = HashMap::from([
            (Selector::Model("m".into()), FaultOverride { internal_error_rate: Some(1.0), ..FaultOverride::default() }),
            (
                Selector::Bucket(global.clone()),
                FaultOverride { internal_error_rate: Some(0.0), ..FaultOverride::default() },
            ),
        ]);
        let f = FaultInjector::new(0, FaultRates::default(), configured);
        assert_eq!(f.next(&us, false).fault, Some(Fault::InternalServer));
        assert_eq!(f.next(&global, false).fault, None);
        f.set_runtime(
            Selector::Bucket(us.clone()),
            FaultOverride {
                internal_error_rate: Some(0.0),
                service_unavailable_rate: Some(1.0),
                ..FaultOverride::default()
            },
        );
        assert_eq!(f.next(&us, false).fault, Some(Fault::ServiceUnavailable));
        f.reset_all();
        assert_eq!(f.next(&us, false).fault, Some(Fault::InternalServer));
    }
}
