//! The side-by-side evaluation of a router retrained on the deployer's graded traffic (a
//! candidate) and the artifact in use, on the same rows: the deployer's test split with the
//! strongest tier's real grades, and each shipped dataset's test split with the tiers'
//! chances on the item-response scale, at the default tolerance. Promotion is the caller's
//! explicit step (`cargo xtask train-router --promote`).

use std::fmt::Write;

use super::dataset::{DATASETS, DEPLOYER, Example};
use super::eval::curve;
use super::train::{self, CalibrationRow, TrainParams};
use super::{RouterModel, RoutingPolicy, Split};

/// One model's figures on a set of rows at one tolerance, three tiers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// APGR of Haiku→Opus and Sonnet→Opus, ranking by the rows' adequacies.
    pub apgr: [Option<f64>; 2],
    /// Quality lost against always Opus, and cost relative to it, as shares.
    pub drop: f64,
    pub cost: f64,
    /// Share of rows per tier: Haiku, Sonnet, Opus.
    pub shares: [f64; 3],
}

/// How `model`'s three-tier thresholds at `tolerance` (percent) route `rows`, whose
/// adequacies are `model`'s.
pub fn at_tolerance(model: &RouterModel, rows: &[CalibrationRow], tolerance: f64) -> Figures {
    let (tw, tm) = model.calibration().three_tier_thresholds(tolerance);
    let tier_of = |r: &CalibrationRow| train::route3(r.weak, r.mid, tw as f32, tm as f32);
    let (drop, cost) = train::drop_and_cost(rows, tier_of);
    let share = |tier: usize| rows.iter().filter(|r| tier_of(r) == tier).count() as f64 / rows.len().max(1) as f64;
    let strong: Vec<f64> = rows.iter().map(|r| r.quality[2]).collect();
    let apgr = [0usize, 1].map(|cheaper| {
        let need: Vec<f64> = rows.iter().map(|r| 1.0 - if cheaper == 0 { r.weak } else { r.mid }).collect();
        let weak: Vec<f64> = rows.iter().map(|r| r.quality[cheaper]).collect();
        curve(&need, &weak, &strong).apgr()
    });
    Figures { apgr, drop, cost, shares: [share(0), share(1), share(2)] }
}

fn line(out: &mut String, slice: &str, n: usize, name: &str, f: &Figures) {
    let number = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    let _ = writeln!(
        out,
        "| {slice} | {n} | {name} | {} | {} | {:.1} % | {:.0}/{:.0}/{:.0} % | {:.0} % |",
        number(f.apgr[0]),
        number(f.apgr[1]),
        f.drop * 100.0,
        f.shares[0] * 100.0,
        f.shares[1] * 100.0,
        f.shares[2] * 100.0,
        f.cost * 100.0
    );
}

/// The evaluation as markdown: `current` is the artifact in use and what to call it.
pub fn evaluation(
    examples: &[Example],
    current: (&RouterModel, &str),
    candidate: &RouterModel,
    params: &TrainParams,
) -> String {
    let (current, current_name) = current;
    let models = [(current_name, current), ("candidate", candidate)];
    let tolerance = RoutingPolicy::default().quality_tolerance;
    let mut out = format!(
        "# Router candidate {} against the artifact in use ({})\n\n\
         At the default tolerance ({tolerance} %), three tiers. APGR ranks prompts by the model's need for Opus; \
         drop is the quality lost against always Opus; cost is relative to always Opus at list price ratios.\n\n\
         | rows | n | model | APGR haiku→opus | APGR sonnet→opus | drop | haiku/sonnet/opus | cost |\n\
         |---|---:|---|---:|---:|---:|---|---:|\n",
        candidate.version(),
        current.version(),
    );
    let deployer_test: Vec<&Example> = examples
        .iter()
        .filter(|e| e.dataset == DEPLOYER.name && e.split == Split::Test && e.ladder.is_some())
        .collect();
    if deployer_test.is_empty() {
        let _ = writeln!(out, "| your traffic (test split) | 0 | - | | | | | |");
    }
    for (name, model) in models {
        if !deployer_test.is_empty() {
            let rows = train::scored_rows(model, &deployer_test, &|_| 1.0, |e| e.ladder);
            line(
                &mut out,
                "your traffic (test split, graded)",
                rows.len(),
                name,
                &at_tolerance(model, &rows, tolerance),
            );
        }
    }
    let usable: Vec<&Example> = examples.iter().filter(|e| !e.held_out).collect();
    let train_split: Vec<&Example> = usable.iter().copied().filter(|e| e.split == Split::Train).collect();
    let scales = train::fit_scales(&train_split, params.tier_gaps);
    for spec in DATASETS.iter().filter(|s| s.name != DEPLOYER.name) {
        let test: Vec<&Example> =
            usable.iter().copied().filter(|e| e.dataset == spec.name && e.split == Split::Test).collect();
        for (name, model) in models {
            let rows = train::tier_rows(model, &scales, &test, &|_| 1.0);
            let figures = at_tolerance(model, &rows, tolerance);
            line(&mut out, &format!("{} (test split, modelled)", spec.name), rows.len(), name, &figures);
        }
    }
    let _ = writeln!(
        out,
        "\nPromote with `cargo xtask train-router --promote <this directory> --out <path of ROUTER_MODEL_PATH>`."
    );
    out
}
