//! The invoke-with-cache use case: one Converse request in, one priced answer out.
//!
//! 1. Resolve `modelId` (tier name, model ID, profile or ARN) through the catalog and check
//!    the request against that model's limits. `auto` asks the router for the cheapest tier
//!    predicted adequate first, so that the cache key carries the chosen model.
//! 2. Decide what the request may do with the cache (mode, sampling, TTL).
//! 3. On a read, look the key up; a live entry is a HIT and costs nothing.
//! 4. Otherwise call Bedrock, price the call from the model that served it, and store the
//!    answer when the policy allows. Storing happens before the reply because Lambda may
//!    freeze the environment as soon as the handler returns.
//!
//! Cache failures never fail a request: the answer is served from Bedrock and the error is
//! reported alongside it.
//!
//! Steps 3 and 4 run once per flight of identical concurrent requests ([`SingleFlight`]):
//! the others follow the first and are answered from its result as coalesced hits. With
//! `claim_wait` set, a miss first claims the key in the store, or waits for the instance that
//! holds the claim, so that instances too share one call.
//!
//! When the model is throttled, unavailable or keeps failing, the call falls back, if the deployer allows:
//! through the model's other inference profiles (in-Region, then geographic, then global),
//! and for routed requests then to the adjacent allowed tier. Every attempt is a [`Hop`] of
//! the answer. An answer is stored under the key of the model that gave it.
//!
//! Every call carries a [`Deadline`] and no stage waits beyond it: cache reads and writes get
//! at most the cache budget, each model call what is left of the request, and a fallback model
//! is called only if at least [`Budgets::min_hop`] is left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::cache::{self, BypassReason, CacheEntry, CacheKey, CacheOptions, CacheSettings, Tenant};
use crate::catalog::{Catalog, ResolveError, Scope, Target, Tier};
use crate::cost::{PricingMode, Usage};
use crate::deadline::{Budgets, Deadline};
use crate::ports::{CacheError, CacheStore, Claim, ClaimToken, InvokeError, ModelInvoker, PutOutcome};
use crate::request::{ConverseRequest, ConverseResponse, RequestError};
use crate::routing::{RouteDecision, RouteOverrides, Router};
use crate::singleflight::{Flight, SingleFlight};

/// The `modelId` that asks the gateway to choose the tier.
pub const AUTO_MODEL: &str = "auto";

/// Deployer settings the use case needs (a subset of [`crate::config::GatewayConfig`]).
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub cache: CacheSettings,
    /// Bedrock ID each tier name resolves to.
    pub tier_models: BTreeMap<Tier, String>,
    /// Suggested wait for callers when Bedrock keeps throttling; Bedrock sends none itself.
    pub throttle_retry_after: Duration,
    /// Whether throttled or unavailable models hand over to other profiles and tiers.
    pub fallback: bool,
    /// `modelId` for requests without one (`auto` to route them).
    pub default_model: Option<String>,
    /// How long a request and each of its stages may take.
    pub budgets: Budgets,
    /// Whether concurrent identical misses in this instance share one model call.
    pub single_flight: bool,
    /// How long a miss waits for another instance's claimed call before paying itself;
    /// `None` takes no claims.
    pub claim_wait: Option<Duration>,
}

impl GatewaySettings {
    /// Tier mapping from the catalog's defaults, with the other settings at their defaults.
    pub fn from_catalog(catalog: &Catalog) -> Self {
        GatewaySettings {
            cache: CacheSettings::default(),
            tier_models: Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect(),
            throttle_retry_after: Duration::from_secs(10),
            fallback: true,
            default_model: None,
            budgets: Budgets::default(),
            single_flight: true,
            claim_wait: None,
        }
    }
}

/// One call of the use case, already translated from the transport.
#[derive(Debug, Clone)]
pub struct ConverseCall {
    pub request: ConverseRequest,
    pub tenant: Tenant,
    pub cache: CacheOptions,
    /// Per-request routing bounds and tolerance; used when the model is `auto`.
    pub routing: RouteOverrides,
    /// When the answer is due; see [`Budgets::deadline`].
    pub deadline: Deadline,
}

/// One model call of a request: the one that answered, or one that failed before it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Hop {
    /// What Bedrock received.
    pub model_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// `served`, or the failure's label (`throttled`, `unavailable`, `timeout` ...).
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Bypass => "BYPASS",
        }
    }
}

/// What happened to the answer on the way back into the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum WriteReport {
    Stored {
        bytes: usize,
    },
    TooLarge {
        bytes: usize,
        limit: usize,
    },
    /// The answer is incomplete or malformed (e.g. a guardrail intervened) and is not worth repeating.
    NotCacheable,
    Failed,
    /// The store did not answer within the cache budget; the write was given up.
    Abandoned,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheReport {
    pub result: CacheResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bypass_reason: Option<BypassReason>,
    /// On a hit: what the original call cost, and so what this one saved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub age_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write: Option<WriteReport>,
    /// A cache failure that the request survived, e.g. `read failed (throttled): ...`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The answer is another concurrent request's: this one waited for it instead of paying.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub coalesced: bool,
}

/// The priced answer to one call.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: ConverseResponse,
    /// The `modelId` as the caller gave it.
    pub requested_model: String,
    /// The Bedrock ID that produced the answer (a router's choice when a router served it).
    pub model_id: String,
    /// What this call cost: 0 on a hit; `None` when the serving model is not in the catalog.
    pub cost_usd: Option<f64>,
    pub latency: Duration,
    pub cache: CacheReport,
    /// The router's decision when the request asked for `auto`.
    pub routing: Option<RouteDecision>,
    /// Model calls made, in order; empty on a cache hit.
    pub hops: Vec<Hop>,
}

/// A planned model call.
#[derive(Debug, Clone)]
struct Attempt {
    invoke_id: String,
    /// The model the cache key names: the base model ID, or the prompt router's ARN.
    key_model: String,
    tier: Option<Tier>,
    max_output: Option<(u32, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    InvalidRequest(#[from] RequestError),
    #[error(transparent)]
    UnknownModel(#[from] ResolveError),
    #[error(transparent)]
    Model(#[from] InvokeError),
    /// Every model of the fallback chain failed; `source` is the last failure.
    #[error("{} models tried, none answered: {source}", hops.len())]
    FallbackExhausted {
        hops: Vec<Hop>,
        #[source]
        source: InvokeError,
    },
    /// The request's deadline left too little time for the next model call; `last` is the
    /// failure of the last model tried, if any was.
    #[error(
        "the request's deadline left {} ms, less than the {} ms a model call needs; {} models tried",
        remaining.as_millis(),
        needed.as_millis(),
        hops.len()
    )]
    DeadlineExceeded {
        hops: Vec<Hop>,
        remaining: Duration,
        needed: Duration,
        #[source]
        last: Option<InvokeError>,
    },
}

impl GatewayError {
    /// The Bedrock failure behind this error, if it is one.
    pub fn invoke_error(&self) -> Option<&InvokeError> {
        match self {
            GatewayError::Model(e) | GatewayError::FallbackExhausted { source: e, .. } => Some(e),
            GatewayError::DeadlineExceeded { last, .. } => last.as_ref(),
            GatewayError::InvalidRequest(_) | GatewayError::UnknownModel(_) => None,
        }
    }
}

/// An answer found in the cache, with what the request carries alongside it.
struct Hit {
    entry: CacheEntry,
    requested_model: String,
    routing: Option<RouteDecision>,
    hops: Vec<Hop>,
    started: Instant,
}

impl Hit {
    /// A hit costs nothing and saves what the stored call cost.
    fn into_answer(self, mut report: CacheReport, now: SystemTime) -> Answer {
        report.result = CacheResult::Hit;
        report.saved_usd = Some(self.entry.cost_usd);
        report.age_seconds = now.duration_since(self.entry.created_at).ok().map(|d| d.as_secs());
        report.ttl_seconds = self.entry.expires_at.duration_since(now).ok().map(|d| d.as_secs());
        Answer {
            response: self.entry.response,
            requested_model: self.requested_model,
            model_id: self.entry.model_id,
            cost_usd: Some(0.0),
            latency: self.started.elapsed(),
            cache: report,
            routing: self.routing,
            hops: self.hops,
        }
    }
}

/// What a request brings to the read and the miss path, once planned.
#[derive(Clone, Copy)]
struct Job<'a> {
    attempts: &'a [Attempt],
    first: &'a Attempt,
    key: CacheKey,
    decision: cache::CacheDecision,
    request: &'a ConverseRequest,
    tenant: &'a Tenant,
    started: Instant,
    deadline: Deadline,
}

/// Requests coalesce when they would read and write the same entry the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct FlightKey {
    key: CacheKey,
    write: bool,
    ttl: Duration,
}

