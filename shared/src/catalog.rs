//! The model catalog: which Claude models exist, what they cost, what quotas they have, and
//! how an identifier in a request (tier name, model ID, inference-profile ID or ARN) maps to
//! one of them.
//!
//! The figures are data (`catalog.toml`, embedded at build time), not code, so that a deployer
//! can replace them without a rebuild.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cost::{PricingMode, Usage};
use crate::date::Date;
use crate::sampling::{Accepts, Sampling, Thinking};

const EMBEDDED_CATALOG: &str = include_str!("../catalog.toml");

/// Geographic prefixes of system-defined cross-Region inference profiles.
const GEO_PREFIXES: &[&str] = &["us", "eu", "apac", "jp", "au", "ca", "us-gov"];
const GLOBAL_PREFIX: &str = "global";

/// The three Claude tiers, ordered from cheapest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    Haiku,
    Sonnet,
    Opus,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Haiku, Tier::Sonnet, Tier::Opus];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Haiku => "haiku",
            Tier::Sonnet => "sonnet",
            Tier::Opus => "opus",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "haiku" => Ok(Tier::Haiku),
            "sonnet" => Ok(Tier::Sonnet),
            "opus" => Ok(Tier::Opus),
            _ => Err(()),
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prices {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write_5m: f64,
    pub cache_write_1h: f64,
    pub batch_input: f64,
    pub batch_output: f64,
}

/// Requests and tokens per minute for one way of reaching a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub tpm: u64,
    /// [`Quota::UNLIMITED`] (no `rpm` in the catalog) where AWS sets no requests-per-minute
    /// quota, as for Claude Opus 4.7 and 4.8: tokens alone limit them.
    #[serde(default = "Quota::unlimited", skip_serializing_if = "Quota::is_unlimited")]
    pub rpm: u64,
}

impl Quota {
    /// A limit that is never reached; what a quota AWS does not set counts as.
    pub const UNLIMITED: u64 = u64::MAX;

    fn unlimited() -> u64 {
        Quota::UNLIMITED
    }

    fn is_unlimited(limit: &u64) -> bool {
        *limit == Quota::UNLIMITED
    }

    /// The requests-per-minute limit, `None` when there is none.
    pub fn rpm_limit(&self) -> Option<u64> {
        (self.rpm != Quota::UNLIMITED).then_some(self.rpm)
    }
}

/// Bedrock keeps separate quotas for in-Region on-demand, geographic cross-Region and global
/// cross-Region calls of the same model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    pub in_region: Option<Quota>,
    pub geo: Option<Quota>,
    pub global: Option<Quota>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Short stable name, e.g. `claude-haiku-4-5`.
    pub key: String,
    pub display_name: String,
    pub tier: Tier,
    /// The base Bedrock model ID, e.g. `anthropic.claude-haiku-4-5-20251001-v1:0`.
    pub model_id: String,
    /// Whether the base ID can be invoked on demand in-Region (newer models need a profile).
    pub in_region: bool,
    /// Inference-profile prefixes this model is offered under (`global`, `us`, `eu`, ...).
    pub profiles: Vec<String>,
    pub context_window: u32,
    pub max_output_tokens: u32,
    /// Quota tokens consumed per output token.
    pub output_burndown: u32,
    /// Fraction added to every price when not served through a `global.` profile.
    pub regional_premium: f64,
    pub price: Prices,
    #[serde(default)]
    pub quota: Quotas,
    /// Which sampling parameters the model accepts; the gateway leaves out the others.
    #[serde(default)]
    pub sampling: Sampling,
    /// Which forms of extended thinking the model accepts; see [`ModelSpec::accepts`] for
    /// an entry without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<Thinking>,
    /// Bedrock's end-of-life date for the model: from that day Bedrock no longer serves it
    /// and the gateway refuses it by name. Absent while AWS has announced none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_life: Option<Date>,
}

/// How a model is reached: this decides both its price and which quota it draws from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "prefix")]
pub enum Scope {
    InRegion,
    Geo(String),
    Global,
}

