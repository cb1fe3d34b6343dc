//! How long a model takes: a time to first token plus a time per output token, by tier.
//!
//! The modeled time is what a real call would take and is what the responses report
//! (`metrics.latencyMs`, `x-amzn-bedrock-invocation-latency`), so that latency-based logic
//! under test sees realistic numbers even when `latency_scale` makes the emulator answer at
//! once. Only the actual waiting is scaled.

use std::time::Duration;

use gateway_core::catalog::Tier;

use crate::config::LatencyConfig;

/// Defaults per tier: (time to first token in ms, ms per output token).
const DEFAULTS: [(Tier, u64, f64); 3] = [(Tier::Haiku, 300, 4.0), (Tier::Sonnet, 600, 12.0), (Tier::Opus, 1_000, 20.0)];

#[derive(Debug, Clone)]
pub struct LatencyModel {
    scale: f64,
    tiers: [(u64, f64); 3],
}

impl LatencyModel {
    pub fn new(config: &LatencyConfig, scale: f64) -> LatencyModel {
        let tiers = DEFAULTS.map(|(tier, ttft, per_token)| {
            let c = config.for_tier(tier);
            (c.ttft_ms.unwrap_or(ttft), c.per_token_ms.unwrap_or(per_token))
        });
        LatencyModel { scale, tiers }
    }

    fn tier(&self, tier: Tier) -> (u64, f64) {
        match tier {
            Tier::Haiku => self.tiers[0],
            Tier::Sonnet => self.tiers[1],
            Tier::Opus => self.tiers[2],
        }
    }

    pub fn time_to_first_token(&self, tier: Tier) -> Duration {
        Duration::from_millis(self.tier(tier).0)
    }

    /// Time to generate `tokens` output tokens once the first one is out.
    pub fn generation(&self, tier: Tier, tokens: u64) -> Duration {
        Duration::from_secs_f64(self.tier(tier).1 * tokens as f64 / 1_000.0)
    }

    /// The whole modeled call: first token, then the rest.
    pub fn total(&self, tier: Tier, output_tokens: u64) -> Duration {
        self.time_to_first_token(tier) + self.generation(tier, output_tokens)
    }

    /// How long to actually wait for a modeled `duration`.
    pub fn scaled(&self, duration: Duration) -> Duration {
        if self.scale == 0.0 { Duration::ZERO } else { duration.mul_f64(self.scale) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TierLatency;

    #[test]
    fn defaults_and_overrides_per_tier() {
        let config = LatencyConfig {
            sonnet: TierLatency { ttft_ms: Some(100), per_token_ms: None },
            ..LatencyConfig::default()
        };
        let m = LatencyModel::new(&config, 1.0);
        assert_eq!(m.total(Tier::Haiku, 100), Duration::from_millis(300 + 400));
        assert_eq!(m.total(Tier::Sonnet, 10), Duration::from_millis(100 + 120));
        assert_eq!(m.total(Tier::Opus, 0), Duration::from_millis(1_000));
    }

    #[test]
    fn scaling_affects_the_wait_only() {
        let m = LatencyModel::new(&LatencyConfig::default(), 0.0);
        assert_eq!(m.scaled(m.total(Tier::Opus, 1_000)), Duration::ZERO);
        assert_eq!(m.total(Tier::Opus, 1_000), Duration::from_secs(21));
        let half = LatencyModel::new(&LatencyConfig::default(), 0.5);
        assert_eq!(half.scaled(Duration::from_millis(800)), Duration::from_millis(400));
    }
}
