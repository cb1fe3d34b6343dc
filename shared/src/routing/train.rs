//! Deterministic training of the routing model from [`super::dataset`] examples.
//!
//! * Logistic regression per head, fitted by FTRL-Proximal (per-coordinate learning rates
//!   suit hashed n-grams, most of which are rare) over a fixed number of epochs, visiting
//!   rows in an order drawn from a seeded generator.
//! * Each source of prompts (a dataset, and inside MMLU-Pro each of its sources: `stemez`,
//!   `theoremQA`, `scibench`) has its own intercept while training. How often a cheaper
//!   model matches a stronger one depends mostly on the pair, the judge and who wrote the
//!   questions, not on the prompt; without these intercepts the weights would learn "looks
//!   like an exam question" instead of "is easy". The shipped bias is their weighted mean,
//!   and Platt scaling re-centres it.
//! * Sources inside a dataset share its weight equally. One source writes 78 % of
//!   MMLU-Pro's trainable rows; weighted by size, its house style (numeric textbook
//!   problems, where digits mean work) becomes the model's idea of difficulty, and that
//!   idea fails on exams written otherwise.
//! * Platt scaling per head on the validation split, so adequacies are probabilities.
//! * Tolerance tables on the validation split: for every whole percent of accepted quality
//!   drop, the thresholds that make the routed mix cheapest without exceeding it on any
//!   dataset. Holding the promise on each source separately, rather than on their pooled
//!   mix, is what lets it survive traffic that looks like only one of them.
//!
//! Every step runs in a fixed order on one thread, so the same data gives the same bytes.

use super::Split;
use super::dataset::{DATASETS, Example};
use super::features::{BUCKETS, CollectSink, Conversation, DENSE, extract};
use super::irt;
use super::model::{
    HEADS, Head, LOG_OUTPUT_TOKENS, OUTPUTS, RouterModel, Scoring, TOLERANCE_STEPS, hashed_norm, sigmoid,
};
use crate::splitmix::SplitMix64;

/// Relative price of one call per tier (Haiku 4.5 : Sonnet 4.5 : Opus 4.5 list prices,
/// input and output alike), used to pick the cheapest thresholds for a tolerance.
pub const TIER_COST: [f64; 3] = [1.0, 3.0, 5.0];
/// A threshold no adequacy reaches: the cheaper tier is never used.
pub const NEVER: f32 = 2.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainParams {
    pub epochs: usize,
    pub alpha: f64,
    pub beta: f64,
    pub l1: f64,
    pub l2: f64,
    pub seed: u64,
    pub labels: Labels,
    /// Difficulty labels, per cheaper tier's output: how much lower the logit of a prompt
    /// one standard deviation longer (in log characters) is assumed to be, on top of what
    /// the text model learns. Inside the training sources length is anti-predictive (a quirk
    /// of how each was written: the model learns to ignore it), across writers it is the
    /// most reliable signal there is, so it is a fixed prior rather than a learned weight.
    /// The weak tier's strength trades one for the other: at 1.5 the unseen-source mean is
    /// clearly above length but Arena-Bench's own test split is clearly below router v1;
    /// only 0.3–0.5 keep every trained source's test split within noise of v1 and the
    /// unseen mean at length's. 0.4 is the middle of that range; below 0.4 the tolerance
    /// tables send a third or more of MMLU-Pro to Opus at 10 %. Compare other values with
    /// `train-router --length-prior` and `--unseen-sources --length-prior`.
    pub length_prior: [f64; HEADS],
    /// Difficulty labels: how far each cheaper tier sits below the strongest, as the
    /// difference of the logits of their accuracies ([`PUBLISHED_TIER_ACCURACIES`] gives the
    /// shipped figures); a deployer's own calibration replaces them.
    pub tier_gaps: [f64; 2],
}

/// Published accuracies of the default tiers (Haiku 4.5, Sonnet 4.5, Opus 4.5) on
/// benchmarks close to the shipped datasets' work, from Anthropic's model announcements
/// (October and November 2025) as collected by llm-stats.com. No MMLU-Pro, AlpacaEval or
/// Arena-Hard figure exists for these models; these two are the ones every tier has.
pub const PUBLISHED_TIER_ACCURACIES: [(&str, [f64; 3]); 2] =
    [("SWE-bench Verified", [0.733, 0.772, 0.809]), ("GPQA Diamond", [0.730, 0.834, 0.870])];

/// Published scores of an older Claude model on the shipped datasets' own benchmarks, as
/// the share of prompts won: Claude 3.5 Sonnet (June 2024) on MMLU-Pro (TIGER-Lab's
/// leaderboard, 5-shot chain of thought, 76.12 %) and on AlpacaEval 2.0 (raw win rate
/// against GPT-4 Turbo, 40.56 %, the baseline the shipped win probabilities are against).
/// Every later Claude generation scores above 3.5 Sonnet wherever both were measured, so
/// these are floors for the strongest tier, above the datasets' own reference models.
pub const STRONGEST_TIER_FLOORS: [(&str, f64); 2] = [("mmlu_pro", 0.7612), ("alpacaeval2", 0.4056)];

