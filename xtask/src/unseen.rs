//! `cargo xtask train-router --unseen-sources`: how the router does on prompts written by
//! someone it never learned from, which is what production traffic and public benchmarks
//! are.
//!
//! For each source of trainable prompts (AlpacaEval 2, Arena-Bench, and MMLU-Pro's
//! `stemez`, `theoremQA` and `scibench`), a model is trained without that source and
//! evaluated on all of its rows, every split. MMLU-Pro's `ori_mmlu` rows, never trained on
//! by any model, are scored by the model trained on every source. Each line compares the
//! learned router with prompt length and the seeds' heuristic, with 95 % paired-bootstrap
//! intervals, on the dataset's ladder (weak→strong and mid→strong).
//!
//! Held-out test figures say how well the router knows its sources; these say how well it
//! generalises, and they are the ones to improve when changing features or training.

use gateway_core::routing::dataset::{Example, SHIPPED};
use gateway_core::routing::eval::{bootstrap_apgr, curve, percentile_interval};
use gateway_core::routing::train::{self, TrainParams};
use gateway_core::routing::{Conversation, RouterModel};

use crate::eval::routers::{heuristic_level, length_score};
use crate::eval::{BOOTSTRAP_RESAMPLES, CONFIDENCE};

const SEED: u64 = 0x0005_ee11;

/// One unseen source on one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct UnseenRow {
    pub source: String,
    pub pair: &'static str,
    pub rows: usize,
    /// APGR of heuristic, length and learned.
    pub apgr: [Option<f64>; 3],
    /// 95 % interval of learned − length and learned − heuristic.
    pub versus_length: Option<[f64; 2]>,
    pub versus_heuristic: Option<[f64; 2]>,
}

/// Scores `rows` (with their ladder outcomes) by `model` on both pairs.
fn evaluate(source: &str, model: &RouterModel, rows: &[(&Example, [f64; 3])]) -> Vec<UnseenRow> {
    let texts: Vec<String> =
        rows.iter().map(|(e, _)| Conversation::from_prompt_cell(&e.prompt).joined_text()).collect();
    let adequacy: Vec<_> =
        rows.iter().map(|(e, _)| model.adequacy(&Conversation::from_prompt_cell(&e.prompt))).collect();
    let heuristic: Vec<f64> = texts.iter().map(|t| heuristic_level(t) as f64).collect();
    let length: Vec<f64> = texts.iter().map(|t| length_score(t)).collect();
    let strong: Vec<f64> = rows.iter().map(|(_, q)| q[2]).collect();
    [("weak→strong", 0usize), ("mid→strong", 1usize)]
        .into_iter()
        .map(|(pair, cheaper)| {
            let weak: Vec<f64> = rows.iter().map(|(_, q)| q[cheaper]).collect();
            let learned: Vec<f64> = adequacy.iter().map(|a| 1.0 - if cheaper == 0 { a.weak } else { a.mid }).collect();
            let scores = [heuristic.as_slice(), length.as_slice(), learned.as_slice()];
            let apgr = scores.map(|s| curve(s, &weak, &strong).apgr());
            let draws = bootstrap_apgr(&scores, &weak, &strong, BOOTSTRAP_RESAMPLES, SEED);
            let versus = |baseline: usize| {
                let differences: Vec<f64> = draws.iter().filter_map(|d| Some(d[2]? - d[baseline]?)).collect();
                percentile_interval(&differences, CONFIDENCE).map(|(low, high)| [low, high])
            };
            UnseenRow {
                source: source.to_owned(),
                pair,
                rows: rows.len(),
                apgr,
                versus_length: versus(1),
                versus_heuristic: versus(0),
            }
        })
        .collect()
}

fn with_ladder<'a>(examples: impl Iterator<Item = &'a Example>) -> Vec<(&'a Example, [f64; 3])> {
    examples.filter_map(|e| Some((e, e.ladder?))).collect()
}

/// Trains one model per trainable source without it and evaluates it there, then scores
/// the never-trained rows with the model of every source.
pub fn unseen_sources(examples: &[Example], params: &TrainParams) -> Vec<UnseenRow> {
    let mut sources: Vec<(&str, &str)> =
        examples.iter().filter(|e| !e.held_out).map(|e| (e.dataset, e.source.as_str())).collect();
    sources.sort_by_key(|(dataset, source)| (SHIPPED.iter().position(|s| s.name == *dataset), *source));
    sources.dedup();
    let mut out = Vec::new();
    for (dataset, source) in sources {
        let is_source = |e: &Example| e.dataset == dataset && e.source == source;
        let without: Vec<Example> = examples.iter().filter(|e| !is_source(e)).cloned().collect();
        let model = train::train(&without, params);
        let label = if dataset == source { dataset.to_owned() } else { format!("{dataset}/{source}") };
        out.extend(evaluate(&label, &model, &with_ladder(examples.iter().filter(|e| is_source(e)))));
    }
    let never_trained = with_ladder(examples.iter().filter(|e| e.held_out));
    if !never_trained.is_empty() {
        let model = train::train(examples, params);
        out.extend(evaluate("mmlu_pro/ori_mmlu (never trained on)", &model, &never_trained));
    }
    out
}

/// The markdown table.
pub fn render(rows: &[UnseenRow]) -> String {
    let number = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.3}"));
    let interval = |ci: Option<[f64; 2]>| {
        ci.map_or_else(
            || "n/a".to_owned(),
            |[low, high]| format!("[{low:+.3}, {high:+.3}]{}", if low > 0.0 { " yes" } else { "" }),
        )
    };
    let mut out = format!(
        "Unseen sources: each trained without it, evaluated on all its rows (APGR; learned − baseline with its 95 % \
         paired-bootstrap interval, {BOOTSTRAP_RESAMPLES} resamples; yes = clearly better)\n\n\
         | unseen source | rows | pair | heuristic | length | learned | learned − heuristic | learned − length |\n\
         |---|---:|---|---:|---:|---:|---|---|\n"
    );
    for r in rows {
        let [heuristic, length, learned] = r.apgr;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.source,
            r.rows,
            r.pair,
            number(heuristic),
            number(length),
            number(learned),
            interval(r.versus_heuristic),
            interval(r.versus_length)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_each_source_and_says_when_the_learned_router_wins() {
        let row = UnseenRow {
            source: "mmlu_pro/stemez".to_owned(),
            pair: "weak→strong",
            rows: 4078,
            apgr: [Some(0.51), Some(0.47), Some(0.55)],
            versus_length: Some([0.04, 0.12]),
            versus_heuristic: Some([-0.01, 0.09]),
        };
        let text = render(&[row]);
        assert!(
            text.contains("| mmlu_pro/stemez | 4078 | weak→strong | 0.510 | 0.470 | 0.550 | [-0.010, +0.090] | [+0.040, +0.120] yes |"),
            "{text}"
        );
    }
}
