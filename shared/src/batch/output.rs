//! Bedrock's batch output format, read one line at a time.
//!
//! A job writes `<jobId>/<input>.jsonl.out`: one JSON object per line, `{"recordId",
//! "modelInput", "modelOutput"}` for an answered record and `{"recordId", "modelInput",
//! "error": {"errorCode", "errorMessage"}}` for a failed one, in no promised order. Files reach
//! Bedrock's size limit, so the readers here keep one line in memory, never the file.

use std::io::BufRead;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::BatchError;
use crate::request::ConverseResponse;

/// Longest line the readers accept. Bedrock bounds a record's input and output far below
/// this; a longer line is a broken file, and reading it whole would be the memory blow-up
/// streaming exists to avoid.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// What one line of a `.jsonl.out` file says.
#[derive(Debug, Clone, PartialEq)]
#[expect(
    clippy::large_enum_variant,
    reason = "one line's outcome is alive at a time; a box would add an allocation per line"
)]
pub enum RecordOutcome {
    Answered {
        line: u64,
        record_id: String,
        response: ConverseResponse,
    },
    Failed {
        line: u64,
        record_id: String,
        error: RecordError,
    },
    /// A line that is not a record Bedrock could have written. `record_id` is kept when the
    /// line names one, so that the record is still accounted for.
    Malformed {
        line: u64,
        record_id: Option<String>,
        reason: String,
    },
}

/// Bedrock's error for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Bedrock writes an HTTP-like status number; `None` when it wrote none (or not a number).
    pub code: Option<u16>,
    pub message: String,
}

impl RecordError {
    /// Whether another job could answer the record: throttling, timeouts and Bedrock's own
    /// failures can pass, a request Bedrock judged invalid fails the same way every time.
    pub fn is_retryable(&self) -> bool {
        match self.code {
            Some(code) => code == 408 || code == 429 || code >= 500,
            None => true,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    record_id: Option<String>,
    model_output: Option<Value>,
    error: Option<LineError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LineError {
    error_code: Option<Value>,
    error_message: Option<String>,
}

/// The outcome of line number `line` (1-based); `None` for a blank line, which carries no
/// record (a trailing newline, say).
pub fn parse_line(line: u64, text: &str) -> Option<RecordOutcome> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let malformed = |record_id: Option<String>, reason: String| RecordOutcome::Malformed { line, record_id, reason };
    let parsed: Line = match serde_json::from_str(text) {
        Ok(parsed) => parsed,
        Err(e) => return Some(malformed(None, format!("not a JSON record: {e}"))),
    };
    let Some(record_id) = parsed.record_id.filter(|id| !id.is_empty()) else {
        return Some(malformed(None, "no recordId".to_owned()));
    };
    Some(match (parsed.model_output, parsed.error) {
        (Some(_), Some(_)) => malformed(Some(record_id), "both modelOutput and error".to_owned()),
        (None, None) => malformed(Some(record_id), "neither modelOutput nor error".to_owned()),
        (None, Some(error)) => RecordOutcome::Failed {
            line,
            record_id,
            error: RecordError {
                code: error.error_code.as_ref().and_then(status_code),
                message: error.error_message.unwrap_or_default(),
            },
        },
        (Some(output), None) => match converse_response(output) {
            Ok(response) => RecordOutcome::Answered { line, record_id, response },
            Err(e) => malformed(Some(record_id), format!("modelOutput is not a Converse response: {e}")),
        },
    })
}

fn status_code(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Batch output carries no call latency (the job has none per record), which the online
/// response type requires; it is read as zero rather than refusing every answer.
fn converse_response(mut output: Value) -> Result<ConverseResponse, serde_json::Error> {
    if let Value::Object(fields) = &mut output {
        fields.entry("metrics").or_insert_with(|| serde_json::json!({ "latencyMs": 0 }));
    }
    serde_json::from_value(output)
}

fn too_long(line: u64) -> RecordOutcome {
    RecordOutcome::Malformed { line, record_id: None, reason: format!("line longer than {MAX_LINE_BYTES} bytes") }
}

/// A blocking reader of one output file: an iterator of outcomes, one line held at a time.
/// A read error ends the iteration after it is yielded.
#[derive(Debug)]
pub struct OutputReader<R> {
    input: R,
    buffer: Vec<u8>,
    line: u64,
    failed: bool,
}

impl<R: BufRead> OutputReader<R> {
    pub fn new(input: R) -> Self {
        OutputReader { input, buffer: Vec::new(), line: 0, failed: false }
    }

    /// Lines read so far.
    pub fn lines_read(&self) -> u64 {
        self.line
    }
}

impl<R: BufRead> Iterator for OutputReader<R> {
    type Item = Result<RecordOutcome, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed {
            self.buffer.clear();
            let read = <&mut R as std::io::Read>::take(&mut self.input, MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buffer);
            match read {
                Ok(0) => return None,
                Ok(_) => {
                    self.line += 1;
                    if overlong(&self.buffer) {
                        if let Err(e) = skip_line(&mut self.input) {
                            self.failed = true;
                            return Some(Err(BatchError::Read { line: self.line, source: e }));
                        }
                        return Some(Ok(too_long(self.line)));
                    }
                    if let Some(outcome) = outcome_of(self.line, &self.buffer) {
                        return Some(Ok(outcome));
                    }
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(BatchError::Read { line: self.line + 1, source: e }));
                }
            }
        }
        None
    }
}

/// More than the limit before the line's end: a line of exactly the limit fits with its newline.
fn overlong(buffer: &[u8]) -> bool {
    buffer.len() > MAX_LINE_BYTES && buffer.last() != Some(&b'\n')
}

fn outcome_of(line: u64, bytes: &[u8]) -> Option<RecordOutcome> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_line(line, text),
        Err(e) => Some(RecordOutcome::Malformed { line, record_id: None, reason: format!("not UTF-8: {e}") }),
    }
}

