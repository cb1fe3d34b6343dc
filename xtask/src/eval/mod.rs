//! `cargo xtask eval-router`: routers compared on any CSV of per-prompt outcomes
//! (`--data …`), or on the test splits of the shipped datasets (`--shipped`, see
//! [`shipped`]).
//!
//! Four routers each give every prompt a score (the higher, the more it needs the strong
//! model): `random` (every score equal, which the curve turns into the exact expectation of
//! random routing), `heuristic` (the seeds' word count and keywords: 0, 1 or 2), `length`
//! (characters of the prompt) and `learned` (1 − the model's predicted adequacy of the
//! cheaper tier: the weak head's by default, the mid head's with `--head mid`, when the
//! cheaper column stands for the middle tier). For each, RouteLLM's metrics come from
//! [`gateway_core::routing::eval`]: APGR, CPT(50 %), CPT(80 %), and the cost saved at
//! quality parity with always-strong.
//!
//! Costs are the catalog's on-demand prices of the tiers the columns stand for (Haiku,
//! Sonnet, Opus by default). Every tier is priced with the same token counts per row, as if
//! each tier wrote the same answer: input tokens are [`gateway_core::tokens::estimate_text`]
//! of the prompt, output tokens the strong model's answer length (`<model>__out_chars` next
//! to the strong column `<model>__<outcome>`) / 4, or [`DEFAULT_OUTPUT_TOKENS`] when the
//! file does not give it. The relative cost of two tiers is thus the catalog's price ratio:
//! the proxy models' own answer lengths would price their verbosity (an 8B model writing
//! three times longer answers than a large one) rather than the Claude tiers they stand for.
//! The cost of routing the top `s` share of prompts to the strong tier sums the strong price
//! of those rows and the cheaper price of the others (ties averaged exactly as the quality
//! curve averages them); "cost saved at parity" is 1 − that cost / always-strong's at the
//! smallest `s` whose quality reaches always-strong's (0 when only `s` = 1 does).
//!
//! The learned router is also checked against its promise: at each tolerance the calibrated
//! threshold of its head routes the cheaper tier, and the observed relative quality drop
//! against always-strong is reported next to the promised one. With `--mid`, the same is
//! done for the three-tier rule of the policy.
//!
//! Small splits make APGR noisy (a few dozen rows decide a mid-tier gap), so every APGR
//! comes with a 95 % interval from a paired bootstrap of the rows, and the learned router
//! is compared with each baseline by the interval of the difference: it is *clearly
//! better* only when the whole interval is above zero.

mod load;
mod report;
pub mod routers;
mod shipped;
pub mod svg;

use std::path::{Path, PathBuf};

use gateway_core::catalog::{Catalog, ModelSpec, Scope, Target, Tier};
use gateway_core::cost::{PricingMode, Usage};
use gateway_core::routing::eval::{Curve, bootstrap_apgr, curve, percentile_interval};
use gateway_core::routing::train::route3;
use gateway_core::routing::{Adequacy, Conversation, Head, RouterModel};
use gateway_core::tokens::estimate_text;
#[allow(unused_imports)] // Part of the module's interface for evaluations from code.
pub use load::{Columns, DEFAULT_OUTPUT_TOKENS, EvalRow, Loaded, SplitFilter, load_rows, output_tokens, read_rows};
use serde::Serialize;

use crate::{Result, paths};

/// Promised tolerances checked, in percent.
pub const TOLERANCES_PERCENT: [f64; 6] = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0];

/// Bootstrap resamples behind every interval: enough for stable 2.5 % tails.
pub const BOOTSTRAP_RESAMPLES: usize = 1_000;
/// Fixed, so the same rows always give the same intervals.
const BOOTSTRAP_SEED: u64 = 0x00b0_075e;
/// Coverage of the intervals.
pub const CONFIDENCE: f64 = 0.95;

