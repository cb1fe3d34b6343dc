//! The shipped routing datasets (`data/routing/`): real per-prompt outcomes of models of
//! several sizes, read into one shape for training and evaluation.
//!
//! Labels are model-agnostic difficulty: for a pair (cheaper, stronger), "the cheaper answer
//! is as good" is averaged over several such pairs of each dataset, which gives soft labels
//! that describe the prompt rather than one model's quirks. Rows of MMLU-Pro whose `src`
//! starts with `ori_mmlu` are MMLU test questions: they are marked held out and never reach
//! training or calibration, whatever their split.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::{Split, split_of};
use crate::routing::model::HEADS;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid CSV")]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("{path} has no column `{column}`")]
    MissingColumn { path: PathBuf, column: String },
    #[error("{path}:{line}: not a calibration outcome of schema 1")]
    Calibration {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
}

/// How outcomes compare: exact match, graded scores, or judge probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// 0 or 1.
    Correct,
    /// A judge's score from 1 to 10.
    Score10,
    /// A judge's probability of beating a reference answer.
    WinProbability,
}

impl OutcomeKind {
    /// Outcome on a 0–1 scale, so qualities of different datasets can be averaged.
    pub fn normalise(self, value: f64) -> f64 {
        match self {
            OutcomeKind::Correct | OutcomeKind::WinProbability => value,
            OutcomeKind::Score10 => value / 10.0,
        }
    }

    /// How far a cheaper answer is "as good as" a stronger one, in [0, 1]. Graded outcomes
    /// get partial credit near a tie, since judges are noisy by a point or so.
    pub fn as_good_as(self, cheaper: f64, stronger: f64) -> f64 {
        match self {
            OutcomeKind::Correct => f64::from(u8::from(cheaper >= stronger)),
            OutcomeKind::Score10 => (1.0 + (cheaper - stronger) / 2.0).clamp(0.0, 1.0),
            OutcomeKind::WinProbability => (0.5 + 2.0 * (cheaper - stronger)).clamp(0.0, 1.0),
        }
    }
}

