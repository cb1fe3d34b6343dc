//! This instance's exact mirror of Bedrock's sliding window, for its own requests.
//!
//! Bedrock counts, for one quota at instant `t`, every request admitted in `(t - W, t]` (RPM)
//! and every in-flight reservation plus the settled tokens of every request that settled in
//! `(t - W, t]` (TPM). The mirror keeps the same entries for the requests this instance
//! admitted, with reservations at least as large as Bedrock's, so its usage is never below
//! what Bedrock counts for them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct Window {
    settled: VecDeque<(Instant, u64)>,
    settled_tokens: u64,
    in_flight: HashMap<u64, u64>,
    in_flight_tokens: u64,
    admitted: VecDeque<Instant>,
}

/// What the window holds at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Usage {
    pub tokens: u64,
    pub requests: u64,
}

impl Window {
    fn expire(&mut self, now: Instant, window: Duration) {
        let expired = |t: &Instant| now.saturating_duration_since(*t) >= window;
        while let Some((at, tokens)) = self.settled.front().copied() {
            if !expired(&at) {
                break;
            }
            self.settled.pop_front();
            self.settled_tokens -= tokens;
        }
        while self.admitted.front().is_some_and(expired) {
            self.admitted.pop_front();
        }
    }

    pub(crate) fn usage(&mut self, now: Instant, window: Duration) -> Usage {
        self.expire(now, window);
        Usage { tokens: self.in_flight_tokens + self.settled_tokens, requests: self.admitted.len() as u64 }
    }

    pub(crate) fn reserve(&mut self, id: u64, tokens: u64, now: Instant) {
        self.in_flight.insert(id, tokens);
        self.in_flight_tokens += tokens;
        self.admitted.push_back(now);
    }

    /// Replaces the reservation by what Bedrock settled, counted from now for one window.
    pub(crate) fn settle(&mut self, id: u64, tokens: u64, now: Instant) {
        self.release(id);
        self.settled.push_back((now, tokens));
        self.settled_tokens += tokens;
    }

    /// The reservation is returned. The request stays counted: Bedrock may have counted it
    /// before the call failed, and counting it is the conservative side.
    pub(crate) fn release(&mut self, id: u64) {
        if let Some(tokens) = self.in_flight.remove(&id) {
            self.in_flight_tokens -= tokens;
        }
    }

    /// The earliest instant at which `extra` more tokens and one more request fit under
    /// `capacity`, if only window expiry frees room; `None` when in-flight reservations alone
    /// leave too little (their settlement time is unknown).
    pub(crate) fn fits_at(&mut self, extra: u64, capacity: Usage, now: Instant, window: Duration) -> Option<Instant> {
        let usage = self.usage(now, window);
        if usage.tokens.saturating_add(extra) <= capacity.tokens && usage.requests < capacity.requests {
            return Some(now);
        }
        let tokens_at = match (usage.tokens + extra).checked_sub(capacity.tokens) {
            None | Some(0) => now,
            Some(excess) => {
                let mut freed = 0;
                let mut at = None;
                for (settled_at, tokens) in &self.settled {
                    freed += tokens;
                    if freed >= excess {
                        at = Some(*settled_at + window);
                        break;
                    }
                }
                at?
            }
        };
        let requests_at = if usage.requests < capacity.requests {
            now
        } else if capacity.requests == 0 {
            return None;
        } else {
            // The oldest requests must leave until one slot is free.
            let leaving = (usage.requests + 1 - capacity.requests) as usize;
            *self.admitted.get(leaving - 1)? + window
        };
        Some(tokens_at.max(requests_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    #[tokio::test(start_paused = true)]
    async fn settled_tokens_count_for_exactly_one_window() {
        let mut w = Window::default();
        let t0 = Instant::now();
        w.reserve(1, 1_000, t0);
        assert_eq!(w.usage(t0, W), Usage { tokens: 1_000, requests: 1 });
        tokio::time::advance(Duration::from_secs(5)).await;
        w.settle(1, 300, Instant::now());
        let settled_at = Instant::now();
        assert_eq!(w.usage(settled_at, W).tokens, 300);
        // The request counts from admission, the tokens from settlement.
        assert_eq!(w.usage(t0 + W, W), Usage { tokens: 300, requests: 0 });
        assert_eq!(w.usage(settled_at + W - Duration::from_millis(1), W).tokens, 300);
        assert_eq!(w.usage(settled_at + W, W).tokens, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn fits_at_is_when_enough_settled_tokens_leave() {
        let mut w = Window::default();
        let t0 = Instant::now();
        for (id, tokens) in [(1, 400), (2, 300), (3, 200)] {
            w.reserve(id, tokens, t0);
            w.settle(id, tokens, t0 + Duration::from_secs(id * 10));
        }
        let now = t0 + Duration::from_secs(30);
        let cap = Usage { tokens: 1_000, requests: 10 };
        assert_eq!(w.fits_at(100, cap, now, W), Some(now));
        // 900 used; 600 more needs 500 freed: the first two settlements must leave.
        assert_eq!(w.fits_at(600, cap, now, W), Some(t0 + Duration::from_secs(20) + W));
        w.reserve(9, 1_000, now);
        assert_eq!(w.fits_at(1, cap, now, W), None, "an in-flight reservation blocks: its end is unknown");
    }

    #[tokio::test(start_paused = true)]
    async fn fits_at_waits_for_a_request_slot() {
        let mut w = Window::default();
        let t0 = Instant::now();
        for id in 0..3 {
            w.reserve(id, 1, t0 + Duration::from_secs(id));
            w.release(id);
        }
        let cap = Usage { tokens: 1_000, requests: 2 };
        let now = t0 + Duration::from_secs(5);
        // Two of the three requests must leave the window.
        assert_eq!(w.fits_at(1, cap, now, W), Some(t0 + Duration::from_secs(1) + W));
        assert_eq!(w.usage(now, W).tokens, 0, "a released reservation holds no tokens");
    }
}