/// Either `--shipped`, or `--data FILE --prompt COLUMN --weak COLUMN --strong COLUMN`.
#[derive(Debug, clap::Args)]
#[command(
    group(clap::ArgGroup::new("source").required(true).multiple(false).args(["data", "shipped"])),
    after_help = "Either --shipped [--split S] [--json], or --data FILE --prompt COLUMN --weak COLUMN --strong COLUMN \
                  [--mid COLUMN | --head mid] [--split S] [--json]."
)]
pub struct EvalArgs {
    /// Evaluate every shipped dataset (data/routing/) on both pairs of its ladder (weak and
    /// mid against strong) and on three tiers; MMLU-Pro also by source (ori_mmlu or not).
    #[arg(long)]
    pub shipped: bool,
    /// CSV of per-prompt outcomes (`.csv`, or `.csv.gz`).
    #[arg(long, requires_all = ["prompt", "weak", "strong"])]
    pub data: Option<PathBuf>,
    /// Column holding the prompt: plain text, or a JSON list of turns.
    #[arg(long, conflicts_with = "shipped")]
    pub prompt: Option<String>,
    /// Outcome column of the cheaper model: true/false, 0/1 or a numeric score.
    #[arg(long, conflicts_with = "shipped")]
    pub weak: Option<String>,
    /// Outcome column of the strong model.
    #[arg(long, conflicts_with = "shipped")]
    pub strong: Option<String>,
    /// Outcome column of a middle model: adds the three-tier evaluation.
    #[arg(long, conflicts_with = "shipped")]
    pub mid: Option<String>,
    /// Which head of the model scores the cheaper (--weak) column: `weak` when it stands for
    /// the cheapest tier, `mid` when it stands for the middle one.
    #[arg(long, default_value = "weak", value_parser = parse_head, conflicts_with = "shipped")]
    pub head: Head,
    /// Print one JSON object on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Where to write the chart [default: target/eval-router/<data>-<weak>-vs-<strong>.svg].
    #[arg(long, conflicts_with = "shipped")]
    pub svg: Option<PathBuf>,
    /// Rows to evaluate, by the fixed hash split of their prompt [default: all with --data,
    /// test with --shipped].
    #[arg(long, value_enum)]
    pub split: Option<SplitFilter>,
    /// Claude tier the cheaper column stands for (prices) [default: haiku, or sonnet with
    /// --head mid].
    #[arg(long, value_parser = parse_tier)]
    pub weak_tier: Option<Tier>,
    /// Claude tier the mid column stands for.
    #[arg(long, default_value = "sonnet", value_parser = parse_tier)]
    pub mid_tier: Tier,
    /// Claude tier the strong column stands for.
    #[arg(long, default_value = "opus", value_parser = parse_tier)]
    pub strong_tier: Tier,
}

fn parse_tier(s: &str) -> std::result::Result<Tier, String> {
    s.parse().map_err(|()| format!("unknown tier `{s}` (expected haiku, sonnet or opus)"))
}

fn parse_head(s: &str) -> std::result::Result<Head, String> {
    match s {
        "weak" => Ok(Head::Weak),
        "mid" => Ok(Head::Mid),
        _ => Err(format!("unknown head `{s}` (expected weak or mid)")),
    }
}

/// `weak` or `mid`.
pub fn head_name(head: Head) -> &'static str {
    match head {
        Head::Weak => "weak",
        Head::Mid => "mid",
    }
}

/// The head's predicted adequacy.
fn adequacy_of(adequacy: &Adequacy, head: Head) -> f64 {
    match head {
        Head::Weak => adequacy.weak,
        Head::Mid => adequacy.mid,
    }
}

/// A tier's catalog model and how it is reached, for pricing.
#[derive(Debug, Clone)]
pub struct TierPrice {
    pub tier: Tier,
    spec: ModelSpec,
    scope: Scope,
}