/// One dataset's fixed choices: where it is, how prompts are built, which models form the
/// label pairs and the evaluation ladder.
#[derive(Debug, Clone, Copy)]
pub struct DatasetSpec {
    pub name: &'static str,
    pub file: &'static str,
    pub kind: OutcomeKind,
    /// Column suffix of outcomes, after `<model>__`.
    pub outcome_suffix: &'static str,
    /// Pairs (cheaper, stronger) whose agreement labels the weak head.
    pub weak_pairs: &'static [(&'static str, &'static str)],
    /// Pairs labelling the mid head.
    pub mid_pairs: &'static [(&'static str, &'static str)],
    /// Evaluation ladder (weak, mid, strong); calibration uses it too.
    pub ladder: [&'static str; 3],
    /// Share of the total training weight this dataset gets.
    pub weight: f64,
}

pub const MMLU_PRO: DatasetSpec = DatasetSpec {
    name: "mmlu_pro",
    file: "mmlu_pro/mmlu_pro_9models_per_question.csv.gz",
    kind: OutcomeKind::Correct,
    outcome_suffix: "correct",
    weak_pairs: &[
        ("Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct"),
        ("Qwen1.5-7B-Chat", "Qwen1.5-72B-Chat"),
        ("Mistral-7B-Instruct-v0.2", "Mixtral-8x7B-Instruct-v0.1"),
        ("Meta-Llama-3_1-8B-Instruct", "gemini-1.5-pro-002"),
        ("Phi-3-mini-4k-instruct", "gemini-1.5-pro-002"),
    ],
    mid_pairs: &[
        ("gemini-1.5-flash-002", "gemini-1.5-pro-002"),
        ("Meta-Llama-3_1-70B-Instruct", "gemini-1.5-pro-002"),
        ("Qwen1.5-72B-Chat", "gemini-1.5-pro-002"),
    ],
    ladder: ["Meta-Llama-3_1-8B-Instruct", "Meta-Llama-3_1-70B-Instruct", "gemini-1.5-pro-002"],
    weight: 0.5,
};

pub const ALPACA_EVAL2: DatasetSpec = DatasetSpec {
    name: "alpacaeval2",
    file: "alpacaeval2/alpacaeval2_winprob_vs_gpt4turbo.csv",
    kind: OutcomeKind::WinProbability,
    outcome_suffix: "win_prob",
    weak_pairs: &[
        ("FuseChat-Llama-3.2-1B-Instruct", "FuseChat-Llama-3.1-8B-Instruct"),
        ("FuseChat-Llama-3.2-1B-Instruct", "FuseChat-Llama-3.2-3B-Instruct"),
    ],
    mid_pairs: &[("FuseChat-Llama-3.2-3B-Instruct", "FuseChat-Llama-3.1-8B-Instruct")],
    ladder: ["FuseChat-Llama-3.2-1B-Instruct", "FuseChat-Llama-3.2-3B-Instruct", "FuseChat-Llama-3.1-8B-Instruct"],
    weight: 0.3,
};

pub const ARENA_BENCH: DatasetSpec = DatasetSpec {
    name: "arena_bench_v1",
    file: "arena_bench_v1/arena_bench_v1_gpt4_single_scores.csv",
    kind: OutcomeKind::Score10,
    outcome_suffix: "score",
    weak_pairs: &[
        ("Mistral-7B-Instruct-v0.1", "gpt-4-1106-preview"),
        ("Llama-2-70b-chat", "gpt-4-1106-preview"),
        ("vicuna-33b-v1.3", "gpt-4-0314"),
    ],
    mid_pairs: &[
        ("Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"),
        ("gpt-3.5-turbo", "gpt-4-0314"),
        ("claude-2.1", "gpt-4-1106-preview"),
    ],
    ladder: ["Mistral-7B-Instruct-v0.1", "Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"],
    weight: 0.2,
};

pub const SHIPPED: [DatasetSpec; 3] = [MMLU_PRO, ALPACA_EVAL2, ARENA_BENCH];

/// The deployer's own traffic, as the calibration pipeline grades it
/// ([`crate::calibration::record::CalibrationOutcome`]): every tier's answer scored 1–10 by
/// the strongest tier against its own. Its models are the tiers themselves, so its
/// item-response scale places them from their own outcomes.
pub const DEPLOYER: DatasetSpec = DatasetSpec {
    name: "deployer",
    file: "calibration/dataset/*.jsonl",
    kind: OutcomeKind::Score10,
    outcome_suffix: "score",
    weak_pairs: &[("haiku", "opus")],
    mid_pairs: &[("sonnet", "opus")],
    ladder: ["haiku", "sonnet", "opus"],
    weight: 0.5,
};

/// Every dataset training knows: the shipped ones, then the deployer's.
pub const DATASETS: [DatasetSpec; 4] = [MMLU_PRO, ALPACA_EVAL2, ARENA_BENCH, DEPLOYER];

/// One prompt with what is known of its outcomes.
#[derive(Debug, Clone)]
pub struct Example {
    pub dataset: &'static str,
    pub kind: OutcomeKind,
    /// The prompt as the router sees it (for MMLU-Pro: question and lettered options).
    pub prompt: String,
    pub split: Split,
    /// MMLU test questions: evaluation only.
    pub held_out: bool,
    /// Who wrote the prompt: MMLU-Pro's `src` up to its first `-` (`stemez`, `theoremQA`,
    /// `scibench`, `ori_mmlu`), else the dataset's name. Training balances sources.
    pub source: String,
    /// Soft labels per head; `None` where no pair had both outcomes.
    pub labels: [Option<f64>; HEADS],
    /// Outcomes of the ladder (weak, mid, strong), normalised to 0–1; `None` if any is missing.
    pub ladder: Option<[f64; 3]>,
    /// Raw outcome per model, as in the file.
    pub outcomes: BTreeMap<String, f64>,
    /// Length of each model's answer in characters, where the file has it.
    pub out_chars: BTreeMap<String, f64>,
}

/// The repository's copy of the routing data.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("data").join("routing")
}

