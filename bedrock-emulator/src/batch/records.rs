//! One input file's records: parsed from JSONL, answered by the emulator's engine, written
//! back as `.jsonl.out` lines and summed into the manifest.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::anthropic;
use crate::engine::{self, AppState};
use crate::errors::ApiError;
use crate::routes::{anthropic_usage, converse_response};

/// How each record's `modelInput` is read, as the job's `modelInvocationType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    InvokeModel,
    Converse,
}

impl InvocationType {
    pub fn parse(text: &str) -> Option<InvocationType> {
        match text {
            "InvokeModel" => Some(InvocationType::InvokeModel),
            "Converse" => Some(InvocationType::Converse),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::InvokeModel => "InvokeModel",
            InvocationType::Converse => "Converse",
        }
    }
}

/// A line of an input file. A line that is not a JSON object with `modelInput` is still a
/// record: it fails on its own and the rest of the file runs.
#[derive(Debug, Clone)]
pub struct Record {
    pub record_id: String,
    pub model_input: Value,
    pub malformed: Option<String>,
}

/// The records of one file; blank lines are not records. `fresh_id` names records that came
/// without a `recordId`, as Bedrock adds one in the output.
pub fn parse_file(text: &str, mut fresh_id: impl FnMut() -> String) -> Vec<Record> {
    let mut records = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        let record = match parsed {
            Ok(Value::Object(mut object)) => {
                let record_id = match object.remove("recordId") {
                    Some(Value::String(id)) => id,
                    _ => fresh_id(),
                };
                match object.remove("modelInput") {
                    Some(input @ Value::Object(_)) => Record { record_id, model_input: input, malformed: None },
                    _ => Record {
                        record_id,
                        model_input: Value::Null,
                        malformed: Some("The record has no modelInput object.".to_owned()),
                    },
                }
            }
            Ok(_) => Record {
                record_id: fresh_id(),
                model_input: Value::Null,
                malformed: Some("The record is not a JSON object.".to_owned()),
            },
            Err(e) => Record {
                record_id: fresh_id(),
                model_input: Value::Null,
                malformed: Some(format!("The record is not valid JSON: {e}")),
            },
        };
        records.push(record);
    }
    records
}

/// What became of one record.
#[derive(Debug, Clone)]
pub struct RecordResult {
    pub line: Value,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub succeeded: bool,
}

/// Whether the configured failure share picks this record: a pure function of the seed, the
/// job's name and the record's place, so a rerun of the same job fails the same records.
pub fn injected_failure(seed: u64, job_name: &str, file: &str, index: usize, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(job_name.as_bytes());
    hasher.update([0]);
    hasher.update(file.as_bytes());
    hasher.update((index as u64).to_le_bytes());
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let draw = (u64::from_le_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    draw < rate
}

fn error_line(record: &Record, code: u16, message: &str) -> RecordResult {
    RecordResult {
        line: json!({
            "recordId": record.record_id,
            "modelInput": record.model_input,
            "error": {"errorCode": code, "errorMessage": message},
        }),
        input_tokens: 0,
        output_tokens: 0,
        succeeded: false,
    }
}

/// Runs one record through the engine, exactly as the online operation of its shape would.
pub fn run(state: &AppState, model_id: &str, kind: InvocationType, record: &Record, fail: bool) -> RecordResult {
    if let Some(reason) = &record.malformed {
        return error_line(record, 400, reason);
    }
    if fail {
        let error = ApiError::InternalServer;
        return error_line(record, error.status().as_u16(), &error.to_string());
    }
    let body = record.model_input.to_string();
    let request = match kind {
        InvocationType::Converse => gateway_core::request::ConverseRequest::from_json(body.as_bytes())
            .map_err(|e| ApiError::validation(e.to_string())),
        InvocationType::InvokeModel => anthropic::parse(body.as_bytes()),
    };
    let answered = match request.and_then(|request| engine::answer_offline(state, model_id, request)) {
        Ok(answered) => answered,
        Err(e) => return error_line(record, e.status().as_u16(), &e.to_string()),
    };
    let output = match kind {
        InvocationType::Converse => serde_json::to_value(converse_response(&answered.outcome())).unwrap_or(Value::Null),
        InvocationType::InvokeModel => anthropic::message(
            &state.fresh_id("msg_bdrk_", 24),
            &answered.resolved.spec.model_id,
            &answered.answer,
            anthropic_usage(&answered.usage),
        ),
    };
    RecordResult {
        line: json!({"recordId": record.record_id, "modelInput": record.model_input, "modelOutput": output}),
        input_tokens: answered.usage.input,
        output_tokens: answered.usage.output,
        succeeded: true,
    }
}

/// The figures of `manifest.json.out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub total: u64,
    pub processed: u64,
    pub succeeded: u64,
    pub errors: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Totals {
    pub fn add(&mut self, result: &RecordResult) {
        self.processed += 1;
        if result.succeeded {
            self.succeeded += 1;
        } else {
            self.errors += 1;
        }
        self.input_tokens += result.input_tokens;
        self.output_tokens += result.output_tokens;
    }

    pub fn manifest(&self) -> Value {
        json!({
            "totalRecordCount": self.total,
            "processedRecordCount": self.processed,
            "successRecordCount": self.succeeded,
            "errorRecordCount": self.errors,
            "inputTokenCount": self.input_tokens,
            "outputTokenCount": self.output_tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nonblank_line_is_a_record_and_bad_ones_say_why() {
        let mut n = 0;
        let text = "{\"recordId\":\"a\",\"modelInput\":{\"messages\":[]}}\n\nnot json\n[1]\n{\"modelInput\":{}}\n{\"recordId\":\"b\"}\n";
        let records = parse_file(text, || {
            n += 1;
            format!("gen{n}")
        });
        let ids: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
        assert_eq!(ids, ["a", "gen1", "gen2", "gen3", "b"]);
        let malformed: Vec<bool> = records.iter().map(|r| r.malformed.is_some()).collect();
        assert_eq!(malformed, [false, true, true, false, true]);
    }

    #[test]
    fn the_failure_share_is_reproducible_and_close_to_its_rate() {
        let picked = (0..2000).filter(|i| injected_failure(7, "job", "a.jsonl", *i, 0.25)).count();
        assert!((400..600).contains(&picked), "{picked}");
        let again = (0..2000).filter(|i| injected_failure(7, "job", "a.jsonl", *i, 0.25)).count();
        assert_eq!(picked, again);
        assert!(!injected_failure(7, "job", "a.jsonl", 3, 0.0));
        assert!(injected_failure(7, "job", "a.jsonl", 3, 1.0));
    }
}
