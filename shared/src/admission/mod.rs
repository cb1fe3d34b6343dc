//! Admission before Bedrock: a request is sent only when the quota it draws from has room for
//! it, counted across every instance of the function.
//!
//! # The argument
//! Bedrock's usage of a quota at instant `t` is the in-flight reservations plus the tokens
//! settled within the last window `W` (and, for RPM, the requests admitted within `W`). Each
//! instance keeps an exact mirror of that window for its own requests ([`window`]), with a
//! reservation per request at least as large as Bedrock's, and admits a request only if its
//! mirror plus the request fits the instance's **lease** of the quota. The leases of one
//! quota live in one DynamoDB item ([`lease::LeaseBook`]), written with a condition on its
//! version, and every write keeps `Σ unexpired leases ≤ quota × (1 − headroom)`. Since each
//! instance's usage is at most its lease and at least what Bedrock counts for it, Bedrock's
//! usage never exceeds the quota: an admitted request is throttled only if a settlement
//! exceeds its reservation (the caller's estimate was wrong; see [`Ask::tokens`]).
//!
//! A lease counts for everyone until its expiry. Its instance stops admitting under it
//! `W + max call time` before that expiry, so every request it admitted has settled and left
//! the window by then, even if the instance is frozen or killed: a dead instance strands at
//! most its lease, for at most one lease term. A lease shrinks only to at least what its
//! instance's window holds, which is safe at once; it grows only into what the others leave.
//!
//! # Cost
//! DynamoDB is called only to take or resize a lease: when there is none, when half of its
//! usable life has passed, when demand has outgrown it (at most once per renew interval), or
//! when a request waits. A request the lease covers makes no call. A resize reads the book and
//! writes it only if the lease moves materially or is due for refresh; while resizes change
//! nothing, the pause between them doubles (up to [`MAX_PACE`] renew intervals). Every resize
//! runs in a task of its own, one at a time per quota, and no waiter cancels it.
//! [`Admission::store_ops`] and [`Admission::store_writes`] count the calls.
//!
//! # Faults
//! Each store call is cut at the store timeout. A failed resize keeps the current lease
//! (shrunk to the proposal, in case the write landed); without a usable lease the instance
//! admits up to a conservative local share of the quota (`degraded`, reported and logged),
//! and retries the store once per renew interval. Nothing here fails a request because the
//! store failed, and no wait outlasts `min(wait, deadline)`.

pub mod lease;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
mod queue;
mod window;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::catalog::Quota;
use crate::deadline::Deadline;
use crate::quota::QuotaKey;
use crate::splitmix::SplitMix64;

pub use lease::{Amount, Lease, LeaseBook};
use queue::{FairQueue, Ticket};
pub use queue::{SharesError, TenantShares};
use window::Window;

/// Where the leases live (DynamoDB in production, [`memory::MemoryBudgetStore`] in tests).
pub trait BudgetStore: Send + Sync + 'static {
    /// The book of `key`, read strongly consistently; an empty book (version 0) if none.
    fn load(&self, key: &QuotaKey) -> impl Future<Output = Result<LeaseBook, BudgetError>> + Send;

    /// Writes `book` only if the stored book's version is still `book.version - 1`.
    fn save(&self, key: &QuotaKey, book: &LeaseBook) -> impl Future<Output = Result<Saved, BudgetError>> + Send;
}

/// The outcome of [`BudgetStore::save`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// Another instance wrote first: read again.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("the budget store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the budget store is throttling: {0}")]
    Throttled(String),
    #[error("the budget store failed: {0}")]
    Store(String),
    #[error("the budget item is unreadable: {0}")]
    Corrupt(String),
}

impl BudgetError {
    pub fn label(&self) -> &'static str {
        match self {
            BudgetError::Timeout(_) => "budget_timeout",
            BudgetError::Throttled(_) => "budget_throttled",
            BudgetError::Store(_) => "budget_store_error",
            BudgetError::Corrupt(_) => "budget_corrupt",
        }
    }
}