impl TierPrice {
    /// The catalog's default model of `tier`.
    pub fn from_catalog(catalog: &Catalog, tier: Tier) -> Result<TierPrice> {
        let id = catalog.tier_default(tier);
        match catalog.resolve(id) {
            Ok(Target::Model(m)) => Ok(TierPrice { tier, spec: m.spec.clone(), scope: m.scope }),
            Ok(Target::PromptRouter { .. }) => Err(format!("tier {tier} maps to a prompt router ({id})").into()),
            Err(e) => Err(format!("tier {tier}: {e}").into()),
        }
    }

    pub fn model_key(&self) -> &str {
        &self.spec.key
    }

    /// USD of one on-demand call.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        let usage = Usage { input_tokens, output_tokens, ..Default::default() };
        self.spec.cost(&self.scope, &usage, PricingMode::OnDemand)
    }
}

/// What an evaluation uses besides the rows.
#[derive(Debug, Clone)]
pub struct EvalOptions<'m> {
    /// The learned router's model.
    pub model: &'m RouterModel,
    /// The head scoring the cheaper (weak) column against the strong one, and whose
    /// calibrated thresholds the tolerance check uses: [`Head::Mid`] when that column stands
    /// for the middle tier.
    pub head: Head,
    /// Prices of the tiers of the cheaper, mid and strong columns.
    pub prices: [TierPrice; 3],
    /// Promised tolerances to check, in percent.
    pub tolerances: Vec<f64>,
}

impl<'m> EvalOptions<'m> {
    /// The embedded catalog's prices for `tiers` (cheaper, mid, strong), the weak head and
    /// the default tolerances.
    pub fn new(model: &'m RouterModel, tiers: [Tier; 3]) -> Result<EvalOptions<'m>> {
        let catalog = Catalog::embedded()?;
        let [weak, mid, strong] = tiers;
        let prices = [
            TierPrice::from_catalog(&catalog, weak)?,
            TierPrice::from_catalog(&catalog, mid)?,
            TierPrice::from_catalog(&catalog, strong)?,
        ];
        Ok(EvalOptions { model, head: Head::Weak, prices, tolerances: TOLERANCES_PERCENT.to_vec() })
    }

    /// The same with `head` scoring the cheaper column.
    pub fn with_head(self, head: Head) -> EvalOptions<'m> {
        EvalOptions { head, ..self }
    }
}

/// One router's metrics on the cheaper/strong pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterMetrics {
    /// `None` when both models have the same mean quality.
    pub apgr: Option<f64>,
    /// 95 % paired-bootstrap interval of `apgr`.
    pub apgr_ci95: Option<[f64; 2]>,
    /// Share (0–1) of strong calls needed to recover 50 % of the quality gap.
    pub cpt50: Option<f64>,
    pub cpt80: Option<f64>,
    /// Smallest share of strong calls at which quality reaches always-strong's.
    pub parity_share: Option<f64>,
    /// 1 − cost at `parity_share` / cost of always-strong; 0 when parity needs every call.
    pub cost_saved_at_parity: f64,
    #[serde(skip)]
    pub curve: Curve,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Routers {
    pub random: RouterMetrics,
    pub heuristic: RouterMetrics,
    pub length: RouterMetrics,
    pub learned: RouterMetrics,
}

impl Routers {
    pub fn all(&self) -> [(&'static str, &RouterMetrics); 4] {
        [("random", &self.random), ("heuristic", &self.heuristic), ("length", &self.length), ("learned", &self.learned)]
    }
}

/// The learned router against one baseline, on the same rows.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    /// `random`, `heuristic` or `length`.
    pub baseline: &'static str,
    /// Learned APGR − the baseline's.
    pub difference: Option<f64>,
    /// 95 % paired-bootstrap interval of the difference.
    pub ci95: Option<[f64; 2]>,
    /// The whole interval is above zero.
    pub clearly_better: bool,
}

/// The learned router at one promised tolerance, two tiers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToleranceRow {
    /// Promised relative quality drop, as a share (0.05 = 5 %).
    pub promised: f64,
    /// Adequacy (of the evaluation's head) from which the cheaper tier is used.
    pub threshold: f64,
    /// Observed relative drop of mean quality against always-strong; `None` when that is ≤ 0.
    pub observed: Option<f64>,
    /// `observed − promised`.
    pub excess: Option<f64>,
    pub weak_share: f64,
    pub quality: f64,
    /// Cost against always-strong.
    pub cost_relative: Option<f64>,
}

