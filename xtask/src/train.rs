//! `cargo xtask train-router`: trains the routing model from the shipped data and writes
//! the artifact every function embeds; `--check` verifies the shipped artifact instead.

use std::path::PathBuf;

use gateway_core::routing::dataset::{self, Example};
use gateway_core::routing::train::{self, Labels, TrainParams};
use gateway_core::routing::{RouterModel, Split};

use crate::{Result, candidate, eval, paths, unseen};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training data, repeatable: a directory laid out as `data/routing/` (the shipped
    /// datasets, the default), and the calibration pipeline's graded outcomes (a `.jsonl`
    /// file or a directory of them, e.g. a copy of `calibration/dataset/`). With outcomes,
    /// the result is a candidate under `target/router-candidates/`, evaluated beside the
    /// artifact in use; the shipped artifact is never overwritten by it.
    #[arg(long)]
    pub data: Vec<PathBuf>,
    /// Promote a candidate (its directory under `target/router-candidates/`): check it,
    /// then copy its artifact and evaluation to `--out` (required), the file the functions'
    /// `ROUTER_MODEL_PATH` names.
    #[arg(long, requires = "out", conflicts_with_all = ["check", "unseen_sources"])]
    pub promote: Option<PathBuf>,
    /// Where to write the artifact.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Retrain and compare with the artifact instead of writing it; fails on any difference.
    #[arg(long)]
    pub check: bool,
    /// Instead of training the artifact, train one model per source of prompts without
    /// that source and report how each does on it: generalisation to unseen writers.
    #[arg(long, conflicts_with_all = ["check", "out"])]
    pub unseen_sources: bool,
    /// What the text model learns: `difficulty` (item-response difficulty from every
    /// model, shipped) or `pairs` (router v1's proxy pairs, to compare with).
    #[arg(long, value_enum, default_value_t = LabelsArg::Difficulty)]
    pub labels: LabelsArg,
    /// The length priors of the weak and mid tiers' outputs, `haiku,sonnet`: how much lower
    /// each logit is per standard deviation of log prompt length (default: the shipped ones).
    #[arg(long, value_parser = parse_pair)]
    pub length_prior: Option<[f64; 2]>,
    /// The cheaper tiers' gaps below the strongest as `haiku,sonnet` logit differences of
    /// accuracy (default: from the published accuracies in `routing::train`).
    #[arg(long, value_parser = parse_pair)]
    pub tier_gaps: Option<[f64; 2]>,
    /// L2 regularisation of the text model (default: the shipped value).
    #[arg(long)]
    pub l2: Option<f64>,
}

