//! Reading any outcome CSV (plain or gzipped) into [`EvalRow`]s.
//!
//! A cell is an outcome when [`parse_outcome`] reads it (`true`/`false`, `0`/`1`, any finite
//! number). Empty, `NaN`, `null`, `none`, `na` and `n/a` cells are missing: a row missing an
//! outcome in any column used is skipped and counted. Anything else is an error naming the
//! line and column, since a misread column silently skews every metric.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use flate2::read::GzDecoder;
use gateway_core::routing::dataset::parse_outcome;
use gateway_core::routing::{Split, split_of};

use crate::Result;

/// Output tokens assumed for a row whose strong answer length the data does not give.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 512;

/// Which rows of the data to evaluate, by the fixed hash split of their prompt cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitFilter {
    /// Every row: a foreign CSV is all unseen data.
    All,
    Train,
    Validation,
    Test,
}

impl SplitFilter {
    pub fn as_str(self) -> &'static str {
        match self {
            SplitFilter::All => "all",
            SplitFilter::Train => "train",
            SplitFilter::Validation => "validation",
            SplitFilter::Test => "test",
        }
    }

    /// The one split kept; `None` for every row.
    pub fn split(self) -> Option<Split> {
        match self {
            SplitFilter::All => None,
            SplitFilter::Train => Some(Split::Train),
            SplitFilter::Validation => Some(Split::Validation),
            SplitFilter::Test => Some(Split::Test),
        }
    }

    /// Whether a row of split `split` is evaluated.
    pub fn keeps_split(self, split: Split) -> bool {
        self.split().is_none_or(|wanted| wanted == split)
    }

    fn keeps(self, prompt: &str) -> bool {
        self.split().is_none_or(|wanted| split_of(prompt) == wanted)
    }
}

/// The columns an evaluation reads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Columns {
    pub prompt: String,
    pub weak: String,
    pub strong: String,
    pub mid: Option<String>,
}

/// One prompt with its outcomes under the weak, (optional) mid and strong models.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// The prompt cell as stored: plain text or a JSON list of turns.
    pub prompt: String,
    pub weak: f64,
    pub mid: Option<f64>,
    pub strong: f64,
    /// Output tokens every tier's call on this row is priced with: the strong model's answer
    /// length (see [`output_tokens`]). One count for all tiers, so that the tiers' relative
    /// cost is the catalog's price ratio, not the proxy models' verbosity.
    pub output_tokens: u64,
}

impl EvalRow {
    /// A row without answer lengths: every call is priced at [`DEFAULT_OUTPUT_TOKENS`].
    #[allow(dead_code)] // For evaluations from code.
    pub fn new(prompt: impl Into<String>, weak: f64, mid: Option<f64>, strong: f64) -> EvalRow {
        EvalRow { prompt: prompt.into(), weak, mid, strong, output_tokens: DEFAULT_OUTPUT_TOKENS }
    }

    /// A row of a shipped dataset, for models named as in its columns (without the outcome
    /// suffix); `None` when one of the outcomes is missing. Uses the dataset's own prompt
    /// (for MMLU-Pro: question and lettered options) and the strong model's answer length.
    pub fn from_example(
        example: &gateway_core::routing::dataset::Example,
        weak: &str,
        mid: Option<&str>,
        strong: &str,
    ) -> Option<EvalRow> {
        let outcome = |m: &str| example.outcomes.get(m).copied();
        let mid_outcome = match mid {
            Some(m) => Some(outcome(m)?),
            None => None,
        };
        Some(EvalRow {
            prompt: example.prompt.clone(),
            weak: outcome(weak)?,
            mid: mid_outcome,
            strong: outcome(strong)?,
            output_tokens: output_tokens(example.out_chars.get(strong).copied()),
        })
    }
}

/// Output tokens of an answer of `out_chars` characters: about four characters per token,
/// [`DEFAULT_OUTPUT_TOKENS`] when the length is unknown.
pub fn output_tokens(out_chars: Option<f64>) -> u64 {
    match out_chars {
        Some(chars) if chars.is_finite() && chars >= 0.0 => (chars / 4.0).ceil() as u64,
        _ => DEFAULT_OUTPUT_TOKENS,
    }
}

/// The column holding the answer length of an outcome column's model: `M__correct` →
/// `M__out_chars`.
pub fn out_chars_column(outcome_column: &str) -> Option<String> {
    outcome_column.rsplit_once("__").map(|(model, _)| format!("{model}__out_chars"))
}

