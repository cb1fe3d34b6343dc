//! Service Quotas names of Bedrock's per-model quotas, read and written.
//!
//! Service Quotas identifies the quotas of service `bedrock` by opaque codes and by English
//! names, and the names come in several generations that coexist in one account:
//!
//! * `On-demand InvokeModel tokens per minute for Anthropic Claude 3 Haiku`
//! * `On-demand model inference requests per minute for Anthropic Claude 3.5 Haiku`
//! * `Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4 V1`
//! * `Global cross-Region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1`
//!
//! The model is named family-first from Claude 4 on (`Sonnet 4.5 V1`) and version-first
//! before (`3.5 Sonnet V2`), with the revision suffix sometimes left out when it is `V1`. A
//! name is matched to a catalog model by what it says (family, version, revision), derived
//! from the model ID, so a new catalog model needs no table here. Anything else after the
//! model (`1M Context Length`, `latency-optimized`) names a different quota than the one a
//! standard call draws on, and is not matched; so are per-day and batch quotas.

use crate::catalog::{Catalog, ModelSpec, Scope, Tier};

/// Which of a model's quotas a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaScope {
    /// In-Region on-demand calls of the base model ID.
    OnDemand,
    /// Geographic cross-Region profiles (`us.`, `eu.`, ...): one quota for all of them in a
    /// Region.
    CrossRegion,
    /// The `global.` profile.
    Global,
}

impl QuotaScope {
    pub fn of(scope: &Scope) -> QuotaScope {
        match scope {
            Scope::InRegion => QuotaScope::OnDemand,
            Scope::Geo(_) => QuotaScope::CrossRegion,
            Scope::Global => QuotaScope::Global,
        }
    }

    fn name_prefix(self) -> &'static str {
        match self {
            QuotaScope::OnDemand => "On-demand model inference",
            QuotaScope::CrossRegion => "Cross-region model inference",
            QuotaScope::Global => "Global cross-Region model inference",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QuotaMetric {
    TokensPerMinute,
    RequestsPerMinute,
}

impl QuotaMetric {
    fn phrase(self) -> &'static str {
        match self {
            QuotaMetric::TokensPerMinute => "tokens per minute",
            QuotaMetric::RequestsPerMinute => "requests per minute",
        }
    }
}

/// A Service Quotas name understood as one limit of one catalog model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaName<'c> {
    pub spec: &'c ModelSpec,
    pub scope: QuotaScope,
    pub metric: QuotaMetric,
}

/// What a model ID says about the model: `anthropic.claude-3-5-sonnet-20241022-v2:0` is
/// Sonnet, version 3.5, revision 2.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ModelIdentity {
    tier: Tier,
    version: String,
    revision: u32,
}

fn identity(model_id: &str) -> Option<ModelIdentity> {
    let rest = model_id.strip_prefix("anthropic.claude-")?;
    let mut tier = None;
    let mut version = Vec::new();
    let mut revision = None;
    for part in rest.split('-') {
        if let Some(rev) = part.strip_prefix('v').and_then(|r| r.split(':').next()).and_then(|r| r.parse().ok()) {
            revision = Some(rev);
        } else if part.len() == 8 && part.bytes().all(|b| b.is_ascii_digit()) {
            // The release date: neither version nor revision.
        } else if part.bytes().all(|b| b.is_ascii_digit()) && !part.is_empty() {
            version.push(part);
        } else {
            tier = Some(part.parse::<Tier>().ok()?);
        }
    }
    // IDs from Sonnet 4.6 on may carry no revision (`anthropic.claude-sonnet-4-6`): their
    // first, as AWS numbers every other model's first revision V1.
    let revision = revision.unwrap_or(1);
    Some(ModelIdentity { tier: tier?, version: (!version.is_empty()).then(|| version.join("."))?, revision })
}

/// Reads a Service Quotas name as a per-minute limit of a catalog model, or `None` when it
/// names anything else (another model, a per-day or batch quota, a long-context variant).
pub fn parse_quota_name<'c>(catalog: &'c Catalog, name: &str) -> Option<QuotaName<'c>> {
    let normal = name.to_ascii_lowercase().replace('-', " ");
    let words: Vec<&str> = normal.split_whitespace().collect();
    let (scope, rest) = match words.as_slice() {
        ["global", "cross", "region", "model", "inference", rest @ ..]
        | ["global", "cross", "region", "invokemodel", rest @ ..] => (QuotaScope::Global, rest),
        ["cross", "region", "model", "inference", rest @ ..] | ["cross", "region", "invokemodel", rest @ ..] => {
            (QuotaScope::CrossRegion, rest)
        }
        ["on", "demand", "model", "inference", rest @ ..] | ["on", "demand", "invokemodel", rest @ ..] => {
            (QuotaScope::OnDemand, rest)
        }
        _ => return None,
    };
    let (metric, model_words) = match rest {
        ["tokens", "per", "minute", "for", "anthropic", "claude", model @ ..] => (QuotaMetric::TokensPerMinute, model),
        ["requests", "per", "minute", "for", "anthropic", "claude", model @ ..] => {
            (QuotaMetric::RequestsPerMinute, model)
        }
        _ => return None,
    };
    let wanted = named_identity(model_words)?;
    let spec = catalog.models().iter().find(|spec| identity(&spec.model_id).as_ref() == Some(&wanted))?;
    Some(QuotaName { spec, scope, metric })
}