/// One way of spreading calls over three tiers.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreeTierRow {
    /// `learned`, `heuristic`, `always-weak`, `always-mid` or `always-strong`.
    pub router: String,
    /// The learned router's promised tolerance (share).
    pub promised: Option<f64>,
    pub weak_share: f64,
    pub mid_share: f64,
    pub strong_share: f64,
    /// Mean outcome of the tiers chosen.
    pub quality: f64,
    /// Relative quality drop against always-strong; `None` when that is ≤ 0.
    pub drop: Option<f64>,
    pub cost_relative: Option<f64>,
}

/// The tier a column stands for and its mean cost per call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TierCost {
    pub tier: Tier,
    pub model: String,
    /// Mean USD per call when every prompt goes to this tier.
    pub cost_per_call: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tiers {
    pub weak: TierCost,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<TierCost>,
    pub strong: TierCost,
}

/// Everything an evaluation finds; serialises to the `--json` object's core.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvalReport {
    pub rows: usize,
    /// The head that scored the cheaper column.
    pub head: Head,
    pub routers: Routers,
    /// The learned router against random, heuristic and length.
    pub learned_vs: Vec<Comparison>,
    pub bootstrap_resamples: usize,
    pub weak_quality: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid_quality: Option<f64>,
    pub strong_quality: f64,
    pub tiers: Tiers,
    pub tolerance: Vec<ToleranceRow>,
    /// Largest `observed − promised` over the tolerances.
    pub tolerance_max_excess: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub three_tier: Option<Vec<ThreeTierRow>>,
    pub model_version: String,
}

/// What the routers see of one row, and what each tier would give and cost.
struct Scored {
    adequacy: Adequacy,
    level: usize,
    length: f64,
    /// Outcome under weak, mid, strong (mid is 0 when the data has none).
    outcome: [f64; 3],
    cost: [f64; 3],
}

fn score(row: &EvalRow, opts: &EvalOptions<'_>) -> Scored {
    let conversation = Conversation::from_prompt_cell(&row.prompt);
    let text = conversation.joined_text();
    let input = estimate_text(&text);
    // The same tokens for every tier: their relative cost is the catalog's price ratio.
    let cost = [0, 1, 2].map(|t| opts.prices[t].cost(input, row.output_tokens));
    Scored {
        adequacy: opts.model.adequacy(&conversation),
        level: routers::heuristic_level(&text),
        length: routers::length_score(&text),
        outcome: [row.weak, row.mid.unwrap_or(0.0), row.strong],
        cost,
    }
}

/// Scores rows on all available cores: the model reads every prompt once.
fn score_all(rows: &[EvalRow], opts: &EvalOptions<'_>) -> Vec<Scored> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(16);
    let chunk = rows.len().div_ceil(threads).max(256);
    std::thread::scope(|scope| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(|r| score(r, opts)).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for (handle, part) in handles.into_iter().zip(rows.chunks(chunk)) {
            // A scoring thread cannot panic short of a bug; score its part again here if it did.
            out.extend(handle.join().unwrap_or_else(|_| part.iter().map(|r| score(r, opts)).collect()));
        }
        out
    })
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| part / whole)
}

fn relative_drop(quality: f64, strong_quality: f64) -> Option<f64> {
    (strong_quality > 0.0).then(|| (strong_quality - quality) / strong_quality)
}

struct PairColumns {
    weak: Vec<f64>,
    strong: Vec<f64>,
    cost_weak: Vec<f64>,
    cost_strong: Vec<f64>,
}