/// Drops the rest of an overlong line without keeping it.
fn skip_line<R: BufRead>(input: &mut R) -> std::io::Result<()> {
    loop {
        let chunk = input.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => {
                input.consume(at + 1);
                return Ok(());
            }
            None => {
                let n = chunk.len();
                input.consume(n);
            }
        }
    }
}

/// The same reader over an asynchronous stream (an S3 object body, say).
#[derive(Debug)]
pub struct AsyncOutputReader<R> {
    input: R,
    buffer: Vec<u8>,
    line: u64,
}

impl<R: AsyncBufRead + Unpin> AsyncOutputReader<R> {
    pub fn new(input: R) -> Self {
        AsyncOutputReader { input, buffer: Vec::new(), line: 0 }
    }

    pub fn lines_read(&self) -> u64 {
        self.line
    }

    /// The next outcome; `Ok(None)` at the end of the file.
    pub async fn next_outcome(&mut self) -> Result<Option<RecordOutcome>, BatchError> {
        use tokio::io::AsyncReadExt;
        loop {
            self.buffer.clear();
            let read = (&mut self.input)
                .take(MAX_LINE_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buffer)
                .await
                .map_err(|source| BatchError::Read { line: self.line + 1, source })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            if overlong(&self.buffer) {
                self.skip_line().await?;
                return Ok(Some(too_long(self.line)));
            }
            if let Some(outcome) = outcome_of(self.line, &self.buffer) {
                return Ok(Some(outcome));
            }
        }
    }

    async fn skip_line(&mut self) -> Result<(), BatchError> {
        loop {
            let chunk = self.input.fill_buf().await.map_err(|source| BatchError::Read { line: self.line, source })?;
            if chunk.is_empty() {
                return Ok(());
            }
            match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => {
                    self.input.consume(at + 1);
                    return Ok(());
                }
                None => {
                    let n = chunk.len();
                    self.input.consume(n);
                }
            }
        }
    }
}
