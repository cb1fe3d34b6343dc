//! The invoke-with-cache use case: one Converse request in, one priced answer out.
//!
//! [`Gateway::converse`] runs named stages, each in its own file:
//!
//! 1. `prepare`: resolve `modelId` (tier name, model ID, profile or ARN)
//!    through the catalog, or for `auto` ask the router for the cheapest tier predicted
//!    adequate; check the request against the model's limits; plan the attempts of the
//!    fallback chain, each with the [`QuotaKey`](crate::quota::QuotaKey) it spends; compute
//!    the cache key (it names the chosen model) and decide what the request may do with the
//!    cache (mode, sampling, TTL). The result is one `Prepared` value.
//! 2. `lookup`: on a read, look the key up (a live entry is a HIT and costs
//!    nothing). Identical concurrent misses in this instance share one flight
//!    ([`SingleFlight`](crate::singleflight::SingleFlight)): the others follow the first and
//!    are answered from its result as coalesced hits. With `claim_wait` set, a miss that will
//!    write first claims the key in the store, or waits for the instance holding the claim.
//! 3. `call`: the fallback chain. When the model is throttled, unavailable or
//!    keeps failing, the call falls back, if the deployer allows: through the model's other
//!    inference profiles (in-Region, then geographic, then global), and for routed requests
//!    then to the adjacent allowed tier. Every attempt is a [`Hop`] of the answer.
//!    `call::invoke` is the only place a model is invoked.
//! 4. `settle`: price the served call from the model that actually served it.
//! 5. `store`: write the answer under the key of the model that gave it (before
//!    the reply, because Lambda may freeze the environment as soon as the handler returns),
//!    and release the claim.
//!
//! Quota admission (issue 9) goes around `call::invoke`, once per attempt, because a spill to
//! another profile or tier spends a different quota: admit with the attempt's `quota` key and
//! the reservation before the call, drop the permit when the call fails (nothing consumed),
//! and settle it in the settle stage with the served usage (`ModelSpec::quota_tokens`). No
//! other stage calls a model, so no other stage needs to know about admission.
//!
//! Cache failures never fail a request: the answer is served from Bedrock and the error is
//! reported alongside it. Every call carries a [`Deadline`] and no stage waits beyond it:
//! cache reads and writes get at most the cache budget, each model call what is left of the
//! request, and a fallback model is called only if at least [`Budgets::min_hop`] is left.

mod call;
mod lookup;
mod prepare;
mod sample;
mod settle;
mod store;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

use crate::admission::{AdmissionMode, Admit, Refusal};
use crate::cache::{BypassReason, CacheEntry, CacheOptions, CacheSettings, Tenant};
use crate::calibration::Sampler;
use crate::catalog::{Catalog, ResolveError, Tier};
use crate::cost::PricingMode;
use crate::deadline::{Budgets, Deadline};
use crate::identity::TenantRules;
use crate::label::ErrorLabel;
use crate::outputs::{OutputLengthSettings, OutputLengths};
use crate::ports::{CacheError, InvokeError, Ports};
use crate::request::{ConverseRequest, ConverseResponse, RequestError};
use crate::routing::{RouteDecision, RouteOverrides, Router};
use crate::singleflight::SingleFlight;
use crate::usage::{Recorder, UsageSource, build};

use call::Served;
use lookup::{FlightKey, Lookup};
// The batch layer's deferral runs the same preparation and read as a request answered now.
pub(crate) use prepare::Prepared;
use store::Reply;
pub use stream::{CallerGone, Ending, OpenStream, StreamEnd, StreamSink};

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
    /// Who a caller's tenant is, from what the authorizer verified and the tenant header.
    pub tenants: TenantRules,
    /// Whether concurrent identical misses in this instance share one model call.
    pub single_flight: bool,
    /// How long a miss waits for another instance's claimed call before paying itself;
    /// `None` takes no claims.
    pub claim_wait: Option<Duration>,
    /// Whether a request without `maxTokens` is sent with a learned one (and continued when
    /// it stops there) instead of reserving the model's whole output limit.
    pub learned_max_tokens: bool,
    pub output_lengths: OutputLengthSettings,
    /// The most continuation calls one answer may take.
    pub max_continuations: u32,
    /// How long a request waits for a quota that is not its chain's last before it spills to
    /// the next one; the last waits up to the admission wait.
    pub spill_after: Duration,
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
            tenants: TenantRules::default(),
            single_flight: true,
            claim_wait: None,
            learned_max_tokens: true,
            output_lengths: OutputLengthSettings::default(),
            max_continuations: 4,
            spill_after: Duration::from_millis(250),
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
    /// Sampling parameters of the request left out because this model refuses them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<&'static str>,
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
    /// What quota admission did for the call that answered; `None` when admission is off or
    /// no model was called.
    pub admission: Option<AdmissionSummary>,
}

impl Answer {
    /// The sampling parameters the model that answered was not sent (it refuses them).
    pub fn omitted(&self) -> &[&'static str] {
        served_omitted(&self.hops)
    }
}

