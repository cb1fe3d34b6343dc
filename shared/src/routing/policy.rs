//! The routing policy: which tiers a request may use, how much quality the deployer trades
//! for cost, and the decision that follows from the model's predictions.
//!
//! `quality_tolerance` (0–100 %) is the largest drop in average answer quality, relative to
//! always using the strongest allowed tier, that the deployer accepts, like Bedrock's
//! `responseQualityDifference`. The model's calibration tables turn it into thresholds on
//! predicted adequacy; they were fitted on validation data so that the promise holds on
//! unseen prompts (the training report gives promised against observed on the test split).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use super::features::{Conversation, SCAN_BYTES};
use super::model::{Head, Prediction, RouterModel};
use crate::catalog::{Catalog, ModelSpec, Scope, Target, Tier};
use crate::cost::{PricingMode, Usage};
use crate::request::ConverseRequest;
use crate::tokens;

/// Bounds on the predicted answer length used for the expected cost: the model was fitted
/// on answers of a few to a few thousand tokens, and says nothing outside them.
pub const MIN_EXPECTED_OUTPUT_TOKENS: u64 = 16;
pub const MAX_EXPECTED_OUTPUT_TOKENS: u64 = 4_096;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingPolicy {
    /// Percent, 0–100.
    pub quality_tolerance: f64,
    pub min_tier: Tier,
    pub max_tier: Tier,
    /// Whether a throttled or failing model hands over to the next profile and tier.
    pub fallback: bool,
}

impl Default for RoutingPolicy {
    fn default() -> Self {
        RoutingPolicy { quality_tolerance: 10.0, min_tier: Tier::Haiku, max_tier: Tier::Opus, fallback: true }
    }
}

/// Per-request changes to the deployer's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RouteOverrides {
    pub min_tier: Option<Tier>,
    pub max_tier: Option<Tier>,
    pub quality_tolerance: Option<f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteError {
    #[error("{field}: {reason}")]
    InvalidOverride { field: &'static str, reason: String },
}

impl RouteError {
    pub fn label(&self) -> crate::label::ErrorLabel {
        match self {
            RouteError::InvalidOverride { .. } => crate::label::ErrorLabel::InvalidRouting,
        }
    }

    pub fn field(&self) -> &'static str {
        match self {
            RouteError::InvalidOverride { field, .. } => field,
        }
    }
}

/// Parses a tier name for the field `field`.
pub fn parse_tier(field: &'static str, value: &str) -> Result<Tier, RouteError> {
    Tier::from_str(value.trim()).map_err(|()| RouteError::InvalidOverride {
        field,
        reason: format!("`{value}` is not a tier (haiku, sonnet, opus)"),
    })
}

/// Parses a tolerance in percent (0–100), with or without a `%` sign.
pub fn parse_tolerance(field: &'static str, value: &str) -> Result<f64, RouteError> {
    let number = value.trim().trim_end_matches('%').trim();
    match number.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(RouteError::InvalidOverride {
            field,
            reason: format!("`{value}` is not a percentage between 0 and 100"),
        }),
    }
}

/// The request headers that override the routing policy for one request.
pub const MIN_TIER_HEADER: &str = "x-route-min-tier";
pub const MAX_TIER_HEADER: &str = "x-route-max-tier";
pub const QUALITY_TOLERANCE_HEADER: &str = "x-route-quality-tolerance";

impl RouteOverrides {
    /// Reads the override headers through `header` (a lookup by lower-case name), so every
    /// endpoint reads the same names and reports the same errors.
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Result<Self, RouteError> {
        Self::parse(header(MIN_TIER_HEADER), header(MAX_TIER_HEADER), header(QUALITY_TOLERANCE_HEADER))
    }

    /// The override headers' values as given, `None` when absent.
    pub fn parse(min_tier: Option<&str>, max_tier: Option<&str>, tolerance: Option<&str>) -> Result<Self, RouteError> {
        let overrides = RouteOverrides {
            min_tier: min_tier.map(|v| parse_tier(MIN_TIER_HEADER, v)).transpose()?,
            max_tier: max_tier.map(|v| parse_tier(MAX_TIER_HEADER, v)).transpose()?,
            quality_tolerance: tolerance.map(|v| parse_tolerance(QUALITY_TOLERANCE_HEADER, v)).transpose()?,
        };
        if let (Some(min), Some(max)) = (overrides.min_tier, overrides.max_tier)
            && min > max
        {
            return Err(RouteError::InvalidOverride {
                field: MIN_TIER_HEADER,
                reason: format!("{min} is above the maximum tier {max}"),
            });
        }
        Ok(overrides)
    }
}