fn metrics(scores: &[f64], c: &PairColumns) -> RouterMetrics {
    let quality = curve(scores, &c.weak, &c.strong);
    // The same ranking over per-row costs: mean cost per call against the strong share,
    // ties averaged as for quality.
    let cost = curve(scores, &c.cost_weak, &c.cost_strong);
    let parity_share = if quality.weak_quality >= quality.strong_quality { Some(0.0) } else { quality.cpt(1.0) };
    let cost_saved_at_parity = match parity_share {
        // Parity only at s = 1 is no saving (and not rounding noise either).
        Some(s) if s < 1.0 - 1e-9 && cost.strong_quality > 0.0 => 1.0 - cost.quality_at(s) / cost.strong_quality,
        _ => 0.0,
    };
    RouterMetrics {
        apgr: quality.apgr(),
        apgr_ci95: None,
        cpt50: quality.cpt(0.5),
        cpt80: quality.cpt(0.8),
        parity_share,
        cost_saved_at_parity,
        curve: quality,
    }
}

/// Quality, drop and cost of sending row `i` to tier `tier_of(i)` (0 weak, 1 mid, 2 strong).
fn spread(
    router: &str,
    promised: Option<f64>,
    scored: &[Scored],
    strong_quality: f64,
    tier_of: impl Fn(&Scored) -> usize,
) -> ThreeTierRow {
    let n = scored.len().max(1) as f64;
    let mut calls = [0usize; 3];
    let (mut quality, mut cost, mut strong_cost) = (0.0, 0.0, 0.0);
    for s in scored {
        let tier = tier_of(s).min(2);
        calls[tier] += 1;
        quality += s.outcome[tier];
        cost += s.cost[tier];
        strong_cost += s.cost[2];
    }
    let quality = quality / n;
    ThreeTierRow {
        router: router.to_owned(),
        promised,
        weak_share: calls[0] as f64 / n,
        mid_share: calls[1] as f64 / n,
        strong_share: calls[2] as f64 / n,
        quality,
        drop: relative_drop(quality, strong_quality),
        cost_relative: ratio(cost, strong_cost),
    }
}

/// Fills in the routers' APGR intervals and compares the learned router (last of
/// `scores`) with each of the others, all on the same bootstrap resamples.
fn bootstrap(scores: &[Vec<f64>; 4], columns: &PairColumns, routers: &mut Routers) -> Vec<Comparison> {
    let refs: Vec<&[f64]> = scores.iter().map(Vec::as_slice).collect();
    let draws = bootstrap_apgr(&refs, &columns.weak, &columns.strong, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED);
    let interval = |values: Vec<f64>| percentile_interval(&values, CONFIDENCE).map(|(low, high)| [low, high]);
    let of = |k: usize| interval(draws.iter().filter_map(|d| d[k]).collect());
    routers.random.apgr_ci95 = of(0);
    routers.heuristic.apgr_ci95 = of(1);
    routers.length.apgr_ci95 = of(2);
    routers.learned.apgr_ci95 = of(3);
    let learned = routers.learned.apgr;
    [("random", routers.random.apgr), ("heuristic", routers.heuristic.apgr), ("length", routers.length.apgr)]
        .into_iter()
        .enumerate()
        .map(|(k, (baseline, apgr))| {
            let ci95 = interval(draws.iter().filter_map(|d| Some(d[3]? - d[k]?)).collect());
            Comparison {
                baseline,
                difference: learned.zip(apgr).map(|(l, b)| l - b),
                ci95,
                clearly_better: ci95.is_some_and(|[low, _]| low > 0.0),
            }
        })
        .collect()
}

