//! Deployer configuration, read from the environment once per cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CACHE_TABLE_NAME` | required | DynamoDB table of cached answers |
//! | `USAGE_TABLE_NAME` | unset (off) | DynamoDB table (string keys `pk`, `sk`) each request's usage record is written to, for the metrics publisher |
//! | `CACHE_ENABLED` | `true` | `false` turns the cache off for every request |
//! | `CACHE_DEFAULT_TTL_SECONDS` | 86400 | TTL when the request gives none |
//! | `CACHE_MAX_TTL_SECONDS` | 604800 | the largest TTL a request may ask for |
//! | `CACHE_CLAIM_WAIT_MS` | 0 (off) | across instances: how long a miss waits for another instance's claimed call of the same key before paying itself (at most 30000) |
//! | `TIER_HAIKU_MODEL_ID`, `TIER_SONNET_MODEL_ID`, `TIER_OPUS_MODEL_ID` | catalog `[tiers]` | what tier names resolve to |
//! | `CATALOG_PATH` | embedded | a replacement `catalog.toml` |
//! | `ROUTER_MODEL_PATH` | embedded | a replacement router artifact (`model.bin`), e.g. one promoted from your own traffic with `cargo xtask train-router --promote` |
//! | `TRUST_TENANT_HEADER` | `false` | take the tenant from `x-tenant-id` when the caller is not authenticated (local use, or behind a trusted proxy) |
//! | `REQUEST_TIMEOUT_MS` | 27000 | the whole request; the deadline is this or Lambda's invocation deadline less `RESPONSE_MARGIN_MS`, whichever is sooner |
//! | `RESPONSE_MARGIN_MS` | 500 | kept back from Lambda's invocation deadline to send the response |
//! | `CACHE_TIMEOUT_MS` | 50 | each cache read or write; over it a read is a miss and a write is abandoned |
//! | `FALLBACK_MIN_HOP_MS` | 2000 | a fallback model is called only if the deadline leaves at least this |
//! | `DYNAMODB_CONNECT_TIMEOUT_MS` | 1000 | opening a connection to DynamoDB |
//! | `DYNAMODB_ATTEMPT_TIMEOUT_MS` | 1000 | one DynamoDB attempt (the cache budget usually ends a call sooner) |
//! | `DYNAMODB_TIMEOUT_MS` | 2000 | a whole DynamoDB call, retries included |
//! | `BEDROCK_CONNECT_TIMEOUT_MS` | 3000 | opening a connection to Bedrock Runtime |
//! | `BEDROCK_TIMEOUT_MS` | 60000 | whole call to Bedrock, retries included; each call is further cut to what its deadline leaves |
//! | `BEDROCK_ATTEMPT_TIMEOUT_MS` | 30000 | one attempt |
//! | `BEDROCK_MAX_ATTEMPTS` | 3 | attempts per call (the SDK's standard retry with backoff) |
//! | `THROTTLE_RETRY_AFTER_SECONDS` | 10 | `Retry-After` sent when Bedrock keeps throttling |
//! | `ROUTER_QUALITY_TOLERANCE` | 10 | largest accepted quality drop versus the strongest allowed tier, in percent |
//! | `ROUTER_MIN_TIER`, `ROUTER_MAX_TIER` | `haiku`, `opus` | the tiers routing may choose from |
//! | `ROUTER_FALLBACK` | `true` | a throttled or failing model hands over to the next profile, then the adjacent tier |
//! | `DEFAULT_MODEL_ID` | none | `modelId` for requests that give none, e.g. `auto` to route them |
//! | `QUOTA_SOURCE` | `catalog` | where Bedrock's per-model limits come from: `catalog` (its defaults), or `service-quotas` (the account's applied values, read once per cold start with `ListServiceQuotas`; on failure, a warning and the catalog) |
//! | `QUOTA_OVERRIDES` | none | limits that win over both, `ID=tpm:N,rpm:N` entries separated by `;`, keyed by the ID Bedrock is called with, e.g. `us.anthropic.claude-sonnet-4-5-20250929-v1:0=tpm:400000,rpm:200;global.anthropic.claude-haiku-4-5-20251001-v1:0=rpm:50` |
//! | `QUOTA_WINDOW_SECONDS` | 60 | length of the quota window (Bedrock's is a minute); shorter only to test against an emulator scaled down the same way |
//! | `SERVICE_QUOTAS_TIMEOUT_MS` | 3000 | the whole Service Quotas read at cold start, every page included |
//! | `LEARNED_MAX_TOKENS` | `true` | a request without `maxTokens` is sent with a learned one (a high quantile of the answer lengths seen on its route) and continued when it stops there, instead of reserving the model's whole output limit |
//! | `MAX_CONTINUATIONS` | 4 | continuation calls one such answer may take |
//! | `LOG_REQUEST_BODIES` | `false` | `true` logs request bodies at debug level (with a warning at cold start); otherwise no request content is logged at any level |
//! | `ADMISSION` | `off` | `on` admits each request against its Bedrock quota, shared by every instance through `ADMISSION_TABLE_NAME` ([`AdmissionConfig`]) |
//! | `ADMISSION_TABLE_NAME` | required when on | DynamoDB table of the quota leases (string partition key `pk`) |
//! | `ADMISSION_WAIT_MS` | 10000 | longest wait for room before a 429; below 29000 and at most `REQUEST_TIMEOUT_MS` |
//! | `TENANT_SHARES` | every tenant 1 | weights of tenants waiting for room, e.g. `acme=3,globex=1,*=1` (1 to 1000; `*` is everyone else) |
//! | `ADMISSION_LEASE_SECONDS` | 120 | how long a lease counts; must exceed `QUOTA_WINDOW_SECONDS` plus `REQUEST_TIMEOUT_MS`. A frozen instance strands its lease at most this long |
//! | `ADMISSION_HEADROOM_PERCENT` | 5 | part of each quota no lease takes (0 to 50) |
//! | `ADMISSION_DEGRADED_SHARE` | 0.1 | part of a quota one instance may use while the lease table fails (above 0, at most 1) |
//! | `ADMISSION_STORE_TIMEOUT_MS` | 100 | each call to the lease table (1 to 5000) |
//! | `ADMISSION_RENEW_INTERVAL_MS` | 1000 | least time between two resizes of a contended lease |
//!
//! | `CALIBRATION_TENANTS`, `CALIBRATION_BUCKET`, `CALIBRATION_PREFIX` | unset (off) | the tenants who opted into the router's calibration and the share of their prompts sampled, and where the samples go ([`CalibrationConfig`]) |
//!
//! Routing settings ([`RoutingConfig`]) are read on their own by the router function, which
//! needs no table and no AWS client.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::admission::{AdmissionSettings, TenantShares};
use crate::cache::CacheSettings;
use crate::calibration::CalibrationConfig;
use crate::deadline::Budgets;
use crate::identity::TenantRules;
use std::sync::Arc;