/// Reads every shipped dataset under `dir`, in file order.
pub fn load_shipped(dir: &Path) -> Result<Vec<Example>, DatasetError> {
    let mut all = Vec::new();
    for spec in SHIPPED {
        all.extend(load(dir, &spec)?);
    }
    Ok(all)
}

/// Reads the calibration pipeline's dataset: one `.jsonl` file, or every `.jsonl` file of a
/// directory in name order (a local copy of `calibration/dataset/`). A prompt graded in
/// several runs counts once, as its first run graded it; a prompt with no graded cheaper
/// tier teaches nothing and is skipped. Each tenant is a source of its own.
pub fn load_calibration(path: &Path) -> Result<Vec<Example>, DatasetError> {
    use crate::calibration::record::{CalibrationOutcome, SCHEMA};
    let io = |source| DatasetError::Io { path: path.to_owned(), source };
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut seen = std::collections::BTreeSet::new();
    let mut examples = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| DatasetError::Io { path: file.clone(), source })?;
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |source| DatasetError::Calibration { path: file.clone(), line: number + 1, source };
            let outcome: CalibrationOutcome = serde_json::from_str(line).map_err(bad)?;
            if outcome.schema != SCHEMA {
                let unknown = serde::de::Error::custom(format!("schema {}", outcome.schema));
                return Err(bad(unknown));
            }
            if !seen.insert(outcome.prompt_id.clone()) {
                continue;
            }
            if let Some(example) = deployer_example(outcome) {
                examples.push(example);
            }
        }
    }
    Ok(examples)
}

fn deployer_example(outcome: crate::calibration::record::CalibrationOutcome) -> Option<Example> {
    let spec = DEPLOYER;
    let mut outcomes = BTreeMap::new();
    let mut out_chars = BTreeMap::new();
    for (tier, answer) in &outcome.outcomes {
        if let Some(score) = answer.score {
            outcomes.insert(tier.to_string(), f64::from(score));
        }
        if let Some(tokens) = answer.output_tokens {
            out_chars.insert(tier.to_string(), tokens as f64 * 4.0);
        }
    }
    let label = |pairs: &[(&str, &str)]| {
        let agreements: Vec<f64> = pairs
            .iter()
            .filter_map(|(cheaper, stronger)| {
                Some(spec.kind.as_good_as(*outcomes.get(*cheaper)?, *outcomes.get(*stronger)?))
            })
            .collect();
        (!agreements.is_empty()).then(|| agreements.iter().sum::<f64>() / agreements.len() as f64)
    };
    let labels = [label(spec.weak_pairs), label(spec.mid_pairs)];
    if labels.iter().all(Option::is_none) {
        return None;
    }
    let ladder = match spec.ladder.map(|m| outcomes.get(m).map(|v| spec.kind.normalise(*v))) {
        [Some(w), Some(m), Some(s)] => Some([w, m, s]),
        _ => None,
    };
    Some(Example {
        dataset: spec.name,
        kind: spec.kind,
        split: split_of(&outcome.prompt),
        held_out: false,
        source: outcome.tenant,
        labels,
        ladder,
        prompt: outcome.prompt,
        outcomes,
        out_chars,
    })
}

fn open(path: &Path) -> Result<Box<dyn Read>, DatasetError> {
    let file = File::open(path).map_err(|source| DatasetError::Io { path: path.to_owned(), source })?;
    let reader = BufReader::new(file);
    Ok(if path.extension().is_some_and(|e| e == "gz") { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) })
}

