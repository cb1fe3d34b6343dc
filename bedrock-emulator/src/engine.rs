//! What every model operation shares, whatever its wire format: resolve the model, validate
//! the limits, draw faults, admit against the quota, look the prompt cache up, generate the
//! answer, and settle the quota and the statistics when the response ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gateway_core::catalog::{Catalog, ModelSpec, ResolveError, Scope, Target, Tier};
use gateway_core::date::Date;
use gateway_core::quota::{QuotaKey, Throttle};
use gateway_core::request::{CacheTtl, ConverseRequest};
use gateway_core::sampling::{Given, Refusal, ThinkingForm};
use gateway_core::tokens::estimate_request;
use sha2::{Digest, Sha256};

use crate::cache::{CacheUsage, PromptCache};
use crate::config::{AnswerLength, ConfigError, EmulatorConfig};
use crate::errors::{ApiError, END_OF_LIFE, INVALID_MODEL};
use crate::faults::{Fault, FaultInjector, Selector, StreamCut};
use crate::generate::{self, Answer, Rng};
use crate::latency::LatencyModel;
use crate::quota::QuotaBook;
use crate::stats::{Billed, Ending, Operation, Stats};

/// Prompts up to this many estimated tokens go to the router's cheaper model.
const ROUTER_SHORT_PROMPT_TOKENS: u64 = 200;
/// The models of Bedrock's default Anthropic prompt router, cheaper first.
const DEFAULT_ROUTER_MODELS: [&str; 2] =
    ["anthropic.claude-3-haiku-20240307-v1:0", "anthropic.claude-3-5-sonnet-20241022-v2:0"];

#[derive(Debug)]
pub struct AppState {
    pub catalog: Catalog,
    pub latency: LatencyModel,
    pub quotas: QuotaBook,
    pub faults: FaultInjector,
    pub cache: PromptCache,
    pub stats: Stats,
    pub answers: AnswerLength,
    ids: IdSource,
    /// The configured lifecycle day; `None` follows the real one.
    today: Option<Date>,
}

impl AppState {
    pub fn new(config: &EmulatorConfig) -> Result<AppState, ConfigError> {
        let catalog = config.load_catalog()?;
        config.validate(&catalog)?;
        // validate() has checked every key, so none is dropped here.
        let quota_overrides: HashMap<_, _> =
            config.quotas.iter().filter_map(|(id, quota)| Some((bucket_of(&catalog, id).ok()?, *quota))).collect();
        let fault_overrides: HashMap<_, _> = config
            .faults
            .models
            .iter()
            .filter_map(|(id, rates)| Some((selector_of(&catalog, id).ok()?, *rates)))
            .collect();
        Ok(AppState {
            latency: LatencyModel::new(&config.latency, config.latency_scale),
            quotas: QuotaBook::new(Duration::from_secs_f64(config.quota_window_seconds), quota_overrides),
            faults: FaultInjector::new(config.seed, config.faults.global_rates(), fault_overrides),
            cache: PromptCache::default(),
            stats: Stats::default(),
            ids: IdSource::new(config.seed),
            answers: config.answers,
            today: config.today,
            catalog,
        })
    }

    /// The day a model's end of life is judged against.
    pub fn today(&self) -> Date {
        self.today.unwrap_or_else(Date::today)
    }

    /// A fresh identifier such as `msg_bdrk_...`: unique per request, not reproducible.
    pub fn fresh_id(&self, prefix: &str, len: usize) -> String {
        format!("{prefix}{}", self.ids.next_rng().base62(len))
    }

    /// A request ID in the UUID shape AWS uses for `x-amzn-requestid`.
    pub fn request_id(&self) -> String {
        let mut rng = self.ids.next_rng();
        let (a, b) = (rng.next_u64(), rng.next_u64());
        let hex = format!("{a:016x}{b:016x}");
        format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
    }

    /// Resets windows, overrides, counters and the prompt cache: the state at startup.
    pub fn reset_all(&self) {
        self.quotas.reset_all();
        self.faults.reset_all();
        self.stats.reset_all();
        self.cache.clear();
    }

    pub fn reset_bucket(&self, bucket: &QuotaKey) {
        self.quotas.reset_bucket(bucket);
        self.faults.reset_bucket(bucket);
        self.stats.reset_bucket(bucket);
    }