use crate::catalog::{Catalog, ResolveError, Target, Tier};
use crate::date::Date;
use crate::quota::{DetectedLimit, QuotaOverrides, QuotaTable};
use crate::routing::policy::{parse_tier, parse_tolerance};
use crate::routing::{Router, RouterModel, RoutingPolicy};
use crate::service::GatewaySettings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name}=`{value}` is invalid: {reason}")]
    Invalid { name: &'static str, value: String, reason: String },
    #[error("the embedded router model cannot be used: {0}")]
    RouterModel(String),
    #[error("{reason}: set {name} to a model Amazon Bedrock still serves")]
    RetiredDefault { name: &'static str, reason: String },
}

/// How requests are routed between tiers; shared by invoke-with-cache and the router function.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub catalog_path: Option<PathBuf>,
    pub router_model_path: Option<PathBuf>,
    pub tier_overrides: BTreeMap<Tier, String>,
    pub policy: RoutingPolicy,
    /// The `modelId` of requests that give none (`auto` routes them); `None` makes it required.
    pub default_model: Option<String>,
    /// `LOG_REQUEST_BODIES`: log request bodies at debug level. A debugging aid that puts
    /// prompts in the logs, so it is off by default and announced at cold start.
    pub log_request_bodies: bool,
}

impl RoutingConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let invalid = |name: &'static str, value: &str, reason: String| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason,
        };
        let tier = |name: &'static str, default: Tier| match env.get(name) {
            None => Ok(default),
            Some(v) => parse_tier(name, &v).map_err(|e| invalid(name, &v, e.to_string())),
        };
        let min_tier = tier("ROUTER_MIN_TIER", Tier::Haiku)?;
        let max_tier = tier("ROUTER_MAX_TIER", Tier::Opus)?;
        if min_tier > max_tier {
            return Err(invalid(
                "ROUTER_MIN_TIER",
                min_tier.as_str(),
                format!("is above ROUTER_MAX_TIER ({max_tier})"),
            ));
        }
        let quality_tolerance = match env.get("ROUTER_QUALITY_TOLERANCE") {
            None => RoutingPolicy::default().quality_tolerance,
            Some(v) => parse_tolerance("ROUTER_QUALITY_TOLERANCE", &v)
                .map_err(|e| invalid("ROUTER_QUALITY_TOLERANCE", &v, e.to_string()))?,
        };
        let tier_overrides = tier_overrides(&env);
        Ok(RoutingConfig {
            catalog_path: env.get("CATALOG_PATH").map(PathBuf::from),
            router_model_path: env.get("ROUTER_MODEL_PATH").map(PathBuf::from),
            tier_overrides,
            policy: RoutingPolicy {
                quality_tolerance,
                min_tier,
                max_tier,
                fallback: env.parsed("ROUTER_FALLBACK", true)?,
            },
            default_model: env.get("DEFAULT_MODEL_ID"),
            log_request_bodies: env.parsed("LOG_REQUEST_BODIES", false)?,
        })
    }

    /// Bedrock ID per tier: the catalog's defaults with every override checked, so that a
    /// typo fails the cold start rather than every request.
    pub fn tier_models(&self, catalog: &Catalog) -> Result<BTreeMap<Tier, String>, ConfigError> {
        tier_models(catalog, &self.tier_overrides)
    }

    /// The router over the embedded model, or the one `ROUTER_MODEL_PATH` names, built once
    /// per cold start: an unreadable or invalid replacement fails the cold start rather than
    /// quietly routing with other weights.
    pub fn router(&self, catalog: Arc<Catalog>) -> Result<Router, ConfigError> {
        let model = match &self.router_model_path {
            None => RouterModel::embedded().map_err(|e| ConfigError::RouterModel(e.to_string()))?,
            Some(path) => {
                let bytes = std::fs::read(path)
                    .map_err(|e| ConfigError::RouterModel(format!("cannot read {}: {e}", path.display())))?;
                let model = RouterModel::from_bytes(&bytes)
                    .map_err(|e| ConfigError::RouterModel(format!("{}: {e}", path.display())))?;
                // Once per cold start, and the router lives as long as the process.
                &*Box::leak(Box::new(model))
            }
        };
        let tiers = self.tier_models(&catalog)?;
        Ok(Router::new(model, catalog, tiers, self.policy))
    }
}

