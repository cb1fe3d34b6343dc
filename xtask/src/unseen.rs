//! `cargo xtask train-router --unseen-sources`: how the router does on prompts written by
//! someone it never learned from, which is what production traffic and public benchmarks
//! are.
//!
//! For each source of trainable prompts (AlpacaEval 2, Arena-Bench, and MMLU-Pro's
//! `stemez`, `theoremQA` and `scibench`), a model is trained without that source and
//! evaluated on all of its rows, every split. MMLU-Pro's `ori_mmlu` rows, never trained on
//! by any model, are scored by the model trained on every source. Each line compares the
//! learned router with prompt length and router v1 (proxy-pair labels), with 95 % paired-bootstrap
//! intervals, on the dataset's ladder (weak→strong and mid→strong).
//!
//! Held-out test figures say how well the router knows its sources; these say how well it
//! generalises, and they are the ones to improve when changing features or training.

use gateway_core::routing::dataset::{Example, SHIPPED};
use gateway_core::routing::eval::{bootstrap_apgr, curve, percentile_interval};
use gateway_core::routing::train::{self, Labels, TrainParams};
use gateway_core::routing::{Conversation, RouterModel};

use crate::eval::routers::length_score;
use crate::eval::{BOOTSTRAP_RESAMPLES, CONFIDENCE};

const SEED: u64 = 0x0005_ee11;

/// One unseen source on one pair.
#[derive(Debug, Clone, PartialEq)]
pub struct UnseenRow {
    pub source: String,
    pub pair: &'static str,
    pub rows: usize,
    /// APGR of length, v1 and learned.
    pub apgr: [Option<f64>; 3],
    /// 95 % interval of learned − length and learned − v1.
    pub versus_length: Option<[f64; 2]>,
    pub versus_v1: Option<[f64; 2]>,
    /// Per bootstrap draw: learned − length and learned − v1 (`None` where undefined), so
    /// the mean over sources gets an interval of its own.
    pub draws: Vec<[Option<f64>; 2]>,
}

/// Scores `rows` (with their ladder outcomes) by both models on both pairs.
fn evaluate(source: &str, models: [&RouterModel; 2], rows: &[(&Example, [f64; 3])]) -> Vec<UnseenRow> {
    let length: Vec<f64> =
        rows.iter().map(|(e, _)| length_score(&Conversation::from_prompt_cell(&e.prompt).joined_text())).collect();
    let need = |model: &RouterModel| -> Vec<[f64; 2]> {
        rows.iter().map(|(e, _)| train::need_scores(model, &e.prompt)).collect()
    };
    let v1 = need(models[0]);
    let learned = need(models[1]);
    let strong: Vec<f64> = rows.iter().map(|(_, q)| q[2]).collect();
    [("weak→strong", 0usize), ("mid→strong", 1usize)]
        .into_iter()
        .map(|(pair, cheaper)| {
            let weak: Vec<f64> = rows.iter().map(|(_, q)| q[cheaper]).collect();
            let v1: Vec<f64> = v1.iter().map(|s| s[cheaper]).collect();
            let learned: Vec<f64> = learned.iter().map(|s| s[cheaper]).collect();
            let scores = [length.as_slice(), v1.as_slice(), learned.as_slice()];
            let apgr = scores.map(|s| curve(s, &weak, &strong).apgr());
            let draws = bootstrap_apgr(&scores, &weak, &strong, BOOTSTRAP_RESAMPLES, SEED);
            let difference =
                |d: &[Option<f64>], baseline: usize| Some(d.get(2).copied()?? - d.get(baseline).copied()??);
            let differences: Vec<[Option<f64>; 2]> =
                draws.iter().map(|d| [difference(d, 0), difference(d, 1)]).collect();
            let versus = |baseline: usize| {
                let values: Vec<f64> = differences.iter().filter_map(|d| d[baseline]).collect();
                percentile_interval(&values, CONFIDENCE).map(|(low, high)| [low, high])
            };
            let (versus_length, versus_v1) = (versus(0), versus(1));
            UnseenRow {
                source: source.to_owned(),
                pair,
                rows: rows.len(),
                apgr,
                versus_length,
                versus_v1,
                draws: differences,
            }
        })
        .collect()
}

fn with_ladder<'a>(examples: impl Iterator<Item = &'a Example>) -> Vec<(&'a Example, [f64; 3])> {
    examples.filter_map(|e| Some((e, e.ladder?))).collect()
}