/// The cheaper tiers' gaps below the strongest from [`PUBLISHED_TIER_ACCURACIES`]: per
/// benchmark logit(strongest) − logit(tier), averaged over the benchmarks.
pub fn published_tier_gaps() -> [f64; 2] {
    let logit = |p: f64| (p / (1.0 - p)).ln();
    let n = PUBLISHED_TIER_ACCURACIES.len() as f64;
    [0, 1]
        .map(|tier| PUBLISHED_TIER_ACCURACIES.iter().map(|(_, acc)| logit(acc[2]) - logit(acc[tier])).sum::<f64>() / n)
}

/// What the text model learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labels {
    /// Router v2: the weak tier's output learns each prompt's ease from every model's
    /// outcomes (item-response difficulty), the mid tier's whether its proxy pairs agree
    /// with the stronger model (the top of the ladder is where one pair says most), both
    /// with the length prior, both mapped onto the difficulty scale; and the answer length.
    /// On unseen sources this pairing ranks best for each tier.
    Difficulty,
    /// Router v1, kept to compare against: output k learns whether tier k's proxy pairs
    /// agree with the stronger model, and tier k calibrates output k.
    Pairs,
}

impl Default for TrainParams {
    fn default() -> Self {
        TrainParams {
            epochs: 6,
            alpha: 0.2,
            beta: 1.0,
            l1: 0.0,
            l2: 2.0,
            seed: 0x5eed_2026,
            labels: Labels::Difficulty,
            length_prior: [0.4, 1.0],
            tier_gaps: published_tier_gaps(),
        }
    }
}

/// One example as the optimiser sees it.
struct Row {
    /// Index into [`Sources`].
    source: usize,
    dense: [f32; DENSE],
    /// Sorted by bucket, duplicates merged, already scaled by the hashed norm.
    hashed: Vec<(u32, f64)>,
    weight: f64,
    /// Per output: the tiers' soft labels (or the ease label) and the log of the expected
    /// answer length.
    targets: [Option<f64>; OUTPUTS],
}

fn featurize(example: &Example) -> ([f32; DENSE], Vec<(u32, f64)>) {
    let mut sink = CollectSink::default();
    let extracted = extract(&Conversation::from_prompt_cell(&example.prompt), &mut sink);
    let norm = f64::from(hashed_norm(extracted.hashed));
    let mut features = sink.features;
    features.sort_by_key(|(bucket, _)| *bucket);
    let mut merged: Vec<(u32, f64)> = Vec::with_capacity(features.len());
    for (bucket, sign) in features {
        match merged.last_mut() {
            Some((last, value)) if *last == bucket => *value += f64::from(sign) * norm,
            _ => merged.push((bucket, f64::from(sign) * norm)),
        }
    }
    merged.retain(|(_, v)| *v != 0.0);
    (extracted.dense, merged)
}

/// The sources of the training rows, each with its intercept and its share of the weight:
/// its dataset's share, split equally between the dataset's sources.
struct Sources {
    /// (index into [`DATASETS`], source), sorted.
    keys: Vec<(usize, String)>,
    shares: Vec<f64>,
    counts: Vec<usize>,
}

impl Sources {
    fn of(examples: &[&Example]) -> Self {
        let key = |e: &Example| (DATASETS.iter().position(|s| s.name == e.dataset).unwrap_or(0), e.source.clone());
        let mut keys: Vec<(usize, String)> = examples.iter().map(|e| key(e)).collect();
        keys.sort();
        keys.dedup();
        let counts: Vec<usize> = keys.iter().map(|k| examples.iter().filter(|e| key(e) == *k).count()).collect();
        let present: f64 = {
            let mut datasets: Vec<usize> = keys.iter().map(|(d, _)| *d).collect();
            datasets.dedup();
            datasets.iter().map(|d| DATASETS[*d].weight).sum()
        };
        let shares = keys
            .iter()
            .map(|(d, _)| {
                let siblings = keys.iter().filter(|(other, _)| other == d).count() as f64;
                if present > 0.0 { DATASETS[*d].weight / present / siblings } else { 0.0 }
            })
            .collect();
        Sources { keys, shares, counts }
    }

    fn index(&self, example: &Example) -> usize {
        let dataset = DATASETS.iter().position(|s| s.name == example.dataset).unwrap_or(0);
        self.keys.iter().position(|(d, s)| *d == dataset && *s == example.source).unwrap_or(0)
    }

    /// A row's weight: its source's share spread over the source's rows, so the mean is 1.
    fn row_weight(&self, source: usize) -> f64 {
        let total: usize = self.counts.iter().sum();
        self.shares[source] * total as f64 / self.counts[source].max(1) as f64
    }

    fn describe(&self) -> String {
        let names: Vec<String> = self
            .keys
            .iter()
            .zip(&self.shares)
            .map(|((d, source), share)| format!("{}/{source} {share:.3}", DATASETS[*d].name))
            .collect();
        names.join(", ")
    }
}

/// Each dataset gets its share of the total weight whatever its size, so 5,000 exam
/// questions do not drown 500 open-ended chats; the mean weight is 1.
fn dataset_weights<'a>(examples: impl Iterator<Item = &'a Example>) -> impl Fn(&str) -> f64 {
    let mut counts = [0usize; DATASETS.len()];
    for e in examples {
        if let Some(i) = DATASETS.iter().position(|s| s.name == e.dataset) {
            counts[i] += 1;
        }
    }
    let total: usize = counts.iter().sum();
    let present: f64 = DATASETS.iter().zip(counts).filter(|(_, c)| *c > 0).map(|(s, _)| s.weight).sum();
    move |name: &str| match DATASETS.iter().position(|s| s.name == name) {
        Some(i) if counts[i] > 0 && present > 0.0 => DATASETS[i].weight / present * total as f64 / counts[i] as f64,
        _ => 0.0,
    }
}