impl Scope {
    fn from_prefix(prefix: &str) -> Option<Scope> {
        if prefix == GLOBAL_PREFIX {
            Some(Scope::Global)
        } else if GEO_PREFIXES.contains(&prefix) {
            Some(Scope::Geo(prefix.to_owned()))
        } else {
            None
        }
    }
}

impl ModelSpec {
    /// What the model accepts of a request. A catalog entry without `thinking` written
    /// before the field existed said "adaptive only" with `sampling = "fixed"`, and is read
    /// so.
    pub fn accepts(&self) -> Accepts {
        let thinking = self.thinking.unwrap_or(match self.sampling {
            Sampling::Fixed => Thinking::Adaptive,
            Sampling::Any | Sampling::TemperatureOrTopP => Thinking::Any,
        });
        Accepts { sampling: self.sampling, thinking }
    }

    /// The quota that applies when this model is called through `scope`.
    pub fn quota(&self, scope: &Scope) -> Option<Quota> {
        match scope {
            Scope::InRegion => self.quota.in_region,
            Scope::Geo(_) => self.quota.geo,
            Scope::Global => self.quota.global.or(self.quota.geo),
        }
    }

    /// Whether Bedrock runs this model in batch jobs: the catalog gives it a batch price
    /// (AWS publishes none for the models it does not offer in batch).
    pub fn offered_in_batch(&self) -> bool {
        self.price.batch_input > 0.0 || self.price.batch_output > 0.0
    }

    /// Whether Bedrock has stopped serving the model by `today`.
    pub fn retired_on(&self, today: Date) -> bool {
        self.end_of_life.is_some_and(|end| today >= end)
    }

    /// The ID to send to Bedrock for this model through `scope`.
    pub fn invoke_id(&self, scope: &Scope) -> String {
        match scope {
            Scope::InRegion => self.model_id.clone(),
            Scope::Geo(prefix) => format!("{prefix}.{}", self.model_id),
            Scope::Global => format!("{GLOBAL_PREFIX}.{}", self.model_id),
        }
    }

    /// Every way of reaching this model, from the most local to the most spread out; the
    /// order a throttled caller should fall back through.
    pub fn scopes(&self) -> Vec<Scope> {
        let mut scopes = Vec::new();
        if self.in_region {
            scopes.push(Scope::InRegion);
        }
        scopes
            .extend(self.profiles.iter().filter(|p| p.as_str() != GLOBAL_PREFIX).filter_map(|p| Scope::from_prefix(p)));
        if self.profiles.iter().any(|p| p == GLOBAL_PREFIX) {
            scopes.push(Scope::Global);
        }
        scopes
    }

    /// Exact cost in USD of one call with `usage`, served through `scope`.
    pub fn cost(&self, scope: &Scope, usage: &Usage, mode: PricingMode) -> f64 {
        let p = &self.price;
        let (input, output) = match mode {
            PricingMode::OnDemand => (p.input, p.output),
            PricingMode::Batch => (p.batch_input, p.batch_output),
        };
        let write_5m = usage.cache_write_input_tokens.saturating_sub(usage.cache_write_1h_input_tokens);
        let micro_usd = usage.input_tokens as f64 * input
            + usage.output_tokens as f64 * output
            + usage.cache_read_input_tokens as f64 * p.cache_read
            + write_5m as f64 * p.cache_write_5m
            + usage.cache_write_1h_input_tokens as f64 * p.cache_write_1h;
        let premium = match scope {
            Scope::Global => 0.0,
            Scope::InRegion | Scope::Geo(_) => self.regional_premium,
        };
        micro_usd / 1_000_000.0 * (1.0 + premium)
    }

    /// Tokens this call counts against the TPM quota once it has finished (Bedrock's
    /// settlement, [`crate::quota::settled_tokens`]).
    pub fn quota_tokens(&self, usage: &Usage) -> u64 {
        crate::quota::settled_tokens(usage, u64::from(self.output_burndown))
    }

    /// Tokens a call with `prompt_tokens` of input (cache reads and writes included) reserves
    /// against the TPM quota when it starts ([`crate::quota::reserved_tokens`]).
    pub fn reserved_quota_tokens(&self, prompt_tokens: u64, max_tokens: Option<u64>) -> u64 {
        crate::quota::reserved_tokens(prompt_tokens, max_tokens, u64::from(self.max_output_tokens))
    }
}

