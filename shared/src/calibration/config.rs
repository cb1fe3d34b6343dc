//! The calibration pipeline's deployer configuration, read from the environment once per cold
//! start. The request path reads the same variables to decide what it samples.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `CALIBRATION_TENANTS` | unset (nothing sampled) | the tenants who opted in and the share of their distinct prompts sampled, e.g. `acme=0.05,beta=1`; a bare name is the `x-tenant-id` tenant of that name, an encoded tenant (`jwt/…`, `iam/…`, `header/…`) is taken as it is |
//! | `CALIBRATION_BUCKET` | required with tenants | the S3 bucket of samples, runs and the dataset |
//! | `CALIBRATION_PREFIX` | `calibration/` | where under the bucket; ends with `/` |
//! | `CALIBRATION_ROLE_ARN` | required to run | the service role Bedrock's batch jobs assume |
//! | `CALIBRATION_MIN_PROMPTS` | 100 | fewest prompts a run starts with and fewest records of any of its jobs (each answer job has that many; a grading job with fewer gradable answers is filled up with repeats; Bedrock's minimum is 100) |
//! | `CALIBRATION_MAX_PROMPTS` | 1000 | most prompts in one run |
//! | `TIER_HAIKU_MODEL_ID`, `TIER_SONNET_MODEL_ID`, `TIER_OPUS_MODEL_ID` | catalog `[tiers]` | the models a run answers with (the Opus tier's grades), as the gateway's tiers; each must have a batch price |

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cache::Tenant;
use crate::catalog::Tier;
use crate::config::{ConfigError, Env};

pub const DEFAULT_PREFIX: &str = "calibration/";

/// Who opted in, and how much of their traffic is sampled.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptIns {
    rates: Vec<(Tenant, f64)>,
}

impl OptIns {
    pub fn new(rates: Vec<(Tenant, f64)>) -> Self {
        OptIns { rates }
    }

    /// The tenant's sampling rate; `None` for a tenant who did not opt in.
    pub fn rate(&self, tenant: &Tenant) -> Option<f64> {
        self.rates.iter().find(|(t, _)| t == tenant).map(|(_, rate)| *rate)
    }

    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.rates.iter().map(|(tenant, _)| tenant)
    }

    /// `name=rate` entries separated by `,`; the rate is in (0, 1].
    pub fn parse(text: &str) -> Result<OptIns, String> {
        let mut rates: Vec<(Tenant, f64)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, rate) = entry.rsplit_once('=').ok_or_else(|| format!("`{entry}` is not `tenant=rate`"))?;
            let name = name.trim();
            let rate: f64 = rate.trim().parse().map_err(|_| format!("`{entry}`: the rate is not a number"))?;
            if !(rate > 0.0 && rate <= 1.0) {
                return Err(format!("`{entry}`: the rate must be above 0 and at most 1"));
            }
            if name.is_empty() {
                return Err(format!("`{entry}` names no tenant"));
            }
            let tenant = if ["jwt/", "iam/", "header/"].iter().any(|kind| name.starts_with(kind)) || name == "anonymous"
            {
                Tenant::from_stored(name.to_owned())
            } else {
                Tenant::new(name)
            };
            if rates.iter().any(|(t, _)| *t == tenant) {
                return Err(format!("`{name}` is named twice"));
            }
            rates.push((tenant, rate));
        }
        Ok(OptIns { rates })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationConfig {
    pub tenants: OptIns,
    pub bucket: String,
    /// Ends with `/`.
    pub prefix: String,
    pub role_arn: Option<String>,
    pub min_prompts: usize,
    pub max_prompts: usize,
    /// `CATALOG_PATH`, as the gateway reads it: the tiers' models and prices.
    pub catalog_path: Option<PathBuf>,
    /// `TIER_*_MODEL_ID`, as the gateway reads them: a run measures the models the tiers serve.
    pub tier_overrides: BTreeMap<Tier, String>,
}