/// How admission behaves; see [`crate::config`] for the variables and their defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionSettings {
    /// Bedrock's quota window (one minute; shorter in scaled tests).
    pub window: Duration,
    /// How long a lease is counted after it is written.
    pub lease_term: Duration,
    /// The longest a request may hold a reservation: the request budget.
    pub max_call: Duration,
    /// Part of each quota no lease may take, for estimate error and callers outside the gateway.
    pub headroom_percent: u8,
    /// The longest a request waits for room.
    pub wait: Duration,
    pub shares: TenantShares,
    /// The part of a quota an instance without a usable lease may use while the store fails.
    pub degraded_share: f64,
    /// Each store call.
    pub store_timeout: Duration,
    /// The least time between two resizes of one lease, apart from taking a first one.
    pub renew_interval: Duration,
}

impl Default for AdmissionSettings {
    fn default() -> Self {
        AdmissionSettings {
            window: Duration::from_secs(60),
            lease_term: Duration::from_secs(120),
            max_call: Duration::from_millis(27_000),
            headroom_percent: 5,
            wait: Duration::from_millis(10_000),
            shares: TenantShares::default(),
            degraded_share: 0.1,
            store_timeout: Duration::from_millis(100),
            renew_interval: Duration::from_secs(1),
        }
    }
}

impl AdmissionSettings {
    /// How long after it is written a lease may admit requests; zero if the term is too short
    /// to admit anything.
    pub fn usable_lease(&self) -> Duration {
        self.lease_term.saturating_sub(self.window + self.max_call)
    }
}

/// What a request asks of its quota.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub key: &'a QuotaKey,
    pub tenant: &'a str,
    /// The reservation: at least Bedrock's own (`input + cache read + cache write +
    /// maxTokens`) and at least what Bedrock may settle (`input + cache write + burndown ×
    /// maxTokens`, [`crate::catalog::ModelSpec::quota_tokens`] of the worst case). With the
    /// caller's `maxTokens` or a learned default in place of the worst case, admission is
    /// exact up to the answers that run longer than that estimate.
    pub tokens: u64,
    pub deadline: Deadline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdmissionMode {
    /// Under this instance's lease of the shared budget.
    Shared,
    /// Under the conservative local limit, because the budget store failed.
    Degraded,
    /// The quota has no configured limit: nothing is counted.
    Unlimited,
}

impl AdmissionMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AdmissionMode::Shared => "shared",
            AdmissionMode::Degraded => "degraded",
            AdmissionMode::Unlimited => "unlimited",
        }
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Requests,
    Tokens,
    /// The reservation exceeds the whole quota: it can never be admitted.
    TooLarge,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Requests => "requests",
            Limit::Tokens => "tokens",
            Limit::TooLarge => "too_large",
        }
    }
}

/// What admission did for one request, for the response and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionReport {
    /// The quota's canonical ID.
    pub quota: String,
    pub reserved_tokens: u64,
    pub waited_ms: u64,
    pub mode: AdmissionMode,
    pub settled_tokens: Option<u64>,
}

/// A request admitted: its reservation is held until [`Permit::settle`], or returned when the
/// permit is dropped unsettled (the call failed and consumed nothing).
#[derive(Debug)]
pub struct Permit {
    held: Option<(Arc<Budget>, u64)>,
    report: AdmissionReport,
}

impl Permit {
    /// Replaces the reservation by what Bedrock settled ([`crate::catalog::ModelSpec::quota_tokens`]).
    pub fn settle(mut self, tokens: u64) -> AdmissionReport {
        if let Some((budget, id)) = self.held.take() {
            budget.lock().window.settle(id, tokens, Instant::now());
            budget.changed.notify_waiters();
        }
        self.report.settled_tokens = Some(tokens);
        self.report.clone()
    }

    pub fn report(&self) -> AdmissionReport {
        self.report.clone()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some((budget, id)) = self.held.take() {
            budget.lock().window.release(id);
            budget.changed.notify_waiters();
        }
    }
}

/// A request not admitted by its wait's end, or never admissible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quota {key} has no room ({}); retry after {retry_after:?}", .limit.as_str())]
pub struct Refusal {
    pub key: QuotaKey,
    /// When this instance's window will have room for the request and those queued before it
    /// (zero for `too_large`: waiting will not help).
    pub retry_after: Duration,
    pub waited: Duration,
    pub limit: Limit,
    pub mode: AdmissionMode,
}