/// How a miss ended its wait on a claim of the key.
enum ClaimWait {
    /// This request holds the claim and makes the call.
    Claimed(ClaimToken),
    /// The holder's answer arrived in the cache.
    Answered(Box<CacheEntry>),
    /// The wait budget ran out: the request pays for its own call.
    GaveUp,
    Unsupported,
    Failed(CacheError),
}

/// Polls often enough that a follower's added latency stays a small fraction of its wait,
/// rarely enough that waiting instances do not load the table.
fn claim_poll_interval(max_wait: Duration) -> Duration {
    (max_wait / 20).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

fn add_error(report: &mut CacheReport, error: Option<String>) {
    if let Some(error) = error {
        report.error = Some(match report.error.take() {
            Some(earlier) => format!("{earlier}; {error}"),
            None => error,
        });
    }
}

/// What a leader's followers receive: its answer, or the same failure. Sharing the failure
/// keeps followers from multiplying the load on a throttled or failing model.
fn share_outcome(outcome: &Result<Answer, GatewayError>) -> Result<Answer, GatewayError> {
    match outcome {
        Ok(answer) => Ok(answer.clone()),
        Err(error) => Err(duplicate_error(error)),
    }
}

/// A follower did not pay: the answer costs it nothing and saves what the leader paid (or,
/// when the leader found it cached, what the stored call cost). It made no model call and
/// wrote nothing.
fn follow(
    outcome: &Result<Answer, GatewayError>,
    requested_model: String,
    routing: Option<RouteDecision>,
    started: Instant,
) -> Result<Answer, GatewayError> {
    let leader = outcome.as_ref().map_err(duplicate_error)?;
    let saved_usd = match leader.cache.result {
        CacheResult::Hit => leader.cache.saved_usd,
        CacheResult::Miss | CacheResult::Bypass => leader.cost_usd,
    };
    Ok(Answer {
        response: leader.response.clone(),
        requested_model,
        model_id: leader.model_id.clone(),
        cost_usd: Some(0.0),
        latency: started.elapsed(),
        cache: CacheReport {
            result: CacheResult::Hit,
            saved_usd,
            age_seconds: leader.cache.age_seconds.or(Some(0)),
            write: None,
            error: None,
            coalesced: true,
            ..leader.cache.clone()
        },
        routing,
        hops: Vec::new(),
    })
}

/// The same failure for another caller. Sources that cannot be cloned keep their message.
fn duplicate_error(error: &GatewayError) -> GatewayError {
    match error {
        GatewayError::InvalidRequest(e) => GatewayError::InvalidRequest(e.clone()),
        GatewayError::UnknownModel(e) => GatewayError::UnknownModel(e.clone()),
        GatewayError::Model(e) => GatewayError::Model(duplicate_invoke_error(e)),
        GatewayError::FallbackExhausted { hops, source } => {
            GatewayError::FallbackExhausted { hops: hops.clone(), source: duplicate_invoke_error(source) }
        }
        GatewayError::DeadlineExceeded { hops, remaining, needed, last } => GatewayError::DeadlineExceeded {
            hops: hops.clone(),
            remaining: *remaining,
            needed: *needed,
            last: last.as_ref().map(duplicate_invoke_error),
        },
    }
}

fn duplicate_invoke_error(error: &InvokeError) -> InvokeError {
    let chain = |e: &(dyn std::error::Error + Send + Sync)| -> Box<dyn std::error::Error + Send + Sync> {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text.into()
    };
    match error {
        InvokeError::Throttled { message, retry_after } => {
            InvokeError::Throttled { message: message.clone(), retry_after: *retry_after }
        }
        InvokeError::Rejected { message } => InvokeError::Rejected { message: message.clone() },
        InvokeError::AccessDenied { message } => InvokeError::AccessDenied { message: message.clone() },
        InvokeError::ModelNotFound { message } => InvokeError::ModelNotFound { message: message.clone() },
        InvokeError::ModelNotReady { message } => InvokeError::ModelNotReady { message: message.clone() },
        InvokeError::ModelFailed { message } => InvokeError::ModelFailed { message: message.clone() },
        InvokeError::ModelTimeout { message } => InvokeError::ModelTimeout { message: message.clone() },
        InvokeError::Unavailable { message } => InvokeError::Unavailable { message: message.clone() },
        InvokeError::Internal { message } => InvokeError::Internal { message: message.clone() },
        InvokeError::Timeout(source) => InvokeError::Timeout(chain(source.as_ref())),
        InvokeError::Transport(source) => InvokeError::Transport(chain(source.as_ref())),
        InvokeError::BadResponse(message) => InvokeError::BadResponse(message.clone()),
    }
}

/// How the fallback chain ended.
enum Served<'a> {
    Answered {
        response: ConverseResponse,
        attempt: &'a Attempt,
    },
    /// A fallback model had this request cached already: no need to call it.
    Cached {
        entry: CacheEntry,
        key: CacheKey,
    },
}

/// The use case, generic over its ports so tests can run it on fakes.
#[derive(Debug)]
pub struct Gateway<S, M> {
    catalog: Arc<Catalog>,
    settings: GatewaySettings,
    store: S,
    invoker: M,
    router: Option<Router>,
    /// Misses being answered in this instance, shared with identical concurrent ones.
    flights: SingleFlight<FlightKey, Result<Answer, GatewayError>>,
}

impl<S: CacheStore, M: ModelInvoker> Gateway<S, M> {
    pub fn new(catalog: Arc<Catalog>, settings: GatewaySettings, store: S, invoker: M) -> Self {
        Gateway { catalog, settings, store, invoker, router: None, flights: SingleFlight::default() }
    }

    /// Enables `modelId: "auto"`.
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    pub fn router(&self) -> Option<&Router> {
        self.router.as_ref()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn settings(&self) -> &GatewaySettings {
        &self.settings
    }

    pub async fn converse(&self, call: ConverseCall) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let ConverseCall { mut request, tenant, cache: options, routing: overrides, deadline } = call;
        let requested_model =
            crate::request::requested_model(request.model_id.take(), self.settings.default_model.as_deref())?;
        let routing = if requested_model.eq_ignore_ascii_case(AUTO_MODEL) {
            let router = self.router.as_ref().ok_or_else(|| {
                RequestError::invalid("modelId", "`auto` needs routing, which this deployment does not enable")
            })?;
            Some(router.decide(&request, &overrides))
        } else {
            None
        };
        let attempts = self.plan(&requested_model, routing.as_ref(), &request)?;
        let Some(first) = attempts.first() else {
            return Err(ResolveError::UnknownModel(requested_model).into());
        };
        let key = CacheKey::compute(&tenant, &first.key_model, &request);
        let decision = self.settings.cache.decide(&options, &request)?;
        let report = CacheReport {
            result: if decision.read { CacheResult::Miss } else { CacheResult::Bypass },
            key: Some(key.to_hex()),
            bypass_reason: decision.bypass,
            saved_usd: None,
            age_seconds: None,
            ttl_seconds: Some(decision.ttl.as_secs()),
            write: None,
            error: None,
            coalesced: false,
        };
        let job =
            Job { attempts: &attempts, first, key, decision, request: &request, tenant: &tenant, started, deadline };
        if !(decision.read && self.settings.single_flight) {
            // Bypasses never coalesce: `off` and sampled requests want an answer of their own,
            // `write_only` a fresh one.
            return self.answer(job, report, requested_model, routing).await;
        }
        // Requests sharing a flight would have written the same entry; the key carries the
        // whole request and its tenant, so whatever the leader got, a follower would have too.
        let flight = FlightKey { key, write: decision.write, ttl: decision.ttl };
        let (own_model, own_routing) = (requested_model.clone(), routing.clone());
        let lead = || self.answer(job, report, requested_model, routing);
        // A leader's stages are bounded by its own deadline; a follower must not outwait its own.
        match deadline.bound(self.flights.run(flight, lead, share_outcome)).await {
            Ok(Flight::Led(result)) => result,
            Ok(Flight::Followed(outcome)) => follow(&outcome, own_model, own_routing, started),
            Err(_) => Err(GatewayError::DeadlineExceeded {
                hops: Vec::new(),
                remaining: Duration::ZERO,
                needed: Duration::ZERO,
                last: None,
            }),
        }
    }