/// FTRL-Proximal state of one head: coordinates are one intercept per source, the dense
/// features, then the buckets.
struct Ftrl {
    z: Vec<f64>,
    n: Vec<f64>,
    params: TrainParams,
    /// Where the dense features start: after the intercepts.
    dense_at: usize,
    /// Whether length features may only lower the output (ease, not answer length).
    lengths_lower: bool,
}

/// How an output is fitted: a probability (ease) or a plain number (log answer length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    Logistic,
    Squared,
}

/// Length features (`log_chars`, `log_words`, `log_last_user_chars`, `log_question_stem_chars`) may only lower
/// adequacy. Inside one exam source, longer questions can look easier (a quirk of how the
/// source was written); across sources and in real traffic, longer prompts carry more work.
/// The constraint keeps the model from learning the quirk.
const NON_POSITIVE_LENGTHS: usize = 4;

impl Ftrl {
    fn new(params: TrainParams, intercepts: usize, lengths_lower: bool) -> Self {
        let size = intercepts + DENSE + BUCKETS;
        Ftrl { z: vec![0.0; size], n: vec![0.0; size], params, dense_at: intercepts, lengths_lower }
    }

    fn hashed_at(&self) -> usize {
        self.dense_at + DENSE
    }

    fn weight(&self, i: usize) -> f64 {
        let z = self.z[i];
        let (l1, l2) = if i < self.dense_at { (0.0, 0.0) } else { (self.params.l1, self.params.l2) };
        if z.abs() <= l1 {
            return 0.0;
        }
        let w = -(z - z.signum() * l1) / ((self.params.beta + self.n[i].sqrt()) / self.params.alpha + l2);
        let length = self.lengths_lower && (self.dense_at..self.dense_at + NON_POSITIVE_LENGTHS).contains(&i);
        if length { w.min(0.0) } else { w }
    }

    fn step(&mut self, coords: &[(usize, f64)], target: f64, weight: f64, loss: Loss) {
        let weights: Vec<f64> = coords.iter().map(|(i, _)| self.weight(*i)).collect();
        let linear: f64 = coords.iter().zip(&weights).map(|((_, x), w)| w * x).sum();
        let prediction = match loss {
            Loss::Logistic => sigmoid(linear),
            Loss::Squared => linear,
        };
        let gradient = (prediction - target) * weight;
        for ((i, x), w) in coords.iter().zip(&weights) {
            let g = gradient * x;
            let sigma = ((self.n[*i] + g * g).sqrt() - self.n[*i].sqrt()) / self.params.alpha;
            self.z[*i] += g - sigma * w;
            self.n[*i] += g * g;
        }
    }
}