    /// What a model ID in a request path refers to, with Bedrock's errors for IDs it rejects.
    pub fn resolve(&self, model_id: &str, request: &ConverseRequest) -> Result<Resolved, ApiError> {
        match self.catalog.resolve(model_id) {
            Ok(Target::Model(m)) if m.spec.retired_on(self.today()) => {
                Err(ApiError::ResourceNotFound(END_OF_LIFE.into()))
            }
            Ok(Target::Model(m)) => Ok(Resolved {
                bucket: QuotaKey::new(&m.spec.model_id, m.scope),
                spec: m.spec.clone(),
                invoked_model_id: None,
            }),
            Ok(Target::PromptRouter { arn }) => self.route(&arn, request),
            Err(ResolveError::NeedsProfile { .. }) => Err(ApiError::validation(format!(
                "Invocation of model ID {model_id} with on-demand throughput isn't supported. Retry your request with the \
                 ID or ARN of an inference profile that contains this model."
            ))),
            Err(
                ResolveError::UnknownModel(_) | ResolveError::ProfileNotOffered { .. } | ResolveError::Retired { .. },
            ) => Err(ApiError::validation(INVALID_MODEL)),
        }
    }

    /// A prompt router's choice: its cheaper model for short prompts, the stronger one
    /// otherwise, through the geographic profile of the router's Region. Custom routers are
    /// not configured anywhere offline, so they route like the default Anthropic one.
    fn route(&self, arn: &str, request: &ConverseRequest) -> Result<Resolved, ApiError> {
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let (region, account, resource) = match parts.as_slice() {
            [_, _, _, region, account, resource] => (*region, *account, *resource),
            _ => return Err(ApiError::validation(INVALID_MODEL)),
        };
        if let Some(name) = resource.strip_prefix("default-prompt-router/")
            && !name.starts_with("anthropic.")
        {
            return Err(ApiError::validation(INVALID_MODEL));
        }
        let today = self.today();
        let candidates: Vec<&ModelSpec> = DEFAULT_ROUTER_MODELS
            .iter()
            .filter_map(|id| self.catalog.by_model_id(id))
            .filter(|spec| !spec.retired_on(today))
            .collect();
        let candidates = if candidates.len() == 2 {
            candidates
        } else {
            [Tier::Haiku, Tier::Sonnet]
                .iter()
                .filter_map(|tier| match self.catalog.resolve(self.catalog.tier_default(*tier)) {
                    Ok(Target::Model(m)) => Some(m.spec),
                    _ => None,
                })
                .collect()
        };
        let short = estimate_request(request) <= ROUTER_SHORT_PROMPT_TOKENS;
        let spec = match (candidates.first(), candidates.last()) {
            (Some(cheap), _) if short => *cheap,
            (_, Some(strong)) => *strong,
            _ => return Err(ApiError::validation(INVALID_MODEL)),
        };
        let prefix = geo_prefix(region);
        let scope = if spec.profiles.iter().any(|p| p == prefix) {
            Scope::Geo(prefix.to_owned())
        } else {
            spec.scopes().into_iter().next().unwrap_or(Scope::InRegion)
        };
        let invoked_model_id = match scope {
            Scope::InRegion => format!("arn:aws:bedrock:{region}::foundation-model/{}", spec.model_id),
            _ => format!("arn:aws:bedrock:{region}:{account}:inference-profile/{}", spec.invoke_id(&scope)),
        };
        Ok(Resolved {
            bucket: QuotaKey::new(&spec.model_id, scope),
            spec: spec.clone(),
            invoked_model_id: Some(invoked_model_id),
        })
    }
}

/// The inference-profile prefix for a source Region.
pub(crate) fn geo_prefix(region: &str) -> &'static str {
    match region.split('-').next() {
        Some("eu") => "eu",
        Some("ap") => "apac",
        Some("ca") => "ca",
        _ => "us",
    }
}