/// Admission as the gateway holds it: one boxed future per model call buys a gateway type
/// that does not change with the budget store behind it.
pub trait Admit: Send + Sync + fmt::Debug {
    fn admit<'a>(
        &'a self,
        ask: Ask<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Permit, Refusal>> + Send + 'a>>;
}

impl<B: BudgetStore> Admit for Admission<B> {
    fn admit<'a>(
        &'a self,
        ask: Ask<'a>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Permit, Refusal>> + Send + 'a>> {
        Box::pin(Admission::admit(self, ask))
    }
}

/// One instance's admission to every configured quota; built once per cold start.
pub struct Admission<B: BudgetStore> {
    inner: Arc<Inner<B>>,
}

impl<B: BudgetStore> fmt::Debug for Admission<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("instance_id", &self.inner.instance_id)
            .field("quotas", &self.inner.budgets.keys().map(ToString::to_string).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Inner<B> {
    store: B,
    settings: AdmissionSettings,
    instance_id: String,
    budgets: BTreeMap<QuotaKey, Arc<Budget>>,
    ops: AtomicU64,
    writes: AtomicU64,
    next_permit: AtomicU64,
    jitter: Mutex<SplitMix64>,
    /// Wall-clock time (what leases expire by) read through tokio's clock, so that paused
    /// tests move both together.
    epoch: (SystemTime, Instant),
}

/// Clocks of instances differ; another instance's lease is counted this much past its expiry.
const CLOCK_SKEW_MS: u64 = 1_000;
/// A write that lost to another instance is retried this many times per resize.
const CONFLICT_ATTEMPTS: u32 = 3;
/// A lease this many times its instance's demand gives the surplus back at the next resize.
const SHRINK_ABOVE: u64 = 4;
/// A resize that would move the lease by at most this fraction of it (`1 / N`) is not
/// written: under a steady overload the demand-proportional share only jitters, and
/// rewriting it would cost a write per resize for nothing.
const MATERIAL_CHANGE: u64 = 16;
/// While resizes change nothing, each waits twice as long as the one before, up to this many
/// renew intervals: a contended quota then costs a read every few seconds per instance, not a
/// read and a write every second.
const MAX_PACE: u32 = 4;

/// One quota as this instance sees it.
#[derive(Debug)]
struct Budget {
    key: QuotaKey,
    /// The quota less the headroom: what all leases together may hold.
    capacity: Amount,
    /// What this instance may use on its own while the store fails.
    degraded: Amount,
    state: Mutex<BudgetState>,
    /// Told whenever room may have appeared: a settlement, a release, a new lease, a waiter
    /// leaving the queue.
    changed: Notify,
}

#[derive(Debug, Default)]
struct BudgetState {
    window: Window,
    lease: Option<HeldLease>,
    queue: FairQueue,
    demand: Demand,
    renewing: bool,
    last_attempt: Option<Instant>,
    /// The last store call failed: without a usable lease, admit under the degraded limit.
    store_down: bool,
    /// The last resize got less than it wanted because others hold the rest, or could not
    /// grow the lease at all: resizing again before the interval would not help.
    contended: bool,
    /// The least time from one resize to the next: the renew interval, doubled after each
    /// resize that changed nothing (see [`MAX_PACE`]).
    pace: Duration,
}

#[derive(Debug, Clone, Copy)]
struct HeldLease {
    amount: Amount,
    /// The last instant a request may be admitted under it: its expiry less `W + max call`.
    admit_until: Instant,
    /// When to resize it ahead of that point.
    refresh_at: Instant,
}

/// Tokens and requests asked, decayed with the window as time constant: at a steady rate it
/// approaches what one window holds.
#[derive(Debug, Default, Clone, Copy)]
struct Demand {
    tokens: f64,
    requests: f64,
    at: Option<Instant>,
}

impl Demand {
    fn decayed(&self, now: Instant, window: Duration) -> Demand {
        let factor = match self.at {
            Some(at) => (-(now.saturating_duration_since(at).as_secs_f64()) / window.as_secs_f64().max(1e-3)).exp(),
            None => 0.0,
        };
        Demand { tokens: self.tokens * factor, requests: self.requests * factor, at: Some(now) }
    }

    fn add(&mut self, tokens: u64, now: Instant, window: Duration) {
        let mut next = self.decayed(now, window);
        next.tokens += tokens as f64;
        next.requests += 1.0;
        *self = next;
    }
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        // A poisoned lock only means another thread panicked mid-update of plain counters;
        // admission goes on rather than failing every request.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What one look at a budget decided for a queued request.
enum Step {
    Admitted {
        id: u64,
        mode: AdmissionMode,
    },
    /// No usable lease and the store is not known to fail: take one first.
    NeedLease,
    Wait {
        until: Option<Instant>,
    },
}

impl BudgetState {
    fn usable(&self, now: Instant, budget: &Budget) -> Option<(Amount, AdmissionMode)> {
        match self.lease {
            Some(lease) if lease.admit_until >= now => Some((lease.amount, AdmissionMode::Shared)),
            _ if self.store_down => Some((budget.degraded, AdmissionMode::Degraded)),
            _ => None,
        }
    }

    fn need(&mut self, now: Instant, window: Duration) -> Amount {
        let usage = self.window.usage(now, window);
        let demand = self.demand.decayed(now, window);
        Amount {
            tokens: (demand.tokens.ceil() as u64).max(usage.tokens + self.queue.queued_tokens()),
            requests: (demand.requests.ceil() as u64).max(usage.requests + self.queue.len() as u64),
        }
    }

    /// When a resize not due now may become due by time alone: the end of the pacing interval,
    /// or the lease's refresh point. `None` while one runs (its end is notified).
    fn next_resize_at(&self, now: Instant, settings: &AdmissionSettings) -> Option<Instant> {
        if self.renewing {
            return None;
        }
        match self.last_attempt.map(|at| at + self.pace(settings)) {
            Some(paced_until) if paced_until > now => Some(paced_until),
            _ => self.lease.map(|l| l.refresh_at).filter(|at| *at > now),
        }
    }

    fn pace(&self, settings: &AdmissionSettings) -> Duration {
        self.pace.max(settings.renew_interval)
    }

    /// Whether a resize is worth a store call now.
    fn resize_due(&mut self, now: Instant, settings: &AdmissionSettings) -> bool {
        if self.renewing {
            return false;
        }
        let interval_passed = self.last_attempt.is_none_or(|at| now >= at + self.pace(settings));
        let Some(lease) = self.lease.filter(|l| l.admit_until >= now) else {
            // Without a lease only a failed store or a lost race (every attempt met another
            // instance's write) waits for the interval: retrying those at once is what turns
            // many instances starting together into a storm of store calls.
            return interval_passed || !(self.store_down || self.contended);
        };
        let need = self.need(now, settings.window);
        // Resize before the lease is full, so that a growing demand rarely waits for it.
        let crowded = need.tokens.saturating_mul(4) > lease.amount.tokens.saturating_mul(3)
            || need.requests.saturating_mul(4) > lease.amount.requests.saturating_mul(3)
            || self.queue.len() > 0;
        let oversized = lease.amount.tokens > need.tokens.saturating_mul(SHRINK_ABOVE).max(1)
            && lease.amount.requests > need.requests.saturating_mul(SHRINK_ABOVE).max(1);
        // Growing into free room may go as fast as demand; anything else once per interval.
        let paced = interval_passed || (crowded && !self.contended);
        paced && (now >= lease.refresh_at || crowded || oversized)
    }
}

impl<B: BudgetStore> Admission<B> {
    /// `limits` are the quotas as Bedrock enforces them; a key without a limit is admitted
    /// without counting (`unlimited`). `instance_id` must be unique per running instance.
    pub fn new(store: B, settings: AdmissionSettings, limits: BTreeMap<QuotaKey, Quota>, instance_id: String) -> Self {
        let keep = 1.0 - f64::from(settings.headroom_percent.min(100)) / 100.0;
        let budgets = limits
            .into_iter()
            .map(|(key, quota)| {
                let capacity = Amount {
                    tokens: (quota.tpm as f64 * keep).floor() as u64,
                    requests: (quota.rpm as f64 * keep).floor() as u64,
                };
                let share = settings.degraded_share.clamp(0.0, 1.0);
                let degraded = Amount {
                    tokens: (capacity.tokens as f64 * share).floor() as u64,
                    requests: ((capacity.requests as f64 * share).floor() as u64).max(1).min(capacity.requests),
                };
                let budget =
                    Budget { key: key.clone(), capacity, degraded, state: Mutex::default(), changed: Notify::new() };
                (key, Arc::new(budget))
            })
            .collect();
        let seed = instance_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Admission {
            inner: Arc::new(Inner {
                store,
                settings,
                instance_id,
                budgets,
                ops: AtomicU64::new(0),
                writes: AtomicU64::new(0),
                next_permit: AtomicU64::new(0),
                jitter: Mutex::new(SplitMix64::new(seed)),
                epoch: (SystemTime::now(), Instant::now()),
            }),
        }
    }

    /// Budget-store operations made so far, reads and writes.
    pub fn store_ops(&self) -> u64 {
        self.inner.ops.load(Ordering::Relaxed)
    }

    /// The writes among [`Admission::store_ops`].
    pub fn store_writes(&self) -> u64 {
        self.inner.writes.load(Ordering::Relaxed)
    }

    /// Admits the request when its quota has room, waiting in the tenant-fair order for at
    /// most `min(settings.wait, deadline)`; a reservation larger than the quota is refused at
    /// once.
    pub async fn admit(&self, ask: Ask<'_>) -> Result<Permit, Refusal> {
        let inner = &self.inner;
        let Some(budget) = inner.budgets.get(ask.key) else {
            return Ok(Permit {
                held: None,
                report: AdmissionReport {
                    quota: ask.key.to_string(),
                    reserved_tokens: ask.tokens,
                    waited_ms: 0,
                    mode: AdmissionMode::Unlimited,
                    settled_tokens: None,
                },
            });
        };
        let started = Instant::now();
        let window = inner.settings.window;
        if ask.tokens > budget.capacity.tokens || budget.capacity.requests == 0 {
            let mode = budget.lock().usable(started, budget).map_or(AdmissionMode::Shared, |(_, mode)| mode);
            return Err(Refusal {
                key: ask.key.clone(),
                retry_after: Duration::ZERO,
                waited: Duration::ZERO,
                limit: Limit::TooLarge,
                mode,
            });
        }
        // Taking a lease is not waiting for room: even a request that may not wait sees the
        // end of one store round (each call is cut at the store timeout), within its deadline.
        let lease_until = started + ask.deadline.remaining();
        let give_up_at = lease_until.min(started + inner.settings.wait);
        let ticket = {
            let mut state = budget.lock();
            state.demand.add(ask.tokens, started, window);
            state.queue.enqueue(ask.tenant, inner.settings.shares.weight(ask.tenant), ask.tokens)
        };
        let mut place = Place { budget, ticket: Some(ticket) };
        loop {
            let changed = budget.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let now = Instant::now();
            let (step, resizing, next_resize) = {
                let mut state = budget.lock();
                let step = self.step(budget, &mut state, ticket, ask.tokens, now);
                if let Step::Admitted { .. } = step {
                    place.ticket = None;
                    state.queue.admit(ticket);
                }
                // Every resize runs to its end in a task of its own: one cut short by a
                // waiter's deadline would change nothing and be due again at once, a loop of
                // store calls for as long as requests keep arriving out of time.
                if state.resize_due(now, &inner.settings) {
                    self.start_resize(budget, &mut state);
                }
                (step, state.renewing, state.next_resize_at(now, &inner.settings))
            };
            let (wake, give_up) = match step {
                Step::Admitted { id, mode } => {
                    // The next in line may fit too.
                    budget.changed.notify_waiters();
                    return Ok(Permit {
                        held: Some((budget.clone(), id)),
                        report: AdmissionReport {
                            quota: ask.key.to_string(),
                            reserved_tokens: ask.tokens,
                            waited_ms: u64::try_from(now.duration_since(started).as_millis()).unwrap_or(u64::MAX),
                            mode,
                            settled_tokens: None,
                        },
                    });
                }
                Step::NeedLease if resizing => (lease_until, lease_until),
                Step::NeedLease => (next_resize.map_or(give_up_at, |at| at.min(give_up_at)), give_up_at),
                // Wake for the window, for the next resize this instance may make (the end of
                // one running is notified), or to give up.
                Step::Wait { until } => {
                    ([until, next_resize].into_iter().flatten().fold(give_up_at, Instant::min), give_up_at)
                }
            };
            if now >= give_up {
                return Err(self.refuse(budget, &mut place, ask.tokens, started, now));
            }
            let _ = tokio::time::timeout_at(wake, changed).await;
        }
    }

    fn step(&self, budget: &Budget, state: &mut BudgetState, ticket: Ticket, tokens: u64, now: Instant) -> Step {
        let window = self.inner.settings.window;
        let Some((capacity, mode)) = state.usable(now, budget) else {
            return Step::NeedLease;
        };
        if !state.queue.is_head(ticket) {
            return Step::Wait { until: None };
        }
        let usage = state.window.usage(now, window);
        if usage.tokens.saturating_add(tokens) <= capacity.tokens && usage.requests < capacity.requests {
            let id = self.inner.next_permit.fetch_add(1, Ordering::Relaxed);
            state.window.reserve(id, tokens, now);
            return Step::Admitted { id, mode };
        }
        let capacity = window::Usage { tokens: capacity.tokens, requests: capacity.requests };
        Step::Wait { until: state.window.fits_at(tokens, capacity, now, window) }
    }

    fn refuse(&self, budget: &Budget, place: &mut Place<'_>, tokens: u64, started: Instant, now: Instant) -> Refusal {
        let window = self.inner.settings.window;
        let mut state = budget.lock();
        let (capacity, mode) = state.usable(now, budget).unwrap_or((budget.degraded, AdmissionMode::Degraded));
        let ahead = place.ticket.map_or(0, |t| state.queue.tokens_ahead(t));
        let usage = state.window.usage(now, window);
        let limit = if usage.requests >= capacity.requests { Limit::Requests } else { Limit::Tokens };
        let capacity = window::Usage { tokens: capacity.tokens, requests: capacity.requests };
        let retry_after = state
            .window
            .fits_at(tokens.saturating_add(ahead), capacity, now, window)
            .map_or(window, |at| at.saturating_duration_since(now));
        if let Some(ticket) = place.ticket.take() {
            state.queue.leave(ticket);
        }
        drop(state);
        budget.changed.notify_waiters();
        Refusal { key: budget.key.clone(), retry_after, waited: now.duration_since(started), limit, mode }
    }

    /// Starts a resize of `budget` in a task of its own, marked under the lock that decided
    /// it, so that no second one starts meanwhile.
    fn start_resize(&self, budget: &Arc<Budget>, state: &mut BudgetState) {
        state.renewing = true;
        state.last_attempt = Some(Instant::now());
        let (inner, budget) = (self.inner.clone(), budget.clone());
        tokio::spawn(async move { inner.resize(&budget).await });
    }
}

/// A request's place in its budget's queue; leaving it (refused, or the caller gave up)
/// lets the next one move up.
struct Place<'a> {
    budget: &'a Budget,
    ticket: Option<Ticket>,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.budget.lock().queue.leave(ticket);
            self.budget.changed.notify_waiters();
        }
    }
}