/// Evaluates the four routers on `rows`; pure apart from using the cores to score.
pub fn evaluate(rows: &[EvalRow], opts: &EvalOptions<'_>) -> EvalReport {
    let scored = score_all(rows, opts);
    let columns = PairColumns {
        weak: scored.iter().map(|s| s.outcome[0]).collect(),
        strong: scored.iter().map(|s| s.outcome[2]).collect(),
        cost_weak: scored.iter().map(|s| s.cost[0]).collect(),
        cost_strong: scored.iter().map(|s| s.cost[2]).collect(),
    };
    let by = |f: &dyn Fn(&Scored) -> f64| scored.iter().map(f).collect::<Vec<f64>>();
    // Random, heuristic, length, learned: the order of `Routers::all`.
    let scores = [
        vec![0.0; scored.len()],
        by(&|s| s.level as f64),
        by(&|s| s.length),
        by(&|s| 1.0 - adequacy_of(&s.adequacy, opts.head)),
    ];
    let [random, heuristic, length, learned] = scores.each_ref().map(|s| metrics(s, &columns));
    let mut routers = Routers { random, heuristic, length, learned };
    let learned_vs = bootstrap(&scores, &columns, &mut routers);
    let weak_quality = mean(columns.weak.iter().copied());
    let strong_quality = mean(columns.strong.iter().copied());
    let three_tiers = !rows.is_empty() && rows.iter().all(|r| r.mid.is_some());
    let mid_quality = three_tiers.then(|| mean(scored.iter().map(|s| s.outcome[1])));

    let calibration = opts.model.calibration();
    let tolerance: Vec<ToleranceRow> = opts
        .tolerances
        .iter()
        .map(|&percent| {
            let threshold = calibration.two_tier_threshold(opts.head, percent);
            let row = spread("learned", None, &scored, strong_quality, |s| {
                if adequacy_of(&s.adequacy, opts.head) >= threshold { 0 } else { 2 }
            });
            let promised = percent / 100.0;
            ToleranceRow {
                promised,
                threshold,
                observed: row.drop,
                excess: row.drop.map(|d| d - promised),
                weak_share: row.weak_share,
                quality: row.quality,
                cost_relative: row.cost_relative,
            }
        })
        .collect();
    let tolerance_max_excess = tolerance.iter().filter_map(|t| t.excess).reduce(f64::max);

    let three_tier = three_tiers.then(|| {
        let mut table = vec![
            spread("always-weak", None, &scored, strong_quality, |_| 0),
            spread("always-mid", None, &scored, strong_quality, |_| 1),
            spread("always-strong", None, &scored, strong_quality, |_| 2),
            spread("heuristic", None, &scored, strong_quality, |s| s.level),
        ];
        for &percent in &opts.tolerances {
            let (tw, tm) = calibration.three_tier_thresholds(percent);
            // The thresholds are stored as f32, so the narrowing is exact.
            table.push(spread("learned", Some(percent / 100.0), &scored, strong_quality, |s| {
                route3(s.adequacy.weak, s.adequacy.mid, tw as f32, tm as f32)
            }));
        }
        table
    });

    let n = scored.len().max(1) as f64;
    let tier_cost = |t: usize| TierCost {
        tier: opts.prices[t].tier,
        model: opts.prices[t].model_key().to_owned(),
        cost_per_call: scored.iter().map(|s| s.cost[t]).sum::<f64>() / n,
    };
    EvalReport {
        rows: rows.len(),
        head: opts.head,
        routers,
        learned_vs,
        bootstrap_resamples: BOOTSTRAP_RESAMPLES,
        weak_quality,
        mid_quality,
        strong_quality,
        tiers: Tiers { weak: tier_cost(0), mid: three_tiers.then(|| tier_cost(1)), strong: tier_cost(2) },
        tolerance,
        tolerance_max_excess,
        three_tier,
        model_version: opts.model.version().to_owned(),
    }
}

/// How the rows were chosen, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunInfo {
    pub data: String,
    pub split: &'static str,
    pub columns: Columns,
    /// Data rows in the file.
    pub read: usize,
    pub outside_split: usize,
    /// Rows of the split skipped for a missing outcome.
    pub skipped: usize,
    pub skipped_empty_prompt: usize,
    pub svg: String,
}

#[derive(Debug, Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    #[serde(flatten)]
    info: &'a RunInfo,
}