impl CalibrationConfig {
    /// `None` when `CALIBRATION_TENANTS` is unset: no tenant opted in, nothing is sampled,
    /// and the request path is exactly what it was.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let env = Env(&lookup);
        let Some(tenants_text) = env.get("CALIBRATION_TENANTS") else {
            return Ok(None);
        };
        let invalid = |name: &'static str, value: &str, reason: String| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason,
        };
        let tenants = OptIns::parse(&tenants_text).map_err(|e| invalid("CALIBRATION_TENANTS", &tenants_text, e))?;
        let bucket = env.get("CALIBRATION_BUCKET").ok_or(ConfigError::Missing("CALIBRATION_BUCKET"))?;
        let prefix = env.get("CALIBRATION_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if !prefix.ends_with('/') || prefix.starts_with('/') {
            return Err(invalid("CALIBRATION_PREFIX", &prefix, "must end with `/` and not start with one".into()));
        }
        let role_arn = env.get("CALIBRATION_ROLE_ARN");
        if let Some(arn) = &role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(invalid("CALIBRATION_ROLE_ARN", arn, "must be an IAM role ARN".into()));
        }
        let min_prompts: usize = env.parsed("CALIBRATION_MIN_PROMPTS", 100)?;
        let max_prompts: usize = env.parsed("CALIBRATION_MAX_PROMPTS", 1000)?;
        if min_prompts == 0 || max_prompts < min_prompts || max_prompts > 25_000 {
            return Err(invalid(
                "CALIBRATION_MAX_PROMPTS",
                &max_prompts.to_string(),
                format!(
                    "must be between CALIBRATION_MIN_PROMPTS ({min_prompts}, at least 1) and 25000 (a grading job has two records per prompt, Bedrock takes 50000)"
                ),
            ));
        }
        let catalog_path = env.get("CATALOG_PATH").map(PathBuf::from);
        let tier_overrides = crate::config::tier_overrides(&env);
        Ok(Some(CalibrationConfig {
            tenants,
            bucket,
            prefix,
            role_arn,
            min_prompts,
            max_prompts,
            catalog_path,
            tier_overrides,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<CalibrationConfig>, ConfigError> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CalibrationConfig::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn without_tenants_there_is_no_calibration() {
        assert_eq!(read(&[("CALIBRATION_BUCKET", "b")]).unwrap(), None);
    }

    #[test]
    fn tenants_and_rates_are_read_and_only_they_opt_in() {
        let config =
            read(&[("CALIBRATION_TENANTS", "acme=0.05, beta=1,jwt/3:iss/3:sub=0.5"), ("CALIBRATION_BUCKET", "bucket")])
                .unwrap()
                .unwrap();
        assert_eq!(config.prefix, "calibration/");
        assert_eq!(config.tenants.rate(&Tenant::new("acme")), Some(0.05));
        assert_eq!(config.tenants.rate(&Tenant::new("beta")), Some(1.0));
        assert_eq!(config.tenants.rate(&Tenant::from_stored("jwt/3:iss/3:sub".into())), Some(0.5));
        assert_eq!(config.tenants.rate(&Tenant::new("gamma")), None);
        assert_eq!(config.tenants.rate(&Tenant::anonymous()), None);
        assert_eq!((config.min_prompts, config.max_prompts), (100, 1000));
    }

    #[test]
    fn a_run_measures_the_deployers_tier_models_and_refuses_one_batch_cannot_run() {
        use crate::calibration::CalibrationSettings;
        use crate::catalog::Catalog;
        let catalog = Catalog::embedded().unwrap();
        let base = [("CALIBRATION_TENANTS", "acme=1"), ("CALIBRATION_BUCKET", "b")];
        let with = |tier_var: (&'static str, &'static str)| {
            let mut vars = base.to_vec();
            vars.push(tier_var);
            CalibrationSettings::from_config(&read(&vars).unwrap().unwrap(), &catalog)
        };
        let settings = with(("TIER_SONNET_MODEL_ID", "us.anthropic.claude-sonnet-4-6")).unwrap();
        assert_eq!(settings.tier_models[&Tier::Sonnet], "us.anthropic.claude-sonnet-4-6");
        assert_eq!(settings.tier_models[&Tier::Opus], catalog.tier_default(Tier::Opus));

        // Opus 4.8 has no batch price: every run would fail at its first job.
        let error = with(("TIER_OPUS_MODEL_ID", "us.anthropic.claude-opus-4-8")).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "TIER_OPUS_MODEL_ID", .. }), "{error}");
        assert!(error.to_string().contains("batch"), "{error}");
        let error = with(("TIER_HAIKU_MODEL_ID", "us.anthropic.claude-opus-4-5-20251101-v1:0")).unwrap_err();
        assert!(matches!(error, ConfigError::Invalid { name: "TIER_HAIKU_MODEL_ID", .. }), "{error}");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (tenants, prefix) in [("acme", "c/"), ("acme=0", "c/"), ("acme=2", "c/"), ("a=1,a=0.5", "c/"), ("a=1", "c")]
        {
            let error =
                read(&[("CALIBRATION_TENANTS", tenants), ("CALIBRATION_BUCKET", "b"), ("CALIBRATION_PREFIX", prefix)])
                    .unwrap_err();
            assert!(matches!(error, ConfigError::Invalid { .. }), "{tenants} {prefix}: {error}");
        }
        assert!(matches!(read(&[("CALIBRATION_TENANTS", "a=1")]), Err(ConfigError::Missing("CALIBRATION_BUCKET"))));
        let small = read(&[
            ("CALIBRATION_TENANTS", "a=1"),
            ("CALIBRATION_BUCKET", "b"),
            ("CALIBRATION_MIN_PROMPTS", "10"),
            ("CALIBRATION_MAX_PROMPTS", "5"),
        ]);
        assert!(small.is_err());
    }
}