/// Trains on the train split of `examples` (held-out rows never), calibrates on the
/// validation split, and returns the finished model.
pub fn train(examples: &[Example], params: &TrainParams) -> RouterModel {
    let usable: Vec<&Example> = examples.iter().filter(|e| !e.held_out).collect();
    let train_examples: Vec<&Example> = usable.iter().copied().filter(|e| e.split == Split::Train).collect();
    let validation: Vec<&Example> = usable.iter().copied().filter(|e| e.split == Split::Validation).collect();
    let scales = match params.labels {
        Labels::Difficulty => fit_scales(&train_examples, params.tier_gaps),
        Labels::Pairs => Scales::default(),
    };

    let sources = Sources::of(&train_examples);
    let rows: Vec<Row> = train_examples
        .iter()
        .map(|e| {
            let (dense, hashed) = featurize(e);
            let source = sources.index(e);
            let length = log_output_tokens(e);
            let targets = match params.labels {
                Labels::Difficulty => [scales.difficulty(e).map(|b| sigmoid(-b)), e.labels[1], length],
                Labels::Pairs => [e.labels[0], e.labels[1], length],
            };
            Row { source, dense, hashed, weight: sources.row_weight(source), targets }
        })
        .collect();

    let mut model = RouterModel::zeroed(describe(&train_examples, &validation, &sources, &scales, params));
    standardisation(&rows, &mut model);

    for output in 0..OUTPUTS {
        let logistic = output != LOG_OUTPUT_TOKENS;
        let loss = if logistic { Loss::Logistic } else { Loss::Squared };
        let mut ftrl = Ftrl::new(*params, sources.keys.len(), logistic);
        let (dense_at, hashed_at) = (ftrl.dense_at, ftrl.hashed_at());
        let mut order: Vec<usize> = (0..rows.len()).filter(|&r| rows[r].targets[output].is_some()).collect();
        let mut rng = SplitMix64::new(params.seed ^ output as u64);
        let mut coords: Vec<(usize, f64)> = Vec::new();
        for _ in 0..params.epochs {
            rng.shuffle(&mut order);
            for &r in &order {
                let row = &rows[r];
                let Some(target) = row.targets[output] else { continue };
                coords.clear();
                coords.push((row.source, 1.0));
                let z = model.standardize(&row.dense);
                coords.extend(z.iter().enumerate().map(|(d, x)| (dense_at + d, f64::from(*x))));
                coords.extend(row.hashed.iter().map(|(b, x)| (hashed_at + *b as usize, *x)));
                ftrl.step(&coords, target, row.weight, loss);
            }
        }
        let intercept: f64 = sources.shares.iter().enumerate().map(|(i, share)| share * ftrl.weight(i)).sum();
        model.bias[output] = (intercept / sources.shares.iter().sum::<f64>().max(f64::MIN_POSITIVE)) as f32;
        for d in 0..DENSE {
            model.dense_weights[output][d] = ftrl.weight(dense_at + d) as f32;
        }
        for b in 0..BUCKETS {
            model.hashed[b * OUTPUTS + output] = ftrl.weight(hashed_at + b) as f32;
        }
    }
    if params.labels == Labels::Difficulty {
        for (weights, prior) in model.dense_weights.iter_mut().zip(params.length_prior) {
            weights[LOG_CHARS] -= prior as f32;
        }
    }

    model.tier_output = [Head::Weak as u32, Head::Mid as u32];
    let validation_weight = dataset_weights(validation.iter().copied());
    let raw: Vec<[f64; OUTPUTS]> = validation.iter().map(|e| raw_logits(&model, &e.prompt)).collect();
    // Each tier's scale from its output's logit, fitted on validation: under v2 a least-squares
    // map onto the difficulty scale (the tiers' abilities are the validation weight's mean of
    // each dataset's placement); under v1 a Platt scale against its pair labels, so "Haiku as
    // good as Opus" and "Sonnet as good as Opus" are each a probability.
    for head in 0..HEADS {
        let target = |e: &Example| match params.labels {
            Labels::Difficulty => scales.difficulty(e).map(|b| -b),
            Labels::Pairs => e.labels[head],
        };
        let points: Vec<(f64, f64, f64)> = validation
            .iter()
            .zip(&raw)
            .filter_map(|(e, logits)| Some((logits[head], target(e)?, validation_weight(e.dataset))))
            .collect();
        let (a, b) = match params.labels {
            Labels::Difficulty => least_squares(&points),
            Labels::Pairs => platt(&points),
        };
        model.platt[head] = (a as f32, b as f32);
    }
    if params.labels == Labels::Difficulty {
        model.scoring = Scoring::ItemResponse { abilities: scales.pooled_tiers(&validation, &validation_weight) };
    }
    let quality = |e: &Example| match params.labels {
        Labels::Difficulty => scales.tier_quality(e),
        Labels::Pairs => e.ladder,
    };
    let rows = rows_from_logits(&model, &validation, &raw, &validation_weight, quality);
    model.calibration.two_tier = [two_tier_table(&rows, Head::Weak), two_tier_table(&rows, Head::Mid)];
    model.calibration.three_tier = three_tier_table(&rows);
    model.with_computed_version()
}

/// Prompts with the router's adequacies and, by `quality`, the tiers' outcomes on them
/// (weak, mid, strong in 0–1): what tolerance tables are built from and checked against.
pub fn scored_rows(
    model: &RouterModel,
    examples: &[&Example],
    weight: &impl Fn(&str) -> f64,
    quality: impl Fn(&Example) -> Option<[f64; 3]>,
) -> Vec<CalibrationRow> {
    let logits: Vec<[f64; OUTPUTS]> = examples.iter().map(|e| raw_logits(model, &e.prompt)).collect();
    rows_from_logits(model, examples, &logits, weight, quality)
}

/// [`scored_rows`] with the tiers' qualities on the item-response scale: each tier's chance
/// at the prompt's fitted difficulty.
pub fn tier_rows(
    model: &RouterModel,
    scales: &Scales,
    examples: &[&Example],
    weight: &impl Fn(&str) -> f64,
) -> Vec<CalibrationRow> {
    scored_rows(model, examples, weight, |e| scales.tier_quality(e))
}

fn rows_from_logits(
    model: &RouterModel,
    examples: &[&Example],
    logits: &[[f64; OUTPUTS]],
    weight: &impl Fn(&str) -> f64,
    quality: impl Fn(&Example) -> Option<[f64; 3]>,
) -> Vec<CalibrationRow> {
    let tier =
        |head: Head, logits: &[f64; OUTPUTS]| model.calibrate(head, logits[model.tier_output[head as usize] as usize]);
    examples
        .iter()
        .zip(logits)
        .filter_map(|(e, logits)| {
            Some(CalibrationRow {
                dataset: DATASETS.iter().position(|s| s.name == e.dataset).unwrap_or(0),
                weak: tier(Head::Weak, logits),
                mid: tier(Head::Mid, logits),
                quality: quality(e)?,
                weight: weight(e.dataset),
            })
        })
        .collect()
}

/// Fits y = a·x + b by weighted least squares.
fn least_squares(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let total: f64 = points.iter().map(|p| p.2).sum();
    if total <= 0.0 {
        return (1.0, 0.0);
    }
    let mean_x = points.iter().map(|(x, _, w)| w * x).sum::<f64>() / total;
    let mean_y = points.iter().map(|(_, y, w)| w * y).sum::<f64>() / total;
    let covariance: f64 = points.iter().map(|(x, y, w)| w * (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _, w)| w * (x - mean_x).powi(2)).sum();
    let a = if variance > 1e-12 { covariance / variance } else { 0.0 };
    (a, mean_y - a * mean_x)
}

