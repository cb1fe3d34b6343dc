//! `cargo xtask eval-router --shipped`: the routers on the shipped datasets, on one split
//! (the test split unless `--split` says otherwise).
//!
//! Each dataset is evaluated on both pairs of its ladder: weak → strong, scored by the
//! model's weak head and checked against its weak thresholds, and mid → strong, scored by
//! `1 − adequacy.mid` and checked against the mid head's thresholds, as the policy routes
//! between Sonnet and Opus. MMLU-Pro is also split by source: rows whose `src` starts with
//! `ori_mmlu` are MMLU test questions the model never trained on, whatever their split,
//! which makes them the closest thing here to the unseen public benchmarks the router will
//! be judged on. Every slice also gets the three-tier rule of the policy on its full ladder.
//!
//! The cheaper model of a pair is priced as the tier it stands for (Haiku for weak, Sonnet
//! for mid), the strong one as Opus, all with the same tokens per row (see the parent
//! module), so costs compare the catalog's prices and nothing else.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use gateway_core::catalog::Tier;
use gateway_core::routing::dataset::{self, DatasetSpec, Example, SHIPPED};
use gateway_core::routing::{Head, RouterModel};
use serde::Serialize;

use super::report::{comparison, interval, number, pct, signed_points};
use super::{
    BOOTSTRAP_RESAMPLES, EvalArgs, EvalOptions, EvalReport, EvalRow, SplitFilter, TOLERANCES_PERCENT, ThreeTierRow,
    evaluate, head_name, sanitize, svg, write_file,
};
use crate::{Result, paths};

/// Promised tolerances of the tolerance table, in percent.
const TABLE_TOLERANCES: [f64; 4] = [1.0, 5.0, 10.0, 20.0];
/// Promised tolerances of the learned router's rows in the three-tier table, in percent.
const THREE_TIER_TOLERANCES: [f64; 4] = [0.0, 5.0, 10.0, 20.0];

/// Which rows of a dataset's split are evaluated together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slice {
    /// Every row.
    All,
    /// Rows from other sources than MMLU's test set.
    Other,
    /// MMLU test questions (`src` starts with `ori_mmlu`): never trained on.
    OriMmlu,
}

impl Slice {
    fn keeps(self, example: &Example) -> bool {
        match self {
            Slice::All => true,
            Slice::Other => !example.held_out,
            Slice::OriMmlu => example.held_out,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Slice::All => "all",
            Slice::Other => "other",
            Slice::OriMmlu => "ori_mmlu",
        }
    }

    /// The dataset column of the tables.
    pub fn label(self, dataset: &str) -> String {
        match self {
            Slice::All => dataset.to_owned(),
            Slice::Other => format!("{dataset} (other sources)"),
            Slice::OriMmlu => format!("{dataset} (ori_mmlu, never trained on)"),
        }
    }
}

/// `weak→strong` or `mid→strong`.
pub fn pair_label(head: Head) -> String {
    format!("{}→strong", head_name(head))
}

/// One dataset slice on one pair of its ladder.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairResult {
    pub name: &'static str,
    pub slice: Slice,
    /// The cheaper model's head: `weak` or `mid`.
    pub pair: Head,
    /// Models of the cheaper and strong outcome.
    pub cheap: &'static str,
    pub strong: &'static str,
    /// Where the chart goes.
    pub svg: String,
    pub report: EvalReport,
}

/// One dataset slice on three tiers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThreeTierResult {
    pub name: &'static str,
    pub slice: Slice,
    pub rows: usize,
    /// Models of the weak, mid and strong outcomes.
    pub ladder: [&'static str; 3],
    pub table: Vec<ThreeTierRow>,
}

/// Everything `--shipped` finds; serialises to its `--json` object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipped {
    pub model_version: String,
    pub split: &'static str,
    /// Tiers the weak, mid and strong models are priced as.
    pub tiers: [Tier; 3],
    pub datasets: Vec<PairResult>,
    pub three_tier: Vec<ThreeTierResult>,
}

/// `target/eval-router/shipped-<dataset>[_<slice>]-<pair>.svg`.
pub fn svg_path(name: &str, slice: Slice, head: Head) -> PathBuf {
    let stem = match slice {
        Slice::All => sanitize(name),
        _ => format!("{}_{}", sanitize(name), slice.as_str()),
    };
    charts_dir().join(format!("shipped-{stem}-{}.svg", head_name(head)))
}

/// A dataset error with its cause, which its own message leaves out.
fn describe(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    message
}