/// The variable that names a tier's model.
pub fn tier_variable(tier: Tier) -> &'static str {
    match tier {
        Tier::Haiku => "TIER_HAIKU_MODEL_ID",
        Tier::Sonnet => "TIER_SONNET_MODEL_ID",
        Tier::Opus => "TIER_OPUS_MODEL_ID",
    }
}

/// The tiers' models the deployer set (`TIER_*_MODEL_ID`), unchecked.
pub(crate) fn tier_overrides(env: &Env<'_>) -> BTreeMap<Tier, String> {
    Tier::ALL.into_iter().filter_map(|tier| env.get(tier_variable(tier)).map(|id| (tier, id))).collect()
}

/// Bedrock ID per tier: the catalog's defaults with every override checked, so that a typo
/// fails the cold start rather than every request.
pub fn tier_models(
    catalog: &Catalog,
    overrides: &BTreeMap<Tier, String>,
) -> Result<BTreeMap<Tier, String>, ConfigError> {
    tier_models_on(catalog, overrides, Date::today())
}

/// [`tier_models`] on the day `today`: a tier whose model has retired fails the cold start,
/// naming the variable that points at it (or the catalog, for a default).
pub(crate) fn tier_models_on(
    catalog: &Catalog,
    overrides: &BTreeMap<Tier, String>,
    today: Date,
) -> Result<BTreeMap<Tier, String>, ConfigError> {
    let mut models: BTreeMap<Tier, String> =
        Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
    for (tier, id) in &models {
        if overrides.contains_key(tier) {
            continue;
        }
        if let Err(e @ ResolveError::Retired { .. }) = catalog.resolve_callable(id, today) {
            return Err(ConfigError::RetiredDefault { name: tier_variable(*tier), reason: e.to_string() });
        }
    }
    for (tier, id) in overrides {
        let invalid = |reason: String| ConfigError::Invalid { name: tier_variable(*tier), value: id.clone(), reason };
        match catalog.resolve_callable(id, today) {
            Ok(Target::Model(m)) if m.spec.tier == *tier => {}
            Ok(Target::Model(m)) => {
                return Err(invalid(format!("{} is a {} model", m.spec.display_name, m.spec.tier)));
            }
            Ok(Target::PromptRouter { .. }) => {}
            Err(e) => return Err(invalid(e.to_string())),
        }
        models.insert(*tier, id.clone());
    }
    Ok(models)
}

/// Where the limits of Bedrock's quotas are read from, before overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaSource {
    Catalog,
    ServiceQuotas,
}

/// The quota model's settings: where limits come from, the overrides, the window.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaConfig {
    pub source: QuotaSource,
    pub overrides: QuotaOverrides,
    pub window: Duration,
    pub service_quotas_timeout: Duration,
}

/// Bedrock's window is one minute; a longer one would let through more than it allows.
const MAX_QUOTA_WINDOW_SECONDS: f64 = 60.0;