const DEPLOYER_NAME: &str = super::dataset::DEPLOYER.name;

/// Index of `log_chars` among the dense features, which the length prior weighs.
const LOG_CHARS: usize = 0;

/// The item-response scale of each dataset, fitted on its training prompts, with the
/// tiers placed on it.
#[derive(Debug, Clone, Default)]
pub struct Scales {
    per_dataset: Vec<DatasetScale>,
}

#[derive(Debug, Clone)]
struct DatasetScale {
    name: &'static str,
    scale: irt::Scale,
    /// Haiku, Sonnet, Opus.
    tiers: [f64; 3],
}

/// Places the tiers on a dataset's scale. The strongest tier at the higher of the dataset's
/// strongest model and the published floor ([`STRONGEST_TIER_FLOORS`]): both are lower
/// bounds for today's strongest tier, and a lower strongest tier makes every gap in quality
/// larger, never smaller, so the promise errs on the side of quality. The cheaper tiers
/// where their accuracy over the dataset's prompts is the strongest's with the logit gap
/// taken off.
fn place_tiers(scale: &irt::Scale, difficulties: &[f64], floor: Option<f64>, gaps: [f64; 2]) -> [f64; 3] {
    let reference = scale.abilities.values().copied().fold(f64::NEG_INFINITY, f64::max);
    if !reference.is_finite() || difficulties.is_empty() {
        return [0.0; 3];
    }
    let floor = floor.and_then(|accuracy| irt::ability_for_accuracy(difficulties, accuracy));
    let strongest = floor.map_or(reference, |f| f.max(reference));
    let accuracy = difficulties.iter().map(|b| sigmoid(strongest - b)).sum::<f64>() / difficulties.len() as f64;
    let logit = (accuracy / (1.0 - accuracy)).ln();
    let place = |gap: f64| irt::ability_for_accuracy(difficulties, sigmoid(logit - gap)).unwrap_or(strongest - gap);
    [place(gaps[0]), place(gaps[1]), strongest]
}

/// Every model's outcome on a prompt as a success in 0–1.
fn responses(example: &Example) -> irt::Responses<'_> {
    example.outcomes.iter().map(|(m, v)| (m.as_str(), example.kind.normalise(*v))).collect()
}

/// Fits one scale per dataset present in `examples` and places the tiers on it, the
/// cheaper ones `tier_gaps` below the strongest.
pub fn fit_scales(examples: &[&Example], tier_gaps: [f64; 2]) -> Scales {
    let per_dataset = DATASETS
        .iter()
        .filter_map(|spec| {
            let items: Vec<irt::Responses<'_>> =
                examples.iter().filter(|e| e.dataset == spec.name).map(|e| responses(e)).collect();
            if items.is_empty() {
                return None;
            }
            let (scale, difficulties) = irt::fit(&items);
            let floor = STRONGEST_TIER_FLOORS.iter().find(|(name, _)| *name == spec.name).map(|(_, a)| *a);
            // The deployer's own outcomes are the tiers': their abilities are measured, not placed.
            let measured = spec.ladder.map(|tier| scale.abilities.get(tier).copied());
            let tiers = match (spec.name == DEPLOYER_NAME, measured) {
                (true, [Some(haiku), Some(sonnet), Some(opus)]) => [haiku, sonnet, opus],
                _ => place_tiers(&scale, &difficulties, floor, tier_gaps),
            };
            Some(DatasetScale { name: spec.name, scale, tiers })
        })
        .collect();
    Scales { per_dataset }
}

impl Scales {
    /// Each dataset's abilities, strongest first, and the tiers' placements.
    pub fn describe(&self) -> String {
        let datasets: Vec<String> = self
            .per_dataset
            .iter()
            .map(|d| {
                let mut abilities: Vec<(&String, &f64)> = d.scale.abilities.iter().collect();
                abilities.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
                let listed: Vec<String> = abilities.iter().map(|(m, a)| format!("{m} {a:.2}")).collect();
                let [haiku, sonnet, opus] = d.tiers;
                format!("{}: {}; tiers haiku {haiku:.2}, sonnet {sonnet:.2}, opus {opus:.2}", d.name, listed.join(", "))
            })
            .collect();
        datasets.join("; ")
    }

    pub fn of(&self, dataset: &str) -> Option<&irt::Scale> {
        self.per_dataset.iter().find(|d| d.name == dataset).map(|d| &d.scale)
    }

    /// The tiers' abilities (Haiku, Sonnet, Opus) on a dataset's scale.
    pub fn tiers(&self, dataset: &str) -> Option<[f64; 3]> {
        self.per_dataset.iter().find(|d| d.name == dataset).map(|d| d.tiers)
    }

    /// Each tier's chance of an adequate answer to `example`, at its fitted difficulty.
    pub fn tier_quality(&self, example: &Example) -> Option<[f64; 3]> {
        let tiers = self.tiers(example.dataset)?;
        let difficulty = self.difficulty(example)?;
        Some(tiers.map(|ability| sigmoid(ability - difficulty)))
    }