/// Trains, for every trainable source, router v1 and the learned router without it and
/// evaluates both there, then scores the never-trained rows with the models of every source.
pub fn unseen_sources(examples: &[Example], params: &TrainParams) -> Vec<UnseenRow> {
    let v1_params = TrainParams { labels: Labels::Pairs, ..TrainParams::default() };
    let mut sources: Vec<(&str, &str)> =
        examples.iter().filter(|e| !e.held_out).map(|e| (e.dataset, e.source.as_str())).collect();
    sources.sort_by_key(|(dataset, source)| (SHIPPED.iter().position(|s| s.name == *dataset), *source));
    sources.dedup();
    let mut out = Vec::new();
    for (dataset, source) in sources {
        let is_source = |e: &Example| e.dataset == dataset && e.source == source;
        let without: Vec<Example> = examples.iter().filter(|e| !is_source(e)).cloned().collect();
        let (v1, learned) = (train::train(&without, &v1_params), train::train(&without, params));
        let label = if dataset == source { dataset.to_owned() } else { format!("{dataset}/{source}") };
        out.extend(evaluate(&label, [&v1, &learned], &with_ladder(examples.iter().filter(|e| is_source(e)))));
    }
    let never_trained = with_ladder(examples.iter().filter(|e| e.held_out));
    if !never_trained.is_empty() {
        let (v1, learned) = (train::train(examples, &v1_params), train::train(examples, params));
        out.extend(evaluate("mmlu_pro/ori_mmlu (never trained on)", [&v1, &learned], &never_trained));
    }
    out
}

/// Mean over the trained-without sources (not the never-trained row, which every model saw
/// the other sources of) for one pair: the figure the router is judged by.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceMean {
    pub pair: &'static str,
    /// APGR of length, v1 and learned.
    pub apgr: [Option<f64>; 3],
    /// 95 % intervals of the mean of learned − length and of learned − v1: each source
    /// resampled on its own, the differences averaged draw by draw.
    pub versus_length: Option<[f64; 2]>,
    pub versus_v1: Option<[f64; 2]>,
}

pub fn means(rows: &[UnseenRow]) -> Vec<SourceMean> {
    ["weak→strong", "mid→strong"]
        .into_iter()
        .map(|pair| {
            let own: Vec<&UnseenRow> =
                rows.iter().filter(|r| r.pair == pair && !r.source.contains("never trained")).collect();
            let mean = |k: usize| {
                let values: Vec<f64> = own.iter().filter_map(|r| r.apgr[k]).collect();
                (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
            };
            let draws = own.iter().map(|r| r.draws.len()).min().unwrap_or(0);
            let versus = |k: usize| {
                let means: Vec<f64> = (0..draws)
                    .filter_map(|d| {
                        let values: Option<Vec<f64>> = own.iter().map(|r| r.draws[d][k]).collect();
                        values.map(|v| v.iter().sum::<f64>() / v.len().max(1) as f64)
                    })
                    .collect();
                percentile_interval(&means, CONFIDENCE).map(|(low, high)| [low, high])
            };
            SourceMean { pair, apgr: [mean(0), mean(1), mean(2)], versus_length: versus(0), versus_v1: versus(1) }
        })
        .collect()
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
         | unseen source | rows | pair | length | v1 (pairs) | learned | learned − v1 | learned − length |\n\
         |---|---:|---|---:|---:|---:|---|---|\n"
    );
    for r in rows {
        let [length, v1, learned] = r.apgr;
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.source,
            r.rows,
            r.pair,
            number(length),
            number(v1),
            number(learned),
            interval(r.versus_v1),
            interval(r.versus_length)
        ));
    }
    for m in means(rows) {
        let [length, v1, learned] = m.apgr;
        out.push_str(&format!(
            "| mean over unseen sources | | {} | {} | {} | {} | {} | {} |\n",
            m.pair,
            number(length),
            number(v1),
            number(learned),
            interval(m.versus_v1),
            interval(m.versus_length)
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
            apgr: [Some(0.47), Some(0.51), Some(0.55)],
            versus_length: Some([0.04, 0.12]),
            versus_v1: Some([-0.01, 0.09]),
            draws: vec![[Some(0.05), Some(0.02)], [Some(0.07), Some(-0.01)], [Some(0.06), Some(0.04)]],
        };
        let text = render(&[row]);
        assert!(
            text.contains("| mmlu_pro/stemez | 4078 | weak→strong | 0.470 | 0.510 | 0.550 | [-0.010, +0.090] | [+0.040, +0.120] yes |"),
            "{text}"
        );
        assert!(
            text.contains("| mean over unseen sources | | weak→strong | 0.470 | 0.510 | 0.550 | [-0.008, +0.039] | [+0.051, +0.070] yes |"),
            "{text}"
        );
    }
}
