//! `cargo xtask estimate-tokens`: how far the gateway's local token estimate is from the
//! counts it is compared with.
//!
//! * Against the emulator: CountTokens and the usage of every call are computed by the same
//!   function as the gateway's estimate (`gateway_core::tokens::estimate_request`), so the
//!   error is zero by construction; the command says so rather than measure a tautology.
//! * Against the shipped routing data: the data gives prompt text and answer lengths in
//!   characters, and states that a token is about 4 characters. The table compares the
//!   estimator with that rule on every prompt: relative error (mean, median, p90) and the
//!   characters per token each implies.

use std::path::PathBuf;

use clap::Args;
use gateway_core::routing::dataset;
use gateway_core::tokens::estimate_text;

use crate::Result;

/// The rule the shipped data states for its `*_out_chars` columns.
const CHARS_PER_TOKEN_RULE: f64 = 4.0;

#[derive(Debug, Args)]
pub struct EstimateArgs {
    /// Directory of the routing datasets (default: data/routing).
    #[arg(long)]
    data: Option<PathBuf>,
}

#[derive(Debug, Default)]
struct Sample {
    relative_errors: Vec<f64>,
    chars: f64,
    estimated: f64,
}

pub fn run(args: &EstimateArgs) -> Result<bool> {
    let dir = args.data.clone().unwrap_or_else(dataset::default_dir);
    let examples = dataset::load_shipped(&dir)?;
    let mut per_dataset: std::collections::BTreeMap<&str, Sample> = Default::default();
    let mut answers: std::collections::BTreeMap<&str, (f64, usize)> = Default::default();
    for example in &examples {
        let chars = example.prompt.chars().count() as f64;
        if chars == 0.0 {
            continue;
        }
        let estimated = estimate_text(&example.prompt) as f64;
        let rule = chars / CHARS_PER_TOKEN_RULE;
        let sample = per_dataset.entry(example.dataset).or_default();
        sample.relative_errors.push((estimated - rule) / rule);
        sample.chars += chars;
        sample.estimated += estimated;
        let answer = answers.entry(example.dataset).or_default();
        for out in example.out_chars.values() {
            answer.0 += out;
            answer.1 += 1;
        }
    }
    println!("Local estimate vs the emulator: identical by construction (CountTokens and usage call");
    println!("gateway_core::tokens::estimate_request, the function the gateway estimates with): error 0.");
    println!();
    println!("Prompts: the estimator vs the data's rule of {CHARS_PER_TOKEN_RULE} characters per token");
    println!("(relative error = (estimate - chars/4) / (chars/4); positive = the estimator counts more)");
    println!();
    println!(
        "{:<14} {:>8} {:>10} {:>10} {:>10} {:>13} {:>13}",
        "dataset", "prompts", "mean", "median", "p90 |err|", "chars/token", "answer chars"
    );
    let mut all = Sample::default();
    for (name, sample) in &mut per_dataset {
        let (answer_chars, answer_count) = answers.get(name).copied().unwrap_or_default();
        print_row(name, sample, (answer_count > 0).then(|| answer_chars / answer_count as f64));
        all.relative_errors.extend(&sample.relative_errors);
        all.chars += sample.chars;
        all.estimated += sample.estimated;
    }
    print_row("all", &mut all, None);
    println!();
    println!("Answers: the data gives their length in characters only, so their tokens are the rule's");
    println!("chars/4; the estimator applied to text of that length would count as the prompts' ratio says.");
    Ok(true)
}

fn print_row(name: &str, sample: &mut Sample, mean_answer_chars: Option<f64>) {
    let errors = &mut sample.relative_errors;
    if errors.is_empty() {
        return;
    }
    let mean = errors.iter().sum::<f64>() / errors.len() as f64;
    errors.sort_by(f64::total_cmp);
    let median = percentile(errors, 0.5);
    let mut magnitudes: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    magnitudes.sort_by(f64::total_cmp);
    let p90 = percentile(&magnitudes, 0.9);
    let chars_per_token = sample.chars / sample.estimated.max(1.0);
    let answer = mean_answer_chars.map_or_else(|| "-".to_owned(), |c| format!("{c:.0}"));
    println!(
        "{name:<14} {:>8} {:>9.1}% {:>9.1}% {:>9.1}% {chars_per_token:>13.2} {answer:>13}",
        errors.len(),
        mean * 100.0,
        median * 100.0,
        p90 * 100.0
    );
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&values, 0.5), 5.0);
        assert_eq!(percentile(&values, 0.9), 9.0);
        assert_eq!(percentile(&[3.0], 0.9), 3.0);
    }
}