    /// The tiers' abilities the router scores with: each dataset's placement weighted by
    /// its share of `examples`' weight.
    fn pooled_tiers(&self, examples: &[&Example], weight: &impl Fn(&str) -> f64) -> [f32; 3] {
        let mut sums = [0.0f64; 3];
        let mut total = 0.0;
        for e in examples {
            if let Some(tiers) = self.tiers(e.dataset) {
                let w = weight(e.dataset);
                total += w;
                for (sum, ability) in sums.iter_mut().zip(tiers) {
                    *sum += w * ability;
                }
            }
        }
        sums.map(|s| if total > 0.0 { (s / total) as f32 } else { 0.0 })
    }

    /// A prompt's difficulty on its dataset's scale; `None` when the scale is unknown or
    /// no model with an ability answered it.
    pub fn difficulty(&self, example: &Example) -> Option<f64> {
        let scale = self.of(example.dataset)?;
        let answers = responses(example);
        answers.iter().any(|(m, _)| scale.abilities.contains_key(*m)).then(|| irt::difficulty(scale, &answers))
    }
}

/// Natural log of the expected answer length in tokens: the mean over the models' answers
/// at about four characters a token.
fn log_output_tokens(example: &Example) -> Option<f64> {
    let lengths: Vec<f64> = example.out_chars.values().copied().filter(|c| *c > 0.0).collect();
    (!lengths.is_empty()).then(|| (lengths.iter().sum::<f64>() / lengths.len() as f64 / CHARS_PER_TOKEN).max(1.0).ln())
}

/// How the shipped answer lengths (characters) turn into tokens.
const CHARS_PER_TOKEN: f64 = 4.0;

fn describe(
    train: &[&Example],
    validation: &[&Example],
    sources: &Sources,
    scales: &Scales,
    params: &TrainParams,
) -> String {
    let count = |rows: &[&Example], name: &str| rows.iter().filter(|e| e.dataset == name).count();
    let per_dataset: Vec<String> = DATASETS
        .iter()
        .filter(|s| count(train, s.name) + count(validation, s.name) > 0)
        .map(|s| format!("{} {}/{}", s.name, count(train, s.name), count(validation, s.name)))
        .collect();
    format!(
        "logistic regression (FTRL, {} epochs, alpha {}, l2 {}, seed {:#x}); train/validation rows: {}; \
         training weight by source: {}; {}",
        params.epochs,
        params.alpha,
        params.l2,
        params.seed,
        per_dataset.join(", "),
        sources.describe(),
        match params.labels {
            Labels::Difficulty => format!(
                "labels: the weak tier item-response difficulty from every model, the mid tier its proxy pairs, \
                 length priors {:?} ({}); answer length: mean over the models' answers",
                params.length_prior,
                scales.describe()
            ),
            Labels::Pairs => "labels: proxy pairs per tier (router v1)".to_owned(),
        }
    )
}

/// How much each cheaper tier needs the strongest by `model`'s reading: the score
/// evaluations rank prompts by (higher needs the strong tier more).
pub fn need_scores(model: &RouterModel, prompt: &str) -> [f64; 2] {
    let logits = raw_logits(model, prompt);
    [Head::Weak, Head::Mid].map(|head| 1.0 - model.calibrate(head, logits[model.tier_output[head as usize] as usize]))
}

pub fn raw_logits(model: &RouterModel, prompt: &str) -> [f64; OUTPUTS] {
    let mut sink = CollectSink::default();
    let extracted = extract(&Conversation::from_prompt_cell(prompt), &mut sink);
    let mut sums = [0f32; OUTPUTS];
    for (bucket, sign) in &sink.features {
        for (head, sum) in sums.iter_mut().enumerate() {
            *sum += sign * model.hashed[*bucket as usize * OUTPUTS + head];
        }
    }
    model.logits(&extracted, sums)
}

fn standardisation(rows: &[Row], model: &mut RouterModel) {
    if rows.is_empty() {
        return;
    }
    let n = rows.len() as f64;
    for d in 0..DENSE {
        let mean = rows.iter().map(|r| f64::from(r.dense[d])).sum::<f64>() / n;
        let variance = rows.iter().map(|r| (f64::from(r.dense[d]) - mean).powi(2)).sum::<f64>() / n;
        model.dense_mean[d] = mean as f32;
        model.dense_scale[d] = (1.0 / variance.sqrt().max(1e-3)) as f32;
    }
}

/// Fits p = sigmoid(a·logit + b) to soft labels by Newton's method on the weighted log loss.
fn platt(points: &[(f64, f64, f64)]) -> (f64, f64) {
    let (mut a, mut b) = (1.0f64, 0.0f64);
    if points.is_empty() {
        return (a, b);
    }
    for _ in 0..50 {
        let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-6, 0.0, 1e-6);
        for &(x, y, w) in points {
            let p = sigmoid(a * x + b);
            let r = (p - y) * w;
            let s = (p * (1.0 - p)).max(1e-9) * w;
            ga += r * x;
            gb += r;
            haa += s * x * x;
            hab += s * x;
            hbb += s;
        }
        let det = haa * hbb - hab * hab;
        if det.abs() < 1e-12 {
            break;
        }
        let da = (hbb * ga - hab * gb) / det;
        let db = (haa * gb - hab * ga) / det;
        a -= da;
        b -= db;
        if da.abs() < 1e-10 && db.abs() < 1e-10 {
            break;
        }
    }
    (a, b)
}