/// Clears the single-flight flag of a resize however it ends, cancellation included.
struct Resizing<'a>(&'a Budget);

impl Drop for Resizing<'_> {
    fn drop(&mut self) {
        self.0.lock().renewing = false;
        self.0.changed.notify_waiters();
    }
}

enum Resized {
    Granted {
        lease: HeldLease,
        contended: bool,
    },
    /// The lease would barely move and is not due for refresh: nothing was written.
    Unchanged,
    /// Every attempt lost to another instance's write: the lease stays as it was.
    Contended,
}

impl<B: BudgetStore> Inner<B> {
    fn wall_ms(&self, now: Instant) -> u64 {
        let (wall, mono) = self.epoch;
        let at = wall + now.saturating_duration_since(mono);
        u64::try_from(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())).unwrap_or(u64::MAX)
    }

    async fn call<T>(&self, work: impl Future<Output = Result<T, BudgetError>>) -> Result<T, BudgetError> {
        self.ops.fetch_add(1, Ordering::Relaxed);
        let timeout = self.settings.store_timeout;
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(BudgetError::Timeout(timeout)))
    }

    /// Takes or resizes this instance's lease of `budget`; [`Admission::start_resize`] has
    /// marked it running.
    async fn resize(&self, budget: &Budget) {
        let _resizing = Resizing(budget);
        let outcome = self.resize_attempts(budget).await;
        let mut state = budget.lock();
        match outcome {
            Ok(Resized::Granted { lease, contended }) => {
                // A resize that did not grow the lease would not grow it if repeated at once.
                let grew = state.lease.is_none_or(|old| {
                    lease.amount.tokens > old.amount.tokens || lease.amount.requests > old.amount.requests
                });
                state.contended = contended || !grew;
                if state.store_down {
                    tracing::info!(quota = %budget.key, "budget store answers again: shared admission resumed");
                }
                state.store_down = false;
                state.lease = Some(lease);
                state.pace = self.settings.renew_interval;
            }
            Ok(Resized::Unchanged | Resized::Contended) => {
                state.store_down = false;
                state.contended = true;
                // An instance without a lease keeps trying once per interval: backing off
                // would leave its requests waiting on nothing.
                let longest = self.settings.renew_interval.saturating_mul(MAX_PACE);
                state.pace = match state.lease {
                    Some(_) => state.pace.max(self.settings.renew_interval).saturating_mul(2).min(longest),
                    None => self.settings.renew_interval,
                };
            }
            Err(error) => {
                if !state.store_down {
                    tracing::warn!(
                        quota = %budget.key,
                        error = error.label(),
                        detail = %error,
                        "budget store failed: the current lease is kept, else the degraded local limit applies"
                    );
                }
                state.store_down = true;
                state.pace = self.settings.renew_interval;
            }
        }
    }

    async fn resize_attempts(&self, budget: &Budget) -> Result<Resized, BudgetError> {
        let settings = &self.settings;
        for _ in 0..CONFLICT_ATTEMPTS {
            let book = self.call(self.store.load(&budget.key)).await?;
            let (proposal, lease, contended) = {
                let mut state = budget.lock();
                let now = Instant::now();
                let usage = state.window.usage(now, settings.window);
                let claim = lease::Claim {
                    instance: &self.instance_id,
                    usage: Amount { tokens: usage.tokens, requests: usage.requests },
                    demand: state.need(now, settings.window),
                    expires_at_ms: self.wall_ms(now + settings.lease_term),
                };
                let now_ms = self.wall_ms(now).saturating_sub(CLOCK_SKEW_MS);
                let (proposal, contended) = lease::resize(&book, claim, budget.capacity, now_ms);
                let amount = proposal
                    .leases
                    .get(&self.instance_id)
                    .map_or(Amount::default(), |l| Amount { tokens: l.tokens, requests: l.requests });
                let barely_moves = state
                    .lease
                    .filter(|held| held.admit_until >= now && now < held.refresh_at)
                    .is_some_and(|held| immaterial(held.amount, amount));
                if barely_moves {
                    return Ok(Resized::Unchanged);
                }
                // Until the write is known to have landed, admit under the smaller of the two:
                // both the old and the new book then hold at least what this instance uses.
                if let Some(held) = state.lease.as_mut() {
                    held.amount.tokens = held.amount.tokens.min(amount.tokens);
                    held.amount.requests = held.amount.requests.min(amount.requests);
                }
                let usable = settings.usable_lease();
                let lease = HeldLease { amount, admit_until: now + usable, refresh_at: now + usable / 2 };
                (proposal, lease, contended)
            };
            self.writes.fetch_add(1, Ordering::Relaxed);
            match self.call(self.store.save(&budget.key, &proposal)).await? {
                Saved::Written => return Ok(Resized::Granted { lease, contended }),
                Saved::Conflict => {
                    let spread = u64::try_from(settings.store_timeout.as_micros() / 2).unwrap_or(u64::MAX).max(1);
                    let pause = self.jitter.lock().map_or(spread / 2, |mut rng| rng.below(spread));
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
            }
        }
        Ok(Resized::Contended)
    }
}

/// Whether moving a lease from `held` to `proposed` is not worth a write.
fn immaterial(held: Amount, proposed: Amount) -> bool {
    let close = |held: u64, proposed: u64| held.abs_diff(proposed) <= held / MATERIAL_CHANGE;
    close(held.tokens, proposed.tokens) && close(held.requests, proposed.requests)
}

#[cfg(test)]
mod tests;
