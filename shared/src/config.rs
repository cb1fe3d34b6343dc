//! Deployer configuration, read from the environment once per cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CACHE_TABLE_NAME` | required | DynamoDB table of cached answers |
//! | `CACHE_ENABLED` | `true` | `false` turns the cache off for every request |
//! | `CACHE_DEFAULT_TTL_SECONDS` | 86400 | TTL when the request gives none |
//! | `CACHE_MAX_TTL_SECONDS` | 604800 | the largest TTL a request may ask for |
//! | `CACHE_CLAIM_WAIT_MS` | 0 (off) | across instances: how long a miss waits for another instance's claimed call of the same key before paying itself (at most 30000) |
//! | `TIER_HAIKU_MODEL_ID`, `TIER_SONNET_MODEL_ID`, `TIER_OPUS_MODEL_ID` | catalog `[tiers]` | what tier names resolve to |
//! | `CATALOG_PATH` | embedded | a replacement `catalog.toml` |
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
//! | `LOG_REQUEST_BODIES` | `false` | `true` logs request bodies at debug level (with a warning at cold start); otherwise no request content is logged at any level |
//!
//! Routing settings ([`RoutingConfig`]) are read on their own by the router function, which
//! needs no table and no AWS client.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::cache::CacheSettings;
use crate::deadline::Budgets;
use crate::identity::TenantRules;
use std::sync::Arc;

use crate::catalog::{Catalog, Target, Tier};
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
}

/// How requests are routed between tiers; shared by invoke-with-cache and the router function.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub catalog_path: Option<PathBuf>,
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
        let tier_overrides = [
            (Tier::Haiku, "TIER_HAIKU_MODEL_ID"),
            (Tier::Sonnet, "TIER_SONNET_MODEL_ID"),
            (Tier::Opus, "TIER_OPUS_MODEL_ID"),
        ]
        .into_iter()
        .filter_map(|(tier, name)| env.get(name).map(|id| (tier, id)))
        .collect();
        Ok(RoutingConfig {
            catalog_path: env.get("CATALOG_PATH").map(PathBuf::from),
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
        let mut models: BTreeMap<Tier, String> =
            Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
        for (tier, id) in &self.tier_overrides {
            let name = match tier {
                Tier::Haiku => "TIER_HAIKU_MODEL_ID",
                Tier::Sonnet => "TIER_SONNET_MODEL_ID",
                Tier::Opus => "TIER_OPUS_MODEL_ID",
            };
            let invalid = |reason: String| ConfigError::Invalid { name, value: id.clone(), reason };
            match catalog.resolve(id) {
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

    /// The router over the embedded model, built once per cold start.
    pub fn router(&self, catalog: Arc<Catalog>) -> Result<Router, ConfigError> {
        let model = RouterModel::embedded().map_err(|e| ConfigError::RouterModel(e.to_string()))?;
        let tiers = self.tier_models(&catalog)?;
        Ok(Router::new(model, catalog, tiers, self.policy))
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
        Ok(settings)
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    fn parsed<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
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
    fn millis(&self, name: &'static str, default_ms: u64) -> Result<Duration, ConfigError> {
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
    fn defaults_need_only_the_table() {
        let c = config(&[("CACHE_TABLE_NAME", "t")]).unwrap();
        assert_eq!(c.cache, CacheSettings::default());
        assert_eq!(c.bedrock.max_attempts, 3);
        assert!(!c.trust_tenant_header);
        assert!(matches!(config(&[]), Err(ConfigError::Missing("CACHE_TABLE_NAME"))));
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