    /// The read, then on a miss the model call and the write, for one request or for a
    /// flight of identical ones.
    async fn answer(
        &self,
        job: Job<'_>,
        mut report: CacheReport,
        requested_model: String,
        routing: Option<RouteDecision>,
    ) -> Result<Answer, GatewayError> {
        let Job { attempts, first, key, decision, request, tenant, started, deadline } = job;
        let mut claim = None;
        if decision.read {
            let now = SystemTime::now();
            match self.cache_get(&key, now, deadline).await {
                Ok(Some(entry)) => {
                    let hit = Hit { entry, requested_model, routing, hops: Vec::new(), started };
                    return Ok(hit.into_answer(report, now));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.label(), "cache read failed; serving from Bedrock");
                    report.error = Some(format!("read failed ({}): {e}", e.label()));
                }
            }
            // Only a request that will store its answer may make others wait for it.
            if let Some(max_wait) = self.settings.claim_wait.filter(|_| decision.write && report.error.is_none()) {
                let max_wait = max_wait.min(deadline.remaining());
                match self.claim_or_wait(&key, max_wait, claim_poll_interval(max_wait), deadline).await {
                    ClaimWait::Claimed(token) => claim = Some(token),
                    ClaimWait::Answered(entry) => {
                        report.coalesced = true;
                        let hit = Hit { entry: *entry, requested_model, routing, hops: Vec::new(), started };
                        return Ok(hit.into_answer(report, SystemTime::now()));
                    }
                    ClaimWait::GaveUp => {
                        tracing::info!(
                            wait_ms = max_wait.as_millis() as u64,
                            "no answer from the claim's holder in time"
                        );
                    }
                    ClaimWait::Unsupported => {}
                    ClaimWait::Failed(e) => {
                        tracing::warn!(error = %e, kind = e.label(), "cache claim failed; serving from Bedrock");
                        report.error = Some(format!("claim failed ({}): {e}", e.label()));
                    }
                }
            }
        }

        let called = self.call_with_fallback(attempts, request, tenant, decision.read, deadline).await;
        let (served, hops) = match called {
            Ok(served) => served,
            Err(e) => {
                // Released at once so that a waiting instance takes over without waiting out the claim.
                self.release_claim(&key, claim, deadline).await;
                return Err(e);
            }
        };
        // The answer may be stored under a fallback model's key; the claim is on the first.
        let claim_key = key;
        let (mut response, served) = match served {
            Served::Answered { response, attempt } => (response, attempt),
            Served::Cached { entry, key: fallback_key } => {
                add_error(&mut report, self.release_claim(&claim_key, claim, deadline).await);
                report.key = Some(fallback_key.to_hex());
                let hit = Hit { entry, requested_model, routing, hops, started };
                return Ok(hit.into_answer(report, SystemTime::now()));
            }
        };
        let model_id = response.invoked_model_id().map_or_else(|| served.invoke_id.clone(), str::to_owned);
        let key = if served.key_model == first.key_model {
            key
        } else {
            CacheKey::compute(tenant, &served.key_model, request)
        };
        let cost_usd = match self.catalog.cost_of(&model_id, &Usage::from(&response.usage), PricingMode::OnDemand) {
            Ok(cost) => Some(cost),
            Err(e) => {
                tracing::warn!(model_id, error = %e, "served by a model outside the catalog; cost unknown");
                None
            }
        };

        if decision.write {
            report.write = Some(if !cache::is_cacheable(&response) {
                WriteReport::NotCacheable
            } else {
                let now = SystemTime::now();
                // The answer moves into the entry for the write and back out: no copy.
                let entry = CacheEntry {
                    key,
                    response,
                    model_id: model_id.clone(),
                    cost_usd: cost_usd.unwrap_or(0.0),
                    created_at: now,
                    expires_at: now + decision.ttl,
                };
                let outcome = self.cache_put(&entry, deadline).await;
                response = entry.response;
                match outcome {
                    Ok(PutOutcome::Stored { bytes }) => WriteReport::Stored { bytes },
                    Ok(PutOutcome::TooLarge { bytes, limit }) => {
                        tracing::info!(bytes, limit, "answer too large to cache");
                        WriteReport::TooLarge { bytes, limit }
                    }
                    Err(e) => {
                        let (verb, write) = match e {
                            CacheError::Timeout(_) => ("abandoned", WriteReport::Abandoned),
                            CacheError::Store(_) | CacheError::Throttled(_) | CacheError::Corrupt(_) => {
                                ("failed", WriteReport::Failed)
                            }
                        };
                        tracing::warn!(error = %e, kind = e.label(), "cache write {verb}");
                        let write_error = format!("write {verb} ({}): {e}", e.label());
                        report.error = Some(match report.error.take() {
                            Some(read_error) => format!("{read_error}; {write_error}"),
                            None => write_error,
                        });
                        write
                    }
                }
            });
        }
        add_error(&mut report, self.release_claim(&claim_key, claim, deadline).await);

