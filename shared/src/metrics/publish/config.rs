//! The metrics publisher's deployer configuration, read once per cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `USAGE_TABLE_NAME` | required | the table invoke-with-cache writes usage records to; the publish progress is kept there too |
//! | `METRICS_NAMESPACE` | `BedrockGateway` | the CloudWatch namespace of the published figures (not `AWS/…`) |
//! | `METRICS_TENANT_LIMIT` | 50 | tenants published by name per minute, the costliest first; the rest as `other` (1 to 1000) |
//! | `METRICS_SETTLE_SECONDS` | 90 | how long after a minute ends its records are taken as complete (10 to 600) |
//! | `METRICS_CATCH_UP_MINUTES` | 60 | how far back a run publishes minutes earlier runs could not (1 to 20160, two weeks) |
//!
//! The quotas utilisation is measured against are read as invoke-with-cache reads them
//! (`QUOTA_SOURCE`, `QUOTA_OVERRIDES`; see [`crate::config`]).

use std::time::Duration;

use super::PublisherConfig;
use crate::config::{ConfigError, Env, QuotaConfig};

#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub usage_table: String,
    /// `CATALOG_PATH`, as invoke-with-cache reads it: the quotas and model IDs are the catalog's.
    pub catalog_path: Option<std::path::PathBuf>,
    pub publisher: PublisherConfig,
    pub quota: QuotaConfig,
}

fn bounded(
    env: &Env<'_>,
    name: &'static str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, ConfigError> {
    let value: u64 = env.parsed(name, default)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            name,
            value: value.to_string(),
            reason: format!("must be from {} to {}", range.start(), range.end()),
        })
    }
}

impl PublisherSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let usage_table = env
            .get("USAGE_TABLE_NAME")
            .filter(|t| !t.trim().is_empty())
            .ok_or(ConfigError::Missing("USAGE_TABLE_NAME"))?;
        let namespace = env.get("METRICS_NAMESPACE").unwrap_or_else(|| crate::metrics::NAMESPACE.to_string());
        if namespace.is_empty() || namespace.len() > 255 || namespace.starts_with("AWS/") {
            return Err(ConfigError::Invalid {
                name: "METRICS_NAMESPACE",
                value: namespace,
                reason: "must be 1 to 255 characters and not begin with `AWS/` (CloudWatch reserves those)".into(),
            });
        }
        let defaults = PublisherConfig::default();
        let publisher = PublisherConfig {
            namespace,
            tenant_limit: usize::try_from(bounded(&env, "METRICS_TENANT_LIMIT", 50, 1..=1_000)?).unwrap_or(50),
            settle: Duration::from_secs(bounded(&env, "METRICS_SETTLE_SECONDS", defaults.settle.as_secs(), 10..=600)?),
            catch_up: bounded(&env, "METRICS_CATCH_UP_MINUTES", defaults.catch_up, 1..=20_160)?,
            reserve: defaults.reserve,
        };
        let catalog_path = env.get("CATALOG_PATH").map(std::path::PathBuf::from);
        Ok(PublisherSettings { usage_table, catalog_path, publisher, quota: QuotaConfig::from_lookup(lookup)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<PublisherSettings, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        PublisherSettings::from_lookup(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_need_only_the_table() {
        let s = settings(&[("USAGE_TABLE_NAME", "usage")]).unwrap();
        assert_eq!((s.usage_table.as_str(), s.publisher.namespace.as_str()), ("usage", "BedrockGateway"));
        assert_eq!((s.publisher.tenant_limit, s.publisher.catch_up), (50, 60));
        assert!(matches!(settings(&[]), Err(ConfigError::Missing("USAGE_TABLE_NAME"))));
    }

    #[test]
    fn out_of_range_and_reserved_values_are_refused_by_name() {
        for (name, value) in [
            ("METRICS_TENANT_LIMIT", "0"),
            ("METRICS_SETTLE_SECONDS", "5"),
            ("METRICS_CATCH_UP_MINUTES", "30000"),
            ("METRICS_NAMESPACE", "AWS/Bedrock"),
            ("METRICS_TENANT_LIMIT", "many"),
        ] {
            let error = settings(&[("USAGE_TABLE_NAME", "usage"), (name, value)]).unwrap_err();
            assert!(error.to_string().contains(name), "{name}={value}: {error}");
        }
    }
}
