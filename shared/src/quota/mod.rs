//! Bedrock's per-model quotas as the gateway plans against them.
//!
//! Bedrock keeps one requests-per-minute and one tokens-per-minute quota per model and way of
//! calling it: in-Region on-demand, each geographic cross-Region profile, and the global
//! profile. [`QuotaKey`] names one of them; the emulator enforces them by the same key, and
//! the gateway's admission budgets are kept per key.
//!
//! Bedrock's arithmetic lives here once, for both: what a request reserves when it starts
//! ([`reserved_tokens`]), what it settles at when it ends ([`settled_tokens`]), and the
//! sliding window that holds both ([`window::Ledger`]). The limits in force per key come from
//! [`limits::QuotaTable`]; Service Quotas names are read by [`names`].

pub mod limits;
pub mod names;
pub mod window;

use std::fmt;

use crate::catalog::Scope;
use crate::cost::Usage;

pub use limits::{DetectedLimit, LimitOverride, LimitSource, Limits, OverrideError, QuotaOverrides, QuotaTable};
pub use names::{QuotaMetric, QuotaName, QuotaScope};
pub use window::{Ledger, Throttle, WindowUsage};

/// Tokens Bedrock reserves against TPM when a request starts: every prompt token (input,
/// cache read and cache write alike, since it cannot know yet what the cache will serve) plus
/// `maxTokens`, which defaults to the model's whole output limit when the request gives none.
pub fn reserved_tokens(prompt_tokens: u64, max_tokens: Option<u64>, model_max_output: u64) -> u64 {
    prompt_tokens.saturating_add(max_tokens.unwrap_or(model_max_output))
}

/// Tokens a finished request counts against TPM: input plus cache writes plus output times
/// the model's burndown rate. Cache reads are free.
pub fn settled_tokens(usage: &Usage, burndown: u64) -> u64 {
    usage
        .input_tokens
        .saturating_add(usage.cache_write_input_tokens)
        .saturating_add(usage.output_tokens.saturating_mul(burndown))
}

/// One quota: a model reached through one scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QuotaKey {
    /// The base model ID, e.g. `anthropic.claude-haiku-4-5-20251001-v1:0`.
    pub model_id: String,
    pub scope: Scope,
}

impl QuotaKey {
    pub fn new(model_id: &str, scope: Scope) -> QuotaKey {
        QuotaKey { model_id: model_id.to_owned(), scope }
    }
}

impl fmt::Display for QuotaKey {
    /// The key's canonical ID, the one Bedrock is called with: the base model ID in-Region,
    /// else the profile ID.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.scope {
            Scope::InRegion => f.write_str(&self.model_id),
            Scope::Geo(prefix) => write!(f, "{prefix}.{}", self.model_id),
            Scope::Global => write!(f, "global.{}", self.model_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_id_is_the_id_bedrock_is_called_with() {
        let model = "anthropic.claude-sonnet-4-5-20250929-v1:0";
        assert_eq!(QuotaKey::new(model, Scope::InRegion).to_string(), model);
        assert_eq!(QuotaKey::new(model, Scope::Geo("eu".into())).to_string(), format!("eu.{model}"));
        assert_eq!(QuotaKey::new(model, Scope::Global).to_string(), format!("global.{model}"));
    }

    #[test]
    fn a_missing_max_tokens_reserves_the_model_maximum() {
        assert_eq!(reserved_tokens(1_000, Some(200), 64_000), 1_200);
        assert_eq!(reserved_tokens(1_000, None, 64_000), 65_000);
        assert_eq!(reserved_tokens(u64::MAX, None, 64_000), u64::MAX);
    }

    #[test]
    fn settlement_counts_cache_writes_and_burned_down_output_but_not_cache_reads() {
        let usage = Usage {
            input_tokens: 100,
            output_tokens: 10,
            cache_read_input_tokens: 1_000,
            cache_write_input_tokens: 20,
            cache_write_1h_input_tokens: 5,
        };
        assert_eq!(settled_tokens(&usage, 5), 100 + 20 + 10 * 5);
        assert_eq!(settled_tokens(&usage, 1), 100 + 20 + 10);
    }
}