impl QuotaConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads and checks the syntax; [`QuotaConfig::table`] checks the IDs against the catalog.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let source = match env.get("QUOTA_SOURCE").map(|v| (v.to_ascii_lowercase(), v)) {
            None => QuotaSource::Catalog,
            Some((lower, _)) if lower == "catalog" => QuotaSource::Catalog,
            Some((lower, _)) if lower == "service-quotas" => QuotaSource::ServiceQuotas,
            Some((_, value)) => {
                return Err(ConfigError::Invalid {
                    name: "QUOTA_SOURCE",
                    value,
                    reason: "must be `catalog` or `service-quotas`".into(),
                });
            }
        };
        let overrides = match env.get("QUOTA_OVERRIDES") {
            None => QuotaOverrides::default(),
            Some(value) => QuotaOverrides::parse(&value).map_err(|e| ConfigError::Invalid {
                name: "QUOTA_OVERRIDES",
                reason: e.to_string(),
                value,
            })?,
        };
        let window: f64 = env.parsed("QUOTA_WINDOW_SECONDS", MAX_QUOTA_WINDOW_SECONDS)?;
        if !window.is_finite() || window <= 0.0 || window > MAX_QUOTA_WINDOW_SECONDS {
            return Err(ConfigError::Invalid {
                name: "QUOTA_WINDOW_SECONDS",
                value: window.to_string(),
                reason: format!("must be above 0 and at most {MAX_QUOTA_WINDOW_SECONDS}"),
            });
        }
        Ok(QuotaConfig {
            source,
            overrides,
            window: Duration::from_secs_f64(window),
            service_quotas_timeout: env.millis("SERVICE_QUOTAS_TIMEOUT_MS", 3_000)?,
        })
    }

    /// The limits in force: the catalog's, then `detected` (read from Service Quotas), then
    /// the overrides, each checked against the catalog so that a typo fails the cold start.
    pub fn table(&self, catalog: &Catalog, detected: &[DetectedLimit<'_>]) -> Result<QuotaTable, ConfigError> {
        let overrides = self.overrides.resolve(catalog).map_err(|e| ConfigError::Invalid {
            name: "QUOTA_OVERRIDES",
            value: self.overrides.as_written().to_owned(),
            reason: e.to_string(),
        })?;
        let mut table = QuotaTable::from_catalog(catalog);
        table.apply_detected(detected);
        table.apply_overrides(&overrides);
        Ok(table)
    }
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            source: QuotaSource::Catalog,
            overrides: QuotaOverrides::default(),
            window: Duration::from_secs(60),
            service_quotas_timeout: Duration::from_secs(3),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BedrockSettings {
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub attempt_timeout: Duration,
    pub max_attempts: u32,
}

/// The DynamoDB client's own timeouts: a backstop under the cache budget, so that no call
/// made outside a request's budget can hang either.
#[derive(Debug, Clone)]
pub struct DynamoSettings {
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub attempt_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub cache_table: String,
    /// `USAGE_TABLE_NAME`: where usage records go; `None` records nothing.
    pub usage_table: Option<String>,
    pub catalog_path: Option<PathBuf>,
    pub trust_tenant_header: bool,
    pub cache: CacheSettings,
    pub routing: RoutingConfig,
    pub bedrock: BedrockSettings,
    pub dynamodb: DynamoSettings,
    pub budgets: Budgets,
    pub throttle_retry_after: Duration,
    /// `CACHE_CLAIM_WAIT_MS`; `None` when 0.
    pub claim_wait: Option<Duration>,
    pub quota: QuotaConfig,
    pub admission: AdmissionConfig,
    /// `LEARNED_MAX_TOKENS`: send requests without `maxTokens` with a learned one.
    pub learned_max_tokens: bool,
    /// `MAX_CONTINUATIONS`: continuation calls one answer may take.
    pub max_continuations: u32,
    /// `CALIBRATION_*` ([`CalibrationConfig`]): the tenants whose prompts are sampled for the
    /// router's calibration; `None` (no `CALIBRATION_TENANTS`) samples nothing.
    pub calibration: Option<CalibrationConfig>,
}

/// A wait beyond API Gateway's 30 s limit could never end in an answer.
const MAX_CLAIM_WAIT_MS: u64 = 30_000;

impl GatewayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let cache = CacheSettings {
            enabled: env.parsed("CACHE_ENABLED", true)?,
            default_ttl: Duration::from_secs(env.parsed("CACHE_DEFAULT_TTL_SECONDS", 86_400)?),
            max_ttl: Duration::from_secs(env.parsed("CACHE_MAX_TTL_SECONDS", 604_800)?),
        };
        if cache.default_ttl > cache.max_ttl || cache.default_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                name: "CACHE_DEFAULT_TTL_SECONDS",
                value: cache.default_ttl.as_secs().to_string(),
                reason: format!("must be between 1 and CACHE_MAX_TTL_SECONDS ({})", cache.max_ttl.as_secs()),
            });
        }
        let max_attempts: u32 = env.parsed("BEDROCK_MAX_ATTEMPTS", 3)?;
        if max_attempts == 0 {
            return Err(ConfigError::Invalid {
                name: "BEDROCK_MAX_ATTEMPTS",
                value: "0".into(),
                reason: "must be at least 1".into(),
            });
        }
        let claim_wait_ms: u64 = env.parsed("CACHE_CLAIM_WAIT_MS", 0)?;
        if claim_wait_ms > MAX_CLAIM_WAIT_MS {
            return Err(ConfigError::Invalid {
                name: "CACHE_CLAIM_WAIT_MS",
                value: claim_wait_ms.to_string(),
                reason: format!("must be at most {MAX_CLAIM_WAIT_MS} (0 turns claims off)"),
            });
        }
        Ok(GatewayConfig {
            cache_table: env.get("CACHE_TABLE_NAME").ok_or(ConfigError::Missing("CACHE_TABLE_NAME"))?,
            usage_table: env.get("USAGE_TABLE_NAME").filter(|t| !t.trim().is_empty()),
            catalog_path: env.get("CATALOG_PATH").map(PathBuf::from),
            trust_tenant_header: env.parsed("TRUST_TENANT_HEADER", false)?,
            cache,
            routing: RoutingConfig::from_lookup(&lookup)?,
            bedrock: BedrockSettings {
                connect_timeout: env.millis("BEDROCK_CONNECT_TIMEOUT_MS", 3_000)?,
                operation_timeout: env.millis("BEDROCK_TIMEOUT_MS", 60_000)?,
                attempt_timeout: env.millis("BEDROCK_ATTEMPT_TIMEOUT_MS", 30_000)?,
                max_attempts,
            },
            dynamodb: DynamoSettings {
                connect_timeout: env.millis("DYNAMODB_CONNECT_TIMEOUT_MS", 1_000)?,
                operation_timeout: env.millis("DYNAMODB_TIMEOUT_MS", 2_000)?,
                attempt_timeout: env.millis("DYNAMODB_ATTEMPT_TIMEOUT_MS", 1_000)?,
            },
            budgets: Budgets {
                request: env.millis("REQUEST_TIMEOUT_MS", 27_000)?,
                response_margin: env.parsed("RESPONSE_MARGIN_MS", 500).map(Duration::from_millis)?,
                cache: env.millis("CACHE_TIMEOUT_MS", 50)?,
                min_hop: env.parsed("FALLBACK_MIN_HOP_MS", 2_000).map(Duration::from_millis)?,
            },
            throttle_retry_after: Duration::from_secs(env.parsed("THROTTLE_RETRY_AFTER_SECONDS", 10)?),
            claim_wait: Some(Duration::from_millis(claim_wait_ms)).filter(|wait| !wait.is_zero()),
            quota: QuotaConfig::from_lookup(&lookup)?,
            admission: AdmissionConfig::from_lookup(&lookup)?,
            learned_max_tokens: env.parsed("LEARNED_MAX_TOKENS", true)?,
            max_continuations: env.parsed("MAX_CONTINUATIONS", 4)?,
            calibration: CalibrationConfig::from_lookup(&lookup)?,
        })
    }

    /// The use case's settings, with every tier override checked against the catalog so that
    /// a typo fails the cold start rather than every request.
    pub fn gateway_settings(&self, catalog: &Catalog) -> Result<GatewaySettings, ConfigError> {
        let mut settings = GatewaySettings::from_catalog(catalog);
        settings.tier_models = self.routing.tier_models(catalog)?;
        settings.cache = self.cache;
        settings.throttle_retry_after = self.throttle_retry_after;
        settings.fallback = self.routing.policy.fallback;
        settings.default_model = self.routing.default_model.clone();
        settings.budgets = self.budgets;
        settings.claim_wait = self.claim_wait;
        settings.tenants = TenantRules { trust_header: self.trust_tenant_header };
        settings.learned_max_tokens = self.learned_max_tokens;
        settings.max_continuations = self.max_continuations;
        Ok(settings)
    }
}

