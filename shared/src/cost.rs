//! Token usage and how it is priced. Prices themselves live in the catalog.

use serde::{Deserialize, Serialize};

use crate::request::TokenUsage;

/// Billable token counts of one call, normalised from Bedrock's `usage` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens that were neither read from nor written to the prompt cache.
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    /// All cache writes, whatever their TTL.
    pub cache_write_input_tokens: u64,
    /// The part of `cache_write_input_tokens` written with the one-hour TTL (priced higher).
    pub cache_write_1h_input_tokens: u64,
}

impl From<&TokenUsage> for Usage {
    fn from(u: &TokenUsage) -> Self {
        let non_negative = |v: i64| u64::try_from(v).unwrap_or(0);
        let write_1h = u.cache_details.iter().filter(|d| d.ttl == "1h").map(|d| non_negative(d.input_tokens)).sum();
        Usage {
            input_tokens: non_negative(u.input_tokens),
            output_tokens: non_negative(u.output_tokens),
            cache_read_input_tokens: u.cache_read_input_tokens.map_or(0, non_negative),
            cache_write_input_tokens: u.cache_write_input_tokens.map_or(0, non_negative),
            cache_write_1h_input_tokens: write_1h,
        }
    }
}

/// On-demand calls pay list price; batch inference pays the (half) batch price.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PricingMode {
    OnDemand,
    Batch,
}
