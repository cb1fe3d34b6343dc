//! Stage 1, prepare: everything decided before any I/O. The model is resolved (or routed),
//! the request checked against its limits, the fallback chain planned with the quota each
//! attempt spends, and the cache key and cache decision computed, into one [`Prepared`].

use std::time::Instant;

use crate::cache::{CacheDecision, CacheKey, Tenant};
use crate::catalog::{ModelSpec, ResolveError, Scope, Target, Tier};
use crate::date::Date;
use crate::deadline::Deadline;
use crate::ports::Ports;
use crate::quota::QuotaKey;
use crate::request::{ConverseRequest, RequestError};
use crate::routing::RouteDecision;
use crate::sampling::Accepts;

use super::lookup::FlightKey;
use super::{AUTO_MODEL, CacheReport, CacheResult, ConverseCall, Gateway, GatewayError};

/// A planned model call.
#[derive(Debug, Clone)]
pub(crate) struct Attempt {
    pub(super) invoke_id: String,
    /// The model the cache key names: the base model ID, or the prompt router's ARN.
    pub(crate) key_model: String,
    /// The Bedrock quota this call spends; a spill to another profile or tier spends another.
    /// `None` for a prompt router, whose model (and so quota) Bedrock picks during the call.
    pub(crate) quota: Option<QuotaKey>,
    pub(super) tier: Option<Tier>,
    pub(super) max_output: Option<(u32, String)>,
    /// What its model takes of a request; the request is fitted to it when sent.
    pub(super) accepts: Accepts,
}

impl Attempt {
    fn model(spec: &ModelSpec, scope: &Scope, invoke_id: String, tier: Option<Tier>) -> Attempt {
        Attempt {
            invoke_id,
            key_model: spec.model_id.clone(),
            quota: Some(QuotaKey::new(&spec.model_id, scope.clone())),
            tier,
            max_output: Some((spec.max_output_tokens, spec.display_name.clone())),
            accepts: spec.accepts(),
        }
    }

    /// A prompt router picks among models that take every sampling parameter and form of
    /// thinking.
    fn prompt_router(arn: String, tier: Option<Tier>) -> Attempt {
        Attempt {
            invoke_id: arn.clone(),
            key_model: arn,
            quota: None,
            tier,
            max_output: None,
            accepts: Accepts::default(),
        }
    }
}

/// A request ready for the cache and the models: what it asks, who asks, and the plan.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) request: ConverseRequest,
    pub(crate) tenant: Tenant,
    /// The `modelId` as the caller gave it.
    pub(crate) requested_model: String,
    pub(crate) routing: Option<RouteDecision>,
    /// The fallback chain in order; never empty, the first is what the caller or router chose.
    pub(crate) attempts: Vec<Attempt>,
    /// The key of the first attempt's model.
    pub(crate) key: CacheKey,
    pub(crate) decision: CacheDecision,
    pub(crate) started: Instant,
    pub(crate) deadline: Deadline,
}

impl Prepared {
    /// Bypasses never coalesce: `off` and sampled requests want an answer of their own,
    /// `write_only` a fresh one.
    pub(super) fn coalesces(&self, single_flight: bool) -> bool {
        self.decision.read && single_flight
    }

    /// Requests sharing a flight would have written the same entry; the key carries the
    /// whole request and its tenant, so whatever the leader got, a follower would have too.
    pub(super) fn flight_key(&self) -> FlightKey {
        FlightKey { key: self.key, write: self.decision.write, ttl: self.decision.ttl }
    }

    /// The cache report before any lookup: a miss if the request may read, else a bypass.
    pub(crate) fn cache_report(&self) -> CacheReport {
        CacheReport {
            result: if self.decision.read { CacheResult::Miss } else { CacheResult::Bypass },
            key: Some(self.key.to_hex()),
            bypass_reason: self.decision.bypass,
            saved_usd: None,
            age_seconds: None,
            ttl_seconds: Some(self.decision.ttl.as_secs()),
            write: None,
            error: None,
            coalesced: false,
        }
    }

    /// The key the answer of `attempt` is stored under: its own model's, never the chosen one's.
    pub(super) fn key_for(&self, attempt: &Attempt) -> CacheKey {
        if self.attempts.first().is_some_and(|first| first.key_model == attempt.key_model) {
            self.key
        } else {
            CacheKey::compute(&self.tenant, &attempt.key_model, &self.request)
        }
    }
}

impl<P: Ports> Gateway<P> {
    /// Resolution (or routing), the plan, the cache key and the cache decision, in the order
    /// their errors take precedence.
    pub(crate) fn prepare(&self, call: ConverseCall, started: Instant) -> Result<Prepared, GatewayError> {
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
        Ok(Prepared { request, tenant, requested_model, routing, attempts, key, decision, started, deadline })
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
                attempts.push(Attempt::model(m.spec, &m.scope, m.invoke_id.clone(), first_tier));
                if fallback && first_tier.is_some() {
                    attempts.extend(wider_scopes(m.spec, &m.scope, first_tier));
                }
            }
            Target::PromptRouter { arn } => attempts.push(Attempt::prompt_router(arn, first_tier)),
        }
        if let Some(decision) = routing.filter(|_| fallback) {
            let adjacent =
                Tier::ALL.iter().copied().find(|t| *t > decision.tier && *t <= decision.max_tier).or_else(|| {
                    Tier::ALL.iter().rev().copied().find(|t| *t < decision.tier && *t >= decision.min_tier)
                });
            if let Some(tier) = adjacent
                && let Some(id) = self.settings.tier_models.get(&tier)
            {
                match self.catalog.resolve_callable(id, Date::today()) {
                    Ok(Target::Model(m)) => {
                        attempts.push(Attempt::model(m.spec, &m.scope, m.invoke_id.clone(), Some(tier)));
                        attempts.extend(wider_scopes(m.spec, &m.scope, Some(tier)));
                    }
                    Ok(Target::PromptRouter { arn }) => attempts.push(Attempt::prompt_router(arn, Some(tier))),
                    Err(_) => {}
                }
            }
        }
        Ok(attempts)
    }

    /// What the caller named, as it stands today: a model past its end of life is refused
    /// here, before the cache or Bedrock is asked, with the date and where to go instead.
    fn resolve(&self, requested: &str) -> Result<Target<'_>, ResolveError> {
        let id = match requested.parse::<Tier>() {
            Ok(tier) => self.settings.tier_models.get(&tier).map_or(requested, String::as_str),
            Err(()) => requested,
        };
        self.catalog.resolve_callable(id, Date::today())
    }
}

/// The profiles after `current`, from the most local to the most spread out: an in-Region
/// call widens to the model's first geography, a geographic one stays in its geography before
/// going global, so a fallback never crosses into another geography's profile.
fn wider_scopes(spec: &ModelSpec, current: &Scope, tier: Option<Tier>) -> Vec<Attempt> {
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
        .map(|scope| Attempt::model(spec, scope, spec.invoke_id(scope), tier))
        .collect()
}

pub(super) fn check_model_limits(request: &ConverseRequest, max_output: u32, model: &str) -> Result<(), RequestError> {
    match request.max_tokens() {
        Some(n) if n > max_output => Err(RequestError::invalid(
            "inferenceConfig.maxTokens",
            format!("{n} exceeds {model}'s maximum output of {max_output} tokens"),
        )),
        _ => Ok(()),
    }
}
