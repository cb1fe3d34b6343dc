//! The limits in force for every quota: the catalog's defaults, then what Service Quotas
//! reports for the account when the deployer enables it, then explicit overrides from
//! configuration. Each later source wins, limit by limit.

use std::collections::BTreeMap;

use serde::Serialize;

use super::QuotaKey;
use super::names::{QuotaMetric, QuotaName, QuotaScope};
use crate::catalog::{Catalog, Quota, ResolveError, Target};

/// Where a limit in force was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    Catalog,
    ServiceQuotas,
    Override,
}

/// One quota's limits and where each came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    pub quota: Quota,
    pub tpm_from: LimitSource,
    pub rpm_from: LimitSource,
}

/// Replaces one or both limits of a quota; an absent one keeps the value below it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverride {
    pub tpm: Option<u64>,
    pub rpm: Option<u64>,
}

/// A value read from Service Quotas, once its name has been understood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectedLimit<'c> {
    pub name: QuotaName<'c>,
    pub value: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("`{0}` is not of the form ID=tpm:N,rpm:N")]
    Malformed(String),
    #[error("`{entry}`: `{limit}` is not a limit (tpm or rpm)")]
    UnknownLimit { entry: String, limit: String },
    #[error("`{entry}`: `{value}` is not a whole number of at least 1")]
    BadValue { entry: String, value: String },
    #[error("`{entry}` names `{limit}` twice")]
    RepeatedLimit { entry: String, limit: &'static str },
    #[error("`{id}`: {reason}")]
    Model { id: String, reason: String },
    #[error("`{first}` and `{second}` both set the quota of `{key}`")]
    Duplicate { first: String, second: String, key: String },
    #[error("`{id}` has no default quota in the catalog; give both tpm and rpm")]
    Incomplete { id: String },
}

/// `QUOTA_OVERRIDES` as written, checked for syntax: entries `ID=tpm:N,rpm:N` separated by
/// `;`, keyed by the ID Bedrock is called with (base model ID in-Region, else the profile ID).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaOverrides {
    text: String,
    entries: Vec<(String, LimitOverride)>,
}

impl QuotaOverrides {
    pub fn parse(text: &str) -> Result<QuotaOverrides, OverrideError> {
        let mut entries = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let malformed = || OverrideError::Malformed(entry.to_owned());
            let (id, limits) = entry.split_once('=').ok_or_else(malformed)?;
            let id = id.trim();
            if id.is_empty() || limits.trim().is_empty() {
                return Err(malformed());
            }
            let mut limit = LimitOverride::default();
            for pair in limits.split(',').map(str::trim) {
                let (name, value) = pair.split_once(':').ok_or_else(malformed)?;
                let slot = match name.trim().to_ascii_lowercase().as_str() {
                    "tpm" => &mut limit.tpm,
                    "rpm" => &mut limit.rpm,
                    _ => {
                        return Err(OverrideError::UnknownLimit { entry: entry.to_owned(), limit: name.to_owned() });
                    }
                };
                let value = value.trim();
                let parsed = value
                    .replace('_', "")
                    .parse::<u64>()
                    .ok()
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| OverrideError::BadValue { entry: entry.to_owned(), value: value.to_owned() })?;
                if slot.replace(parsed).is_some() {
                    let limit = if name.trim().eq_ignore_ascii_case("tpm") { "tpm" } else { "rpm" };
                    return Err(OverrideError::RepeatedLimit { entry: entry.to_owned(), limit });
                }
            }
            entries.push((id.to_owned(), limit));
        }
        Ok(QuotaOverrides { text: text.to_owned(), entries })
    }

    /// The text the overrides were parsed from, for error messages.
    pub fn as_written(&self) -> &str {
        &self.text
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry resolved to the quota it sets: an ID the catalog does not know, a profile
    /// the model is not offered under, a base ID the model cannot be called with on demand,
    /// two entries for one quota, or a partial override of a quota the catalog has no default
    /// for are refused.
    pub fn resolve(&self, catalog: &Catalog) -> Result<BTreeMap<QuotaKey, LimitOverride>, OverrideError> {
        let mut resolved: BTreeMap<QuotaKey, (&str, LimitOverride)> = BTreeMap::new();
        for (id, limit) in &self.entries {
            let model_error = |reason: String| OverrideError::Model { id: id.clone(), reason };
            let (key, default) = match catalog.resolve(id) {
                Ok(Target::Model(m)) => (QuotaKey::new(&m.spec.model_id, m.scope.clone()), m.spec.quota(&m.scope)),
                Ok(Target::PromptRouter { .. }) => {
                    return Err(model_error("a prompt router draws on the quotas of the models it routes to".into()));
                }
                Err(ResolveError::NeedsProfile { suggestion, .. }) => {
                    return Err(model_error(format!(
                        "this model has no in-Region quota; use a profile ID such as `{suggestion}`"
                    )));
                }
                Err(
                    e @ (ResolveError::UnknownModel(_)
                    | ResolveError::ProfileNotOffered { .. }
                    | ResolveError::Retired { .. }),
                ) => {
                    return Err(model_error(e.to_string()));
                }
            };
            if default.is_none() && (limit.tpm.is_none() || limit.rpm.is_none()) {
                return Err(OverrideError::Incomplete { id: id.clone() });
            }
            if let Some((first, _)) = resolved.get(&key) {
                return Err(OverrideError::Duplicate {
                    first: (*first).to_owned(),
                    second: id.clone(),
                    key: key.to_string(),
                });
            }
            resolved.insert(key, (id, *limit));
        }
        Ok(resolved.into_iter().map(|(key, (_, limit))| (key, limit)).collect())
    }
}