/// What the hop that answered left out: the chain's last hop, when it served.
pub(crate) fn served_omitted(hops: &[Hop]) -> &[&'static str] {
    hops.last().filter(|hop| hop.outcome == "served").map_or(&[], |hop| hop.omitted.as_slice())
}

/// What admission did for an answer, over every call it took (continuations included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionSummary {
    /// The quota that served the answer.
    pub quota: String,
    pub mode: AdmissionMode,
    /// What the first call reserved.
    pub reserved_tokens: u64,
    /// What the calls settled at, as Bedrock counts them.
    pub settled_tokens: u64,
    /// Time spent waiting for room, over every quota tried.
    pub waited_ms: u64,
    /// The answer came from another quota than the first choice's, taken before Bedrock
    /// throttled the first.
    pub spilled: bool,
    /// Model calls made under admission for this answer.
    pub calls: u32,
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
    /// No quota of the chain had room for the request within its wait.
    #[error("{refusal}")]
    QuotaExhausted { hops: Vec<Hop>, refusal: Refusal },
}

impl GatewayError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            GatewayError::InvalidRequest(e) => e.label(),
            GatewayError::UnknownModel(e) => e.label(),
            GatewayError::Model(e) | GatewayError::FallbackExhausted { source: e, .. } => e.label(),
            GatewayError::DeadlineExceeded { .. } => ErrorLabel::DeadlineExceeded,
            GatewayError::QuotaExhausted { .. } => ErrorLabel::QuotaExhausted,
        }
    }

    /// The Bedrock failure behind this error, if it is one.
    pub fn invoke_error(&self) -> Option<&InvokeError> {
        match self {
            GatewayError::Model(e) | GatewayError::FallbackExhausted { source: e, .. } => Some(e),
            GatewayError::DeadlineExceeded { last, .. } => last.as_ref(),
            GatewayError::InvalidRequest(_) | GatewayError::UnknownModel(_) | GatewayError::QuotaExhausted { .. } => {
                None
            }
        }
    }
}

/// The use case, generic over its bundle of ports so tests can run it on fakes.
#[derive(Debug)]
pub struct Gateway<P> {
    catalog: Arc<Catalog>,
    settings: GatewaySettings,
    ports: P,
    router: Option<Router>,
    /// Misses being answered in this instance, shared with identical concurrent ones.
    flights: SingleFlight<FlightKey, Result<Answer, GatewayError>>,
    admission: Option<Arc<dyn Admit>>,
    /// Answer lengths seen, for the `maxTokens` of requests that give none.
    outputs: OutputLengths,
    /// Where [`Gateway::converse_and_record`] writes each request's usage.
    usage: Option<Arc<dyn Recorder>>,
    /// Samples opted-in tenants' prompts for the router's calibration; `None` samples nothing.
    sampler: Option<Arc<Sampler>>,
}

/// Which request a call is, for its usage record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub source: UsageSource,
    pub request_id: String,
}

impl Origin {
    /// The record's identity, finished now.
    fn served<'a>(&'a self, tenant: &'a Tenant) -> build::Served<'a> {
        build::Served {
            source: self.source,
            request_id: &self.request_id,
            tenant,
            finished_at_ms: crate::usage::epoch_ms(SystemTime::now()),
        }
    }
}

/// How long a usage write may add to a request: the answer is ready, the caller waits.
pub const USAGE_WRITE_BUDGET: Duration = Duration::from_millis(250);

impl<P: Ports> Gateway<P> {
    pub fn new(catalog: Arc<Catalog>, settings: GatewaySettings, ports: P) -> Self {
        let outputs = OutputLengths::new(settings.output_lengths);
        Gateway {
            catalog,
            settings,
            ports,
            router: None,
            flights: SingleFlight::default(),
            admission: None,
            outputs,
            usage: None,
            sampler: None,
        }
    }

    /// Admits every model call against its Bedrock quota first.
    pub fn with_admission(mut self, admission: Arc<dyn Admit>) -> Self {
        self.admission = Some(admission);
        self
    }

    /// Records every request served through [`Gateway::converse_and_record`].
    pub fn with_usage(mut self, usage: Arc<dyn Recorder>) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Samples the prompts of tenants who opted into calibration, after their answer.
    pub fn with_sampler(mut self, sampler: Arc<Sampler>) -> Self {
        self.sampler = Some(sampler);
        self
    }

    pub fn sampler(&self) -> Option<&Arc<Sampler>> {
        self.sampler.as_ref()
    }

    /// The ledger usage records go to, when there is one: entry points that build their
    /// records themselves (the batch pipeline) write to the same one.
    pub fn usage(&self) -> Option<&Arc<dyn Recorder>> {
        self.usage.as_ref()
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

    pub fn ports(&self) -> &P {
        &self.ports
    }

    pub async fn converse(&self, call: ConverseCall) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let prepared = self.prepare(call, started)?;
        if prepared.coalesces(self.settings.single_flight) {
            self.serve_in_flight(prepared).await
        } else {
            self.serve(prepared).await
        }
    }

