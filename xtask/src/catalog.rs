//! Independent re-computation of call costs from `shared/catalog.toml`, so that the demo
//! checks the function's pricing instead of trusting it.

use std::path::Path;

use serde::Deserialize;

use crate::Result;

#[derive(Debug, Deserialize)]
pub struct Catalog {
    pub models: Vec<CatalogModel>,
}

#[derive(Debug, Deserialize)]
pub struct CatalogModel {
    pub model_id: String,
    #[serde(default)]
    pub regional_premium: f64,
    pub price: Price,
}

/// USD per million tokens.
#[derive(Debug, Deserialize)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write_5m: f64,
    /// Bedrock batch inference's rates (half the on-demand ones for Claude).
    #[serde(default)]
    pub batch_input: f64,
    #[serde(default)]
    pub batch_output: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default)]
    pub cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_input_tokens: Option<u64>,
}

/// Relative tolerance: both sides do the same handful of float operations, possibly in a
/// different order, so anything beyond rounding noise is a real pricing difference.
pub const RELATIVE_TOLERANCE: f64 = 1e-9;

impl Catalog {
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("could not parse {}: {e}", path.display()).into())
    }

    /// The catalog entry for a served model ID (a base ID or `<geo>.<base id>`) and
    /// whether it was a `global.` profile.
    pub fn resolve(&self, served_model_id: &str) -> Option<(&CatalogModel, bool)> {
        if let Some(model) = self.models.iter().find(|m| m.model_id == served_model_id) {
            return Some((model, false));
        }
        let (geo, base) = served_model_id.split_once('.')?;
        self.models.iter().find(|m| m.model_id == base).map(|model| (model, geo == "global"))
    }

    pub fn cost_usd(&self, served_model_id: &str, usage: &Usage) -> Option<f64> {
        self.priced(served_model_id, usage, false)
    }

    /// The same call at batch rates.
    pub fn batch_cost_usd(&self, served_model_id: &str, usage: &Usage) -> Option<f64> {
        self.priced(served_model_id, usage, true)
    }

    fn priced(&self, served_model_id: &str, usage: &Usage, batch: bool) -> Option<f64> {
        let (model, global) = self.resolve(served_model_id)?;
        let price = &model.price;
        let (input, output) = if batch { (price.batch_input, price.batch_output) } else { (price.input, price.output) };
        let tokens = |n: u64| n as f64;
        let list = (tokens(usage.input_tokens) * input
            + tokens(usage.output_tokens) * output
            + tokens(usage.cache_read_input_tokens.unwrap_or(0)) * price.cache_read
            + tokens(usage.cache_write_input_tokens.unwrap_or(0)) * price.cache_write_5m)
            / 1e6;
        // Geographic and in-region endpoints carry a premium over global profiles.
        let multiplier = if global { 1.0 } else { 1.0 + model.regional_premium };
        Some(list * multiplier)
    }
}

pub fn costs_match(reported: f64, expected: f64) -> bool {
    let scale = reported.abs().max(expected.abs());
    (reported - expected).abs() <= RELATIVE_TOLERANCE * scale
}

#[cfg(test)]
pub mod tests {
    use super::*;

    pub const FIXTURE: &str = r#"
[[models]]
key = "haiku-4.5"
tier = "haiku"
model_id = "anthropic.claude-haiku-4-5-20251001-v1:0"
profiles = ["global", "us", "eu"]
regional_premium = 0.1
[models.price]
input = 1
output = 5
cache_read = 0.1
cache_write_5m = 1.25
cache_write_1h = 2
batch_input = 0.5
batch_output = 2.5

[[models]]
key = "sonnet-4.5"
tier = "sonnet"
model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"
profiles = ["global", "us"]
regional_premium = 0.1
[models.price]
input = 3.0
output = 15.0
cache_read = 0.3
cache_write_5m = 3.75
cache_write_1h = 6.0
batch_input = 1.5
batch_output = 7.5
"#;

    fn usage(input: u64, output: u64) -> Usage {
        Usage { input_tokens: input, output_tokens: output, ..Usage::default() }
    }

    #[test]
    fn regional_profiles_pay_the_premium_and_global_does_not() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        let u = usage(1_000, 200);
        let list = (1_000.0 * 1.0 + 200.0 * 5.0) / 1e6;
        let global = catalog.cost_usd("global.anthropic.claude-haiku-4-5-20251001-v1:0", &u).unwrap();
        let regional = catalog.cost_usd("us.anthropic.claude-haiku-4-5-20251001-v1:0", &u).unwrap();
        let in_region = catalog.cost_usd("anthropic.claude-haiku-4-5-20251001-v1:0", &u).unwrap();
        assert!(costs_match(global, list));
        assert!(costs_match(regional, list * 1.1));
        assert!(costs_match(in_region, list * 1.1));
    }

    #[test]
    fn prompt_cache_tokens_are_priced() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        let u = Usage {
            input_tokens: 10,
            output_tokens: 20,
            cache_read_input_tokens: Some(1_000),
            cache_write_input_tokens: Some(2_000),
        };
        let cost = catalog.cost_usd("global.anthropic.claude-sonnet-4-5-20250929-v1:0", &u).unwrap();
        let expected = (10.0 * 3.0 + 20.0 * 15.0 + 1_000.0 * 0.3 + 2_000.0 * 3.75) / 1e6;
        assert!(costs_match(cost, expected));
    }

    #[test]
    fn batch_rates_are_the_batch_columns_with_the_same_premium() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        let u = usage(1_000, 200);
        let batch = catalog.batch_cost_usd("anthropic.claude-haiku-4-5-20251001-v1:0", &u).unwrap();
        assert!(costs_match(batch, (1_000.0 * 0.5 + 200.0 * 2.5) / 1e6 * 1.1));
        let on_demand = catalog.cost_usd("anthropic.claude-haiku-4-5-20251001-v1:0", &u).unwrap();
        assert!(costs_match(batch * 2.0, on_demand));
    }

    #[test]
    fn unknown_models_are_not_priced() {
        let catalog = Catalog::parse(FIXTURE).unwrap();
        assert!(catalog.cost_usd("us.meta.llama3-70b", &usage(1, 1)).is_none());
        assert!(catalog.cost_usd("gpt-4o", &usage(1, 1)).is_none());
    }

    #[test]
    fn repository_catalog_prices_the_tier_profiles() {
        let path = crate::paths::repo_root().join("shared").join("catalog.toml");
        if !path.is_file() {
            return;
        }
        let catalog = Catalog::load(&path).unwrap();
        for id in [
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "us.anthropic.claude-opus-4-5-20251101-v1:0",
        ] {
            let cost = catalog.cost_usd(id, &usage(1_000, 100));
            assert!(cost.is_some_and(|c| c > 0.0), "{id}: {cost:?}");
        }
    }

    #[test]
    fn tolerance_is_relative() {
        assert!(costs_match(0.0, 0.0));
        assert!(costs_match(1.0, 1.0 + 1e-12));
        assert!(!costs_match(1.0, 1.0 + 1e-6));
        assert!(!costs_match(0.0, 1e-12));
    }
}
