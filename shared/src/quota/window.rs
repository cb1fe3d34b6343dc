//! The sliding window of one quota, as Bedrock counts it.
//!
//! A request's life against the window:
//!
//! 1. RPM is checked first: the request is throttled if the window already holds `rpm`
//!    admitted requests.
//! 2. At admission it reserves [`super::reserved_tokens`]. If the tokens in the window plus
//!    this reservation exceed `tpm`, it is throttled, even if it would settle far lower.
//! 3. When it ends it settles at [`super::settled_tokens`] and the rest of the reservation
//!    is released.
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
//! explicitly, which keeps the arithmetic testable to the token and the nanosecond, and lets
//! the emulator (which enforces the quota) and the gateway (which plans against it) share it.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::catalog::Quota;

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

/// The window of one quota. `None` as a quota means the quota is unlimited: requests are
/// still counted, so that usage can be reported.
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
    /// would break. `id` must be unique among the requests in flight.
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
        if let Some(previous) = self.in_flight.insert(id, reserve) {
            // A reused ID replaces its reservation rather than leaking the old one.
            self.in_flight_tokens -= previous;
        }
        self.in_flight_tokens += reserve;
        Ok(())
    }

    /// Replaces request `id`'s reservation by what it actually consumed. Unknown IDs (the
    /// window was reset while the request ran, or it settled already) are ignored.
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

    /// Gives request `id`'s reservation back without consuming anything: the request never
    /// reached the model. Its admission still counts against RPM, as Bedrock counts it.
    pub fn release(&mut self, id: u64) {
        if let Some(reserved) = self.in_flight.remove(&id) {
            self.in_flight_tokens -= reserved;
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

    /// How long until a request reserving `reserve` tokens would be admitted, if nothing
    /// else is admitted or settles meanwhile: zero if it would be now. `None` when waiting
    /// alone cannot make room: the reservations in flight (which leave only when their
    /// requests end) plus `reserve` exceed `tpm`, or `reserve` alone does.
    pub fn time_until_admissible(
        &mut self,
        reserve: u64,
        quota: Option<Quota>,
        now: Instant,
        window: Duration,
    ) -> Option<Duration> {
        self.expire(now, window);
        let Some(quota) = quota else {
            return Some(Duration::ZERO);
        };
        let leaves_at = |t: Instant| (t + window).saturating_duration_since(now);
        let requests_wait = match (self.admitted.len() as u64).checked_sub(quota.rpm) {
            None => Duration::ZERO,
            // `excess + 1` admissions must leave for one more to fit; they leave in order.
            Some(excess) => {
                let index = usize::try_from(excess).ok()?;
                leaves_at(*self.admitted.get(index)?)
            }
        };
        let budget = quota.tpm.checked_sub(self.in_flight_tokens)?.checked_sub(reserve)?;
        let mut settled = self.settled_tokens;
        let mut tokens_wait = Duration::ZERO;
        for (t, tokens) in &self.settled {
            if settled <= budget {
                break;
            }
            settled -= tokens;
            tokens_wait = leaves_at(*t);
        }
        Some(requests_wait.max(tokens_wait))
    }
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
    fn a_release_returns_the_tokens_but_not_the_request() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 2);
        l.try_admit(1, 1_000, q, t0, MINUTE).unwrap();
        l.release(1);
        l.release(1);
        assert_eq!(l.usage(t0, MINUTE), WindowUsage { requests: 1, tokens: 0, in_flight_tokens: 0 });
        l.try_admit(2, 1_000, q, t0, MINUTE).unwrap();
        assert_eq!(l.try_admit(3, 1, q, t0, MINUTE), Err(Throttle::Requests));
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
    fn a_quota_without_limits_admits_everything() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        for i in 0..1_000 {
            l.try_admit(i, u64::MAX / 2_000, None, t0, MINUTE).unwrap();
        }
        assert_eq!(l.time_until_admissible(u64::MAX, None, t0, MINUTE), Some(Duration::ZERO));
    }

    #[test]
    fn the_wait_is_until_enough_leaves_the_window_and_then_admission_succeeds() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 3);
        assert_eq!(l.time_until_admissible(1_000, q, t0, MINUTE), Some(Duration::ZERO));
        for (i, at) in [(1, 0), (2, 10), (3, 20)] {
            l.try_admit(i, 300, q, t0 + secs(at), MINUTE).unwrap();
            l.settle(i, 300, t0 + secs(at + 5));
        }
        // 900 settled. 100 more fits the tokens, but the first admission (t0) must leave
        // the window for a fourth request: RPM decides.
        let now = t0 + secs(30);
        assert_eq!(l.time_until_admissible(100, q, now, MINUTE), Some(secs(30)));
        // 200 more needs the first settlement (t0 + 5 s) gone: TPM decides.
        assert_eq!(l.time_until_admissible(200, q, now, MINUTE), Some(secs(35)));
        // 700 more needs the first two settlements gone; the second leaves at t0 + 75 s.
        assert_eq!(l.time_until_admissible(700, q, now, MINUTE), Some(secs(45)));
        assert_eq!(l.try_admit(4, 700, q, now + secs(45) - Duration::from_nanos(1), MINUTE), Err(Throttle::Tokens));
        l.try_admit(5, 700, q, now + secs(45), MINUTE).unwrap();
    }

    #[test]
    fn no_wait_helps_when_reservations_in_flight_fill_the_quota() {
        let t0 = Instant::now();
        let mut l = Ledger::default();
        let q = quota(1_000, 10);
        l.try_admit(1, 900, q, t0, MINUTE).unwrap();
        assert_eq!(l.time_until_admissible(200, q, t0, MINUTE), None);
        assert_eq!(l.time_until_admissible(100, q, t0, MINUTE), Some(Duration::ZERO));
        assert_eq!(l.time_until_admissible(1_001, q, t0, MINUTE), None);
    }
}