/// A validation prompt with its calibrated adequacies and its ladder's outcomes.
#[derive(Debug, Clone, Copy)]
pub struct CalibrationRow {
    /// Index into [`DATASETS`].
    pub dataset: usize,
    pub weak: f64,
    pub mid: f64,
    /// Normalised outcomes of the weak, mid and strong models.
    pub quality: [f64; 3],
    pub weight: f64,
}

/// Relative quality drop and relative cost of routing each row to `tier_of(row)` (0, 1, 2).
pub fn drop_and_cost(rows: &[CalibrationRow], tier_of: impl Fn(&CalibrationRow) -> usize) -> (f64, f64) {
    let (mut strong, mut routed, mut cost, mut strong_cost) = (0.0, 0.0, 0.0, 0.0);
    for row in rows {
        let tier = tier_of(row);
        strong += row.weight * row.quality[2];
        routed += row.weight * row.quality[tier];
        cost += row.weight * TIER_COST[tier];
        strong_cost += row.weight * TIER_COST[2];
    }
    if strong <= 0.0 || strong_cost <= 0.0 {
        return (0.0, 1.0);
    }
    ((strong - routed) / strong, cost / strong_cost)
}

/// For each tolerance, the threshold that keeps every dataset's drop within it: the highest
/// of the datasets' own thresholds.
fn two_tier_table(rows: &[CalibrationRow], head: Head) -> Vec<f32> {
    let mut table = vec![0f32; TOLERANCE_STEPS];
    for dataset in 0..DATASETS.len() {
        let own: Vec<CalibrationRow> = rows.iter().copied().filter(|r| r.dataset == dataset).collect();
        if own.is_empty() {
            continue;
        }
        for (slot, threshold) in table.iter_mut().zip(pooled_two_tier_table(&own, head)) {
            *slot = slot.max(threshold);
        }
    }
    table
}

/// For each tolerance, the lowest threshold (most cheap calls) whose drop over `rows` stays
/// within it, routing between the head's tier and the strongest.
fn pooled_two_tier_table(rows: &[CalibrationRow], head: Head) -> Vec<f32> {
    let cheaper = head as usize;
    let adequacy = |r: &CalibrationRow| if head == Head::Weak { r.weak } else { r.mid };
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by(|&a, &b| adequacy(&rows[b]).total_cmp(&adequacy(&rows[a])).then(a.cmp(&b)));
    let strong: f64 = rows.iter().map(|r| r.weight * r.quality[2]).sum();
    // drops[m]: relative drop with the m most adequate rows on the cheaper tier.
    let mut drops = Vec::with_capacity(rows.len() + 1);
    let mut lost = 0.0;
    drops.push(0.0);
    for &i in &order {
        lost += rows[i].weight * (rows[i].quality[2] - rows[i].quality[cheaper]);
        drops.push(if strong > 0.0 { lost / strong } else { 0.0 });
    }
    (0..TOLERANCE_STEPS)
        .map(|percent| {
            let tolerance = percent as f64 / 100.0;
            match (0..drops.len()).rev().find(|&m| drops[m] <= tolerance) {
                Some(0) | None => NEVER,
                Some(m) if m == rows.len() => 0.0,
                Some(m) => adequacy(&rows[order[m - 1]]) as f32,
            }
        })
        .collect()
}

/// Candidate thresholds: quantiles of the adequacies in 2.5 % steps, plus "never".
fn candidates(values: impl Iterator<Item = f64>) -> Vec<f32> {
    let mut sorted: Vec<f64> = values.collect();
    sorted.sort_by(f64::total_cmp);
    let mut out = vec![NEVER];
    if let Some(last) = sorted.len().checked_sub(1) {
        for q in 0..=40 {
            out.push(sorted[(last * q) / 40] as f32);
        }
    }
    out.dedup();
    out
}

fn three_tier_table(rows: &[CalibrationRow]) -> Vec<[f32; 2]> {
    let weak_candidates = candidates(rows.iter().map(|r| r.weak));
    let mid_candidates = candidates(rows.iter().map(|r| r.mid.max(r.weak)));
    let datasets: Vec<Vec<CalibrationRow>> = (0..DATASETS.len())
        .map(|d| rows.iter().copied().filter(|r| r.dataset == d).collect::<Vec<_>>())
        .filter(|own| !own.is_empty())
        .collect();
    // (worst dataset's drop, pooled cost, thresholds)
    let mut options: Vec<(f64, f64, [f32; 2])> = Vec::new();
    for &tw in &weak_candidates {
        for &tm in &mid_candidates {
            let route = |r: &CalibrationRow| route3(r.weak, r.mid, tw, tm);
            let worst = datasets.iter().map(|own| drop_and_cost(own, route).0).fold(f64::NEG_INFINITY, f64::max);
            let (_, cost) = drop_and_cost(rows, route);
            options.push((worst, cost, [tw, tm]));
        }
    }
    // Looser tolerances may only lower thresholds: a deployer who accepts more loss must
    // never see a prompt move to a dearer tier.
    let mut table = Vec::with_capacity(TOLERANCE_STEPS);
    let mut ceiling = [f32::INFINITY, f32::INFINITY];
    for percent in 0..TOLERANCE_STEPS {
        let tolerance = percent as f64 / 100.0;
        let choice = options
            .iter()
            .filter(|(drop, _, t)| *drop <= tolerance && t[0] <= ceiling[0] && t[1] <= ceiling[1])
            .min_by(|x, y| x.1.total_cmp(&y.1).then(x.0.total_cmp(&y.0)))
            .map_or(ceiling.map(|c| c.min(NEVER)), |(_, _, t)| *t);
        ceiling = choice;
        table.push(choice);
    }
    table
}

