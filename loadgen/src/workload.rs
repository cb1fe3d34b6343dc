//! What one process sends and when: the prompts and output lengths (a file the caller prepares,
//! `cargo xtask bench-quota` from the shipped routing data) and open-loop arrival times.

use std::path::Path;
use std::time::Duration;

use gateway_core::splitmix::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::LoadError;

/// One request of the workload: the user text and the `maxTokens` it is sent with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prompt {
    pub prompt: String,
    pub max_tokens: u64,
}

/// Reads a JSON array of [`Prompt`]s. An empty list, an empty prompt or a `max_tokens` of 0 are
/// errors: Bedrock would refuse them, and the load would measure validation instead of quotas.
pub fn read(path: &Path) -> Result<Vec<Prompt>, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| LoadError::Workload { path: path.display().to_string(), reason: source.to_string() })?;
    parse(&text).map_err(|reason| LoadError::Workload { path: path.display().to_string(), reason })
}

fn parse(text: &str) -> Result<Vec<Prompt>, String> {
    let prompts: Vec<Prompt> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if prompts.is_empty() {
        return Err("the workload holds no prompt".to_owned());
    }
    if let Some(i) = prompts.iter().position(|p| p.prompt.trim().is_empty() || p.max_tokens == 0) {
        return Err(format!("prompt {i} is empty or has max_tokens 0"));
    }
    Ok(prompts)
}

/// How arrivals are spaced. Both are open-loop: a request is sent at its time whether or not
/// the earlier ones have been answered, as independent callers do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arrivals {
    /// Exponential gaps (a Poisson process) of mean `1 / rate`.
    Poisson,
    /// Exactly `1 / rate` apart.
    Fixed,
}

/// Arrival offsets from the start, for `rate` requests per second during `duration`.
pub fn schedule(arrivals: Arrivals, rate: f64, duration: Duration, rng: &mut SplitMix64) -> Vec<Duration> {
    let mut times = Vec::new();
    if !(rate.is_finite() && rate > 0.0) {
        return times;
    }
    let mean_gap = 1.0 / rate;
    let end = duration.as_secs_f64();
    let mut t = match arrivals {
        // A process started with others must not fire at the same instant as all of them.
        Arrivals::Poisson => exponential(rng, mean_gap),
        Arrivals::Fixed => uniform(rng) * mean_gap,
    };
    while t < end {
        times.push(Duration::from_secs_f64(t));
        t += match arrivals {
            Arrivals::Poisson => exponential(rng, mean_gap),
            Arrivals::Fixed => mean_gap,
        };
    }
    times
}

/// Uniform in `[0, 1)` from the top 53 bits.
fn uniform(rng: &mut SplitMix64) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn exponential(rng: &mut SplitMix64, mean: f64) -> f64 {
    -mean * (1.0 - uniform(rng)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_arrivals_have_the_asked_rate_and_are_reproducible() {
        let duration = Duration::from_secs(2_000);
        let times = schedule(Arrivals::Poisson, 2.5, duration, &mut SplitMix64::new(7));
        let rate = times.len() as f64 / duration.as_secs_f64();
        assert!((rate - 2.5).abs() < 0.1, "rate {rate}");
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times.iter().all(|t| *t < duration));
        assert_eq!(times, schedule(Arrivals::Poisson, 2.5, duration, &mut SplitMix64::new(7)));
        assert_ne!(times, schedule(Arrivals::Poisson, 2.5, duration, &mut SplitMix64::new(8)));
    }

    #[test]
    fn fixed_arrivals_are_evenly_spaced() {
        let times = schedule(Arrivals::Fixed, 4.0, Duration::from_secs(10), &mut SplitMix64::new(1));
        assert_eq!(times.len(), 40);
        for pair in times.windows(2) {
            assert!((pair[1].as_secs_f64() - pair[0].as_secs_f64() - 0.25).abs() < 1e-9);
        }
        assert!(schedule(Arrivals::Fixed, 0.0, Duration::from_secs(10), &mut SplitMix64::new(1)).is_empty());
    }

    #[test]
    fn a_workload_without_usable_prompts_is_refused_with_the_reason() {
        assert!(parse("[]").unwrap_err().contains("no prompt"));
        assert!(parse(r#"[{"prompt": "hi", "max_tokens": 0}]"#).unwrap_err().contains("prompt 0"));
        assert!(parse(r#"[{"prompt": "hi", "max_tokens": 5, "extra": 1}]"#).is_err());
        assert_eq!(parse(r#"[{"prompt": "hi", "max_tokens": 5}]"#).unwrap().len(), 1);
    }
}