/// `["sonnet", "4.5", "v1"]` or `["3.5", "sonnet", "v2"]` or `["3", "haiku"]`; any other word
/// makes it a different quota.
fn named_identity(words: &[&str]) -> Option<ModelIdentity> {
    let mut tier = None;
    let mut version = None;
    let mut revision = None;
    for word in words {
        let is_version =
            !word.is_empty() && word.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if is_version && version.is_none() {
            version = Some((*word).to_owned());
        } else if let Some(rev) = word.strip_prefix('v').and_then(|r| r.parse::<u32>().ok()) {
            if revision.replace(rev).is_some() {
                return None;
            }
        } else if let (Ok(t), None) = (word.parse::<Tier>(), tier) {
            tier = Some(t);
        } else {
            return None;
        }
    }
    Some(ModelIdentity { tier: tier?, version: version?, revision: revision.unwrap_or(1) })
}

/// The name Service Quotas gives this limit, in the current generation's pattern; `None`
/// for a model ID that does not follow Anthropic's pattern.
pub fn quota_name(spec: &ModelSpec, scope: QuotaScope, metric: QuotaMetric) -> Option<String> {
    let id = identity(&spec.model_id)?;
    let family = match id.tier {
        Tier::Haiku => "Haiku",
        Tier::Sonnet => "Sonnet",
        Tier::Opus => "Opus",
    };
    let major: u32 = id.version.split('.').next().and_then(|m| m.parse().ok())?;
    let model = if major >= 4 {
        format!("{family} {} V{}", id.version, id.revision)
    } else if id.revision > 1 {
        format!("{} {family} V{}", id.version, id.revision)
    } else {
        format!("{} {family}", id.version)
    };
    Some(format!("{} {} for Anthropic Claude {model}", scope.name_prefix(), metric.phrase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(catalog: &Catalog, name: &str) -> Option<(String, QuotaScope, QuotaMetric)> {
        parse_quota_name(catalog, name).map(|q| (q.spec.model_id.clone(), q.scope, q.metric))
    }

    #[test]
    fn model_ids_say_family_version_and_revision() {
        let id = |s: &str| identity(s).map(|i| (i.tier, i.version, i.revision));
        assert_eq!(id("anthropic.claude-3-5-sonnet-20241022-v2:0"), Some((Tier::Sonnet, "3.5".into(), 2)));
        assert_eq!(id("anthropic.claude-sonnet-4-5-20250929-v1:0"), Some((Tier::Sonnet, "4.5".into(), 1)));
        assert_eq!(id("anthropic.claude-opus-4-20250514-v1:0"), Some((Tier::Opus, "4".into(), 1)));
        assert_eq!(id("anthropic.claude-3-haiku-20240307-v1:0"), Some((Tier::Haiku, "3".into(), 1)));
        assert_eq!(id("anthropic.claude-sonnet-4-6"), Some((Tier::Sonnet, "4.6".into(), 1)));
        assert_eq!(id("anthropic.claude-opus-4-6-v1"), Some((Tier::Opus, "4.6".into(), 1)));
        assert_eq!(id("amazon.nova-pro-v1:0"), None);
        assert_eq!(id("anthropic.claude-instant-v1"), None);
    }

    #[test]
    fn every_generation_of_names_is_matched() {
        let c = Catalog::embedded().unwrap();
        let tpm = QuotaMetric::TokensPerMinute;
        let rpm = QuotaMetric::RequestsPerMinute;
        let cases = [
            (
                "On-demand InvokeModel tokens per minute for Anthropic Claude 3 Haiku",
                "anthropic.claude-3-haiku-20240307-v1:0",
                QuotaScope::OnDemand,
                tpm,
            ),
            (
                "On-demand InvokeModel requests per minute for Anthropic Claude 3.5 Sonnet V2",
                "anthropic.claude-3-5-sonnet-20241022-v2:0",
                QuotaScope::OnDemand,
                rpm,
            ),
            (
                "On-demand model inference tokens per minute for Anthropic Claude 3.5 Haiku",
                "anthropic.claude-3-5-haiku-20241022-v1:0",
                QuotaScope::OnDemand,
                tpm,
            ),
            (
                "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4 V1",
                "anthropic.claude-sonnet-4-20250514-v1:0",
                QuotaScope::CrossRegion,
                tpm,
            ),
            (
                "Cross-region model inference tokens per minute for Anthropic Claude 3.7 Sonnet V1",
                "anthropic.claude-3-7-sonnet-20250219-v1:0",
                QuotaScope::CrossRegion,
                tpm,
            ),
            (
                "Cross-region model inference requests per minute for Anthropic Claude Opus 4 V1",
                "anthropic.claude-opus-4-20250514-v1:0",
                QuotaScope::CrossRegion,
                rpm,
            ),
            (
                "Cross-region model inference tokens per minute for Anthropic Claude Haiku 4.5",
                "anthropic.claude-haiku-4-5-20251001-v1:0",
                QuotaScope::CrossRegion,
                tpm,
            ),
            (
                "Cross-Region InvokeModel tokens per minute for Anthropic Claude Sonnet 4.5 V1",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                QuotaScope::CrossRegion,
                tpm,
            ),
            (
                "Global cross-Region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1",
                "anthropic.claude-sonnet-4-5-20250929-v1:0",
                QuotaScope::Global,
                tpm,
            ),
            (
                "Global cross-region model inference requests per minute for Anthropic Claude Opus 4.5",
                "anthropic.claude-opus-4-5-20251101-v1:0",
                QuotaScope::Global,
                rpm,
            ),
            // Case and spacing vary between snapshots of the same quota.
            (
                "cross-region   model inference TOKENS per minute for anthropic claude opus 4.1 v1",
                "anthropic.claude-opus-4-1-20250805-v1:0",
                QuotaScope::CrossRegion,
                tpm,
            ),
        ];
        for (name, model, scope, metric) in cases {
            assert_eq!(parsed(&c, name), Some((model.to_owned(), scope, metric)), "{name}");
        }
    }

    #[test]
    fn other_quotas_and_variants_are_not_matched() {
        let c = Catalog::embedded().unwrap();
        for name in [
            // Not the standard quota of the model.
            "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4 V1 1M Context Length",
            "On-demand latency-optimized model inference tokens per minute for Anthropic Claude 3.5 Haiku",
            "On-demand model inference tokens per minute for Anthropic Claude 3.5 Haiku latency-optimized",
            // Per day, not per minute.
            "Model invocation max tokens per day for Anthropic Claude Sonnet 4 V1",
            "Cross-region model inference tokens per day for Anthropic Claude Sonnet 4 V1",
            // 3.5 Sonnet (V1) is another model than 3.5 Sonnet V2.
            "On-demand InvokeModel tokens per minute for Anthropic Claude 3.5 Sonnet",
            // Models the catalog does not have, or not Anthropic's.
            "On-demand InvokeModel tokens per minute for Anthropic Claude 3 Opus",
            "On-demand model inference tokens per minute for Amazon Nova Pro",
            "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 9 V1",
            // Batch and other operations.
            "Batch inference input file size (in GB) for Anthropic Claude 3 Haiku",
            "Records per batch inference job for Anthropic Claude 3.5 Sonnet V2",
            "Model units no-commitment Provisioned Throughputs across base models",
            // Ambiguous: two versions or two revisions.
            "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4 4.5 V1",
            "Cross-region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1 V2",
            "",
        ] {
            assert_eq!(parsed(&c, name), None, "{name}");
        }
    }

    #[test]
    fn every_catalog_quota_has_a_name_that_reads_back_to_it() {
        let c = Catalog::embedded().unwrap();
        for spec in c.models() {
            for scope in spec.scopes() {
                for metric in [QuotaMetric::TokensPerMinute, QuotaMetric::RequestsPerMinute] {
                    let quota_scope = QuotaScope::of(&scope);
                    let name = quota_name(spec, quota_scope, metric).unwrap();
                    assert_eq!(parsed(&c, &name), Some((spec.model_id.clone(), quota_scope, metric)), "{name}");
                }
            }
        }
        let sonnet = c.by_model_id("anthropic.claude-sonnet-4-5-20250929-v1:0").unwrap();
        assert_eq!(
            quota_name(sonnet, QuotaScope::Global, QuotaMetric::TokensPerMinute).unwrap(),
            "Global cross-Region model inference tokens per minute for Anthropic Claude Sonnet 4.5 V1"
        );
        let v2 = c.by_model_id("anthropic.claude-3-5-sonnet-20241022-v2:0").unwrap();
        assert_eq!(
            quota_name(v2, QuotaScope::OnDemand, QuotaMetric::RequestsPerMinute).unwrap(),
            "On-demand model inference requests per minute for Anthropic Claude 3.5 Sonnet V2"
        );
    }
}