/// The three-tier rule the policy applies: 0 weak, 1 mid, 2 strong.
pub fn route3(weak: f64, mid: f64, weak_threshold: f32, mid_threshold: f32) -> usize {
    if weak >= f64::from(weak_threshold) {
        0
    } else if mid.max(weak) >= f64::from(mid_threshold) {
        1
    } else {
        2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(weak: f64, q: [f64; 3]) -> CalibrationRow {
        CalibrationRow { dataset: 0, weak, mid: weak, quality: q, weight: 1.0 }
    }

    #[test]
    fn every_dataset_keeps_the_promise() {
        // Dataset 0 tolerates routing everything weak; dataset 1 loses everything it routes.
        let mut rows = vec![row(0.9, [1.0, 1.0, 1.0]), row(0.8, [1.0, 1.0, 1.0])];
        rows.push(CalibrationRow { dataset: 1, ..row(0.85, [0.0, 0.0, 1.0]) });
        rows.push(CalibrationRow { dataset: 1, ..row(0.1, [1.0, 1.0, 1.0]) });
        let table = two_tier_table(&rows, Head::Weak);
        assert!(table[0] > 0.85, "dataset 1's loss forbids its 0.85 row at 0 %: {}", table[0]);
        let pooled = pooled_two_tier_table(&rows, Head::Weak);
        assert!(pooled[30] <= table[30]);
    }

    #[test]
    fn two_tier_thresholds_keep_the_drop_within_tolerance() {
        // Adequacy ranks the rows well: the two where weak fails are the least adequate.
        let rows = [
            row(0.9, [1.0, 1.0, 1.0]),
            row(0.8, [1.0, 1.0, 1.0]),
            row(0.3, [0.0, 1.0, 1.0]),
            row(0.2, [0.0, 1.0, 1.0]),
        ];
        let table = two_tier_table(&rows, Head::Weak);
        assert_eq!(table[0], 0.8, "both adequate rows go weak at no loss");
        assert_eq!(table[25], 0.3, "a quarter lost is accepted at 25 %");
        assert_eq!(table[100], 0.0);
        assert!(table.windows(2).all(|w| w[1] <= w[0]), "looser tolerance never raises the bar");
    }

    #[test]
    fn three_tier_choice_is_cheapest_within_tolerance() {
        let rows = [row(0.9, [1.0, 1.0, 1.0]), row(0.5, [0.0, 1.0, 1.0]), row(0.1, [0.0, 0.0, 1.0])];
        let table = three_tier_table(&rows);
        let [tw, tm] = table[0];
        let tiers: Vec<usize> = rows.iter().map(|r| route3(r.weak, r.mid, tw, tm)).collect();
        assert_eq!(tiers, vec![0, 1, 2]);
        let (drop, _) = drop_and_cost(&rows, |r| route3(r.weak, r.mid, table[50][0], table[50][1]));
        assert!(drop <= 0.5);
        assert!(table.windows(2).all(|w| w[1][0] <= w[0][0] && w[1][1] <= w[0][1]), "monotone: {table:?}");
    }

    #[test]
    fn platt_recovers_a_known_scale() {
        let points: Vec<(f64, f64, f64)> =
            (-20..=20).map(|i| f64::from(i) / 4.0).map(|x| (x, sigmoid(2.0 * x - 1.0), 1.0)).collect();
        let (a, b) = platt(&points);
        assert!((a - 2.0).abs() < 1e-3 && (b + 1.0).abs() < 1e-3, "{a} {b}");
    }

    /// The artifact every function embeds is exactly what training produces from the
    /// repository's data: nobody can ship weights that the data does not reproduce.
    #[test]
    fn the_shipped_artifact_is_reproduced_by_training() {
        let examples = crate::routing::dataset::load_shipped(&crate::routing::dataset::default_dir()).unwrap();
        let first = train(&examples, &TrainParams::default()).to_bytes();
        let again = train(&examples, &TrainParams::default()).to_bytes();
        assert!(first == again, "training is not deterministic");
        assert!(
            first == RouterModel::embedded_bytes(),
            "shared/router/model.bin is stale: run `cargo xtask train-router` and commit the result"
        );
    }

    #[test]
    fn held_out_rows_never_reach_training() {
        let examples = crate::routing::dataset::load_shipped(&crate::routing::dataset::default_dir()).unwrap();
        let with_held_out = train(&examples, &TrainParams::default()).to_bytes();
        let without: Vec<Example> = examples.into_iter().filter(|e| !e.held_out).collect();
        assert!(with_held_out == train(&without, &TrainParams::default()).to_bytes());
    }
}