/// Evaluates one dataset's examples (already restricted to the split).
fn evaluate_dataset(
    model: &RouterModel,
    tiers: [Tier; 3],
    spec: &DatasetSpec,
    examples: &[Example],
    shipped: &mut Shipped,
) -> Result<()> {
    let [weak, mid, strong] = spec.ladder;
    let [weak_tier, mid_tier, strong_tier] = tiers;
    let slices: &[Slice] =
        if examples.iter().any(|e| e.held_out) { &[Slice::All, Slice::Other, Slice::OriMmlu] } else { &[Slice::All] };
    for &slice in slices {
        let kept: Vec<&Example> = examples.iter().filter(|e| slice.keeps(e)).collect();
        for (head, cheap, cheap_tier) in [(Head::Weak, weak, weak_tier), (Head::Mid, mid, mid_tier)] {
            let rows: Vec<EvalRow> =
                kept.iter().filter_map(|e| EvalRow::from_example(e, cheap, None, strong)).collect();
            let opts = EvalOptions::new(model, [cheap_tier, mid_tier, strong_tier])?.with_head(head);
            shipped.datasets.push(PairResult {
                name: spec.name,
                slice,
                pair: head,
                cheap,
                strong,
                svg: svg_path(spec.name, slice, head).display().to_string(),
                report: evaluate(&rows, &opts),
            });
        }
        let rows: Vec<EvalRow> =
            kept.iter().filter_map(|e| EvalRow::from_example(e, weak, Some(mid), strong)).collect();
        let report = evaluate(&rows, &EvalOptions::new(model, tiers)?);
        shipped.three_tier.push(ThreeTierResult {
            name: spec.name,
            slice,
            rows: report.rows,
            ladder: spec.ladder,
            table: report.three_tier.unwrap_or_default(),
        });
    }
    Ok(())
}

/// Every shipped dataset under `dir`, restricted to `split`, priced as `tiers` (weak, mid,
/// strong).
pub fn evaluate_shipped(model: &RouterModel, tiers: [Tier; 3], split: SplitFilter, dir: &Path) -> Result<Shipped> {
    let mut shipped = Shipped {
        model_version: model.version().to_owned(),
        split: split.as_str(),
        tiers,
        datasets: Vec::new(),
        three_tier: Vec::new(),
    };
    for spec in SHIPPED {
        let examples = dataset::load(dir, &spec).map_err(|e| format!("dataset {}: {}", spec.name, describe(&e)))?;
        let examples: Vec<Example> = examples.into_iter().filter(|e| split.keeps_split(e.split)).collect();
        evaluate_dataset(model, tiers, &spec, &examples, &mut shipped)?;
    }
    Ok(shipped)
}

fn at_tolerance<T>(rows: &[T], promised: impl Fn(&T) -> Option<f64>, percent: f64) -> Option<&T> {
    rows.iter().find(|r| promised(r).is_some_and(|p| (p * 100.0 - percent).abs() < 1e-9))
}

fn percents(values: &[f64]) -> String {
    values.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join("/")
}

