//! Bedrock's per-model quotas as the gateway plans against them.
//!
//! Bedrock keeps one requests-per-minute and one tokens-per-minute quota per model and way of
//! calling it: in-Region on-demand, each geographic cross-Region profile, and the global
//! profile. [`QuotaKey`] names one of them; the emulator enforces them by the same key, and
//! the gateway's admission budgets are kept per key.

use std::fmt;

use crate::catalog::Scope;

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
}