/// Why the decision chose its tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteReason {
    /// A cheaper tier's predicted adequacy cleared its threshold.
    PredictedAdequate,
    /// No cheaper tier was predicted adequate: the strongest allowed tier.
    StrongestAllowed,
    /// The policy allows one tier only.
    SingleTier,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierEstimate {
    pub tier: Tier,
    pub model_id: String,
    /// Predicted probability that this tier's answer is as good as the strongest tier's.
    pub adequacy: f64,
    /// The adequacy this tier needed at the current tolerance (none for the strongest allowed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Estimated input tokens at list price plus the expected output; `None` for a prompt router.
    pub expected_cost_usd: Option<f64>,
    pub allowed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteDecision {
    pub tier: Tier,
    pub model_id: String,
    pub reason: RouteReason,
    pub quality_tolerance: f64,
    pub min_tier: Tier,
    pub max_tier: Tier,
    pub model_version: String,
    pub estimated_input_tokens: u64,
    pub expected_output_tokens: u64,
    /// Expected cost of the chosen tier and of the strongest allowed one, for dashboards.
    pub expected_cost_usd: Option<f64>,
    pub strongest_expected_cost_usd: Option<f64>,
    pub tiers: Vec<TierEstimate>,
}

/// The policy with its model and tier mapping: cheap to share, no I/O.
#[derive(Debug, Clone)]
pub struct Router {
    model: &'static RouterModel,
    catalog: Arc<Catalog>,
    tier_models: BTreeMap<Tier, String>,
    /// Each tier's model and scope, resolved once: `None` for a prompt router or an ID the
    /// catalog does not know (no list price).
    priced: [Option<(ModelSpec, Scope)>; 3],
    policy: RoutingPolicy,
}

impl Router {
    pub fn new(
        model: &'static RouterModel,
        catalog: Arc<Catalog>,
        tier_models: BTreeMap<Tier, String>,
        policy: RoutingPolicy,
    ) -> Self {
        let priced = Tier::ALL.map(|tier| {
            let id = tier_models.get(&tier).map_or_else(|| catalog.tier_default(tier), String::as_str);
            match catalog.resolve(id) {
                Ok(Target::Model(m)) => Some((m.spec.clone(), m.scope)),
                _ => None,
            }
        });
        Router { model, catalog, tier_models, priced, policy }
    }

    pub fn policy(&self) -> &RoutingPolicy {
        &self.policy
    }

    pub fn model(&self) -> &RouterModel {
        self.model
    }

    pub fn tier_model(&self, tier: Tier) -> &str {
        self.tier_models.get(&tier).map_or_else(|| self.catalog.tier_default(tier), String::as_str)
    }

    /// The tiers a request may use once its overrides apply: overrides narrow or move the
    /// deployer's bounds, a lone `max` below the deployer's `min` wins.
    pub fn bounds(&self, overrides: &RouteOverrides) -> (Tier, Tier) {
        let max = overrides.max_tier.unwrap_or(self.policy.max_tier);
        let min = overrides.min_tier.unwrap_or(self.policy.min_tier);
        match (overrides.min_tier, overrides.max_tier) {
            _ if min <= max => (min, max),
            (Some(_), None) => (min, min),
            _ => (max, max),
        }
    }

    pub fn decide(&self, request: &ConverseRequest, overrides: &RouteOverrides) -> RouteDecision {
        let prediction = self.model.predict(&Conversation::from_request(request));
        self.decide_with(prediction, request, overrides)
    }

    /// The decision for an already-computed prediction (shared by `decide` and evaluations).
    pub fn decide_with(
        &self,
        prediction: Prediction,
        request: &ConverseRequest,
        overrides: &RouteOverrides,
    ) -> RouteDecision {
        let adequacy = prediction.adequacy;
        let tolerance = overrides.quality_tolerance.unwrap_or(self.policy.quality_tolerance);
        let (min, max) = self.bounds(overrides);
        let allowed: Vec<Tier> = Tier::ALL.into_iter().filter(|t| (min..=max).contains(t)).collect();
        let thresholds = self.thresholds(&allowed, tolerance);
        let tier_adequacy = |tier: Tier| match tier {
            Tier::Haiku => adequacy.weak,
            Tier::Sonnet => adequacy.mid.max(adequacy.weak),
            Tier::Opus => 1.0,
        };
        let (tier, reason) = if allowed.len() == 1 {
            (max, RouteReason::SingleTier)
        } else {
            allowed
                .iter()
                .zip(thresholds.iter())
                .find(|(t, threshold)| threshold.is_some_and(|th| tier_adequacy(**t) >= th))
                .map_or((max, RouteReason::StrongestAllowed), |(t, _)| (*t, RouteReason::PredictedAdequate))
        };

        // Sampled, like the features: an expected cost needs no exact count, and the decision
        // keeps its bounded cost on long prompts.
        let input_tokens = tokens::estimate_request_sampled(request, SCAN_BYTES);
        let predicted =
            (prediction.output_tokens.round() as u64).clamp(MIN_EXPECTED_OUTPUT_TOKENS, MAX_EXPECTED_OUTPUT_TOKENS);
        let output_tokens = request.max_tokens().map_or(predicted, |m| u64::from(m).min(predicted));
        let usage = Usage { input_tokens, output_tokens, ..Usage::default() };
        let tiers: Vec<TierEstimate> = Tier::ALL
            .into_iter()
            .map(|t| {
                let model_id = self.tier_model(t).to_owned();
                let expected_cost_usd = self.priced[t as usize]
                    .as_ref()
                    .map(|(spec, scope)| spec.cost(scope, &usage, PricingMode::OnDemand));
                let threshold = allowed.iter().position(|a| *a == t).and_then(|i| thresholds[i]);
                TierEstimate {
                    tier: t,
                    model_id,
                    adequacy: tier_adequacy(t),
                    threshold,
                    expected_cost_usd,
                    allowed: allowed.contains(&t),
                }
            })
            .collect();
        let cost_of = |t: Tier| tiers.iter().find(|e| e.tier == t).and_then(|e| e.expected_cost_usd);
        RouteDecision {
            tier,
            model_id: self.tier_model(tier).to_owned(),
            reason,
            quality_tolerance: tolerance,
            min_tier: min,
            max_tier: max,
            model_version: self.model.version().to_owned(),
            estimated_input_tokens: input_tokens,
            expected_output_tokens: output_tokens,
            expected_cost_usd: cost_of(tier),
            strongest_expected_cost_usd: cost_of(max),
            tiers,
        }
    }

    /// Thresholds for each allowed tier, cheapest first; the strongest allowed has none.
    /// Between two tiers the head of the cheaper one is used: against a Sonnet ceiling,
    /// Haiku is held to its bar against Opus, which errs toward quality.
    fn thresholds(&self, allowed: &[Tier], tolerance: f64) -> Vec<Option<f64>> {
        let calibration = self.model.calibration();
        match allowed {
            [_, _, _] => {
                let (weak, mid) = calibration.three_tier_thresholds(tolerance);
                vec![Some(weak), Some(mid), None]
            }
            [cheaper, _] => {
                let head = if *cheaper == Tier::Haiku { Head::Weak } else { Head::Mid };
                vec![Some(calibration.two_tier_threshold(head, tolerance)), None]
            }
            _ => vec![None; allowed.len()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::model::{Adequacy, TOLERANCE_STEPS};

    fn router(policy: RoutingPolicy) -> Router {
        let mut model = RouterModel::zeroed("test".into());
        // At tolerance t %, Haiku needs adequacy 0.9 - t/100 and Sonnet 0.8 - t/100.
        model.calibration.three_tier =
            (0..TOLERANCE_STEPS).map(|i| [0.9 - i as f32 / 100.0, 0.8 - i as f32 / 100.0]).collect();
        model.calibration.two_tier = [
            (0..TOLERANCE_STEPS).map(|i| 0.7 - i as f32 / 100.0).collect(),
            (0..TOLERANCE_STEPS).map(|i| 0.6 - i as f32 / 100.0).collect(),
        ];
        let model: &'static RouterModel = Box::leak(Box::new(model.with_computed_version()));
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let tiers = Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
        Router::new(model, catalog, tiers, policy)
    }

    fn request() -> ConverseRequest {
        ConverseRequest::from_json(br#"{"messages":[{"role":"user","content":[{"text":"hello there"}]}]}"#).unwrap()
    }

    fn decide(r: &Router, weak: f64, mid: f64, overrides: RouteOverrides) -> RouteDecision {
        r.decide_with(Prediction { adequacy: Adequacy { weak, mid }, output_tokens: 300.0 }, &request(), &overrides)
    }

    #[test]
    fn the_cheapest_adequate_tier_wins() {
        let r = router(RoutingPolicy::default());
        assert_eq!(decide(&r, 0.85, 0.9, RouteOverrides::default()).tier, Tier::Haiku);
        assert_eq!(decide(&r, 0.5, 0.75, RouteOverrides::default()).tier, Tier::Sonnet);
        let hard = decide(&r, 0.1, 0.2, RouteOverrides::default());
        assert_eq!((hard.tier, hard.reason), (Tier::Opus, RouteReason::StrongestAllowed));
        // Sonnet is never predicted worse than Haiku.
        assert_eq!(decide(&r, 0.75, 0.1, RouteOverrides::default()).tiers[1].adequacy, 0.75);
    }

    #[test]
    fn tolerance_trades_quality_for_cost() {
        let r = router(RoutingPolicy::default());
        let strict = RouteOverrides { quality_tolerance: Some(0.0), ..Default::default() };
        let loose = RouteOverrides { quality_tolerance: Some(30.0), ..Default::default() };
        assert_eq!(decide(&r, 0.65, 0.1, strict).tier, Tier::Opus);
        assert_eq!(decide(&r, 0.65, 0.1, loose).tier, Tier::Haiku);
    }

    #[test]
    fn bounds_narrow_the_choice_and_pick_the_right_table() {
        let r = router(RoutingPolicy::default());
        let sonnet_up = RouteOverrides { min_tier: Some(Tier::Sonnet), ..Default::default() };
        let d = decide(&r, 0.99, 0.55, sonnet_up);
        assert_eq!(d.tier, Tier::Sonnet, "mid head two-tier threshold 0.5 at 10 %");
        assert!(!d.tiers[0].allowed);
        let haiku_only = RouteOverrides { max_tier: Some(Tier::Haiku), ..Default::default() };
        let d = decide(&r, 0.0, 0.0, haiku_only);
        assert_eq!((d.tier, d.reason), (Tier::Haiku, RouteReason::SingleTier));
        let capped = RouteOverrides { max_tier: Some(Tier::Sonnet), ..Default::default() };
        assert_eq!(decide(&r, 0.61, 0.0, capped).tier, Tier::Haiku);
        assert_eq!(decide(&r, 0.59, 0.0, capped).tier, Tier::Sonnet);
    }

    #[test]
    fn decisions_carry_costs_and_the_model_version() {
        let r = router(RoutingPolicy::default());
        let d = decide(&r, 0.99, 0.99, RouteOverrides::default());
        assert_eq!(d.model_version, r.model().version());
        let haiku = d.expected_cost_usd.unwrap();
        let opus = d.strongest_expected_cost_usd.unwrap();
        assert!(haiku > 0.0 && opus > haiku * 3.0, "{haiku} {opus}");
        assert_eq!(d.expected_output_tokens, 300, "the predicted answer length");
        let capped = ConverseRequest::from_json(
            br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":40}}"#,
        )
        .unwrap();
        let prediction = Prediction { adequacy: Adequacy { weak: 0.99, mid: 0.99 }, output_tokens: 300.0 };
        assert_eq!(r.decide_with(prediction, &capped, &RouteOverrides::default()).expected_output_tokens, 40);
        let tiny = Prediction { output_tokens: 0.2, ..prediction };
        assert_eq!(
            r.decide_with(tiny, &request(), &RouteOverrides::default()).expected_output_tokens,
            MIN_EXPECTED_OUTPUT_TOKENS
        );
    }

    #[test]
    fn overrides_are_validated_with_their_header_name() {
        assert_eq!(
            RouteOverrides::parse(Some("Sonnet"), None, Some("12.5%")).unwrap(),
            RouteOverrides { min_tier: Some(Tier::Sonnet), max_tier: None, quality_tolerance: Some(12.5) }
        );
        assert_eq!(RouteOverrides::parse(Some("gpt"), None, None).unwrap_err().field(), "x-route-min-tier");
        assert_eq!(RouteOverrides::parse(None, None, Some("150")).unwrap_err().field(), "x-route-quality-tolerance");
        assert!(RouteOverrides::parse(Some("opus"), Some("haiku"), None).is_err());
    }

    #[test]
    fn a_request_bound_outside_the_deployers_range_wins() {
        let r = router(RoutingPolicy { min_tier: Tier::Sonnet, ..RoutingPolicy::default() });
        let haiku_max = RouteOverrides { max_tier: Some(Tier::Haiku), ..Default::default() };
        assert_eq!(r.bounds(&haiku_max), (Tier::Haiku, Tier::Haiku));
        assert_eq!(r.bounds(&RouteOverrides::default()), (Tier::Sonnet, Tier::Opus));
    }
}
