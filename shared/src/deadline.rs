//! One deadline per request: the instant by which the whole request must be answered.
//!
//! A request is bounded twice: by the deployer's budget (`REQUEST_TIMEOUT_MS`), and by Lambda's
//! invocation deadline less a margin for writing the response. Whichever comes first is the
//! request's [`Deadline`]; every stage (cache read, each model call, cache write) is bounded by
//! what is left of it, and the cache by its own smaller budget on top.
//!
//! Instants are `tokio::time::Instant`s so that tests can pause and advance time exactly.

use std::future::Future;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The instant by which a request must be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline {
    at: Instant,
}

/// The deadline passed before the bounded work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deadline passed")]
pub struct Expired;

impl Deadline {
    /// `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        let now = Instant::now();
        // An absurd budget saturates at a day instead of overflowing the clock.
        let budget = budget.min(Duration::from_secs(86_400));
        Deadline { at: now.checked_add(budget).unwrap_or(now) }
    }

    /// A wall-clock deadline (Lambda's invocation deadline) less `margin`, on the monotonic clock.
    /// A deadline already past, or closer than the margin, is a deadline of now.
    pub fn from_wall_clock(deadline: SystemTime, margin: Duration) -> Deadline {
        let left = deadline.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO);
        Deadline::after(left.saturating_sub(margin))
    }

    /// The sooner of the two.
    pub fn earliest(self, other: Deadline) -> Deadline {
        self.min(other)
    }

    /// This deadline, or `budget` from now if that is sooner: a stage's own limit within the request's.
    pub fn within(self, budget: Duration) -> Deadline {
        self.earliest(Deadline::after(budget))
    }

    /// Time left; zero once the deadline has passed.
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn is_expired(&self) -> bool {
        self.remaining().is_zero()
    }

    /// Runs `work` until it finishes or the deadline passes, whichever is first; on expiry the
    /// work is dropped, which cancels it.
    pub async fn bound<F: Future>(&self, work: F) -> Result<F::Output, Expired> {
        tokio::time::timeout_at(self.at, work).await.map_err(|_| Expired)
    }
}

/// How long a request and its stages may take (see [`crate::config`] for the variables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budgets {
    /// The longest a request may take, whatever Lambda would allow.
    pub request: Duration,
    /// Kept back from Lambda's invocation deadline to write the response and flush the logs.
    pub response_margin: Duration,
    /// Each cache read or write. The cache only saves money, so it never gets much of the
    /// request's time: over budget, a read is a miss and a write is abandoned.
    pub cache: Duration,
    /// A fallback model is called only if at least this much time is left; a call that cannot
    /// finish would spend the rest of the request for nothing.
    pub min_hop: Duration,
}

impl Default for Budgets {
    /// Fits the template: a 30 s function timeout behind API Gateway's 30 s HTTP API limit.
    fn default() -> Self {
        Budgets {
            request: Duration::from_millis(27_000),
            response_margin: Duration::from_millis(500),
            cache: Duration::from_millis(50),
            min_hop: Duration::from_millis(2_000),
        }
    }
}

impl Budgets {
    /// The deadline of a request that starts now: the budget, or the invocation's deadline
    /// (when running under Lambda) less the response margin, whichever is sooner.
    ///
    /// A deadline already past when the request arrives is no deadline at all: Lambda never
    /// hands over an invocation that has run out, but local runtimes (`cargo lambda watch`)
    /// report none, which the runtime library reads as the epoch.
    pub fn deadline(&self, invocation_deadline: Option<SystemTime>) -> Deadline {
        let budget = Deadline::after(self.request);
        match invocation_deadline.filter(|at| *at > SystemTime::now()) {
            Some(at) => budget.earliest(Deadline::from_wall_clock(at, self.response_margin)),
            None => budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn remaining_counts_down_to_zero() {
        let deadline = Deadline::after(Duration::from_millis(100));
        assert_eq!(deadline.remaining(), Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(deadline.remaining(), Duration::from_millis(40));
        tokio::time::advance(Duration::from_millis(60)).await;
        assert_eq!(deadline.remaining(), Duration::ZERO);
        assert!(deadline.is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn the_sooner_of_budget_and_invocation_deadline_wins() {
        let budgets = Budgets { request: Duration::from_secs(10), ..Budgets::default() };
        assert_eq!(budgets.deadline(None).remaining(), Duration::from_secs(10));

        let near = SystemTime::now() + Duration::from_secs(3);
        let remaining = budgets.deadline(Some(near)).remaining();
        // The wall clock moves on its own between the two readings: allow a little slack.
        assert!(remaining <= Duration::from_millis(2_500), "{remaining:?}");
        assert!(remaining > Duration::from_millis(2_000), "{remaining:?}");

        let far = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(budgets.deadline(Some(far)).remaining(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_within_the_margin_leaves_no_time_and_an_unreported_one_is_ignored() {
        let budgets = Budgets::default();
        // What lambda_runtime reads when the runtime API sends no deadline (cargo lambda watch).
        assert_eq!(budgets.deadline(Some(SystemTime::UNIX_EPOCH)).remaining(), budgets.request);
        let within_margin = SystemTime::now() + budgets.response_margin / 2;
        assert!(budgets.deadline(Some(within_margin)).is_expired());
    }

    #[tokio::test(start_paused = true)]
    async fn bound_cancels_work_at_the_deadline() {
        let deadline = Deadline::after(Duration::from_millis(50));
        let started = Instant::now();
        let result = deadline.bound(std::future::pending::<()>()).await;
        assert_eq!(result, Err(Expired));
        assert_eq!(started.elapsed(), Duration::from_millis(50));
        assert_eq!(Deadline::after(Duration::from_secs(1)).bound(async { 7 }).await, Ok(7));
    }

    #[tokio::test(start_paused = true)]
    async fn within_takes_the_smaller_limit() {
        let deadline = Deadline::after(Duration::from_secs(1));
        assert_eq!(deadline.within(Duration::from_millis(50)).remaining(), Duration::from_millis(50));
        assert_eq!(deadline.within(Duration::from_secs(5)).remaining(), Duration::from_secs(1));
    }
}