    /// [`Gateway::converse`], then the record stage: the request's [`UsageRecord`](crate::usage::UsageRecord),
    /// answered or failed, goes to the usage ledger within [`USAGE_WRITE_BUDGET`]. A failed
    /// write is logged and never changes the answer.
    pub async fn converse_and_record(&self, call: ConverseCall, origin: &Origin) -> Result<Answer, GatewayError> {
        let started = Instant::now();
        let tenant = call.tenant.clone();
        let candidate = self.sample_candidate(&call);
        let outcome = self.converse(call).await;
        self.record_outcome(outcome.as_ref(), &tenant, origin, started.elapsed()).await;
        if outcome.is_ok() {
            self.sample(candidate).await;
        }
        outcome
    }

    /// The record stage alone, for an answer an entry point got another way (a deferrable
    /// request the cache answered at once).
    pub async fn record_answer(&self, answer: &Answer, tenant: &Tenant, origin: &Origin) {
        self.record_outcome(Ok(answer), tenant, origin, answer.latency).await;
    }

    async fn record_outcome(
        &self,
        outcome: Result<&Answer, &GatewayError>,
        tenant: &Tenant,
        origin: &Origin,
        elapsed: Duration,
    ) {
        let Some(usage) = &self.usage else {
            return;
        };
        let served = origin.served(tenant);
        let record = match outcome {
            Ok(answer) => build::answered(served, answer, &self.catalog, PricingMode::OnDemand),
            Err(error) => build::failed(served, error, &self.catalog, elapsed),
        };
        let _ = build::write(usage.as_ref(), &record, USAGE_WRITE_BUDGET).await;
    }

    /// The stages after preparation, for one request or for a flight of identical ones.
    async fn serve(&self, prepared: Prepared) -> Result<Answer, GatewayError> {
        let mut report = prepared.cache_report();
        let claim = match self.lookup(&prepared, &mut report).await {
            Lookup::Found { entry, read_at } => return Ok(prepared.into_hit(*entry, Vec::new(), report, read_at)),
            Lookup::Missed { claim } => claim,
        };
        let (served, hops, admission) = match self.call(&prepared).await {
            Ok(called) => called,
            Err(error) => {
                // Released at once so that a waiting instance takes over without waiting out the claim.
                self.release_claim(&prepared.key, claim, prepared.deadline).await;
                return Err(error);
            }
        };
        let settled = match served {
            Served::Answered { output: response, attempt } => self.settle(response, attempt),
            Served::Cached { entry, key } => {
                add_error(&mut report, self.release_claim(&prepared.key, claim, prepared.deadline).await);
                report.key = Some(key.to_hex());
                return Ok(prepared.into_hit(*entry, hops, report, SystemTime::now()));
            }
        };
        let reply = self.store(&prepared, settled, claim, &mut report).await;
        Ok(Answer { admission, ..prepared.into_answer(reply, report, hops) })
    }

    /// One cache operation within the cache budget and the request's deadline, whichever ends first.
    async fn cache_op<T>(
        &self,
        operation: impl Future<Output = Result<T, CacheError>>,
        deadline: Deadline,
    ) -> Result<T, CacheError> {
        let limit = deadline.within(self.settings.budgets.cache);
        let allowed = limit.remaining();
        limit
            .bound(operation)
            .await
            .unwrap_or_else(|_| Err(CacheError::Timeout(format!("no answer within {} ms", allowed.as_millis()))))
    }
}

impl Prepared {
    /// A hit costs nothing and saves what the stored call cost; its age counts from `now`.
    pub(crate) fn into_hit(
        self,
        entry: CacheEntry,
        hops: Vec<Hop>,
        mut report: CacheReport,
        now: SystemTime,
    ) -> Answer {
        report.result = CacheResult::Hit;
        report.saved_usd = Some(entry.cost_usd);
        report.age_seconds = now.duration_since(entry.created_at).ok().map(|d| d.as_secs());
        report.ttl_seconds = entry.expires_at.duration_since(now).ok().map(|d| d.as_secs());
        Answer {
            response: entry.response,
            requested_model: self.requested_model,
            model_id: entry.model_id,
            cost_usd: Some(0.0),
            latency: self.started.elapsed(),
            cache: report,
            routing: self.routing,
            hops,
            admission: None,
        }
    }

    fn into_answer(self, reply: Reply, report: CacheReport, hops: Vec<Hop>) -> Answer {
        Answer {
            response: reply.response,
            requested_model: self.requested_model,
            model_id: reply.model_id,
            cost_usd: reply.cost_usd,
            latency: self.started.elapsed(),
            cache: report,
            routing: self.routing,
            hops,
            admission: None,
        }
    }
}

/// Appends a failure the request survived to the report's error text.
fn add_error(report: &mut CacheReport, error: Option<String>) {
    if let Some(error) = error {
        report.error = Some(match report.error.take() {
            Some(earlier) => format!("{earlier}; {error}"),
            None => error,
        });
    }
}

#[cfg(test)]
pub(crate) mod tests;