/// A number from a cell; empty and `NaN` cells are missing.
pub fn parse_outcome(cell: &str) -> Option<f64> {
    let cell = cell.trim();
    match cell.to_ascii_lowercase().as_str() {
        "" | "nan" | "null" | "none" => None,
        "true" => Some(1.0),
        "false" => Some(0.0),
        _ => cell.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// MMLU-Pro's prompt: the question, then its options lettered A, B, C …
pub fn mmlu_prompt(question: &str, options_json: &str) -> String {
    let options: Vec<String> = serde_json::from_str(options_json).unwrap_or_default();
    let mut prompt = question.trim().to_owned();
    for (i, option) in options.iter().enumerate() {
        let letter = char::from(b'A' + (i as u8).min(25));
        prompt.push_str(&format!("\n{letter}. {}", option.trim()));
    }
    prompt
}

pub fn load(dir: &Path, spec: &DatasetSpec) -> Result<Vec<Example>, DatasetError> {
    let path = dir.join(spec.file);
    let csv_error = |source| DatasetError::Csv { path: path.clone(), source };
    let mut reader = csv::ReaderBuilder::new().from_reader(open(&path)?);
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| DatasetError::MissingColumn { path: path.clone(), column: name.to_owned() })
    };
    let prompt_columns: Vec<usize> = match spec.name {
        "mmlu_pro" => vec![column("question")?, column("options")?],
        "alpacaeval2" => vec![column("instruction")?],
        _ => vec![column("prompt")?],
    };
    let src_column = headers.iter().position(|h| h == "src");
    let suffix = format!("__{}", spec.outcome_suffix);
    let model_columns: Vec<(String, usize)> =
        headers.iter().enumerate().filter_map(|(i, h)| h.strip_suffix(&suffix).map(|m| (m.to_owned(), i))).collect();
    let chars_columns: Vec<(String, usize)> = headers
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_suffix("__out_chars").map(|m| (m.to_owned(), i)))
        .collect();
    for (weak, strong) in spec.weak_pairs.iter().chain(spec.mid_pairs) {
        for model in [weak, strong] {
            column(&format!("{model}{suffix}"))?;
        }
    }

    let mut examples = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let cell = |i: usize| record.get(i).unwrap_or("");
        let prompt = match prompt_columns.as_slice() {
            [question, options] => mmlu_prompt(cell(*question), cell(*options)),
            [one] => cell(*one).to_owned(),
            _ => String::new(),
        };
        if prompt.trim().is_empty() {
            continue;
        }
        let outcomes: BTreeMap<String, f64> =
            model_columns.iter().filter_map(|(m, i)| parse_outcome(cell(*i)).map(|v| (m.clone(), v))).collect();
        let out_chars: BTreeMap<String, f64> =
            chars_columns.iter().filter_map(|(m, i)| parse_outcome(cell(*i)).map(|v| (m.clone(), v))).collect();
        let label = |pairs: &[(&str, &str)]| {
            let agreements: Vec<f64> = pairs
                .iter()
                .filter_map(|(w, s)| Some(spec.kind.as_good_as(*outcomes.get(*w)?, *outcomes.get(*s)?)))
                .collect();
            (!agreements.is_empty()).then(|| agreements.iter().sum::<f64>() / agreements.len() as f64)
        };
        let ladder = match spec.ladder.map(|m| outcomes.get(m).map(|v| spec.kind.normalise(*v))) {
            [Some(w), Some(m), Some(s)] => Some([w, m, s]),
            _ => None,
        };
        let held_out = src_column.is_some_and(|i| cell(i).starts_with("ori_mmlu"));
        let source = match src_column.map(cell).and_then(|src| src.split('-').next()) {
            Some(prefix) if !prefix.trim().is_empty() => prefix.trim().to_owned(),
            _ => spec.name.to_owned(),
        };
        examples.push(Example {
            dataset: spec.name,
            kind: spec.kind,
            split: split_of(&prompt),
            held_out,
            source,
            labels: [label(spec.weak_pairs), label(spec.mid_pairs)],
            ladder,
            prompt,
            outcomes,
            out_chars,
        });
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_compare_by_kind() {
        assert_eq!(OutcomeKind::Correct.as_good_as(0.0, 0.0), 1.0);
        assert_eq!(OutcomeKind::Correct.as_good_as(0.0, 1.0), 0.0);
        assert_eq!(OutcomeKind::Score10.as_good_as(7.0, 8.0), 0.5);
        assert_eq!(OutcomeKind::Score10.as_good_as(9.0, 8.0), 1.0);
        assert_eq!(OutcomeKind::WinProbability.as_good_as(0.3, 0.3), 0.5);
        assert_eq!(parse_outcome("NaN"), None);
        assert_eq!(parse_outcome(" true "), Some(1.0));
        assert_eq!(parse_outcome("7"), Some(7.0));
    }

    fn outcome_line(prompt: &str, scores: [Option<u8>; 3]) -> String {
        let tier = |score: Option<u8>| serde_json::json!({"modelId": "m", "score": score, "outputTokens": 40});
        serde_json::json!({
            "schema": 1, "runId": "r1", "promptId": crate::calibration::record::prompt_id(prompt), "tenant": "acme",
            "sampledAt": "2026-12-03T10:00:00Z", "prompt": prompt, "grader": "opus",
            "outcomes": {"haiku": tier(scores[0]), "sonnet": tier(scores[1]), "opus": tier(scores[2])}
        })
        .to_string()
    }

    #[test]
    fn calibration_outcomes_become_deployer_examples_once_each() {
        let dir = std::env::temp_dir().join(format!("deployer-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cell = r#"[{"role":"user","content":"Say thank you in Japanese."}]"#;
        let lines = [
            outcome_line(cell, [Some(9), Some(10), Some(10)]),
            outcome_line("[]", [None, None, Some(10)]),
            outcome_line("Prove it.", [Some(3), None, Some(10)]),
        ];
        std::fs::write(dir.join("run-1.jsonl"), lines.join("\n")).unwrap();
        std::fs::write(dir.join("run-2.jsonl"), outcome_line(cell, [Some(1), Some(1), Some(10)])).unwrap();
        std::fs::write(dir.join("notes.txt"), "not a dataset").unwrap();
        let examples = load_calibration(&dir).unwrap();
        assert_eq!(examples.len(), 2, "ungraded prompts and repeats are skipped");
        let first = &examples[0];
        assert_eq!((first.dataset, first.source.as_str()), ("deployer", "acme"));
        assert_eq!(first.ladder, Some([0.9, 1.0, 1.0]), "the first run's grades win");
        assert_eq!(first.labels, [Some(0.5), Some(1.0)], "a point below the grader is half as good");
        assert_eq!(first.out_chars.get("opus"), Some(&160.0));
        assert_eq!(examples[1].ladder, None);
        assert_eq!(examples[1].labels[1], None);

        std::fs::write(dir.join("run-3.jsonl"), "{\"schema\": 2}").unwrap();
        let error = load_calibration(&dir).unwrap_err().to_string();
        assert!(error.contains("run-3.jsonl:1"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mmlu_prompts_letter_their_options() {
        assert_eq!(mmlu_prompt("Q?", r#"["x", "y"]"#), "Q?\nA. x\nB. y");
    }

    #[test]
    fn shipped_data_loads_and_keeps_mmlu_test_questions_out() {
        let examples = load_shipped(&default_dir()).unwrap();
        let count = |name: &str| examples.iter().filter(|e| e.dataset == name).count();
        assert_eq!(count("mmlu_pro"), 12_032);
        assert_eq!(count("alpacaeval2"), 805);
        assert_eq!(count("arena_bench_v1"), 300);
        let held_out = examples.iter().filter(|e| e.held_out).count();
        assert_eq!(held_out, 6_810);
        assert!(examples.iter().filter(|e| e.held_out).all(|e| e.dataset == "mmlu_pro"));
        assert!(examples.iter().all(|e| e.labels.iter().all(|l| l.is_none_or(|v| (0.0..=1.0).contains(&v)))));
    }
}