/// What an identifier in a request resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Target<'a> {
    /// A catalog model reached through one scope.
    Model(ResolvedModel<'a>),
    /// A Bedrock prompt router: Bedrock picks the model, and the call is priced afterwards
    /// from `trace.promptRouter.invokedModelId`.
    PromptRouter { arn: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedModel<'a> {
    pub spec: &'a ModelSpec,
    pub scope: Scope,
    /// The identifier to send to Bedrock: exactly what the caller gave when it was a Bedrock
    /// ID or ARN, so that application profiles and ARNs keep their meaning.
    pub invoke_id: String,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ResolveError {
    #[error("unknown model `{0}`: not a tier name (haiku, sonnet, opus) nor a model in the catalog")]
    UnknownModel(String),
    #[error("model `{id}` cannot be invoked on demand in-Region; use an inference profile such as `{suggestion}`")]
    NeedsProfile { id: String, suggestion: String },
    #[error("model `{id}` is not offered under the `{prefix}.` inference profile")]
    ProfileNotOffered { id: String, prefix: String },
    #[error("model `{id}` ({name}) reached its end of life on Amazon Bedrock on {end_of_life}{}", successor(*.tier, .replacement.as_deref()))]
    Retired { id: String, name: String, end_of_life: Date, tier: Tier, replacement: Option<String> },
}

/// Where a caller of a retired model can go instead: the catalog's model for its tier, when
/// that is not the retired one itself.
fn successor(tier: Tier, replacement: Option<&str>) -> String {
    match replacement {
        Some(id) => format!("; the catalog's current {tier} model is `{id}`, or ask for `{tier}`"),
        None => String::new(),
    }
}

impl ResolveError {
    pub fn label(&self) -> crate::label::ErrorLabel {
        match self {
            ResolveError::UnknownModel(_)
            | ResolveError::NeedsProfile { .. }
            | ResolveError::ProfileNotOffered { .. } => crate::label::ErrorLabel::UnknownModel,
            ResolveError::Retired { .. } => crate::label::ErrorLabel::ModelRetired,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot read catalog file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("catalog is not valid TOML of the expected shape")]
    Parse(#[from] toml::de::Error),
    #[error("catalog is inconsistent: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: String,
    tiers: BTreeMap<Tier, String>,
    models: Vec<ModelSpec>,
}

/// The validated catalog. Cheap to share behind an `Arc`.
#[derive(Debug, Clone)]
pub struct Catalog {
    version: String,
    tiers: BTreeMap<Tier, String>,
    models: Vec<ModelSpec>,
}

impl Catalog {
    /// The catalog compiled into this binary.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Catalog::from_toml(EMBEDDED_CATALOG)
    }

    /// The deployer's catalog when `path` is given, else the embedded one.
    pub fn load(path: Option<&Path>) -> Result<Catalog, CatalogError> {
        match path {
            None => Catalog::embedded(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| CatalogError::Read { path: path.display().to_string(), source })?;
                Catalog::from_toml(&text)
            }
        }
    }

    pub fn from_toml(text: &str) -> Result<Catalog, CatalogError> {
        let file: CatalogFile = toml::from_str(text)?;
        let catalog = Catalog { version: file.version, tiers: file.tiers, models: file.models };
        catalog.validate()?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        let invalid = |msg: String| Err(CatalogError::Invalid(msg));
        let mut seen = std::collections::BTreeSet::new();
        for m in &self.models {
            if !seen.insert(m.model_id.as_str()) || !seen.insert(m.key.as_str()) {
                return invalid(format!("model `{}` is listed twice", m.key));
            }
            let p = &m.price;
            let prices =
                [p.input, p.output, p.cache_read, p.cache_write_5m, p.cache_write_1h, p.batch_input, p.batch_output];
            if prices.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return invalid(format!("model `{}` has a negative or non-finite price", m.key));
            }
            if !(0.0..=1.0).contains(&m.regional_premium) {
                return invalid(format!("model `{}` has a regional premium outside 0..=1", m.key));
            }
            if m.max_output_tokens == 0 || m.output_burndown == 0 {
                return invalid(format!("model `{}` needs max_output_tokens and output_burndown >= 1", m.key));
            }
            if let Some(bad) = m.profiles.iter().find(|p| Scope::from_prefix(p).is_none()) {
                return invalid(format!("model `{}` lists unknown profile prefix `{bad}`", m.key));
            }
            if m.scopes().is_empty() {
                return invalid(format!("model `{}` can be reached neither in-Region nor through a profile", m.key));
            }
        }
        for tier in Tier::ALL {
            let Some(id) = self.tiers.get(&tier) else {
                return invalid(format!("no default model for tier `{tier}`"));
            };
            match self.resolve(id) {
                Ok(Target::Model(resolved)) if resolved.spec.tier == tier => {}
                Ok(_) => return invalid(format!("tier `{tier}` default `{id}` is not a {tier} model")),
                Err(e) => return invalid(format!("tier `{tier}` default: {e}")),
            }
        }
        Ok(())
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// The catalog's default Bedrock ID for a tier.
    pub fn tier_default(&self, tier: Tier) -> &str {
        // validate() guarantees every tier has an entry.
        self.tiers.get(&tier).map(String::as_str).unwrap_or_default()
    }

    pub fn by_model_id(&self, base_id: &str) -> Option<&ModelSpec> {
        self.models.iter().find(|m| m.model_id == base_id)
    }

    /// Resolves a Bedrock identifier: a base model ID, a system inference-profile ID, or the
    /// ARN of a foundation model, a system inference profile or a prompt router. Tier names
    /// are not Bedrock identifiers; callers map them first (see [`crate::config`]).
    pub fn resolve(&self, id: &str) -> Result<Target<'_>, ResolveError> {
        let unknown = || ResolveError::UnknownModel(id.to_owned());
        if let Some(resource) = arn_resource(id) {
            return match resource.split_once('/') {
                Some(("foundation-model", model)) => self.resolve_plain(model, id),
                Some(("inference-profile", profile)) => self.resolve_plain(profile, id),
                Some(("default-prompt-router" | "prompt-router", _)) => Ok(Target::PromptRouter { arn: id.to_owned() }),
                _ => Err(unknown()),
            };
        }
        self.resolve_plain(id, id)
    }

    fn resolve_plain(&self, plain: &str, as_given: &str) -> Result<Target<'_>, ResolveError> {
        if let Some(spec) = self.by_model_id(plain) {
            if !spec.in_region {
                let suggestion = spec.scopes().first().map(|s| spec.invoke_id(s)).unwrap_or_default();
                return Err(ResolveError::NeedsProfile { id: as_given.to_owned(), suggestion });
            }
            return Ok(Target::Model(ResolvedModel { spec, scope: Scope::InRegion, invoke_id: as_given.to_owned() }));
        }
        let (prefix, base) = plain.split_once('.').ok_or_else(|| ResolveError::UnknownModel(as_given.to_owned()))?;
        let (Some(scope), Some(spec)) = (Scope::from_prefix(prefix), self.by_model_id(base)) else {
            return Err(ResolveError::UnknownModel(as_given.to_owned()));
        };
        if !spec.profiles.iter().any(|p| p == prefix) {
            return Err(ResolveError::ProfileNotOffered { id: as_given.to_owned(), prefix: prefix.to_owned() });
        }
        Ok(Target::Model(ResolvedModel { spec, scope, invoke_id: as_given.to_owned() }))
    }

    /// [`Catalog::resolve`] for a call made on `today`: a model past its end of life is
    /// refused with its date and the catalog's model for its tier. Pricing what Bedrock
    /// reports it served ([`Catalog::resolve_served`]) never asks this.
    pub fn resolve_callable(&self, id: &str, today: Date) -> Result<Target<'_>, ResolveError> {
        let target = self.resolve(id)?;
        match &target {
            Target::Model(m) if m.spec.retired_on(today) => Err(ResolveError::Retired {
                id: id.to_owned(),
                name: m.spec.display_name.clone(),
                end_of_life: m.spec.end_of_life.unwrap_or(today),
                tier: m.spec.tier,
                replacement: Some(self.tier_default(m.spec.tier))
                    .filter(|default| {
                        !matches!(self.resolve(default), Ok(Target::Model(d)) if d.spec.model_id == m.spec.model_id)
                    })
                    .map(str::to_owned),
            }),
            _ => Ok(target),
        }
    }

    /// Cost in USD of a call that Bedrock reports was served by `served_id` (a base ID,
    /// profile ID or ARN; for prompt routers, the trace's `invokedModelId`).
    pub fn cost_of(&self, served_id: &str, usage: &Usage, mode: PricingMode) -> Result<f64, ResolveError> {
        let (spec, scope) = self.resolve_served(served_id)?;
        Ok(spec.cost(&scope, usage, mode))
    }

    /// Like [`Catalog::resolve`], but for IDs Bedrock reports back: those may name a base
    /// model that needs a profile to be *called*, which is fine for pricing.
    pub fn resolve_served(&self, served_id: &str) -> Result<(&ModelSpec, Scope), ResolveError> {
        match self.resolve(served_id) {
            Ok(Target::Model(m)) => Ok((m.spec, m.scope)),
            Err(ResolveError::NeedsProfile { .. }) => {
                let plain =
                    arn_resource(served_id).and_then(|r| r.split_once('/').map(|(_, id)| id)).unwrap_or(served_id);
                self.by_model_id(plain)
                    .map(|spec| (spec, Scope::InRegion))
                    .ok_or_else(|| ResolveError::UnknownModel(served_id.to_owned()))
            }
            Ok(Target::PromptRouter { .. }) => Err(ResolveError::UnknownModel(served_id.to_owned())),
            Err(e) => Err(e),
        }
    }
}