/// Rows read, and what was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub rows: Vec<EvalRow>,
    /// Data rows in the file.
    pub read: usize,
    /// Rows of other splits than the one asked for.
    pub outside_split: usize,
    /// Rows of the split missing an outcome in a column used.
    pub skipped_missing: usize,
    /// Rows of the split with an empty prompt.
    pub skipped_empty_prompt: usize,
    /// The strong model's answer-length column, when the file has it: every tier is priced
    /// with its lengths.
    pub out_chars_column: Option<String>,
}

/// Reads `path` (gzipped when it ends in `.gz`).
pub fn load_rows(path: &Path, columns: &Columns, split: SplitFilter) -> Result<Loaded> {
    let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let reader = BufReader::new(file);
    let reader: Box<dyn Read> =
        if path.extension().is_some_and(|e| e == "gz") { Box::new(GzDecoder::new(reader)) } else { Box::new(reader) };
    read_rows(reader, &path.display().to_string(), columns, split)
}

fn is_missing(cell: &str) -> bool {
    matches!(cell.trim().to_ascii_lowercase().as_str(), "" | "nan" | "null" | "none" | "na" | "n/a")
}

/// Reads CSV from `reader`; `name` is the source's name in errors.
pub fn read_rows(reader: impl Read, name: &str, columns: &Columns, split: SplitFilter) -> Result<Loaded> {
    let mut csv = csv::ReaderBuilder::new().from_reader(reader);
    let headers = csv.headers().map_err(|e| format!("{name} is not valid CSV: {e}"))?.clone();
    let find = |column: &str| -> Result<usize> {
        headers.iter().position(|h| h == column).ok_or_else(|| {
            let available: Vec<&str> = headers.iter().collect();
            format!("{name} has no column `{column}`; available columns: {}", available.join(", ")).into()
        })
    };
    let prompt_at = find(&columns.prompt)?;
    let weak_at = find(&columns.weak)?;
    let strong_at = find(&columns.strong)?;
    let mid_at = columns.mid.as_deref().map(find).transpose()?;
    let chars = out_chars_column(&columns.strong)
        .and_then(|wanted| headers.iter().position(|h| h == wanted).map(|at| (wanted, at)));
    let chars_at = chars.as_ref().map(|(_, at)| *at);

    let mut loaded = Loaded {
        rows: Vec::new(),
        read: 0,
        outside_split: 0,
        skipped_missing: 0,
        skipped_empty_prompt: 0,
        out_chars_column: chars.map(|(name, _)| name),
    };
    for record in csv.records() {
        let record = record.map_err(|e| format!("{name} is not valid CSV: {e}"))?;
        loaded.read += 1;
        let line = record.position().map_or(loaded.read as u64 + 1, |p| p.line());
        let cell = |at: usize| record.get(at).unwrap_or("");
        let prompt = cell(prompt_at);
        if !split.keeps(prompt) {
            loaded.outside_split += 1;
            continue;
        }
        if prompt.trim().is_empty() {
            loaded.skipped_empty_prompt += 1;
            continue;
        }
        let outcome = |at: usize, column: &str| -> Result<Option<f64>> {
            let value = cell(at);
            match parse_outcome(value) {
                Some(v) => Ok(Some(v)),
                None if is_missing(value) => Ok(None),
                None => Err(format!(
                    "{name} line {line}, column `{column}`: `{value}` is not an outcome \
                     (expected true/false, 0/1 or a number)"
                )
                .into()),
            }
        };
        let weak = outcome(weak_at, &columns.weak)?;
        let strong = outcome(strong_at, &columns.strong)?;
        let mid = match (mid_at, columns.mid.as_deref()) {
            (Some(at), Some(column)) => Some(outcome(at, column)?),
            _ => None,
        };
        let (Some(weak), Some(strong)) = (weak, strong) else {
            loaded.skipped_missing += 1;
            continue;
        };
        let mid = match mid {
            Some(None) => {
                loaded.skipped_missing += 1;
                continue;
            }
            Some(Some(v)) => Some(v),
            None => None,
        };
        let tokens = output_tokens(chars_at.and_then(|at| parse_outcome(cell(at))));
        loaded.rows.push(EvalRow { prompt: prompt.to_owned(), weak, mid, strong, output_tokens: tokens });
    }
    Ok(loaded)
}