/// Quota-aware admission (`ADMISSION*`, `TENANT_SHARES`), read on its own so that the lead
/// can wire it without touching the gateway's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    pub enabled: bool,
    /// `ADMISSION_TABLE_NAME`; `Some` whenever admission is on.
    pub table: Option<String>,
    pub settings: AdmissionSettings,
}

/// API Gateway's HTTP API answers 504 at 30 s; a wait must leave time for the call itself.
const MAX_ADMISSION_WAIT_MS: u64 = 29_000;

impl AdmissionConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let invalid = |name: &'static str, value: String, reason: String| ConfigError::Invalid { name, value, reason };
        let enabled = match env.get("ADMISSION").as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(invalid("ADMISSION", other.to_owned(), "must be `on` or `off`".into())),
        };
        let table = env.get("ADMISSION_TABLE_NAME");
        if enabled && table.is_none() {
            return Err(ConfigError::Missing("ADMISSION_TABLE_NAME"));
        }
        let request_timeout = env.millis("REQUEST_TIMEOUT_MS", 27_000)?;
        // One reader of the window: the quota model's.
        let window = QuotaConfig::from_lookup(&lookup)?.window;
        let wait_ms: u64 = env.parsed("ADMISSION_WAIT_MS", 10_000)?;
        let wait = Duration::from_millis(wait_ms);
        // The wait is bounded by the request's deadline anyway; only a deployment that admits
        // needs the two to agree.
        if wait_ms >= MAX_ADMISSION_WAIT_MS || (enabled && wait > request_timeout) {
            return Err(invalid(
                "ADMISSION_WAIT_MS",
                wait_ms.to_string(),
                format!(
                    "must be below {MAX_ADMISSION_WAIT_MS} (API Gateway's 30 s) and at most REQUEST_TIMEOUT_MS ({})",
                    request_timeout.as_millis()
                ),
            ));
        }
        let shares = match env.get("TENANT_SHARES") {
            None => TenantShares::default(),
            Some(text) => {
                TenantShares::parse(&text).map_err(|e| invalid("TENANT_SHARES", text.clone(), e.to_string()))?
            }
        };
        let lease_seconds: u64 = env.parsed("ADMISSION_LEASE_SECONDS", 120)?;
        let lease_term = Duration::from_secs(lease_seconds);
        if lease_term <= window + request_timeout {
            return Err(invalid(
                "ADMISSION_LEASE_SECONDS",
                lease_seconds.to_string(),
                format!(
                    "must exceed QUOTA_WINDOW_SECONDS + REQUEST_TIMEOUT_MS ({} s): a lease stops admitting that long before it expires",
                    (window + request_timeout).as_secs_f64()
                ),
            ));
        }
        let headroom_percent: u8 = env.parsed("ADMISSION_HEADROOM_PERCENT", 5)?;
        if headroom_percent > 50 {
            return Err(invalid("ADMISSION_HEADROOM_PERCENT", headroom_percent.to_string(), "must be 0 to 50".into()));
        }
        let degraded_share: f64 = env.parsed("ADMISSION_DEGRADED_SHARE", 0.1)?;
        if !(degraded_share > 0.0 && degraded_share <= 1.0) {
            return Err(invalid(
                "ADMISSION_DEGRADED_SHARE",
                degraded_share.to_string(),
                "must be above 0 and at most 1".into(),
            ));
        }
        let store_timeout = env.millis("ADMISSION_STORE_TIMEOUT_MS", 100)?;
        if store_timeout > Duration::from_secs(5) {
            return Err(invalid(
                "ADMISSION_STORE_TIMEOUT_MS",
                store_timeout.as_millis().to_string(),
                "must be at most 5000".into(),
            ));
        }
        Ok(AdmissionConfig {
            enabled,
            table,
            settings: AdmissionSettings {
                window,
                lease_term,
                max_call: request_timeout,
                headroom_percent,
                wait,
                shares,
                degraded_share,
                store_timeout,
                renew_interval: env.millis("ADMISSION_RENEW_INTERVAL_MS", 1_000)?,
            },
        })
    }
}