/// The quota bucket an ID in the config or the admin API names.
pub fn bucket_of(catalog: &Catalog, id: &str) -> Result<QuotaKey, String> {
    match catalog.resolve(id) {
        Ok(Target::Model(m)) => Ok(QuotaKey::new(&m.spec.model_id, m.scope)),
        Ok(Target::PromptRouter { .. }) => Err("prompt routers draw on the quotas of the models they route to".into()),
        Err(ResolveError::NeedsProfile { suggestion, .. }) => {
            Err(format!("this model has no in-Region quota; use a profile ID such as `{suggestion}`"))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// What a fault override applies to: a base model ID means every way of calling the model.
pub fn selector_of(catalog: &Catalog, id: &str) -> Result<Selector, String> {
    if catalog.by_model_id(id).is_some() {
        return Ok(Selector::Model(id.to_owned()));
    }
    bucket_of(catalog, id).map(Selector::Bucket)
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub spec: ModelSpec,
    pub bucket: QuotaKey,
    /// For prompt routers, what `trace.promptRouter.invokedModelId` reports.
    pub invoked_model_id: Option<String>,
}

/// Token figures of one answered request, in Converse's terms: `input` excludes cached
/// tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache: CacheUsage,
}

impl Usage {
    /// Everything the model read and wrote, cached or not.
    pub fn total(&self) -> u64 {
        self.input + self.output + self.cache.read + self.cache.write
    }

    pub fn cache_details(&self) -> Vec<(CacheTtl, u64)> {
        self.cache.write_details.clone()
    }

    /// The same usage as the gateway prices and settles it.
    pub fn as_reported(&self) -> gateway_core::cost::Usage {
        let one_hour =
            self.cache.write_details.iter().filter(|(ttl, _)| *ttl == CacheTtl::OneHour).map(|(_, n)| n).sum();
        gateway_core::cost::Usage {
            input_tokens: self.input,
            output_tokens: self.output,
            cache_read_input_tokens: self.cache.read,
            cache_write_input_tokens: self.cache.write,
            cache_write_1h_input_tokens: one_hour,
        }
    }
}

/// An admitted request, ready to be rendered in its operation's format.
#[derive(Debug)]
pub struct Invocation {
    pub request: ConverseRequest,
    pub resolved: Resolved,
    pub answer: Answer,
    pub usage: Usage,
    /// The modeled duration of the whole call (reported, not scaled).
    pub modeled: Duration,
    pub stream_cut: Option<StreamCut>,
    pub ticket: Ticket,
}

/// What an answered request renders from, whichever way it was answered.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    pub request: &'a ConverseRequest,
    pub resolved: &'a Resolved,
    pub answer: &'a Answer,
    pub usage: &'a Usage,
    pub modeled: Duration,
}

impl Invocation {
    pub fn outcome(&self) -> Outcome<'_> {
        Outcome {
            request: &self.request,
            resolved: &self.resolved,
            answer: &self.answer,
            usage: &self.usage,
            modeled: self.modeled,
        }
    }
}

/// A batch record's answer, owned.
#[derive(Debug)]
pub struct Answered {
    pub request: ConverseRequest,
    pub resolved: Resolved,
    pub answer: Answer,
    pub usage: Usage,
    pub modeled: Duration,
}

impl Answered {
    pub fn outcome(&self) -> Outcome<'_> {
        Outcome {
            request: &self.request,
            resolved: &self.resolved,
            answer: &self.answer,
            usage: &self.usage,
            modeled: self.modeled,
        }
    }
}

/// Answers a batch record with the same model resolution, limits and generator as an online
/// call, so that both give the same answer to the same request. Batch inference runs outside
/// the on-demand quotas and does not share the online prompt cache, fault draws or latency, so
/// none of them is touched here.
pub fn answer_offline(state: &AppState, model_id: &str, request: ConverseRequest) -> Result<Answered, ApiError> {
    let resolved = state.resolve(model_id, &request)?;
    let max_tokens = check_limits(&resolved.spec, &request)?;
    let input = estimate_request(&request);
    let answer = generate::answer(&resolved.spec.model_id, &request, max_tokens, state.answers);
    let usage = Usage { input, output: answer.output_tokens, cache: CacheUsage::default() };
    let modeled = state.latency.total(resolved.spec.tier, answer.output_tokens);
    Ok(Answered { request, resolved, answer, usage, modeled })
}