/// The markdown tables of `--shipped`.
pub fn render_markdown(shipped: &Shipped) -> String {
    let mut out = String::new();
    let [weak_tier, mid_tier, strong_tier] = shipped.tiers;
    let _ = writeln!(out, "eval-router --shipped: model {}, split {}", shipped.model_version, shipped.split);
    let _ = writeln!(
        out,
        "Ladders (weak / mid / strong, priced as {weak_tier} / {mid_tier} / {strong_tier}, every tier with the same \
         tokens per row):"
    );
    for result in shipped.three_tier.iter().filter(|r| r.slice == Slice::All) {
        let [weak, mid, strong] = result.ladder;
        let _ = writeln!(out, "- {}: {weak} / {mid} / {strong}", result.name);
    }

    let _ = writeln!(
        out,
        "\nRouters (APGR; CPT = share of strong calls to recover 50 / 80 % of the gap, and cost saved at parity \
         with always-strong, for the learned router)\n"
    );
    let _ = writeln!(
        out,
        "| dataset | rows | pair | APGR random | heuristic | length | learned | CPT50 | CPT80 | saved at parity |"
    );
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in &shipped.datasets {
        let r = &p.report.routers;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            p.slice.label(p.name),
            p.report.rows,
            pair_label(p.pair),
            number(r.random.apgr),
            number(r.heuristic.apgr),
            number(r.length.apgr),
            number(r.learned.apgr),
            pct(r.learned.cpt50),
            pct(r.learned.cpt80),
            pct(Some(r.learned.cost_saved_at_parity))
        );
    }

    let _ = writeln!(
        out,
        "\nIs the learned router clearly better? Learned minus baseline APGR with its 95 % paired-bootstrap interval \
         ({BOOTSTRAP_RESAMPLES} resamples of the rows); yes when the whole interval is above 0\n"
    );
    let _ = writeln!(out, "| dataset | pair | learned APGR [95 %] | vs random | vs heuristic | vs length |");
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for p in &shipped.datasets {
        let learned = &p.report.routers.learned;
        let versus: Vec<String> = p.report.learned_vs.iter().map(comparison).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} {} | {} |",
            p.slice.label(p.name),
            pair_label(p.pair),
            number(learned.apgr),
            interval(learned.apgr_ci95),
            versus.join(" | ")
        );
    }

    let _ = writeln!(
        out,
        "\nTolerance, learned router on two tiers (relative quality drop against always-strong; cheap share = calls \
         to the cheaper model)\n"
    );
    let _ = writeln!(out, "| dataset | pair | promised | observed | cheap share |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|");
    for p in &shipped.datasets {
        for percent in TABLE_TOLERANCES {
            if let Some(t) = at_tolerance(&p.report.tolerance, |t| Some(t.promised), percent) {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    p.slice.label(p.name),
                    pair_label(p.pair),
                    pct(Some(t.promised)),
                    pct(t.observed),
                    pct(Some(t.weak_share))
                );
            }
        }
    }

    let _ = writeln!(out, "\nThree tiers (share of calls per tier; quality drop and cost against always-strong)\n");
    let _ = writeln!(out, "| dataset | rows | router | weak | mid | strong | quality drop | cost vs strong |");
    let _ = writeln!(out, "|---|---:|---|---:|---:|---:|---:|---:|");
    for result in &shipped.three_tier {
        let mut lines: Vec<(String, &ThreeTierRow)> = THREE_TIER_TOLERANCES
            .iter()
            .filter_map(|&percent| {
                let row = at_tolerance(&result.table, |r| r.promised.filter(|_| r.router == "learned"), percent)?;
                Some((format!("learned @ {percent}%"), row))
            })
            .collect();
        for name in ["heuristic", "always-weak", "always-mid", "always-strong"] {
            if let Some(row) = result.table.iter().find(|r| r.router == name) {
                lines.push((name.to_owned(), row));
            }
        }
        for (router, r) in lines {
            let _ = writeln!(
                out,
                "| {} | {} | {router} | {} | {} | {} | {} | {} |",
                result.slice.label(result.name),
                result.rows,
                pct(Some(r.weak_share)),
                pct(Some(r.mid_share)),
                pct(Some(r.strong_share)),
                pct(r.drop),
                pct(r.cost_relative)
            );
        }
    }

    let _ = writeln!(out);
    let two_tier = shipped
        .datasets
        .iter()
        .flat_map(|p| {
            p.report.tolerance.iter().filter_map(move |t| {
                let where_ =
                    format!("{}, {}, promised {}", p.slice.label(p.name), pair_label(p.pair), pct(Some(t.promised)));
                t.excess.map(|e| (e, where_))
            })
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let three_tier = shipped
        .three_tier
        .iter()
        .flat_map(|result| {
            result.table.iter().filter(|r| r.router == "learned").filter_map(move |r| {
                let promised = r.promised?;
                let where_ = format!("{}, promised {}", result.slice.label(result.name), pct(Some(promised)));
                r.drop.map(|d| (d - promised, where_))
            })
        })
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let checked = percents(&TOLERANCES_PERCENT);
    for (what, max) in
        [("two tiers, over all slices and pairs", two_tier), ("three tiers, over all slices", three_tier)]
    {
        let _ = match max {
            Some((excess, where_)) => writeln!(
                out,
                "max excess (observed − promised), {what} at promised {checked} %: {} \
                 points ({where_})",
                signed_points(Some(excess))
            ),
            None => writeln!(out, "max excess (observed − promised), {what}: n/a"),
        };
    }
    out
}

pub fn run(args: &EvalArgs) -> Result<bool> {
    let split = args.split.unwrap_or(SplitFilter::Test);
    let model = RouterModel::embedded().map_err(|e| format!("the embedded router model: {e}"))?;
    let tiers = [args.weak_tier.unwrap_or(Tier::Haiku), args.mid_tier, args.strong_tier];
    eprintln!("eval-router: the shipped datasets (split {}), model {}", split.as_str(), model.version());
    // The data of the checkout being run, not of the tree gateway-core was compiled in.
    let data_dir = crate::paths::repo_root().join("data").join("routing");
    let shipped = evaluate_shipped(model, tiers, split, &data_dir)?;
    for p in &shipped.datasets {
        let title = format!(
            "{}, {} split, {}: {} vs {}",
            p.slice.label(p.name),
            shipped.split,
            pair_label(p.pair),
            p.cheap,
            p.strong
        );
        write_file(Path::new(&p.svg), &svg::render(&p.report, &title))?;
    }
    if args.json {
        println!("{}", serde_json::to_string(&shipped)?);
        eprintln!("eval-router: {} charts written to {}", shipped.datasets.len(), charts_dir().display());
    } else {
        print!("{}", render_markdown(&shipped));
        println!("charts: {}/shipped-*.svg", charts_dir().display());
    }
    Ok(true)
}

fn charts_dir() -> PathBuf {
    paths::target_dir().join("eval-router")
}