/// The resource part of a Bedrock ARN (`foundation-model/...`), if `id` is one.
fn arn_resource(id: &str) -> Option<&str> {
    let mut parts = id.splitn(6, ':');
    let (Some("arn"), Some(_partition), Some("bedrock"), Some(_region), Some(_account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap()
    }

    #[test]
    fn embedded_catalog_is_valid_and_covers_every_tier() {
        let c = catalog();
        for tier in Tier::ALL {
            let Target::Model(m) = c.resolve(c.tier_default(tier)).unwrap() else {
                panic!("tier default is not a model");
            };
            assert_eq!(m.spec.tier, tier);
        }
    }

    #[test]
    fn a_model_is_callable_until_its_end_of_life_and_then_refused_with_the_date_and_its_successor() {
        let c = catalog();
        let day = |text: &str| Date::parse(text).unwrap();
        let id = "us.anthropic.claude-3-5-haiku-20241022-v1:0";
        assert!(matches!(c.resolve_callable(id, day("2026-06-18")), Ok(Target::Model(_))));
        let err = c.resolve_callable(id, day("2026-06-19")).unwrap_err();
        assert_eq!(err.label(), crate::label::ErrorLabel::ModelRetired);
        let text = err.to_string();
        for part in [id, "Claude 3.5 Haiku", "2026-06-19", c.tier_default(Tier::Haiku), "ask for `haiku`"] {
            assert!(text.contains(part), "{part} missing from: {text}");
        }
        // What Bedrock reports it served is still priced and named after the date.
        let usage = Usage { input_tokens: 1_000_000, ..Usage::default() };
        assert!(c.cost_of(id, &usage, PricingMode::OnDemand).unwrap() > 0.0);
        // A tier default with no announced end is callable on any day.
        assert!(c.resolve_callable(c.tier_default(Tier::Haiku), day("2099-12-31")).is_ok());
    }

    #[test]
    fn a_retired_model_that_is_its_tiers_default_names_no_successor() {
        let toml = EMBEDDED_CATALOG.replace(
            "haiku = \"us.anthropic.claude-haiku-4-5-20251001-v1:0\"",
            "haiku = \"us.anthropic.claude-3-5-haiku-20241022-v1:0\"",
        );
        let c = Catalog::from_toml(&toml).unwrap();
        let err = c.resolve_callable(c.tier_default(Tier::Haiku), Date::parse("2026-07-01").unwrap()).unwrap_err();
        assert!(!err.to_string().contains("current haiku model"), "{err}");
    }

    #[test]
    fn an_end_of_life_that_is_not_a_date_fails_the_load() {
        let toml = EMBEDDED_CATALOG.replace("end_of_life = \"2026-06-19\"", "end_of_life = \"2026-06-31\"");
        let err = Catalog::from_toml(&toml).unwrap_err();
        assert!(format!("{err:?}").contains("2026-06-31"), "{err:?}");
    }

    #[test]
    fn resolves_profiles_base_ids_and_arns() {
        let c = catalog();
        let Target::Model(m) = c.resolve("global.anthropic.claude-haiku-4-5-20251001-v1:0").unwrap() else { panic!() };
        assert_eq!((m.spec.key.as_str(), m.scope), ("claude-haiku-4-5", Scope::Global));

        let Target::Model(m) = c.resolve("anthropic.claude-3-haiku-20240307-v1:0").unwrap() else { panic!() };
        assert_eq!(m.scope, Scope::InRegion);

        let arn =
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/eu.anthropic.claude-sonnet-4-5-20250929-v1:0";
        let Target::Model(m) = c.resolve(arn).unwrap() else { panic!() };
        assert_eq!(m.scope, Scope::Geo("eu".into()));
        assert_eq!(m.invoke_id, arn);

        let fm = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0";
        assert!(matches!(c.resolve(fm).unwrap(), Target::Model(_)));

        let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
        assert!(matches!(c.resolve(router).unwrap(), Target::PromptRouter { .. }));
    }

    #[test]
    fn rejects_unknown_ids_and_wrong_profiles_with_a_reason() {
        let c = catalog();
        assert_eq!(c.resolve("gpt-4o"), Err(ResolveError::UnknownModel("gpt-4o".into())));
        assert!(matches!(
            c.resolve("anthropic.claude-haiku-4-5-20251001-v1:0"),
            Err(ResolveError::NeedsProfile { suggestion, .. }) if suggestion == "us.anthropic.claude-haiku-4-5-20251001-v1:0"
        ));
        assert!(matches!(
            c.resolve("apac.anthropic.claude-opus-4-5-20251101-v1:0"),
            Err(ResolveError::ProfileNotOffered { .. })
        ));
        assert!(c.resolve("xx.anthropic.claude-opus-4-5-20251101-v1:0").is_err());
    }

    #[test]
    fn cost_applies_prices_premium_and_batch_discount() {
        let c = catalog();
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            cache_read_input_tokens: 200_000,
            cache_write_input_tokens: 300_000,
            cache_write_1h_input_tokens: 100_000,
        };
        // Haiku 4.5: 1.0 + 0.5 + 0.02 + 0.25 (5m) + 0.2 (1h) = 1.97 at the global rate.
        let global =
            c.cost_of("global.anthropic.claude-haiku-4-5-20251001-v1:0", &usage, PricingMode::OnDemand).unwrap();
        assert!((global - 1.97).abs() < 1e-12, "{global}");
        let us = c.cost_of("us.anthropic.claude-haiku-4-5-20251001-v1:0", &usage, PricingMode::OnDemand).unwrap();
        assert!((us - 1.97 * 1.1).abs() < 1e-12, "{us}");
        let plain = Usage { input_tokens: 1_000_000, output_tokens: 1_000_000, ..Usage::default() };
        let batch = c.cost_of("global.anthropic.claude-haiku-4-5-20251001-v1:0", &plain, PricingMode::Batch).unwrap();
        assert!((batch - 3.0).abs() < 1e-12);
        // A base ID reported back by a prompt router is priced even if it needs a profile.
        assert!(c.cost_of("anthropic.claude-sonnet-4-5-20250929-v1:0", &plain, PricingMode::OnDemand).is_ok());
    }

    #[test]
    fn quota_tokens_use_the_burndown_rate() {
        let c = catalog();
        let spec = c.by_model_id("anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 10,
            cache_read_input_tokens: 1000,
            cache_write_input_tokens: 20,
            cache_write_1h_input_tokens: 0,
        };
        assert_eq!(spec.quota_tokens(&usage), 100 + 20 + 50);
    }

    #[test]
    fn fallback_scopes_go_from_local_to_global() {
        let c = catalog();
        let spec = c.by_model_id("anthropic.claude-haiku-4-5-20251001-v1:0").unwrap();
        assert_eq!(spec.scopes(), vec![Scope::Geo("us".into()), Scope::Geo("eu".into()), Scope::Global]);
    }

    #[test]
    fn sampling_rules_and_a_missing_rpm_quota_read_from_the_catalog() {
        let c = catalog();
        let spec = |id: &str| c.by_model_id(id).unwrap();
        assert_eq!(spec("anthropic.claude-3-7-sonnet-20250219-v1:0").sampling, Sampling::Any);
        assert_eq!(spec("anthropic.claude-haiku-4-5-20251001-v1:0").sampling, Sampling::TemperatureOrTopP);
        let opus = spec("anthropic.claude-opus-4-7");
        assert_eq!(opus.sampling, Sampling::Fixed);
        let quota = opus.quota(&Scope::Global).unwrap();
        assert_eq!((quota.tpm, quota.rpm_limit()), (30_000_000, None));
        assert_eq!(
            spec("anthropic.claude-haiku-4-5-20251001-v1:0").quota(&Scope::Global).unwrap().rpm_limit(),
            Some(1000)
        );
        // A quota without RPM is written back without one, so a dumped catalog reads the same.
        assert_eq!(serde_json::to_value(quota).unwrap(), serde_json::json!({"tpm": 30_000_000}));

        let bad = EMBEDDED_CATALOG.replacen("sampling = \"fixed\"", "sampling = \"greedy\"", 1);
        let err = Catalog::from_toml(&bad).unwrap_err();
        let detail = std::error::Error::source(&err).unwrap().to_string();
        assert!(detail.contains("unknown variant `greedy`"), "{detail}");
    }

    #[test]
    fn thinking_rules_read_from_the_catalog_and_an_entry_without_one_keeps_the_old_reading() {
        let c = catalog();
        let thinking = |id: &str| c.by_model_id(id).unwrap().accepts().thinking;
        assert_eq!(thinking("anthropic.claude-3-5-sonnet-20241022-v2:0"), Thinking::Unsupported);
        assert_eq!(thinking("anthropic.claude-3-7-sonnet-20250219-v1:0"), Thinking::Budgeted);
        assert_eq!(thinking("anthropic.claude-haiku-4-5-20251001-v1:0"), Thinking::Budgeted);
        assert_eq!(thinking("anthropic.claude-sonnet-4-6"), Thinking::Any);
        assert_eq!(thinking("anthropic.claude-opus-4-8"), Thinking::Adaptive);
        assert!(c.models().iter().all(|spec| spec.thinking.is_some()), "every shipped entry says its rule");

        let mut old = c.by_model_id("anthropic.claude-opus-4-7").unwrap().clone();
        old.thinking = None;
        assert_eq!(old.accepts(), Accepts { sampling: Sampling::Fixed, thinking: Thinking::Adaptive });
        old.sampling = Sampling::TemperatureOrTopP;
        assert_eq!(old.accepts().thinking, Thinking::Any);

        let none = EMBEDDED_CATALOG.replacen("thinking = \"none\"", "thinking = \"off\"", 1);
        let detail = std::error::Error::source(&Catalog::from_toml(&none).unwrap_err()).unwrap().to_string();
        assert!(detail.contains("unknown variant `off`"), "{detail}");
    }

    #[test]
    fn a_bad_catalog_is_rejected_with_the_reason() {
        let bad = EMBEDDED_CATALOG.replacen("input = 1.0", "input = -1.0", 1);
        let err = Catalog::from_toml(&bad).unwrap_err();
        assert!(err.to_string().contains("negative"), "{err}");
        let bad = EMBEDDED_CATALOG.replacen("haiku = \"us.", "haiku = \"zz.", 1);
        assert!(Catalog::from_toml(&bad).is_err());
    }
}