/// Bedrock's checks of a request against its model, before anything is spent: the output
/// limit it may ask for, a prefill the model can continue, a prompt that fits. Returns the
/// output limit in force.
fn check_limits(spec: &ModelSpec, request: &ConverseRequest) -> Result<u64, ApiError> {
    let model_max = u64::from(spec.max_output_tokens);
    let max_tokens = request.max_tokens().map_or(model_max, u64::from);
    if max_tokens > model_max {
        return Err(ApiError::validation(format!(
            "The maximum tokens you requested exceeds the model limit of {model_max}. Try again with a maximum tokens \
             value that is lower than {model_max}."
        )));
    }
    if let Some(refusal) = spec.accepts().refusal(Given::of(request)) {
        // Bedrock passes the model's own 400 on, in Anthropic's spelling of the parameters.
        return Err(ApiError::validation(match refusal {
            Refusal::Both => "The model returned the following errors: `temperature` and `top_p` cannot both be \
                              specified for this model. Please use only one."
                .to_owned(),
            Refusal::Unsupported(name) => format!(
                "The model returned the following errors: `{}` is deprecated for this model.",
                if name == "topP" { "top_p" } else { name }
            ),
            Refusal::BudgetedThinking => "The model returned the following errors: \"thinking.type.enabled\" is not \
                                          supported for this model. Use \"thinking.type.adaptive\" and \
                                          \"output_config.effort\" to control thinking behavior."
                .to_owned(),
            Refusal::DisabledThinking => "The model returned the following errors: \"thinking.type.disabled\" is not \
                                          supported for this model. Use \"thinking.type.adaptive\" and \
                                          \"output_config.effort\" to control thinking behavior."
                .to_owned(),
            Refusal::AdaptiveThinking => {
                "The model returned the following errors: adaptive thinking is not supported on this model".to_owned()
            }
            Refusal::Thinking => {
                "The model returned the following errors: thinking: Extra inputs are not permitted".to_owned()
            }
            Refusal::ThinkingWithForcedTool => {
                "The model returned the following errors: Thinking may not be enabled when tool_choice forces tool use."
                    .to_owned()
            }
            Refusal::SampledWhileThinking(name) => format!(
                "The model returned the following errors: {} when thinking is enabled or in adaptive mode",
                match name {
                    "temperature" => "`temperature` may only be set to 1",
                    "topP" => "`top_p` must be greater than or equal to 0.95 or unset",
                    _ => "`top_k` may not be set",
                }
            ),
        }));
    }
    check_thinking_budget(request, max_tokens)?;
    if crate::generate::prefill(request).is_some_and(|text| text.ends_with(char::is_whitespace)) {
        // Anthropic's models refuse to continue from trailing whitespace, and Bedrock passes that on.
        return Err(ApiError::validation("The final assistant content cannot end with trailing whitespace."));
    }
    if estimate_request(request) > u64::from(spec.context_window) {
        return Err(ApiError::validation("Input is too long for requested model."));
    }
    Ok(max_tokens)
}