/// `target/eval-router/<csv stem>-<weak>-vs-<strong>.svg`, with every name reduced to
/// letters, digits, `.`, `_` and `-`.
pub fn default_svg_path(data: &Path, weak: &str, strong: &str) -> PathBuf {
    let file = data.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = file.strip_suffix(".gz").unwrap_or(&file);
    let stem = stem.strip_suffix(".csv").unwrap_or(stem);
    let name = format!("{}-{}-vs-{}.svg", sanitize(stem), sanitize(weak), sanitize(strong));
    paths::target_dir().join("eval-router").join(name)
}

fn sanitize(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let trimmed = cleaned.trim_matches('.');
    if trimmed.is_empty() { "data".to_owned() } else { trimmed.to_owned() }
}

/// Writes `contents` to `path`, creating its directory.
fn write_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

/// The prices of the tiers: with the mid head the cheaper column stands for the middle tier
/// unless `--weak-tier` says otherwise.
fn tiers_of(args: &EvalArgs, head: Head) -> [Tier; 3] {
    let cheaper = args.weak_tier.unwrap_or(match head {
        Head::Weak => Tier::Haiku,
        Head::Mid => args.mid_tier,
    });
    [cheaper, args.mid_tier, args.strong_tier]
}

pub fn run(args: &EvalArgs) -> Result<bool> {
    if args.shipped {
        return shipped::run(args);
    }
    let (Some(data), Some(prompt), Some(weak), Some(strong)) = (&args.data, &args.prompt, &args.weak, &args.strong)
    else {
        return Err("give either --shipped, or --data FILE --prompt COLUMN --weak COLUMN --strong COLUMN".into());
    };
    if args.head == Head::Mid && args.mid.is_some() {
        return Err("--head mid scores the --weak column as the middle tier against --strong: leave out --mid".into());
    }
    let split = args.split.unwrap_or(SplitFilter::All);
    let model = RouterModel::embedded().map_err(|e| format!("the embedded router model: {e}"))?;
    let columns = Columns { prompt: prompt.clone(), weak: weak.clone(), strong: strong.clone(), mid: args.mid.clone() };
    eprintln!("eval-router: reading {} (split {})", data.display(), split.as_str());
    let loaded = load_rows(data, &columns, split)?;
    if loaded.skipped_missing > 0 {
        eprintln!("eval-router: skipped {} rows with missing outcomes", loaded.skipped_missing);
    }
    if loaded.skipped_empty_prompt > 0 {
        eprintln!("eval-router: skipped {} rows with an empty prompt", loaded.skipped_empty_prompt);
    }
    if loaded.rows.is_empty() {
        return Err(format!(
            "no usable rows in {}: {} read, {} outside split {}, {} missing an outcome, {} with an empty prompt",
            data.display(),
            loaded.read,
            loaded.outside_split,
            split.as_str(),
            loaded.skipped_missing,
            loaded.skipped_empty_prompt
        )
        .into());
    }
    let opts = EvalOptions::new(model, tiers_of(args, args.head))?.with_head(args.head);
    eprintln!("eval-router: scoring {} prompts with model {}", loaded.rows.len(), model.version());
    let report = evaluate(&loaded.rows, &opts);

    let svg_path = args.svg.clone().unwrap_or_else(|| default_svg_path(data, weak, strong));
    let info = RunInfo {
        data: data.display().to_string(),
        split: split.as_str(),
        columns,
        read: loaded.read,
        outside_split: loaded.outside_split,
        skipped: loaded.skipped_missing,
        skipped_empty_prompt: loaded.skipped_empty_prompt,
        svg: svg_path.display().to_string(),
    };
    let title = format!(
        "{}: {weak} vs {strong}",
        data.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    );
    write_file(&svg_path, &svg::render(&report, &title))?;

    if args.json {
        println!("{}", serde_json::to_string(&JsonOutput { report: &report, info: &info })?);
        eprintln!("eval-router: chart written to {}", svg_path.display());
    } else {
        print!("{}", report::render_text(&report, &info));
        println!("chart: {}", svg_path.display());
    }
    Ok(true)
}

#[cfg(test)]
mod tests;