/// The environment as every configuration reads it: trimmed, empty meaning unset.
pub(crate) struct Env<'a>(pub(crate) &'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    pub(crate) fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    pub(crate) fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(value) => {
                value.parse().map_err(|e: T::Err| ConfigError::Invalid { name, reason: e.to_string(), value })
            }
        }
    }

    /// A timeout in milliseconds. Zero is refused: it would fail every call rather than
    /// disable the limit.
    pub(crate) fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
        match self.parsed(name, default_ms)? {
            0 => Err(ConfigError::Invalid { name, value: "0".into(), reason: "must be at least 1 ms".into() }),
            ms => Ok(Duration::from_millis(ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<GatewayConfig, ConfigError> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        GatewayConfig::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn a_tier_on_a_retired_model_fails_the_cold_start_naming_its_variable() {
        let catalog = Catalog::embedded().unwrap();
        let overrides = BTreeMap::from([(Tier::Haiku, "anthropic.claude-3-haiku-20240307-v1:0".to_owned())]);
        let before = Date::parse("2026-09-09").unwrap();
        assert!(tier_models_on(&catalog, &overrides, before).is_ok());
        let error = tier_models_on(&catalog, &overrides, Date::parse("2026-09-10").unwrap()).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "TIER_HAIKU_MODEL_ID", .. }), "{error}");
        assert!(error.to_string().contains("end of life on Amazon Bedrock on 2026-09-10"), "{error}");

        // A deployer's catalog whose default has retired: the variable to set is named.
        let toml = include_str!("../catalog.toml").replace(
            "haiku = \"us.anthropic.claude-haiku-4-5-20251001-v1:0\"",
            "haiku = \"us.anthropic.claude-3-5-haiku-20241022-v1:0\"",
        );
        let stale = Catalog::from_toml(&toml).unwrap();
        let error = tier_models_on(&stale, &BTreeMap::new(), Date::parse("2026-07-01").unwrap()).unwrap_err();
        assert!(matches!(error, ConfigError::RetiredDefault { name: "TIER_HAIKU_MODEL_ID", .. }), "{error}");
        assert!(tier_models_on(&stale, &BTreeMap::new(), Date::parse("2026-06-01").unwrap()).is_ok());
    }

    #[test]
    fn defaults_need_only_the_table() {
        let c = config(&[("CACHE_TABLE_NAME", "t")]).unwrap();
        assert_eq!(c.cache, CacheSettings::default());
        assert_eq!(c.bedrock.max_attempts, 3);
        assert!(!c.trust_tenant_header);
        assert!(matches!(config(&[]), Err(ConfigError::Missing("CACHE_TABLE_NAME"))));
    }

    /// A promoted artifact replaces the embedded one; one that cannot be used fails the cold
    /// start with its path instead of routing with other weights.
    #[test]
    fn router_model_path_replaces_the_embedded_artifact() {
        let dir = std::env::temp_dir().join(format!("router-model-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("model.bin");
        std::fs::write(&good, RouterModel::embedded_bytes()).unwrap();
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let routing = |path: &std::path::Path| {
            let path = path.to_string_lossy().into_owned();
            RoutingConfig::from_lookup(|k| (k == "ROUTER_MODEL_PATH").then(|| path.clone())).unwrap()
        };
        let router = routing(&good).router(catalog.clone()).unwrap();
        assert_eq!(router.model().version(), RouterModel::embedded().unwrap().version());
        let corrupt = dir.join("corrupt.bin");
        std::fs::write(&corrupt, b"BRRM").unwrap();
        let err = routing(&corrupt).router(catalog.clone()).unwrap_err().to_string();
        assert!(err.contains("corrupt.bin"), "{err}");
        let err = routing(&dir.join("missing.bin")).router(catalog).unwrap_err().to_string();
        assert!(err.contains("missing.bin"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = config(&[("CACHE_TABLE_NAME", "t"), ("CACHE_MAX_TTL_SECONDS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("CACHE_MAX_TTL_SECONDS"), "{err}");
        let err = config(&[("CACHE_TABLE_NAME", "t"), ("CACHE_DEFAULT_TTL_SECONDS", "999999999")]).unwrap_err();
        assert!(err.to_string().contains("CACHE_DEFAULT_TTL_SECONDS"), "{err}");
    }

    #[test]
    fn budgets_and_client_timeouts_are_read_and_zero_is_refused() {
        let defaults = config(&[("CACHE_TABLE_NAME", "t")]).unwrap();
        assert_eq!(defaults.budgets, Budgets::default());
        let c = config(&[
            ("CACHE_TABLE_NAME", "t"),
            ("REQUEST_TIMEOUT_MS", "1500"),
            ("CACHE_TIMEOUT_MS", "20"),
            ("FALLBACK_MIN_HOP_MS", "0"),
            ("DYNAMODB_TIMEOUT_MS", "300"),
            ("BEDROCK_CONNECT_TIMEOUT_MS", "700"),
        ])
        .unwrap();
        assert_eq!(c.budgets.request, Duration::from_millis(1500));
        assert_eq!(c.budgets.cache, Duration::from_millis(20));
        assert_eq!(c.budgets.min_hop, Duration::ZERO, "no minimum: every fallback may start");
        assert_eq!(c.dynamodb.operation_timeout, Duration::from_millis(300));
        assert_eq!(c.bedrock.connect_timeout, Duration::from_millis(700));
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(c.gateway_settings(&catalog).unwrap().budgets, c.budgets);
        for name in ["REQUEST_TIMEOUT_MS", "CACHE_TIMEOUT_MS", "DYNAMODB_CONNECT_TIMEOUT_MS", "BEDROCK_TIMEOUT_MS"] {
            let err = config(&[("CACHE_TABLE_NAME", "t"), (name, "0")]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn claims_are_off_unless_a_wait_is_configured() {
        let catalog = Catalog::embedded().unwrap();
        let off = config(&[("CACHE_TABLE_NAME", "t")]).unwrap();
        assert_eq!(off.gateway_settings(&catalog).unwrap().claim_wait, None);
        assert_eq!(config(&[("CACHE_TABLE_NAME", "t"), ("CACHE_CLAIM_WAIT_MS", "0")]).unwrap().claim_wait, None);
        let on = config(&[("CACHE_TABLE_NAME", "t"), ("CACHE_CLAIM_WAIT_MS", "2500")]).unwrap();
        assert_eq!(on.gateway_settings(&catalog).unwrap().claim_wait, Some(Duration::from_millis(2500)));
        let err = config(&[("CACHE_TABLE_NAME", "t"), ("CACHE_CLAIM_WAIT_MS", "60000")]).unwrap_err();
        assert!(err.to_string().contains("CACHE_CLAIM_WAIT_MS"), "{err}");
    }

    fn admission(vars: &[(&str, &str)]) -> Result<AdmissionConfig, ConfigError> {
        let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AdmissionConfig::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn admission_is_off_by_default_and_needs_its_table_when_on() {
        let off = admission(&[]).unwrap();
        assert!(!off.enabled);
        assert_eq!(off.settings, AdmissionSettings::default());
        assert!(matches!(admission(&[("ADMISSION", "on")]), Err(ConfigError::Missing("ADMISSION_TABLE_NAME"))));
        let on = admission(&[
            ("ADMISSION", "on"),
            ("ADMISSION_TABLE_NAME", "budget"),
            ("TENANT_SHARES", "acme=3,*=1"),
            ("QUOTA_WINDOW_SECONDS", "6"),
            ("REQUEST_TIMEOUT_MS", "5000"),
            ("ADMISSION_WAIT_MS", "2000"),
            ("ADMISSION_LEASE_SECONDS", "20"),
        ])
        .unwrap();
        assert_eq!(on.table.as_deref(), Some("budget"));
        assert_eq!(on.settings.shares.weight("acme"), 3);
        assert_eq!(on.settings.window, Duration::from_secs(6));
        assert_eq!(on.settings.max_call, Duration::from_secs(5));
        assert_eq!(on.settings.usable_lease(), Duration::from_secs(9));
    }

    #[test]
    fn every_bad_admission_setting_is_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("ADMISSION", "yes")], "ADMISSION"),
            (&[("ADMISSION_WAIT_MS", "29000")], "ADMISSION_WAIT_MS"),
            (
                &[
                    ("ADMISSION", "on"),
                    ("ADMISSION_TABLE_NAME", "b"),
                    ("ADMISSION_WAIT_MS", "3000"),
                    ("REQUEST_TIMEOUT_MS", "2000"),
                ],
                "ADMISSION_WAIT_MS",
            ),
            (&[("ADMISSION_WAIT_MS", "soon")], "ADMISSION_WAIT_MS"),
            (&[("TENANT_SHARES", "acme=3,globex=0")], "globex"),
            (&[("TENANT_SHARES", "acme")], "TENANT_SHARES"),
            (&[("ADMISSION_LEASE_SECONDS", "87")], "ADMISSION_LEASE_SECONDS"),
            (&[("ADMISSION_HEADROOM_PERCENT", "60")], "ADMISSION_HEADROOM_PERCENT"),
            (&[("ADMISSION_HEADROOM_PERCENT", "-1")], "ADMISSION_HEADROOM_PERCENT"),
            (&[("ADMISSION_DEGRADED_SHARE", "0")], "ADMISSION_DEGRADED_SHARE"),
            (&[("ADMISSION_DEGRADED_SHARE", "1.5")], "ADMISSION_DEGRADED_SHARE"),
            (&[("ADMISSION_DEGRADED_SHARE", "NaN")], "ADMISSION_DEGRADED_SHARE"),
            (&[("ADMISSION_STORE_TIMEOUT_MS", "0")], "ADMISSION_STORE_TIMEOUT_MS"),
            (&[("ADMISSION_STORE_TIMEOUT_MS", "9000")], "ADMISSION_STORE_TIMEOUT_MS"),
            (&[("ADMISSION_RENEW_INTERVAL_MS", "0")], "ADMISSION_RENEW_INTERVAL_MS"),
            (&[("QUOTA_WINDOW_SECONDS", "0")], "QUOTA_WINDOW_SECONDS"),
        ];
        for (vars, named) in cases {
            let err = admission(vars).unwrap_err().to_string();
            assert!(err.contains(named), "{vars:?}: {err}");
        }
        assert!(admission(&[("ADMISSION_LEASE_SECONDS", "88")]).is_ok(), "60 s + 27 s is the least");
    }

    #[test]
    fn quota_settings_default_to_the_catalog_and_a_minute() {
        let c = config(&[("CACHE_TABLE_NAME", "t")]).unwrap();
        assert_eq!(c.quota, QuotaConfig::default());
        let catalog = Catalog::embedded().unwrap();
        assert_eq!(c.quota.table(&catalog, &[]).unwrap(), QuotaTable::from_catalog(&catalog));
    }

    #[test]
    fn quota_settings_are_read_and_overrides_checked_against_the_catalog() {
        let catalog = Catalog::embedded().unwrap();
        let sonnet = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
        let c = config(&[
            ("CACHE_TABLE_NAME", "t"),
            ("QUOTA_SOURCE", "Service-Quotas"),
            ("QUOTA_WINDOW_SECONDS", "2.5"),
            ("QUOTA_OVERRIDES", &format!("{sonnet}=tpm:400000,rpm:20")),
        ])
        .unwrap();
        assert_eq!(c.quota.source, QuotaSource::ServiceQuotas);
        assert_eq!(c.quota.window, Duration::from_millis(2500));
        let key = crate::quota::QuotaKey::new(
            "anthropic.claude-sonnet-4-5-20250929-v1:0",
            crate::catalog::Scope::Geo("us".into()),
        );
        let table = c.quota.table(&catalog, &[]).unwrap();
        assert_eq!(table.get(&key), Some(crate::catalog::Quota { tpm: 400_000, rpm: 20 }));

        let unknown = config(&[("CACHE_TABLE_NAME", "t"), ("QUOTA_OVERRIDES", "us.claude-9=rpm:5")]).unwrap();
        let err = unknown.quota.table(&catalog, &[]).unwrap_err().to_string();
        assert!(err.contains("QUOTA_OVERRIDES") && err.contains("unknown model"), "{err}");
    }

    #[test]
    fn bad_quota_settings_name_the_variable() {
        for (name, value) in [
            ("QUOTA_SOURCE", "dynamo"),
            ("QUOTA_OVERRIDES", "us.anthropic.claude-sonnet-4-5-20250929-v1:0=rpm:0"),
            ("QUOTA_OVERRIDES", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            ("QUOTA_WINDOW_SECONDS", "0"),
            ("QUOTA_WINDOW_SECONDS", "61"),
            ("QUOTA_WINDOW_SECONDS", "NaN"),
            ("SERVICE_QUOTAS_TIMEOUT_MS", "0"),
        ] {
            let err = config(&[("CACHE_TABLE_NAME", "t"), (name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{name}={value}: {err}");
        }
    }

    #[test]
    fn tier_overrides_are_checked_against_the_catalog() {
        let catalog = Catalog::embedded().unwrap();
        let ok = config(&[
            ("CACHE_TABLE_NAME", "t"),
            ("TIER_HAIKU_MODEL_ID", "global.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ])
        .unwrap();
        let settings = ok.gateway_settings(&catalog).unwrap();
        assert_eq!(settings.tier_models[&Tier::Haiku], "global.anthropic.claude-haiku-4-5-20251001-v1:0");
        let wrong_tier =
            config(&[("CACHE_TABLE_NAME", "t"), ("TIER_HAIKU_MODEL_ID", "us.anthropic.claude-opus-4-5-20251101-v1:0")])
                .unwrap();
        assert!(wrong_tier.gateway_settings(&catalog).is_err());
        let unknown = config(&[("CACHE_TABLE_NAME", "t"), ("TIER_OPUS_MODEL_ID", "opus-9")]).unwrap();
        assert!(unknown.gateway_settings(&catalog).unwrap_err().to_string().contains("TIER_OPUS_MODEL_ID"));
    }
}