/// Anthropic's bounds on a thinking budget, which Bedrock passes on: at least 1,024 tokens, and
/// below the output limit in force (the thinking is part of the output).
fn check_thinking_budget(request: &ConverseRequest, max_tokens: u64) -> Result<(), ApiError> {
    if Given::of(request).thinking != Some(ThinkingForm::Budgeted) {
        return Ok(());
    }
    let thinking = request.additional_model_request_fields.as_ref().and_then(|f| f.get("thinking"));
    let refused =
        |detail: &str| Err(ApiError::validation(format!("The model returned the following errors: {detail}")));
    match thinking.and_then(|t| t.get("budget_tokens")).and_then(serde_json::Value::as_u64) {
        None => refused("thinking.enabled.budget_tokens: Field required"),
        Some(budget) if budget < u64::from(gateway_core::sampling::MIN_THINKING_BUDGET) => {
            refused("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
        }
        Some(budget) if budget >= max_tokens => refused("`max_tokens` must be greater than `thinking.budget_tokens`."),
        Some(_) => Ok(()),
    }
}

/// Runs every check and decision of a model call up to the point where the answer is known.
/// Errors are counted in the statistics here.
pub async fn begin(
    state: &Arc<AppState>,
    op: Operation,
    model_id: &str,
    request: ConverseRequest,
) -> Result<Invocation, ApiError> {
    let resolved = match state.resolve(model_id, &request) {
        Ok(resolved) => resolved,
        Err(e) => {
            state.stats.request(None, op);
            state.stats.rejected(None, &e);
            return Err(e);
        }
    };
    let bucket = resolved.bucket.clone();
    state.stats.request(Some(&bucket), op);
    match admit(state, op, resolved, request).await {
        Ok(invocation) => Ok(invocation),
        Err(e) => {
            state.stats.rejected(Some(&bucket), &e);
            Err(e)
        }
    }
}

async fn admit(
    state: &Arc<AppState>,
    op: Operation,
    resolved: Resolved,
    request: ConverseRequest,
) -> Result<Invocation, ApiError> {
    let spec = &resolved.spec;
    let max_tokens = check_limits(spec, &request)?;
    let input_total = estimate_request(&request);

    // Faults are drawn before the quota check so that the sequence of decisions depends on
    // the order of requests only, not on the quota state.
    let decision = state.faults.next(&resolved.bucket, op.streaming());
    match decision.fault {
        Some(Fault::Throttling) => return Err(ApiError::InjectedThrottling),
        Some(Fault::InternalServer) => return Err(ApiError::InternalServer),
        Some(Fault::ServiceUnavailable) => return Err(ApiError::ServiceUnavailable),
        Some(Fault::ModelTimeout(_)) | None => {}
    }

    let now = Instant::now();
    let reservation = state
        .quotas
        .try_admit(
            &resolved.bucket,
            spec.quota(&resolved.bucket.scope),
            spec.reserved_quota_tokens(input_total, request.max_tokens().map(u64::from)),
            now,
        )
        .map_err(|throttle| match throttle {
            Throttle::Requests => ApiError::TooManyRequests,
            Throttle::Tokens => ApiError::TooManyTokens,
        })?;
    let mut ticket = Ticket {
        state: Arc::clone(state),
        bucket: resolved.bucket.clone(),
        reservation,
        burndown: u64::from(spec.output_burndown),
        usage: Usage::default(),
        done: false,
    };

    if let Some(Fault::ModelTimeout(hang)) = decision.fault {
        tokio::time::sleep(hang).await;
        // The model read the prompt before timing out, so the input still counts.
        ticket.usage.input = input_total;
        ticket.settle_only();
        return Err(ApiError::ModelTimeout);
    }

    let cache = state.cache.apply(&spec.model_id, &request, now);
    let answer = generate::answer(&spec.model_id, &request, max_tokens, state.answers);
    tracing::debug!(
        op = op.as_str(),
        model = %resolved.bucket,
        input_tokens = input_total,
        max_tokens,
        output_tokens = answer.output_tokens,
        stop_reason = answer.stop_reason.as_str(),
        "admitted"
    );
    let usage = Usage { input: input_total - cache.read - cache.write, output: answer.output_tokens, cache };
    ticket.usage = Usage { output: 0, ..usage.clone() };
    Ok(Invocation {
        modeled: state.latency.total(spec.tier, answer.output_tokens),
        stream_cut: decision.stream_cut,
        request,
        resolved,
        answer,
        usage,
        ticket,
    })
}

/// A request's claim on its quota and its line in the statistics. It settles when the
/// response ends; if the response is dropped first (the client went away mid-stream) it
/// settles with the output produced so far.
#[derive(Debug)]
pub struct Ticket {
    state: Arc<AppState>,
    bucket: QuotaKey,
    reservation: u64,
    burndown: u64,
    /// Usage so far; `output` grows as a stream progresses.
    usage: Usage,
    done: bool,
}

impl Ticket {
    pub fn set_output(&mut self, output_tokens: u64) {
        self.usage.output = output_tokens;
    }

    pub fn stream_started(&self) {
        self.state.stats.stream_started(&self.bucket);
    }

    /// Settles the quota as Bedrock does ([`gateway_core::quota::settled_tokens`]) and returns
    /// the tokens settled.
    fn settle_only(&mut self) -> u64 {
        if self.done {
            return 0;
        }
        self.done = true;
        let tokens = gateway_core::quota::settled_tokens(&self.usage.as_reported(), self.burndown);
        self.state.quotas.settle(&self.bucket, self.reservation, tokens, Instant::now());
        tokens
    }

    pub fn finish(&mut self, ending: Ending) {
        if self.done {
            return;
        }
        let quota = self.settle_only();
        let billed = Billed {
            input: self.usage.input,
            output: self.usage.output,
            cache_read: self.usage.cache.read,
            cache_write: self.usage.cache.write,
            quota,
        };
        self.state.stats.ended(&self.bucket, ending, billed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.finish(Ending::Disconnected);
    }
}

/// Identifiers that differ between requests and between emulator runs.
#[derive(Debug)]
struct IdSource {
    base: [u8; 32],
    counter: AtomicU64,
}

impl IdSource {
    fn new(seed: u64) -> IdSource {
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        let mut hasher = Sha256::new();
        hasher.update(seed.to_le_bytes());
        hasher.update(started.to_le_bytes());
        hasher.update(std::process::id().to_le_bytes());
        IdSource { base: hasher.finalize().into(), counter: AtomicU64::new(0) }
    }

    fn next_rng(&self) -> Rng {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = Sha256::new();
        hasher.update(self.base);
        hasher.update(n.to_le_bytes());
        Rng::new(&hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn state() -> AppState {
        AppState::new(&EmulatorConfig::instant()).unwrap()
    }

    fn ask(text: &str) -> ConverseRequest {
        ConverseRequest::from_json(
            json!({"messages": [{"role": "user", "content": [{"text": text}]}]}).to_string().as_bytes(),
        )
        .unwrap()
    }

    #[test]
    fn model_ids_resolve_to_buckets_or_to_bedrock_errors() {
        let s = state();
        let r = s.resolve("us.anthropic.claude-haiku-4-5-20251001-v1:0", &ask("x")).unwrap();
        assert_eq!(r.bucket.to_string(), "us.anthropic.claude-haiku-4-5-20251001-v1:0");
        let err = s.resolve("anthropic.claude-haiku-4-5-20251001-v1:0", &ask("x")).unwrap_err();
        assert!(err.to_string().contains("with on-demand throughput isn't supported"), "{err}");
        assert_eq!(s.resolve("gpt-4o", &ask("x")).unwrap_err(), ApiError::validation(INVALID_MODEL));
    }

    /// The emulator as it stood on `day`, for what changed when a model retired.
    fn state_on(day: &str) -> AppState {
        AppState::new(&EmulatorConfig { today: Some(Date::parse(day).unwrap()), ..EmulatorConfig::instant() }).unwrap()
    }

    #[test]
    fn a_model_past_its_end_of_life_is_not_found_from_that_day_on() {
        let haiku3 = "anthropic.claude-3-haiku-20240307-v1:0";
        assert!(state_on("2026-09-09").resolve(haiku3, &ask("hi")).is_ok());
        let gone = ApiError::ResourceNotFound(END_OF_LIFE.into());
        assert_eq!(state_on("2026-09-10").resolve(haiku3, &ask("hi")).unwrap_err(), gone);
        let profile = "us.anthropic.claude-3-5-haiku-20241022-v1:0";
        assert_eq!(state_on("2026-06-19").resolve(profile, &ask("hi")).unwrap_err(), gone);
        assert_eq!(gone.status(), axum::http::StatusCode::NOT_FOUND);
        assert_eq!(gone.error_type(), "ResourceNotFoundException");
        // Models without an announced date are served whatever the day.
        assert!(state_on("2099-01-01").resolve("us.anthropic.claude-haiku-4-5-20251001-v1:0", &ask("hi")).is_ok());
    }

    #[test]
    fn once_its_models_retire_the_default_router_routes_between_the_catalogs_haiku_and_sonnet() {
        let s = state_on("2026-09-10");
        let arn = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        let short = s.resolve(arn, &ask("hi")).unwrap();
        assert_eq!(
            short.invoked_model_id.as_deref(),
            Some(
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
            )
        );
        let long = s.resolve(arn, &ask(&"word ".repeat(300))).unwrap();
        assert_eq!(long.spec.model_id, "anthropic.claude-sonnet-4-5-20250929-v1:0");
    }

    #[test]
    fn the_default_router_picks_by_prompt_length_and_reports_a_profile_arn() {
        let s = state_on("2026-06-01");
        let arn = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        let short = s.resolve(arn, &ask("hi")).unwrap();
        assert_eq!(short.spec.tier, Tier::Haiku);
        assert_eq!(
            short.invoked_model_id.as_deref(),
            Some("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0")
        );
        let long = s.resolve(arn, &ask(&"word ".repeat(300))).unwrap();
        assert_eq!(long.spec.tier, Tier::Sonnet);
        let llama = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/meta.llama:1";
        assert!(s.resolve(llama, &ask("hi")).is_err());
    }

    #[test]
    fn request_ids_look_like_uuids_and_differ() {
        let s = state();
        let (a, b) = (s.request_id(), s.request_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