        Ok(Answer {
            response,
            requested_model,
            model_id,
            cost_usd,
            latency: started.elapsed(),
            cache: report,
            routing,
            hops,
        })
    }

    /// Takes the claim on `key` for this request's call, or waits for the answer of the
    /// instance holding it, polling the entry. A claim that expires or is released while
    /// waiting (its holder crashed or failed) is taken over, so at most one waiter calls at a
    /// time; none waits beyond `max_wait`.
    async fn claim_or_wait(&self, key: &CacheKey, max_wait: Duration, poll: Duration, deadline: Deadline) -> ClaimWait {
        let waiting = Instant::now();
        loop {
            match self.cache_op(self.store.claim(key, SystemTime::now(), max_wait), deadline).await {
                Ok(Claim::Acquired(token)) => return ClaimWait::Claimed(token),
                Ok(Claim::HeldElsewhere) => {}
                Ok(Claim::Unsupported) => return ClaimWait::Unsupported,
                Err(e) => return ClaimWait::Failed(e),
            }
            let Some(left) = max_wait.checked_sub(waiting.elapsed()).filter(|left| !left.is_zero()) else {
                return ClaimWait::GaveUp;
            };
            tokio::time::sleep(poll.min(left)).await;
            match self.cache_get(key, SystemTime::now(), deadline).await {
                Ok(Some(entry)) => return ClaimWait::Answered(Box::new(entry)),
                Ok(None) if waiting.elapsed() >= max_wait => return ClaimWait::GaveUp,
                Ok(None) => {}
                Err(e) => return ClaimWait::Failed(e),
            }
        }
    }

    /// Releases a claim this request holds; the failure's message, if any, for the report.
    async fn release_claim(&self, key: &CacheKey, token: Option<ClaimToken>, deadline: Deadline) -> Option<String> {
        let token = token?;
        match self.cache_op(self.store.release(key, &token), deadline).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, kind = e.label(), "cache claim release failed; it will expire");
                Some(format!("claim release failed ({}): {e}", e.label()))
            }
        }
    }

    /// Tries the attempts in order. Only failures another model might not share (capacity,
    /// persistent model or service errors) move on. Before calling a fallback model, its own
    /// cache entry is looked up: during a throttling episode the repeats of a request are
    /// then served from the entry the first fallback wrote instead of paying it again.
    async fn call_with_fallback<'a>(
        &self,
        attempts: &'a [Attempt],
        request: &ConverseRequest,
        tenant: &Tenant,
        read_cache: bool,
        deadline: Deadline,
    ) -> Result<(Served<'a>, Vec<Hop>), GatewayError> {
        let mut hops: Vec<Hop> = Vec::with_capacity(1);
        let mut last_error: Option<InvokeError> = None;
        for (i, attempt) in attempts.iter().enumerate() {
            if i > 0 {
                if let Some((max_output, name)) = &attempt.max_output
                    && check_model_limits(request, *max_output, name).is_err()
                {
                    continue;
                }
                let unseen_model = attempts[..i].iter().all(|a| a.key_model != attempt.key_model);
                if read_cache && unseen_model {
                    let key = CacheKey::compute(tenant, &attempt.key_model, request);
                    match self.cache_get(&key, SystemTime::now(), deadline).await {
                        Ok(Some(entry)) => {
                            hops.push(Hop {
                                model_id: attempt.invoke_id.clone(),
                                tier: attempt.tier,
                                outcome: "cache_hit",
                                error: None,
                            });
                            return Ok((Served::Cached { entry, key }, hops));
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, kind = e.label(), "cache read of a fallback model failed"),
                    }
                }
            }
            // The first call gets whatever is left, since it is the request's only chance; a
            // fallback only if it can plausibly finish.
            let needed = if i == 0 { Duration::ZERO } else { self.settings.budgets.min_hop };
            let remaining = deadline.remaining();
            if remaining.is_zero() || remaining < needed {
                tracing::warn!(
                    ?hops,
                    remaining_ms = remaining.as_millis() as u64,
                    "no time left for another model call"
                );
                return Err(GatewayError::DeadlineExceeded { hops, remaining, needed, last: last_error });
            }
            let outcome = match deadline.bound(self.invoker.converse(&attempt.invoke_id, request, deadline)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(InvokeError::Timeout("the request's deadline passed during the model call".into())),
            };
            match outcome {
                Ok(response) => {
                    hops.push(Hop {
                        model_id: attempt.invoke_id.clone(),
                        tier: attempt.tier,
                        outcome: "served",
                        error: None,
                    });
                    return Ok((Served::Answered { response, attempt }, hops));
                }
                Err(error) => {
                    hops.push(Hop {
                        model_id: attempt.invoke_id.clone(),
                        tier: attempt.tier,
                        outcome: error.label(),
                        error: Some(error.to_string()),
                    });
                    let last = i + 1 == attempts.len();
                    if !error.warrants_fallback() || last {
                        let error = self.with_retry_hint(error);
                        if hops.len() > 1 {
                            tracing::warn!(?hops, "every model of the fallback chain failed");
                            return Err(GatewayError::FallbackExhausted { hops, source: error });
                        }
                        return Err(error.into());
                    }
                    tracing::info!(model_id = attempt.invoke_id, error = %error, "falling back");
                    last_error = Some(error);
                }
            }
        }
        Err(ResolveError::UnknownModel(String::new()).into())
    }

    /// A cache read bounded by the cache budget and the deadline: over it, the read is a failure
    /// the request survives like any other.
    async fn cache_get(
        &self,
        key: &CacheKey,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<Option<CacheEntry>, CacheError> {
        self.cache_op(self.store.get(key, now), deadline).await
    }

    /// A cache write bounded like a read; an abandoned write only costs a later miss.
    async fn cache_put(&self, entry: &CacheEntry, deadline: Deadline) -> Result<PutOutcome, CacheError> {
        self.cache_op(self.store.put(entry), deadline).await
    }

    /// One cache operation within the cache budget and the request's deadline, whichever ends first.
    async fn cache_op<T>(
        &self,
        operation: impl Future<Output = Result<T, CacheError>>,
        deadline: Deadline,
    ) -> Result<T, CacheError> {
        let limit = deadline.within(self.settings.budgets.cache);
        let allowed = limit.remaining();
        limit.bound(operation).await.unwrap_or_else(|_| Err(over_budget(allowed)))
    }

    /// The calls a request may make, in order. The first is what the caller (or the router)
    /// chose, and its limits are checked up front; fallbacks whose limits the request
    /// exceeds are skipped when their turn comes.
    fn plan(
        &self,
        requested: &str,
        routing: Option<&RouteDecision>,
        request: &ConverseRequest,
    ) -> Result<Vec<Attempt>, GatewayError> {
        let named_tier = requested.parse::<Tier>().ok();
        let first_id = routing.map_or(requested, |d| d.model_id.as_str());
        let first_tier = routing.map(|d| d.tier).or(named_tier);
        let fallback = self.settings.fallback && self.router.as_ref().is_none_or(|r| r.policy().fallback);
        let mut attempts = Vec::new();
        match self.resolve(first_id)? {
            Target::Model(m) => {
                check_model_limits(request, m.spec.max_output_tokens, &m.spec.display_name)?;
                attempts.push(Attempt {
                    invoke_id: m.invoke_id.clone(),
                    key_model: m.spec.model_id.clone(),
                    tier: first_tier,
                    max_output: Some((m.spec.max_output_tokens, m.spec.display_name.clone())),
                });
                if fallback && first_tier.is_some() {
                    attempts.extend(wider_scopes(m.spec, &m.scope, first_tier));
                }
            }
            Target::PromptRouter { arn } => {
                attempts.push(Attempt { invoke_id: arn.clone(), key_model: arn, tier: first_tier, max_output: None });
            }
        }
        if let Some(decision) = routing.filter(|_| fallback) {
            let adjacent =
                Tier::ALL.iter().copied().find(|t| *t > decision.tier && *t <= decision.max_tier).or_else(|| {
                    Tier::ALL.iter().rev().copied().find(|t| *t < decision.tier && *t >= decision.min_tier)
                });
            if let Some(tier) = adjacent
                && let Some(id) = self.settings.tier_models.get(&tier)
            {
                match self.catalog.resolve(id) {
                    Ok(Target::Model(m)) => {
                        attempts.push(Attempt {
                            invoke_id: m.invoke_id.clone(),
                            key_model: m.spec.model_id.clone(),
                            tier: Some(tier),
                            max_output: Some((m.spec.max_output_tokens, m.spec.display_name.clone())),
                        });
                        attempts.extend(wider_scopes(m.spec, &m.scope, Some(tier)));
                    }
                    Ok(Target::PromptRouter { arn }) => {
                        attempts.push(Attempt {
                            invoke_id: arn.clone(),
                            key_model: arn,
                            tier: Some(tier),
                            max_output: None,
                        });
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(attempts)
    }

    fn resolve(&self, requested: &str) -> Result<Target<'_>, ResolveError> {
        let id = match requested.parse::<Tier>() {
            Ok(tier) => self.settings.tier_models.get(&tier).map_or(requested, String::as_str),
            Err(()) => requested,
        };
        self.catalog.resolve(id)
    }

    fn with_retry_hint(&self, error: InvokeError) -> InvokeError {
        match error {
            InvokeError::Throttled { message, retry_after: None } => {
                InvokeError::Throttled { message, retry_after: Some(self.settings.throttle_retry_after) }
            }
            other => other,
        }
    }
}

/// The profiles after `current`, from the most local to the most spread out: an in-Region
/// call widens to the model's first geography, a geographic one stays in its geography before
/// going global, so a fallback never crosses into another geography's profile.
fn wider_scopes(spec: &crate::catalog::ModelSpec, current: &Scope, tier: Option<Tier>) -> Vec<Attempt> {
    let scopes = spec.scopes();
    let Some(at) = scopes.iter().position(|s| s == current) else {
        return Vec::new();
    };
    let mut seen_geo = matches!(current, Scope::Geo(_));
    scopes[at + 1..]
        .iter()
        .filter(|scope| match scope {
            Scope::Geo(_) if seen_geo => false,
            Scope::Geo(_) => {
                seen_geo = true;
                true
            }
            Scope::InRegion | Scope::Global => true,
        })
        .map(|scope| Attempt {
            invoke_id: spec.invoke_id(scope),
            key_model: spec.model_id.clone(),
            tier,
            max_output: Some((spec.max_output_tokens, spec.display_name.clone())),
        })
        .collect()
}

fn over_budget(allowed: Duration) -> CacheError {
    CacheError::Timeout(format!("no answer within {} ms", allowed.as_millis()))
}

fn check_model_limits(request: &ConverseRequest, max_output: u32, model: &str) -> Result<(), RequestError> {
    match request.max_tokens() {
        Some(n) if n > max_output => Err(RequestError::invalid(
            "inferenceConfig.maxTokens",
            format!("{n} exceeds {model}'s maximum output of {max_output} tokens"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheMode;
    use crate::routing::{RouteReason, RouterModel, RoutingPolicy};
    use crate::testing::{FakeInvoker, InMemoryCacheStore};

    fn gateway() -> Gateway<InMemoryCacheStore, FakeInvoker> {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings = GatewaySettings::from_catalog(&catalog);
        Gateway::new(catalog, settings, InMemoryCacheStore::default(), FakeInvoker::default())
    }

    fn routed_gateway(policy: RoutingPolicy) -> Gateway<InMemoryCacheStore, FakeInvoker> {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings = GatewaySettings { fallback: policy.fallback, ..GatewaySettings::from_catalog(&catalog) };
        let router =
            Router::new(RouterModel::embedded().unwrap(), catalog.clone(), settings.tier_models.clone(), policy);
        Gateway::new(catalog, settings, InMemoryCacheStore::default(), FakeInvoker::default()).with_router(router)
    }

    fn only(tier: Tier) -> RouteOverrides {
        RouteOverrides { min_tier: Some(tier), max_tier: Some(tier), quality_tolerance: None }
    }

    /// An `auto` call that routes to haiku (a tolerance of 100 % picks the cheapest allowed
    /// tier) with sonnet still allowed for fallback.
    fn auto_haiku_with_sonnet_fallback() -> ConverseCall {
        let mut request = call("a", body("auto", "hello"));
        request.routing =
            RouteOverrides { max_tier: Some(Tier::Sonnet), quality_tolerance: Some(100.0), ..only(Tier::Haiku) };
        request
    }

    /// Throttles both of haiku's profiles.
    fn throttle_haiku(invoker: &FakeInvoker) {
        let throttled = || InvokeError::Throttled { message: "slow down".into(), retry_after: None };
        invoker.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", throttled);
        invoker.fail_model("global.anthropic.claude-haiku-4-5-20251001-v1:0", throttled);
    }

    fn call(tenant: &str, body: serde_json::Value) -> ConverseCall {
        ConverseCall {
            request: ConverseRequest::from_json(body.to_string().as_bytes()).unwrap(),
            tenant: Tenant::new(tenant),
            cache: CacheOptions::default(),
            routing: RouteOverrides::default(),
            deadline: Budgets::default().deadline(None),
        }
    }

    fn body(model: &str, text: &str) -> serde_json::Value {
        serde_json::json!({
            "modelId": model,
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"temperature": 0, "maxTokens": 200}
        })
    }

    #[tokio::test]
    async fn a_repeat_is_a_hit_that_saves_the_first_calls_cost() {
        let g = gateway();
        let first = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(first.cache.result, CacheResult::Miss);
        assert!(matches!(first.cache.write, Some(WriteReport::Stored { .. })));
        let cost = first.cost_usd.unwrap();
        assert!(cost > 0.0);
        assert_eq!(first.model_id, "us.anthropic.claude-haiku-4-5-20251001-v1:0");

        // The same model named by its profile ID is the same request.
        let second = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "hello"))).await.unwrap();
        assert_eq!(second.cache.result, CacheResult::Hit);
        assert_eq!(second.cache.saved_usd, Some(cost));
        assert_eq!(second.cost_usd, Some(0.0));
        assert_eq!(second.response, first.response);
        let arn =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0";
        assert_eq!(g.converse(call("a", body(arn, "hello"))).await.unwrap().cache.result, CacheResult::Hit);
        assert_eq!(g.invoker.calls(), 1);
        let sonnet = g.converse(call("a", body("sonnet", "hello"))).await.unwrap();
        assert_eq!(sonnet.cache.result, CacheResult::Miss, "another model is another answer");
    }

    #[tokio::test]
    async fn tenants_do_not_share_entries() {
        let g = gateway();
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        let other = g.converse(call("b", body("haiku", "hello"))).await.unwrap();
        assert_eq!(other.cache.result, CacheResult::Miss);
        assert_eq!(g.invoker.calls(), 2);
    }

    #[tokio::test]
    async fn an_expired_entry_is_a_miss() {
        let g = gateway();
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        g.store.expire_all();
        let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(again.cache.result, CacheResult::Miss);
    }

    #[tokio::test]
    async fn cache_failures_are_reported_but_never_fail_the_request() {
        let g = gateway();
        g.store.fail_reads(true);
        g.store.fail_writes(true);
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Miss);
        assert_eq!(answer.cache.write, Some(WriteReport::Failed));
        let error = answer.cache.error.unwrap();
        assert!(error.contains("read failed") && error.contains("write failed"), "{error}");
    }

    #[tokio::test]
    async fn oversized_answers_are_served_but_not_stored() {
        let g = gateway();
        g.store.set_item_limit(10);
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert!(matches!(answer.cache.write, Some(WriteReport::TooLarge { limit: 10, .. })));
        let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(again.cache.result, CacheResult::Miss);
    }

    #[tokio::test]
    async fn modes_and_sampling_control_reads_and_writes() {
        let g = gateway();
        let mut sampled = call("a", body("haiku", "hi"));
        sampled.request.inference_config = None;
        let answer = g.converse(sampled.clone()).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Bypass);
        assert_eq!(answer.cache.bypass_reason, Some(BypassReason::Sampling));

        let mut read_only = call("a", body("haiku", "hi"));
        read_only.cache.mode = Some(CacheMode::ReadOnly);
        assert_eq!(g.converse(read_only.clone()).await.unwrap().cache.write, None);
        assert_eq!(g.converse(read_only).await.unwrap().cache.result, CacheResult::Miss);

        let mut refresh = call("a", body("haiku", "hi"));
        refresh.cache.mode = Some(CacheMode::WriteOnly);
        let refreshed = g.converse(refresh).await.unwrap();
        assert_eq!(refreshed.cache.result, CacheResult::Bypass);
        assert!(matches!(refreshed.cache.write, Some(WriteReport::Stored { .. })));
        assert_eq!(g.converse(call("a", body("haiku", "hi"))).await.unwrap().cache.result, CacheResult::Hit);
    }

    #[tokio::test]
    async fn caller_mistakes_are_request_errors() {
        let g = gateway();
        let err = g.converse(call("a", body("gpt-4o", "hi"))).await.unwrap_err();
        assert!(matches!(err, GatewayError::UnknownModel(_)));

        let mut too_long = call("a", body("haiku", "hi"));
        too_long.request.inference_config.as_mut().unwrap().max_tokens = Some(1_000_000);
        let err = g.converse(too_long).await.unwrap_err();
        assert!(matches!(&err, GatewayError::InvalidRequest(e) if e.field() == Some("inferenceConfig.maxTokens")));

        let mut no_model = call("a", body("haiku", "hi"));
        no_model.request.model_id = None;
        assert!(matches!(g.converse(no_model).await.unwrap_err(), GatewayError::InvalidRequest(_)));
        assert_eq!(g.invoker.calls(), 0);
    }

    #[tokio::test]
    async fn throttling_carries_a_retry_hint_and_is_not_cached() {
        let g = gateway();
        g.invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
        let err = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "hi"))).await.unwrap_err();
        assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })));
        // A tier name widens to the global profile first; both throttled, the hops come back.
        let err = g.converse(call("a", body("haiku", "hi"))).await.unwrap_err();
        match &err {
            GatewayError::FallbackExhausted { hops, source: InvokeError::Throttled { retry_after: Some(_), .. } } => {
                assert_eq!(hops.len(), 2);
            }
            other => panic!("expected an exhausted chain, got {other:?}"),
        }
        assert_eq!(g.store.len(), 0);
    }

    #[tokio::test]
    async fn prompt_router_calls_are_priced_by_the_invoked_model() {
        let g = gateway();
        let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        g.invoker.route_to(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
        );
        let answer = g.converse(call("a", body(router, "hi"))).await.unwrap();
        assert!(answer.model_id.ends_with("us.anthropic.claude-3-5-haiku-20241022-v1:0"));
        let usage = Usage::from(&answer.response.usage);
        let expected = (usage.input_tokens as f64 * 0.8 + usage.output_tokens as f64 * 4.0) / 1e6;
        assert!((answer.cost_usd.unwrap() - expected).abs() < 1e-15);
    }

    #[tokio::test]
    async fn auto_routes_before_the_cache_and_reports_the_decision() {
        let g = routed_gateway(RoutingPolicy::default());
        let mut first = call("a", body("auto", "hello"));
        first.routing = only(Tier::Sonnet);
        let answer = g.converse(first.clone()).await.unwrap();
        let decision = answer.routing.as_ref().unwrap();
        assert_eq!((decision.tier, decision.reason), (Tier::Sonnet, RouteReason::SingleTier));
        assert_eq!(answer.model_id, "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
        assert_eq!(answer.requested_model, "auto");
        assert_eq!(answer.hops.len(), 1);
        assert_eq!(answer.hops[0].outcome, "served");

        // The key carries the chosen model: the same prompt sent to sonnet by name is a hit,
        // routed to haiku it is not.
        let by_name = g.converse(call("a", body("sonnet", "hello"))).await.unwrap();
        assert_eq!(by_name.cache.result, CacheResult::Hit);
        let mut haiku = call("a", body("auto", "hello"));
        haiku.routing = only(Tier::Haiku);
        assert_eq!(g.converse(haiku).await.unwrap().cache.result, CacheResult::Miss);
        let repeat = g.converse(first).await.unwrap();
        assert_eq!(repeat.cache.result, CacheResult::Hit);
        assert!(repeat.routing.is_some() && repeat.hops.is_empty());
    }

    #[tokio::test]
    async fn auto_without_a_router_or_model_is_a_request_error() {
        let g = gateway();
        let err = g.converse(call("a", body("auto", "hi"))).await.unwrap_err();
        assert!(matches!(&err, GatewayError::InvalidRequest(e) if e.field() == Some("modelId")), "{err}");

        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings =
            GatewaySettings { default_model: Some("haiku".into()), ..GatewaySettings::from_catalog(&catalog) };
        let g = Gateway::new(catalog, settings, InMemoryCacheStore::default(), FakeInvoker::default());
        let mut no_model = call("a", body("haiku", "hi"));
        no_model.request.model_id = None;
        assert_eq!(g.converse(no_model).await.unwrap().requested_model, "haiku");
    }

    #[tokio::test]
    async fn throttling_falls_back_through_profiles_then_the_adjacent_tier() {
        let g = routed_gateway(RoutingPolicy::default());
        throttle_haiku(&g.invoker);
        let answer = g.converse(auto_haiku_with_sonnet_fallback()).await.unwrap();
        let outcomes: Vec<(&str, &str)> = answer.hops.iter().map(|h| (h.model_id.as_str(), h.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![
                ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled"),
                ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled"),
                ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "served"),
            ]
        );
        assert_eq!(answer.hops[2].tier, Some(Tier::Sonnet));
        // Stored under the model that answered, so a later haiku call is not served sonnet's answer.
        let mut sonnet = call("a", body("sonnet", "hello"));
        sonnet.routing = RouteOverrides::default();
        assert_eq!(g.converse(sonnet).await.unwrap().cache.result, CacheResult::Hit);
    }

    #[tokio::test]
    async fn fallback_stops_at_errors_another_model_cannot_fix_and_can_be_disabled() {
        let g = routed_gateway(RoutingPolicy::default());
        g.invoker.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::AccessDenied {
            message: "no".into(),
        });
        let request = auto_haiku_with_sonnet_fallback();
        let err = g.converse(request.clone()).await.unwrap_err();
        assert!(matches!(err, GatewayError::Model(InvokeError::AccessDenied { .. })));
        assert_eq!(g.invoker.calls(), 1);

        let g = routed_gateway(RoutingPolicy { fallback: false, ..RoutingPolicy::default() });
        g.invoker.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::Unavailable {
            message: "down".into(),
        });
        let err = g.converse(request).await.unwrap_err();
        assert!(matches!(err, GatewayError::Model(InvokeError::Unavailable { .. })));
        assert_eq!(g.invoker.calls(), 1);
    }

    #[tokio::test]
    async fn explicit_models_never_change_but_tier_names_widen_their_profile() {
        let g = gateway();
        g.invoker.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::Throttled {
            message: "slow".into(),
            retry_after: None,
        });
        let err = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "x"))).await.unwrap_err();
        assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { .. })));
        let answer = g.converse(call("a", body("haiku", "x"))).await.unwrap();
        assert_eq!(answer.model_id, "global.anthropic.claude-haiku-4-5-20251001-v1:0");
        assert_eq!(answer.hops.len(), 2);
    }

    #[tokio::test]
    async fn repeats_during_throttling_are_served_from_the_fallback_models_entry() {
        let g = routed_gateway(RoutingPolicy::default());
        throttle_haiku(&g.invoker);
        let request = auto_haiku_with_sonnet_fallback();
        let first = g.converse(request.clone()).await.unwrap();
        assert_eq!(first.hops.last().unwrap().outcome, "served");
        let calls = g.invoker.calls();
        let repeat = g.converse(request).await.unwrap();
        assert_eq!(repeat.cache.result, CacheResult::Hit);
        assert_eq!(repeat.cost_usd, Some(0.0));
        assert_eq!(repeat.hops.last().unwrap().outcome, "cache_hit");
        assert_eq!(repeat.model_id, first.model_id);
        assert_eq!(g.invoker.calls(), calls + 2, "the two throttled haiku profiles, then sonnet's entry");
    }

    mod deadlines {
        use super::*;
        use crate::testing::HANG;

        const HAIKU_US: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
        const HAIKU_GLOBAL: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
        const SONNET_US: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

        fn with_budgets(
            mut g: Gateway<InMemoryCacheStore, FakeInvoker>,
            budgets: Budgets,
        ) -> Gateway<InMemoryCacheStore, FakeInvoker> {
            g.settings.budgets = budgets;
            g
        }

        fn due_in(mut call: ConverseCall, budget: Duration) -> ConverseCall {
            call.deadline = Deadline::after(budget);
            call
        }

        fn millis(ms: u64) -> Duration {
            Duration::from_millis(ms)
        }

        #[tokio::test(start_paused = true)]
        async fn a_hanging_cache_read_is_a_miss_with_a_cache_error_within_the_cache_budget() {
            // Finding 1: a stalled store held every request, hits included, as long as it stalled.
            let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
            g.converse(call("a", body("haiku", "hello"))).await.unwrap();
            g.store.delay_reads(HANG);
            let started = tokio::time::Instant::now();
            let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
            assert_eq!(started.elapsed(), millis(50), "the read is given up at the cache budget, no later");
            assert_eq!(answer.cache.result, CacheResult::Miss, "a would-be hit is served from the model");
            let error = answer.cache.error.unwrap();
            assert!(error.starts_with("read failed (timeout)"), "{error}");
            assert_eq!(g.invoker.calls(), 2);
        }

        #[tokio::test(start_paused = true)]
        async fn a_hanging_cache_write_is_abandoned_and_reported() {
            let g = with_budgets(gateway(), Budgets { cache: millis(40), ..Budgets::default() });
            g.store.delay_writes(HANG);
            let started = tokio::time::Instant::now();
            let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
            assert_eq!(started.elapsed(), millis(40));
            assert_eq!(answer.cache.write, Some(WriteReport::Abandoned));
            let error = answer.cache.error.unwrap();
            assert!(error.starts_with("write abandoned (timeout)"), "{error}");
            assert_eq!(g.store.len(), 0);
        }

        #[tokio::test(start_paused = true)]
        async fn a_slow_cache_within_budget_is_still_used() {
            let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
            g.converse(call("a", body("haiku", "hello"))).await.unwrap();
            g.store.delay_reads(millis(49));
            let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
            assert_eq!(answer.cache.result, CacheResult::Hit);
            assert_eq!(answer.cache.error, None);
        }

        #[tokio::test(start_paused = true)]
        async fn the_model_is_told_what_the_deadline_leaves() {
            let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
            g.store.delay_reads(millis(30));
            g.converse(due_in(call("a", body("haiku", "hello")), millis(1_000))).await.unwrap();
            assert_eq!(g.invoker.seen_time_limits(), vec![millis(970)]);
        }

        #[tokio::test(start_paused = true)]
        async fn a_fallback_hop_is_not_started_when_the_deadline_cannot_hold_it() {
            // Finding 2: each hop had its own timeout, so two hops took twice the limit.
            let g = with_budgets(
                routed_gateway(RoutingPolicy::default()),
                Budgets { min_hop: millis(2_000), ..Budgets::default() },
            );
            throttle_haiku(&g.invoker);
            g.invoker.delay_model(HAIKU_US, millis(1_500));
            let started = tokio::time::Instant::now();
            let err = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(3_000))).await.unwrap_err();
            assert_eq!(started.elapsed(), millis(1_500), "the chain stops when the first hop fails");
            match &err {
                GatewayError::DeadlineExceeded { hops, remaining, needed, last } => {
                    let tried: Vec<(&str, &str)> = hops.iter().map(|h| (h.model_id.as_str(), h.outcome)).collect();
                    assert_eq!(tried, vec![(HAIKU_US, "throttled")]);
                    assert_eq!((*remaining, *needed), (millis(1_500), millis(2_000)));
                    assert!(matches!(last, Some(InvokeError::Throttled { .. })));
                }
                other => panic!("expected the deadline to stop the chain, got {other:?}"),
            }
            assert_eq!(g.invoker.seen_models(), vec![HAIKU_US]);

            // With time to spare the same chain runs to the adjacent tier.
            let answer = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(10_000))).await.unwrap();
            assert_eq!(answer.hops.last().map(|h| (h.model_id.as_str(), h.outcome)), Some((SONNET_US, "served")));
        }

        #[tokio::test(start_paused = true)]
        async fn the_whole_call_ends_by_the_deadline_when_every_model_hangs() {
            let g = routed_gateway(RoutingPolicy::default());
            for model in [HAIKU_US, HAIKU_GLOBAL, SONNET_US] {
                g.invoker.delay_model(model, HANG);
            }
            let started = tokio::time::Instant::now();
            let err = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(5_000))).await.unwrap_err();
            assert_eq!(started.elapsed(), millis(5_000), "never hop count x per-hop timeout");
            match &err {
                GatewayError::DeadlineExceeded { hops, remaining, .. } => {
                    assert_eq!(hops.len(), 1);
                    assert_eq!(hops[0].outcome, "timeout");
                    assert_eq!(*remaining, Duration::ZERO);
                }
                other => panic!("expected the deadline to stop the chain, got {other:?}"),
            }
        }

        #[tokio::test(start_paused = true)]
        async fn a_model_call_that_overruns_its_deadline_is_cut_by_the_core() {
            let g = gateway();
            g.invoker.ignore_deadlines(true);
            g.invoker.delay_model(HAIKU_US, millis(60_000));
            let started = tokio::time::Instant::now();
            let err = g.converse(due_in(call("a", body(HAIKU_US, "hello")), millis(2_000))).await.unwrap_err();
            assert_eq!(started.elapsed(), millis(2_000));
            assert!(matches!(err, GatewayError::Model(InvokeError::Timeout(_))), "{err:?}");
        }

        #[tokio::test(start_paused = true)]
        async fn a_request_with_no_time_left_calls_no_model() {
            let g = gateway();
            let err = g.converse(due_in(call("a", body("haiku", "hello")), Duration::ZERO)).await.unwrap_err();
            assert!(matches!(&err, GatewayError::DeadlineExceeded { hops, .. } if hops.is_empty()), "{err:?}");
            assert_eq!(g.invoker.calls(), 0);
        }
    }

    mod single_flight {
        use super::*;
        use crate::testing::{Delayed, join_all};

        const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
        const MODEL_LATENCY: Duration = Duration::from_millis(100);

        type SharedGateway = Gateway<Arc<InMemoryCacheStore>, Delayed<Arc<FakeInvoker>>>;

        /// A gateway whose model takes a while, over a store and a model other instances may share.
        fn instance(
            store: &Arc<InMemoryCacheStore>,
            invoker: &Arc<FakeInvoker>,
            claim_wait: Option<Duration>,
        ) -> SharedGateway {
            let catalog = Arc::new(Catalog::embedded().unwrap());
            let settings = GatewaySettings { claim_wait, ..GatewaySettings::from_catalog(&catalog) };
            Gateway::new(catalog, settings, store.clone(), Delayed::new(invoker.clone(), MODEL_LATENCY))
        }

        fn fresh() -> (Arc<InMemoryCacheStore>, Arc<FakeInvoker>) {
            (Arc::default(), Arc::default())
        }

        /// The cache key `converse` computes for `call`, to plant a claim of a crashed instance.
        fn key_of(g: &SharedGateway, call: &ConverseCall) -> CacheKey {
            let Ok(Target::Model(m)) = g.catalog().resolve(HAIKU) else { panic!("haiku resolves") };
            let mut request = call.request.clone();
            request.model_id = None;
            CacheKey::compute(&call.tenant, &m.spec.model_id, &request)
        }

        #[tokio::test]
        async fn identical_concurrent_misses_share_one_model_call() {
            let (store, invoker) = fresh();
            let g = instance(&store, &invoker, None);
            let answers = join_all((0..8).map(|_| g.converse(call("a", body("haiku", "new prompt"))))).await;
            assert_eq!(invoker.calls(), 1);
            let answers: Vec<Answer> = answers.into_iter().map(Result::unwrap).collect();
            let leaders: Vec<&Answer> = answers.iter().filter(|a| !a.cache.coalesced).collect();
            assert_eq!(leaders.len(), 1);
            let leader = leaders[0];
            assert_eq!(leader.cache.result, CacheResult::Miss);
            let paid = leader.cost_usd.unwrap();
            for follower in answers.iter().filter(|a| a.cache.coalesced) {
                assert_eq!(follower.cache.result, CacheResult::Hit, "x-cache stays a documented value");
                assert_eq!(follower.cost_usd, Some(0.0));
                assert_eq!(follower.cache.saved_usd, Some(paid));
                assert_eq!(follower.cache.write, None);
                assert!(follower.hops.is_empty(), "a follower made no model call");
                assert_eq!(follower.response, leader.response);
                assert_eq!(follower.cache.key, leader.cache.key);
            }
            let json = serde_json::to_value(&answers.iter().find(|a| a.cache.coalesced).unwrap().cache).unwrap();
            assert_eq!(json["coalesced"], true);
            assert!(serde_json::to_value(&leader.cache).unwrap().get("coalesced").is_none());
            assert_eq!(g.flights.in_flight(), 0, "the map keeps nothing once the flight lands");
        }

        #[tokio::test]
        async fn different_keys_and_bypasses_never_coalesce() {
            let (store, invoker) = fresh();
            let g = instance(&store, &invoker, None);
            let mut off = call("a", body("haiku", "p"));
            off.cache.mode = Some(CacheMode::Off);
            let mut refresh = call("a", body("haiku", "p"));
            refresh.cache.mode = Some(CacheMode::WriteOnly);
            let mut sampled = call("a", body("haiku", "p"));
            sampled.request.inference_config = None;
            let calls = vec![
                call("a", body("haiku", "p")),
                call("b", body("haiku", "p")),
                call("a", body("haiku", "q")),
                call("a", body("sonnet", "p")),
                off.clone(),
                off,
                refresh,
                sampled.clone(),
                sampled,
            ];
            let answers = join_all(calls.into_iter().map(|c| g.converse(c))).await;
            assert!(answers.iter().all(|a| !a.as_ref().unwrap().cache.coalesced));
            assert_eq!(invoker.calls(), 9);
        }

        #[tokio::test]
        async fn followers_share_the_leaders_failure_instead_of_calling_again() {
            let (store, invoker) = fresh();
            let g = instance(&store, &invoker, None);
            invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
            let results = join_all((0..8).map(|_| g.converse(call("a", body(HAIKU, "p"))))).await;
            assert_eq!(invoker.calls(), 1, "a throttled model is asked once, not eight times");
            for result in results {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })),
                    "{err:?}"
                );
            }
            // The failure is not remembered: the next request tries again.
            invoker.succeed();
            assert_eq!(g.converse(call("a", body(HAIKU, "p"))).await.unwrap().cache.result, CacheResult::Miss);
            assert_eq!(g.flights.in_flight(), 0);
        }

        #[tokio::test]
        async fn a_dropped_leader_hands_over_to_a_follower() {
            let (store, invoker) = fresh();
            let g = Arc::new(instance(&store, &invoker, None));
            let spawn = |g: &Arc<SharedGateway>| {
                let g = g.clone();
                tokio::spawn(async move { g.converse(call("a", body("haiku", "p"))).await })
            };
            let leader = spawn(&g);
            tokio::time::sleep(MODEL_LATENCY / 4).await;
            let follower = spawn(&g);
            tokio::time::sleep(MODEL_LATENCY / 4).await;
            leader.abort();
            let answer = tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap().unwrap();
            assert_eq!(answer.cache.result, CacheResult::Miss, "the follower called the model itself");
            assert!(!answer.cache.coalesced);
            // The leader was dropped during its model's latency, before the model counted it.
            assert_eq!(invoker.calls(), 1);
            assert_eq!(g.flights.in_flight(), 0);
        }

        #[tokio::test]
        async fn a_claim_lets_two_instances_share_one_call() {
            let (store, invoker) = fresh();
            let wait = Some(Duration::from_secs(5));
            let (a, b) = (instance(&store, &invoker, wait), instance(&store, &invoker, wait));
            let requests = (0..8).map(|i| {
                let g = if i % 2 == 0 { &a } else { &b };
                g.converse(call("a", body("haiku", "p")))
            });
            let answers: Vec<Answer> = join_all(requests).await.into_iter().map(Result::unwrap).collect();
            assert_eq!(invoker.calls(), 1);
            assert_eq!(answers.iter().filter(|a| a.cache.result == CacheResult::Miss).count(), 1);
            assert!(answers.iter().filter(|a| a.cache.result == CacheResult::Hit).all(|a| a.cache.coalesced));
            assert_eq!(store.claim_count(), 0, "the claim is released once the answer is stored");

            // Without the claim, each instance pays once.
            let (store, invoker) = fresh();
            let (a, b) = (instance(&store, &invoker, None), instance(&store, &invoker, None));
            let requests = (0..8).map(|i| {
                let g = if i % 2 == 0 { &a } else { &b };
                g.converse(call("a", body("haiku", "p")))
            });
            join_all(requests).await;
            assert_eq!(invoker.calls(), 2);
        }

        #[tokio::test]
        async fn a_crashed_claimant_blocks_no_one_beyond_the_wait_budget() {
            let (store, invoker) = fresh();
            let budget = Duration::from_millis(300);
            let g = instance(&store, &invoker, Some(budget));
            let request = call("a", body("haiku", "p"));
            let key = key_of(&g, &request);
            let Ok(Claim::Acquired(_)) = store.claim(&key, SystemTime::now(), Duration::from_secs(600)).await else {
                panic!("the planted claim is taken")
            };
            let started = Instant::now();
            let answer = g.converse(request).await.unwrap();
            let waited = started.elapsed();
            assert_eq!(answer.cache.result, CacheResult::Miss);
            assert_eq!(invoker.calls(), 1);
            assert!(waited >= budget, "waited {waited:?}");
            assert!(waited < budget + MODEL_LATENCY + Duration::from_millis(300), "waited {waited:?}");
        }

        #[tokio::test]
        async fn an_expired_claim_is_taken_over_at_once() {
            let (store, invoker) = fresh();
            let g = instance(&store, &invoker, Some(Duration::from_secs(5)));
            let request = call("a", body("haiku", "p"));
            let key = key_of(&g, &request);
            assert!(matches!(
                store.claim(&key, SystemTime::now(), Duration::from_secs(600)).await,
                Ok(Claim::Acquired(_))
            ));
            store.expire_claims();
            let started = Instant::now();
            let answer = g.converse(request).await.unwrap();
            assert_eq!(answer.cache.result, CacheResult::Miss);
            assert!(started.elapsed() < Duration::from_secs(1), "no wait on an expired claim: {:?}", started.elapsed());
            assert_eq!(store.claim_count(), 0);
        }

        #[tokio::test]
        async fn a_waiter_takes_over_when_the_claimant_fails() {
            let (store, failing) = fresh();
            let answering = Arc::new(FakeInvoker::default());
            let wait = Some(Duration::from_secs(5));
            let (a, b) = (instance(&store, &failing, wait), instance(&store, &answering, wait));
            failing.fail_with(|| InvokeError::ModelFailed { message: "boom".into() });
            let first = a.converse(call("a", body(HAIKU, "p")));
            let second = async {
                tokio::time::sleep(MODEL_LATENCY / 4).await;
                b.converse(call("a", body(HAIKU, "p"))).await
            };
            let started = Instant::now();
            let (first, second) = tokio::join!(first, second);
            assert!(matches!(first, Err(GatewayError::Model(InvokeError::ModelFailed { .. }))), "{first:?}");
            assert_eq!(
                second.unwrap().cache.result,
                CacheResult::Miss,
                "the waiter called once the claim was released"
            );
            assert!(started.elapsed() < Duration::from_secs(2), "released, not waited out: {:?}", started.elapsed());
            assert_eq!((failing.calls(), answering.calls()), (1, 1));
            assert_eq!(store.claim_count(), 0);
        }

        #[tokio::test]
        async fn claim_failures_are_reported_and_the_request_served() {
            let (store, invoker) = fresh();
            let g = instance(&store, &invoker, Some(Duration::from_secs(5)));
            store.fail_claims(true);
            let answer = g.converse(call("a", body("haiku", "p"))).await.unwrap();
            assert_eq!(answer.cache.result, CacheResult::Miss);
            assert!(matches!(answer.cache.write, Some(WriteReport::Stored { .. })));
            assert!(answer.cache.error.unwrap().contains("claim failed (store)"));
            assert_eq!(invoker.calls(), 1);
        }
    }
}
