//! Bedrock's per-model request and token quotas (RPM and TPM).
//!
//! Bedrock keeps one quota per model and way of calling it: in-Region on-demand, each
//! geographic cross-Region profile, and the global profile. A request's life against it:
//!
//! 1. RPM is checked first: the request is throttled if the window already holds `rpm`
//!    admitted requests.
//! 2. At admission it reserves `input + cacheRead + cacheWrite + maxTokens` tokens
//!    (`maxTokens` defaults to the model's maximum output). If the tokens in the window plus
//!    this reservation exceed `tpm`, it is throttled, even if it would settle far lower.
//! 3. When it ends it settles at `input + cacheWrite + output x burndown` (cache reads are
//!    free) and the rest of the reservation is released.
//!
//! A throttled request consumes nothing.
//!
//! # Window semantics
//!
//! The window is sliding, not a calendar minute, which is the closest to what Bedrock
//! reports. At time `now` it holds:
//!
//! * for RPM, every request admitted in `(now - window, now]`;
//! * for TPM, the reservation of every request still in flight, whatever its age, plus the
//!   settled tokens of every request that settled in `(now - window, now]`.
//!
//! So an entry made at `t` stops counting at exactly `t + window`. Times are passed in
//! explicitly, which keeps the arithmetic testable to the token and the nanosecond.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use gateway_core::catalog::{Quota, Scope};
use serde::Serialize;

use crate::config::QuotaOverride;

/// One quota: a model reached through one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Bucket {
    /// The base model ID.
    pub model_id: String,
    pub scope: Scope,
}

impl Bucket {
    pub fn new(model_id: &str, scope: Scope) -> Bucket {
        Bucket { model_id: model_id.to_owned(), scope }
    }
}

impl fmt::Display for Bucket {
    /// The bucket's canonical ID: the base model ID in-Region, else the profile ID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::InRegion => f.write_str(&self.model_id),
            Scope::Geo(prefix) => write!(f, "{prefix}.{}", self.model_id),
            Scope::Global => write!(f, "global.{}", self.model_id),
        }
    }
}

/// Which limit a throttled request hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    Requests,
    Tokens,
}

/// What a window holds at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowUsage {
    /// Requests admitted within the window.
    pub requests: u64,
    /// Settled tokens within the window plus every in-flight reservation.
    pub tokens: u64,
    /// The part of `tokens` that is still reserved by requests in flight.
    pub in_flight_tokens: u64,
}

/// The window of one bucket.
#[derive(Debug, Default)]
pub struct Ledger {
    admitted: VecDeque<Instant>,
    settled: VecDeque<(Instant, u64)>,
    settled_tokens: u64,
    in_flight: HashMap<u64, u64>,
    in_flight_tokens: u64,
}

impl Ledger {
    fn expire(&mut self, now: Instant, window: Duration) {
        let expired = |t: &Instant| now.saturating_duration_since(*t) >= window;
        while self.admitted.front().is_some_and(expired) {
            self.admitted.pop_front();
        }
        while let Some((t, tokens)) = self.settled.front().copied() {
            if !expired(&t) {
                break;
            }
            self.settled.pop_front();
            self.settled_tokens -= tokens;
        }
    }

    /// Admits request `id` with a reservation of `reserve` tokens, or says which limit it
    /// would break. `None` means the bucket has no quota.
    pub fn try_admit(
        &mut self,
        id: u64,
        reserve: u64,
        quota: Option<Quota>,
        now: Instant,
        window: Duration,
    ) -> Result<(), Throttle> {
        self.expire(now, window);
        if let Some(quota) = quota {
            if self.admitted.len() as u64 >= quota.rpm {
                return Err(Throttle::Requests);
            }
            let used = self.settled_tokens + self.in_flight_tokens;
            if used.saturating_add(reserve) > quota.tpm {
                return Err(Throttle::Tokens);
            }
        }
        self.admitted.push_back(now);
        self.in_flight.insert(id, reserve);
        self.in_flight_tokens += reserve;
        Ok(())
    }

    /// Replaces request `id`'s reservation by what it actually consumed. Unknown IDs (the
    /// window was reset while the request ran) are ignored.
    pub fn settle(&mut self, id: u64, tokens: u64, now: Instant) {
        let Some(reserved) = self.in_flight.remove(&id) else {
            return;
        };
        self.in_flight_tokens -= reserved;
        if tokens > 0 {
            // Requests may settle out of order; keep the deque sorted so expiry stays a
            // pop from the front.
            let at = self.settled.partition_point(|(t, _)| *t <= now);
            self.settled.insert(at, (now, tokens));
            self.settled_tokens += tokens;
        }
    }

    pub fn usage(&mut self, now: Instant, window: Duration) -> WindowUsage {
        self.expire(now, window);
        WindowUsage {
            requests: self.admitted.len() as u64,
            tokens: self.settled_tokens + self.in_flight_tokens,
            in_flight_tokens: self.in_flight_tokens,
        }
    }
}