fn parse_pair(value: &str) -> std::result::Result<[f64; 2], String> {
    let numbers: Vec<f64> = value
        .split(',')
        .map(|v| v.trim().parse::<f64>().map_err(|_| format!("`{v}` is not a number")))
        .collect::<std::result::Result<_, _>>()?;
    match numbers.as_slice() {
        [haiku, sonnet] if *haiku >= 0.0 && *sonnet >= 0.0 => Ok([*haiku, *sonnet]),
        _ => Err(format!("`{value}` is not two non-negative numbers `haiku,sonnet`")),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelsArg {
    Pairs,
    Difficulty,
}

impl TrainArgs {
    fn params(&self) -> TrainParams {
        let labels = match self.labels {
            LabelsArg::Pairs => Labels::Pairs,
            LabelsArg::Difficulty => Labels::Difficulty,
        };
        let defaults = TrainParams::default();
        TrainParams {
            labels,
            length_prior: self.length_prior.unwrap_or(defaults.length_prior),
            tier_gaps: self.tier_gaps.unwrap_or(defaults.tier_gaps),
            l2: self.l2.unwrap_or(defaults.l2),
            ..defaults
        }
    }
}

pub fn artifact_path() -> PathBuf {
    paths::repo_root().join("shared").join("router").join("model.bin")
}

/// The shipped datasets and any deployer outcomes named by `--data`.
pub(crate) fn load_data(paths_given: &[PathBuf]) -> Result<(Vec<Example>, bool)> {
    let shipped_dir = |p: &PathBuf| p.is_dir() && p.join(dataset::MMLU_PRO.file).exists();
    let mut examples = Vec::new();
    let shipped: Vec<&PathBuf> = paths_given.iter().filter(|p| shipped_dir(p)).collect();
    match shipped.as_slice() {
        [] => examples.extend(dataset::load_shipped(&paths::repo_root().join("data").join("routing"))?),
        [dir] => examples.extend(dataset::load_shipped(dir)?),
        _ => return Err("--data names more than one directory of shipped datasets".into()),
    }
    let mut deployer = false;
    for path in paths_given.iter().filter(|p| !shipped_dir(p)) {
        if !path.exists() {
            return Err(format!("--data {}: no such file or directory", path.display()).into());
        }
        let outcomes = dataset::load_calibration(path)?;
        println!("train-router: {} graded prompts of your traffic from {}", outcomes.len(), path.display());
        deployer = true;
        examples.extend(outcomes);
    }
    Ok((examples, deployer))
}

pub fn run(args: &TrainArgs) -> Result<bool> {
    if let (Some(candidate), Some(out)) = (&args.promote, &args.out) {
        return candidate::promote(candidate, out).map(|()| true);
    }
    let (examples, deployer) = load_data(&args.data)?;
    summarise(&examples);
    if args.unseen_sources {
        let started = std::time::Instant::now();
        let rows = unseen::unseen_sources(&examples, &args.params());
        print!("{}", unseen::render(&rows));
        println!(
            "train-router: {} models trained and evaluated in {:.1} s",
            rows.len() / 2,
            started.elapsed().as_secs_f64()
        );
        return Ok(true);
    }
    let started = std::time::Instant::now();
    let model = train::train(&examples, &args.params());
    let bytes = model.to_bytes();
    println!("train-router: trained in {:.1} s: {}", started.elapsed().as_secs_f64(), model.description);
    println!("train-router: model {} ({} bytes)", model.version(), bytes.len());
    report(&examples, &model);
    if let Labels::Difficulty = args.params().labels {
        let v1 = train::train(&examples, &TrainParams { labels: Labels::Pairs, ..TrainParams::default() });
        against_v1(&examples, &model, &v1);
        promise_report(&examples, &model, &args.params());
    }
    if deployer {
        if args.check {
            return Err("--check compares with the shipped artifact, which is trained on the shipped data only".into());
        }
        return candidate::publish(&examples, &model, &args.params(), args.out.as_deref()).map(|_| true);
    }
    let out = args.out.clone().unwrap_or_else(artifact_path);
    if args.check {
        let shipped = std::fs::read(&out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
        let same = shipped == bytes;
        match RouterModel::from_bytes(&shipped) {
            Ok(m) if same => println!("train-router: {} matches a fresh training ({})", out.display(), m.version()),
            Ok(m) => println!("train-router: {} ({}) differs from a fresh training", out.display(), m.version()),
            Err(e) => println!("train-router: {} is not a valid artifact: {e}", out.display()),
        }
        return Ok(same);
    }
    std::fs::write(&out, &bytes).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!("train-router: wrote {}", out.display());
    Ok(true)
}

/// APGR of the learned router and of prompt length on each dataset's validation and test
/// splits, for the ladder's weak→strong and mid→strong pairs: the figures to watch while
/// changing features or training.
fn report(examples: &[Example], model: &RouterModel) {
    use gateway_core::routing::Conversation;
    use gateway_core::routing::eval::curve;
    for spec in dataset::SHIPPED {
        for (label, split, held_out) in [
            ("validation", Split::Validation, false),
            ("test", Split::Test, false),
            ("held-out test", Split::Test, true),
        ] {
            let rows: Vec<(&Example, [f64; 3])> = examples
                .iter()
                .filter(|e| e.dataset == spec.name && e.split == split && e.held_out == held_out)
                .filter_map(|e| Some((e, e.ladder?)))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let adequacy: Vec<_> =
                rows.iter().map(|(e, _)| model.adequacy(&Conversation::from_prompt_cell(&e.prompt))).collect();
            let length: Vec<f64> = rows.iter().map(|(e, _)| e.prompt.len() as f64).collect();
            let mut line = format!("train-router: {:<15} {:<13} n={:<5}", spec.name, label, rows.len());
            for (pair, cheaper) in [("weak", 0usize), ("mid", 1usize)] {
                let weak: Vec<f64> = rows.iter().map(|(_, q)| q[cheaper]).collect();
                let strong: Vec<f64> = rows.iter().map(|(_, q)| q[2]).collect();
                let learned: Vec<f64> =
                    adequacy.iter().map(|a| 1.0 - if cheaper == 0 { a.weak } else { a.mid }).collect();
                let fmt = |v: Option<f64>| v.map_or("  -  ".to_owned(), |v| format!("{v:.3}"));
                line.push_str(&format!(
                    " | {pair}: learned {} length {}",
                    fmt(curve(&learned, &weak, &strong).apgr()),
                    fmt(curve(&length, &weak, &strong).apgr())
                ));
            }
            println!("{line}");
        }
    }
}

/// The learned router against router v1 (trained here from the same data) on each
/// dataset's test split, per pair, with the 95 % paired-bootstrap interval of the
/// difference: what "no worse than today in-domain" is judged by.
fn against_v1(examples: &[Example], model: &RouterModel, v1: &RouterModel) {
    use gateway_core::routing::eval::{bootstrap_apgr, curve, percentile_interval};
    for spec in dataset::SHIPPED {
        let rows: Vec<(&Example, [f64; 3])> = examples
            .iter()
            .filter(|e| e.dataset == spec.name && e.split == Split::Test && !e.held_out)
            .filter_map(|e| Some((e, e.ladder?)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let strong: Vec<f64> = rows.iter().map(|(_, q)| q[2]).collect();
        let mut line = format!("train-router: against v1 {:<15} test n={:<5}", spec.name, rows.len());
        for (pair, cheaper) in [("weak", 0usize), ("mid", 1usize)] {
            let weak: Vec<f64> = rows.iter().map(|(_, q)| q[cheaper]).collect();
            let need = |m: &RouterModel| -> Vec<f64> {
                rows.iter().map(|(e, _)| train::need_scores(m, &e.prompt)[cheaper]).collect()
            };
            let (learned, old) = (need(model), need(v1));
            let draws = bootstrap_apgr(&[&learned, &old], &weak, &strong, eval::BOOTSTRAP_RESAMPLES, 0x0005_ee11);
            let differences: Vec<f64> = draws.iter().filter_map(|d| Some(d[0]? - d[1]?)).collect();
            let fmt = |v: Option<f64>| v.map_or("  -  ".to_owned(), |v| format!("{v:.3}"));
            let interval = percentile_interval(&differences, eval::CONFIDENCE)
                .map_or("n/a".to_owned(), |(low, high)| format!("[{low:+.3}, {high:+.3}]"));
            line.push_str(&format!(
                " | {pair}: learned {} v1 {} difference {interval}",
                fmt(curve(&learned, &weak, &strong).apgr()),
                fmt(curve(&old, &weak, &strong).apgr())
            ));
        }
        println!("{line}");
    }
}

/// The tolerance promise on each dataset's test split, three tiers, with the tiers'
/// qualities on the item-response scale (the tiers' chances at each prompt's difficulty
/// fitted from every model's outcomes): the promised drop against the observed one, the
/// share each tier gets and the cost against always the strongest, at catalog price ratios.
fn promise_report(examples: &[Example], model: &RouterModel, params: &TrainParams) {
    let usable: Vec<&Example> = examples.iter().filter(|e| !e.held_out).collect();
    let train_split: Vec<&Example> = usable.iter().copied().filter(|e| e.split == Split::Train).collect();
    let scales = train::fit_scales(&train_split, params.tier_gaps);
    println!("train-router: tier placement: {}", scales.describe());
    for spec in dataset::DATASETS {
        let test: Vec<&Example> =
            usable.iter().copied().filter(|e| e.dataset == spec.name && e.split == Split::Test).collect();
        let rows = train::tier_rows(model, &scales, &test, &|_| 1.0);
        if rows.is_empty() {
            continue;
        }
        let mut line = format!("train-router: promise {:<15} test n={:<5}", spec.name, rows.len());
        for percent in [1.0, 5.0, 10.0, 20.0] {
            let f = gateway_core::routing::candidate::at_tolerance(model, &rows, percent);
            line.push_str(&format!(
                " | {percent:.0} %: drop {:.1} %, H/S/O {:.0}/{:.0}/{:.0} %, cost {:.0} %",
                f.drop * 100.0,
                f.shares[0] * 100.0,
                f.shares[1] * 100.0,
                f.shares[2] * 100.0,
                f.cost * 100.0
            ));
        }
        println!("{line}");
    }
}

fn summarise(examples: &[Example]) {
    for spec in dataset::SHIPPED {
        let rows: Vec<&Example> = examples.iter().filter(|e| e.dataset == spec.name).collect();
        let count = |split: Split| rows.iter().filter(|e| e.split == split && !e.held_out).count();
        let held_out = rows.iter().filter(|e| e.held_out).count();
        println!(
            "train-router: {:<15} {:>6} rows: train {:>5}, validation {:>5}, test {:>5}, held out (never trained on) {:>5}",
            spec.name,
            rows.len(),
            count(Split::Train),
            count(Split::Validation),
            count(Split::Test),
            held_out
        );
    }
}