/// The limits in force per quota. A quota absent from the table is unlimited as far as the
/// gateway knows (the catalog gives no default and nothing else set one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaTable {
    limits: BTreeMap<QuotaKey, Limits>,
}

impl QuotaTable {
    /// The catalog's default for every model and every scope it is offered under.
    pub fn from_catalog(catalog: &Catalog) -> QuotaTable {
        let mut limits = BTreeMap::new();
        for spec in catalog.models() {
            for scope in spec.scopes() {
                if let Some(quota) = spec.quota(&scope) {
                    let entry = Limits { quota, tpm_from: LimitSource::Catalog, rpm_from: LimitSource::Catalog };
                    limits.insert(QuotaKey::new(&spec.model_id, scope), entry);
                }
            }
        }
        QuotaTable { limits }
    }

    /// Applies the values Service Quotas reports. One cross-Region quota covers every
    /// geographic profile of the model callable from the Region, so it applies to each of
    /// them. A limit for a quota the catalog has no default for is kept only once both
    /// limits are known.
    pub fn apply_detected(&mut self, detected: &[DetectedLimit<'_>]) {
        let mut partial: BTreeMap<QuotaKey, LimitOverride> = BTreeMap::new();
        for found in detected {
            let spec = found.name.spec;
            for scope in spec.scopes().into_iter().filter(|s| QuotaScope::of(s) == found.name.scope) {
                let key = QuotaKey::new(&spec.model_id, scope);
                let set = match found.name.metric {
                    QuotaMetric::TokensPerMinute => LimitOverride { tpm: Some(found.value), rpm: None },
                    QuotaMetric::RequestsPerMinute => LimitOverride { tpm: None, rpm: Some(found.value) },
                };
                match self.limits.get_mut(&key) {
                    Some(limits) => limits.apply(set, LimitSource::ServiceQuotas),
                    None => {
                        let pending = partial.entry(key).or_default();
                        pending.tpm = set.tpm.or(pending.tpm);
                        pending.rpm = set.rpm.or(pending.rpm);
                    }
                }
            }
        }
        for (key, pending) in partial {
            if let (Some(tpm), Some(rpm)) = (pending.tpm, pending.rpm) {
                let source = LimitSource::ServiceQuotas;
                self.limits.insert(key, Limits { quota: Quota { tpm, rpm }, tpm_from: source, rpm_from: source });
            }
        }
    }

    /// Applies resolved overrides ([`QuotaOverrides::resolve`]), which win over every
    /// other source.
    pub fn apply_overrides(&mut self, overrides: &BTreeMap<QuotaKey, LimitOverride>) {
        for (key, set) in overrides {
            match self.limits.get_mut(key) {
                Some(limits) => limits.apply(*set, LimitSource::Override),
                None => {
                    // resolve() refuses partial overrides of quotas without a default.
                    if let (Some(tpm), Some(rpm)) = (set.tpm, set.rpm) {
                        let source = LimitSource::Override;
                        let limits = Limits { quota: Quota { tpm, rpm }, tpm_from: source, rpm_from: source };
                        self.limits.insert(key.clone(), limits);
                    }
                }
            }
        }
    }

    pub fn get(&self, key: &QuotaKey) -> Option<Quota> {
        self.limits.get(key).map(|l| l.quota)
    }

    pub fn limits(&self, key: &QuotaKey) -> Option<&Limits> {
        self.limits.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaKey, &Limits)> {
        self.limits.iter()
    }

    /// The limits alone, as admission takes them.
    pub fn quotas(&self) -> BTreeMap<QuotaKey, Quota> {
        self.limits.iter().map(|(key, l)| (key.clone(), l.quota)).collect()
    }
}

impl Limits {
    fn apply(&mut self, set: LimitOverride, source: LimitSource) {
        if let Some(tpm) = set.tpm {
            self.quota.tpm = tpm;
            self.tpm_from = source;
        }
        if let Some(rpm) = set.rpm {
            self.quota.rpm = rpm;
            self.rpm_from = source;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Scope;
    use crate::quota::names::parse_quota_name;

    const SONNET: &str = "anthropic.claude-sonnet-4-5-20250929-v1:0";
    const HAIKU3: &str = "anthropic.claude-3-haiku-20240307-v1:0";

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    fn us(model: &str) -> QuotaKey {
        QuotaKey::new(model, Scope::Geo("us".into()))
    }

    #[test]
    fn the_catalog_gives_every_model_and_scope_its_default() {
        let c = catalog();
        let table = QuotaTable::from_catalog(&c);
        for spec in c.models() {
            for scope in spec.scopes() {
                let key = QuotaKey::new(&spec.model_id, scope.clone());
                assert_eq!(table.get(&key), spec.quota(&scope), "{key}");
            }
        }
        assert_eq!(table.get(&us(SONNET)), Some(Quota { tpm: 200_000, rpm: 200 }));
        assert_eq!(table.limits(&us(SONNET)).unwrap().tpm_from, LimitSource::Catalog);
    }

    #[test]
    fn overrides_win_over_service_quotas_which_win_over_the_catalog() {
        let c = catalog();
        let mut table = QuotaTable::from_catalog(&c);
        let name = |n: &str| parse_quota_name(&c, n).unwrap();
        table.apply_detected(&[
            DetectedLimit {
                name: name("Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1"),
                value: 1_000_000,
            },
            DetectedLimit {
                name: name("Cross-region model inference requests per minute for Anthropic Claude Sonnet 4.5 V1"),
                value: 500,
            },
        ]);
        // One cross-Region quota covers every geographic profile.
        for prefix in ["us", "eu", "jp"] {
            let key = QuotaKey::new(SONNET, Scope::Geo(prefix.into()));
            assert_eq!(table.get(&key), Some(Quota { tpm: 1_000_000, rpm: 500 }), "{key}");
        }
        assert_eq!(table.get(&QuotaKey::new(SONNET, Scope::Global)), Some(Quota { tpm: 200_000, rpm: 200 }));
        let overrides = QuotaOverrides::parse(&format!("us.{SONNET}=rpm:50")).unwrap().resolve(&c).unwrap();
        table.apply_overrides(&overrides);
        let limits = table.limits(&us(SONNET)).unwrap();
        assert_eq!(limits.quota, Quota { tpm: 1_000_000, rpm: 50 });
        assert_eq!((limits.tpm_from, limits.rpm_from), (LimitSource::ServiceQuotas, LimitSource::Override));
        assert_eq!(table.get(&QuotaKey::new(SONNET, Scope::Geo("eu".into()))).unwrap().rpm, 500);
    }

    #[test]
    fn overrides_parse_every_documented_form() {
        let text = format!(" us.{SONNET}=tpm:400000,rpm:200 ; {HAIKU3}=rpm:50;global.{SONNET} = TPM: 1_000_000 ;");
        let c = catalog();
        let resolved = QuotaOverrides::parse(&text).unwrap().resolve(&c).unwrap();
        assert_eq!(resolved[&us(SONNET)], LimitOverride { tpm: Some(400_000), rpm: Some(200) });
        assert_eq!(resolved[&QuotaKey::new(HAIKU3, Scope::InRegion)], LimitOverride { tpm: None, rpm: Some(50) });
        assert_eq!(resolved[&QuotaKey::new(SONNET, Scope::Global)].tpm, Some(1_000_000));
        assert!(QuotaOverrides::parse("").unwrap().is_empty());
        let arn = format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.{SONNET}");
        let by_arn = QuotaOverrides::parse(&format!("{arn}=rpm:7")).unwrap().resolve(&c).unwrap();
        assert_eq!(by_arn[&us(SONNET)].rpm, Some(7));
    }

    #[test]
    fn bad_overrides_are_refused_with_the_reason() {
        let c = catalog();
        let parse_error = |text: &str| QuotaOverrides::parse(text).unwrap_err().to_string();
        assert!(parse_error("us.x").contains("not of the form"));
        assert!(parse_error("us.x=").contains("not of the form"));
        assert!(parse_error("=rpm:1").contains("not of the form"));
        assert!(parse_error("us.x=rpm").contains("not of the form"));
        assert!(parse_error("us.x=rpd:5").contains("not a limit"));
        assert!(parse_error("us.x=rpm:0").contains("at least 1"));
        assert!(parse_error("us.x=tpm:-5").contains("at least 1"));
        assert!(parse_error("us.x=tpm:lots").contains("at least 1"));
        assert!(parse_error("us.x=rpm:1,rpm:2").contains("twice"));
        let resolve_error = |text: &str| QuotaOverrides::parse(text).unwrap().resolve(&c).unwrap_err().to_string();
        assert!(resolve_error("gpt-4o=rpm:5").contains("unknown model"));
        assert!(resolve_error(&format!("apac.{SONNET}=rpm:5")).contains("not offered"));
        assert!(resolve_error(&format!("{SONNET}=rpm:5")).contains("no in-Region quota"));
        let duplicate = format!("us.{SONNET}=rpm:5;arn:aws:bedrock:us-east-1:1:inference-profile/us.{SONNET}=tpm:9");
        assert!(resolve_error(&duplicate).contains("both set"));
        assert!(matches!(QuotaOverrides::parse("x=rpm:5").unwrap().resolve(&c), Err(OverrideError::Model { .. })));
    }

    #[test]
    fn a_quota_without_default_needs_both_limits() {
        let text = include_str!("../../catalog.toml");
        let line = "quota.in_region = { tpm = 2000000, rpm = 1000 }\n";
        let at = text.rfind(line).unwrap();
        let c = Catalog::from_toml(&format!("{}{}", &text[..at], &text[at + line.len()..])).unwrap();
        let key = QuotaKey::new(HAIKU3, Scope::InRegion);
        assert_eq!(QuotaTable::from_catalog(&c).get(&key), None);
        let partial = QuotaOverrides::parse(&format!("{HAIKU3}=rpm:5")).unwrap();
        assert_eq!(partial.resolve(&c), Err(OverrideError::Incomplete { id: HAIKU3.into() }));
        let full = QuotaOverrides::parse(&format!("{HAIKU3}=rpm:5,tpm:6")).unwrap().resolve(&c).unwrap();
        let mut table = QuotaTable::from_catalog(&c);
        table.apply_overrides(&full);
        assert_eq!(table.get(&key), Some(Quota { tpm: 6, rpm: 5 }));
    }
}