/// Every bucket's window plus the quota overrides, behind one lock: the critical sections
/// are a few arithmetic operations, so contention is not a concern.
#[derive(Debug)]
pub struct QuotaBook {
    window: Duration,
    configured: HashMap<Bucket, QuotaOverride>,
    inner: Mutex<BookInner>,
}

#[derive(Debug, Default)]
struct BookInner {
    ledgers: HashMap<Bucket, Ledger>,
    runtime: HashMap<Bucket, QuotaOverride>,
    next_id: u64,
}

impl QuotaBook {
    pub fn new(window: Duration, configured: HashMap<Bucket, QuotaOverride>) -> QuotaBook {
        QuotaBook { window, configured, inner: Mutex::new(BookInner::default()) }
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    fn lock(&self) -> MutexGuard<'_, BookInner> {
        // The state stays consistent even if a holder panicked: every update is a handful
        // of infallible integer operations.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The limits in force: the catalog's, then the config file's, then the runtime
    /// override set through the admin API.
    pub fn limits(&self, bucket: &Bucket, catalog_quota: Option<Quota>) -> Option<Quota> {
        let runtime = self.lock().runtime.get(bucket).copied();
        effective(catalog_quota, [self.configured.get(bucket).copied(), runtime])
    }

    /// Admits a request and returns its reservation ID.
    pub fn try_admit(
        &self,
        bucket: &Bucket,
        catalog_quota: Option<Quota>,
        reserve: u64,
        now: Instant,
    ) -> Result<u64, Throttle> {
        let mut inner = self.lock();
        let runtime = inner.runtime.get(bucket).copied();
        let quota = effective(catalog_quota, [self.configured.get(bucket).copied(), runtime]);
        inner.next_id += 1;
        let id = inner.next_id;
        inner.ledgers.entry(bucket.clone()).or_default().try_admit(id, reserve, quota, now, self.window)?;
        Ok(id)
    }

    pub fn settle(&self, bucket: &Bucket, id: u64, tokens: u64, now: Instant) {
        if let Some(ledger) = self.lock().ledgers.get_mut(bucket) {
            ledger.settle(id, tokens, now);
        }
    }

    pub fn usage(&self, bucket: &Bucket, now: Instant) -> WindowUsage {
        let window = self.window;
        self.lock().ledgers.get_mut(bucket).map(|l| l.usage(now, window)).unwrap_or_default()
    }

    /// Sets a runtime override and starts the bucket's window afresh, so that a test can
    /// count from zero against the new limits.
    pub fn set_runtime(&self, bucket: &Bucket, quota: QuotaOverride) {
        let mut inner = self.lock();
        inner.runtime.insert(bucket.clone(), quota);
        inner.ledgers.remove(bucket);
    }

    /// Forgets a bucket's window and runtime override.
    pub fn reset_bucket(&self, bucket: &Bucket) {
        let mut inner = self.lock();
        inner.runtime.remove(bucket);
        inner.ledgers.remove(bucket);
    }

    pub fn reset_all(&self) {
        let mut inner = self.lock();
        inner.runtime.clear();
        inner.ledgers.clear();
    }
}

fn effective(base: Option<Quota>, overrides: [Option<QuotaOverride>; 2]) -> Option<Quota> {
    overrides.into_iter().flatten().fold(base, |quota, o| {
        if o.tpm.is_none() && o.rpm.is_none() {
            return quota;
        }
        // A bucket without a catalog quota becomes limited only in what the override names.
        let unlimited = Quota { tpm: u64::MAX, rpm: u64::MAX };
        let q = quota.unwrap_or(unlimited);
        Some(Quota { tpm: o.tpm.unwrap_or(q.tpm), rpm: o.rpm.unwrap_or(q.rpm) })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    fn quota(tpm: u64, rpm: u64) -> Option<Quota> {
        Some(Quota { tpm, rpm })
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_request_after_rpm_is_throttled_until_the_first_leaves_the_window() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000_000, 3);
        for i in 0..3 {
            l.try_admit(i, 10, q, t0 + secs(i), MINUTE).unwrap();
        }
        assert_eq!(l.try_admit(3, 10, q, t0 + secs(3), MINUTE), Err(Throttle::Requests));
        // The first request was admitted at t0; it still counts a nanosecond before t0 + 60 s.
        assert_eq!(l.try_admit(4, 10, q, t0 + MINUTE - Duration::from_nanos(1), MINUTE), Err(Throttle::Requests));
        l.try_admit(5, 10, q, t0 + MINUTE, MINUTE).unwrap();
        assert_eq!(l.usage(t0 + MINUTE, MINUTE).requests, 3);
    }

    #[test]
    fn rpm_is_checked_before_tpm() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(100, 1);
        l.try_admit(1, 10, q, t0, MINUTE).unwrap();
        // This one breaks both limits; RPM is reported.
        assert_eq!(l.try_admit(2, 1_000, q, t0, MINUTE), Err(Throttle::Requests));
    }

    #[test]
    fn the_reservation_is_checked_at_start_even_if_it_would_settle_lower() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 100);
        // 500 input + 600 maxTokens = 1,100 > 1,000, though it might settle at 600.
        assert_eq!(l.try_admit(1, 500 + 600, q, t0, MINUTE), Err(Throttle::Tokens));
        // Exactly at the limit is allowed.
        l.try_admit(2, 400 + 600, q, t0, MINUTE).unwrap();
        assert_eq!(l.try_admit(3, 1, q, t0, MINUTE), Err(Throttle::Tokens));
    }

    #[test]
    fn settlement_releases_the_unused_reservation() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 100);
        l.try_admit(1, 100 + 600, q, t0, MINUTE).unwrap();
        assert_eq!(l.usage(t0, MINUTE), WindowUsage { requests: 1, tokens: 700, in_flight_tokens: 700 });
        // A second request of 400 would make 1,100 while the first is in flight.
        assert_eq!(l.try_admit(2, 400, q, t0 + secs(1), MINUTE), Err(Throttle::Tokens));
        // Settled at 100 input + 20 output x burndown 5 = 200.
        l.settle(1, 100 + 20 * 5, t0 + secs(2));
        assert_eq!(l.usage(t0 + secs(2), MINUTE), WindowUsage { requests: 1, tokens: 200, in_flight_tokens: 0 });
        // 200 + 800 = 1,000: admitted exactly at the limit.
        l.try_admit(3, 800, q, t0 + secs(3), MINUTE).unwrap();
        assert_eq!(l.try_admit(4, 1, q, t0 + secs(3), MINUTE), Err(Throttle::Tokens));
    }

    #[test]
    fn settled_tokens_leave_the_window_one_window_after_settlement() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 100);
        l.try_admit(1, 900, q, t0, MINUTE).unwrap();
        l.settle(1, 900, t0 + secs(10));
        assert_eq!(l.try_admit(2, 200, q, t0 + secs(69), MINUTE), Err(Throttle::Tokens));
        l.try_admit(3, 1_000, q, t0 + secs(70), MINUTE).unwrap();
    }

    #[test]
    fn in_flight_reservations_count_however_old_they_are() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 100);
        l.try_admit(1, 900, q, t0, MINUTE).unwrap();
        assert_eq!(l.try_admit(2, 200, q, t0 + secs(300), MINUTE), Err(Throttle::Tokens));
        assert_eq!(l.usage(t0 + secs(300), MINUTE).requests, 0);
    }

    #[test]
    fn a_throttled_request_consumes_nothing() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 2);
        l.try_admit(1, 600, q, t0, MINUTE).unwrap();
        assert_eq!(l.try_admit(2, 600, q, t0, MINUTE), Err(Throttle::Tokens));
        assert_eq!(l.usage(t0, MINUTE), WindowUsage { requests: 1, tokens: 600, in_flight_tokens: 600 });
        l.try_admit(3, 400, q, t0, MINUTE).unwrap();
    }

    #[test]
    fn out_of_order_settlements_expire_correctly() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        l.try_admit(1, 10, None, t0, MINUTE).unwrap();
        l.try_admit(2, 10, None, t0, MINUTE).unwrap();
        l.settle(2, 5, t0 + secs(20));
        l.settle(1, 7, t0 + secs(10));
        assert_eq!(l.usage(t0 + secs(70), MINUTE).tokens, 5);
        assert_eq!(l.usage(t0 + secs(80), MINUTE).tokens, 0);
    }

    #[test]
    fn a_bucket_without_quota_admits_everything() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        for i in 0..1_000 {
            l.try_admit(i, u64::MAX / 2_000, None, t0, MINUTE).unwrap();
        }
    }

    #[test]
    fn overrides_apply_in_order_and_reset_restores_the_configured_limits() {
        let bucket = Bucket::new("m", Scope::Geo("us".into()));
        let configured = HashMap::from([(bucket.clone(), QuotaOverride { tpm: None, rpm: Some(5) })]);
        let book = QuotaBook::new(MINUTE, configured);
        let catalog = quota(100, 50);
        assert_eq!(book.limits(&bucket, catalog), quota(100, 5));
        book.set_runtime(&bucket, QuotaOverride { tpm: Some(7), rpm: None });
        assert_eq!(book.limits(&bucket, catalog), quota(7, 5));
        book.reset_bucket(&bucket);
        assert_eq!(book.limits(&bucket, catalog), quota(100, 5));
        let other = Bucket::new("m", Scope::Global);
        assert_eq!(book.limits(&other, None), None);
    }

    #[test]
    fn buckets_are_independent() {
        let t0 = Instant::now();
        let book = QuotaBook::new(MINUTE, HashMap::new());
        let us = Bucket::new("m", Scope::Geo("us".into()));
        let global = Bucket::new("m", Scope::Global);
        book.try_admit(&us, quota(10, 1), 1, t0).unwrap();
        assert_eq!(book.try_admit(&us, quota(10, 1), 1, t0), Err(Throttle::Requests));
        book.try_admit(&global, quota(10, 1), 1, t0).unwrap();
        assert_eq!(us.to_string(), "us.m");
        assert_eq!(Bucket::new("m", Scope::InRegion).to_string(), "m");
    }
}
