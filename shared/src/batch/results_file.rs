//! The results file of a dropped JSONL file: one line per input record, in input order,
//! answers and failures alike, written once every line has a final result.
//!
//! It goes under a results prefix rather than beside the input, so that writing it can never
//! look like a new file dropped under the input prefix (which would take it in as work). Its
//! key mirrors the input's below the prefixes: `<input_prefix>team/a.jsonl` gives
//! `<results_prefix>team/a.jsonl.results.jsonl`.
//!
//! Nothing is stored per line: a line's request ID is `<file_job>-<line>`, so the writer reads
//! the input again (streamed), derives each line's request and asks the result store for
//! its latest attempt. A line whose latest result is still retrying, or has none, makes the
//! file incomplete; a later job (or on-demand run) that finishes it writes the file. Writing
//! again is harmless: the same results give the same bytes.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

use super::BatchError;
use super::ports::{BatchFiles, FileIntake, FileIntakes, ResultState, ResultStore};
use crate::request::ConverseResponse;

/// Ends every results file's key; the intake refuses keys that end with it.
pub const RESULTS_SUFFIX: &str = ".results.jsonl";

/// The prefix of a dropped file's pseudo job and of its lines' request IDs.
pub const FILE_JOB_PREFIX: &str = "file-";

/// Where dropped files arrive and where their results go, in the same bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultsLayout {
    /// Keys under it are work (S3's event notification filters on it too).
    pub input_prefix: String,
    pub results_prefix: String,
}

impl Default for ResultsLayout {
    fn default() -> Self {
        ResultsLayout { input_prefix: "batch/drop/".to_owned(), results_prefix: "batch/results/".to_owned() }
    }
}

impl ResultsLayout {
    pub fn results_key(&self, input_key: &str) -> String {
        let relative = input_key.strip_prefix(self.input_prefix.as_str()).unwrap_or(input_key);
        format!("{}{relative}{RESULTS_SUFFIX}", self.results_prefix)
    }

    /// A key this pipeline writes results to: never taken in as work.
    pub fn is_results_key(&self, key: &str) -> bool {
        key.ends_with(RESULTS_SUFFIX) || (!self.results_prefix.is_empty() && key.starts_with(&self.results_prefix))
    }
}

pub fn s3_uri(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

/// The request ID of line `line` of the file taken in as `file_job`.
pub fn line_request_id(file_job: &str, line: u64) -> String {
    format!("{file_job}-{line}")
}

/// The file a line's request ID belongs to; `None` for requests that came another way.
pub fn file_job_of(request_id: &str) -> Option<&str> {
    let (file_job, line) = request_id.rsplit_once('-')?;
    let is_line = !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit());
    (is_line && file_job.starts_with(FILE_JOB_PREFIX) && file_job.len() > FILE_JOB_PREFIX.len()).then_some(file_job)
}

/// What became of a request to write a file's results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum ResultsFile {
    Written {
        uri: String,
        lines: u64,
    },
    /// Line `line` (and maybe others) has no final result yet.
    Incomplete {
        line: u64,
    },
    /// No intake is recorded under the file job.
    Unknown,
    /// The object under the key is not the one taken in (deleted, or replaced by another
    /// version with another count of records); that version's own intake writes its results.
    Replaced {
        reason: String,
    },
}

/// One line of an input file: its number from 1 and its bytes, `None` when it is longer
/// than the limit (its bytes are skipped, never held).
pub(super) struct InputLines<R> {
    input: R,
    buffer: Vec<u8>,
    line: u64,
    limit: usize,
}

impl<R: AsyncBufRead + Unpin> InputLines<R> {
    pub(super) fn new(input: R, limit: usize) -> Self {
        InputLines { input, buffer: Vec::new(), line: 0, limit }
    }

    /// The next line that is not blank; blank lines carry no record.
    pub(super) async fn next_record(&mut self) -> Result<Option<(u64, Option<&[u8]>)>, BatchError> {
        loop {
            self.buffer.clear();
            let read = (&mut self.input)
                .take(self.limit as u64 + 1)
                .read_until(b'\n', &mut self.buffer)
                .await
                .map_err(|source| BatchError::Read { line: self.line + 1, source })?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            if self.buffer.len() > self.limit && self.buffer.last() != Some(&b'\n') {
                self.skip_rest().await?;
                return Ok(Some((self.line, None)));
            }
            if !self.buffer.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some((self.line, Some(&self.buffer))));
            }
        }
    }

    async fn skip_rest(&mut self) -> Result<(), BatchError> {
        loop {
            let chunk = self.input.fill_buf().await.map_err(|source| BatchError::Read { line: self.line, source })?;
            if chunk.is_empty() {
                return Ok(());
            }
            if let Some(at) = chunk.iter().position(|b| *b == b'\n') {
                self.input.consume(at + 1);
                return Ok(());
            }
            let n = chunk.len();
            self.input.consume(n);
        }
    }
}

/// Bytes in the stream, read up to one past `limit` and no further.
pub(super) async fn count_bytes<R: AsyncBufRead + Unpin>(mut input: R, limit: u64) -> Result<u64, BatchError> {
    let mut total = 0u64;
    loop {
        let chunk = input.fill_buf().await.map_err(|source| BatchError::Read { line: 0, source })?;
        if chunk.is_empty() || total > limit {
            return Ok(total);
        }
        let n = chunk.len();
        total += n as u64;
        input.consume(n);
    }
}

/// The caller's `recordId` of a line, when the line is JSON and gives a string one.
#[derive(Deserialize)]
struct CallerId {
    #[serde(rename = "recordId")]
    record_id: Option<serde_json::Value>,
}

pub(super) fn caller_record_id(text: &[u8]) -> Option<String> {
    match serde_json::from_slice::<CallerId>(text).ok()?.record_id? {
        serde_json::Value::String(id) => Some(id),
        _ => None,
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResultLine<'a> {
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    record_id: Option<&'a str>,
    request_id: &'a str,
    status: &'static str,
    /// Jobs (or on-demand runs) the record took, the first included: above 1, it was retried.
    attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    model_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a ConverseResponse>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<f64>,
    /// `batch` or `on_demand`: which price the cost is at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<&'static str>,
    /// What the same answer costs on demand: the saving is this less `cost_usd`.
    #[serde(skip_serializing_if = "Option::is_none")]
    on_demand_cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorView<'a>>,
}

#[derive(Serialize)]
struct ErrorView<'a> {
    label: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<u16>,
    message: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RefusedLine<'a> {
    file: &'a str,
    status: &'static str,
    error: ErrorView<'a>,
}

fn push_json(body: &mut Vec<u8>, value: &impl Serialize) -> Result<(), BatchError> {
    serde_json::to_writer(&mut *body, value)
        .map_err(|e| BatchError::Corrupt(format!("result not serialisable: {e}")))?;
    body.push(b'\n');
    Ok(())
}

/// Writes the results file of `file_job` if every record of the file has a final result.
pub async fn write_if_complete<R, I, F>(
    results: &R,
    intakes: &I,
    files: &F,
    layout: &ResultsLayout,
    file_job: &str,
    max_line_bytes: usize,
) -> Result<ResultsFile, BatchError>
where
    R: ResultStore,
    I: FileIntakes,
    F: BatchFiles,
{
    let Some(intake) = intakes.intake(file_job).await? else {
        return Ok(ResultsFile::Unknown);
    };
    let uri = s3_uri(&intake.bucket, &layout.results_key(&intake.key));
    if let Some(reason) = &intake.refused {
        return write_refusal(files, &intake, &uri, reason).await;
    }
    let Some(input) = files.open(&s3_uri(&intake.bucket, &intake.key)).await? else {
        return Ok(ResultsFile::Replaced { reason: "the input object is gone".to_owned() });
    };
    let mut lines = InputLines::new(input, max_line_bytes);
    let mut body = Vec::new();
    let mut records = 0u64;
    while let Some((line, text)) = lines.next_record().await? {
        records += 1;
        let request_id = line_request_id(file_job, line);
        let caller_id = text.and_then(caller_record_id);
        let Some(result) = results.latest(&request_id).await? else {
            return Ok(ResultsFile::Incomplete { line });
        };
        let model_id = (!result.model_id.is_empty()).then_some(result.model_id.as_str());
        let base = ResultLine {
            line,
            record_id: caller_id.as_deref(),
            request_id: &request_id,
            status: "",
            attempts: result.record_id.attempt(),
            model_id,
            output: None,
            cost_usd: None,
            pricing: None,
            on_demand_cost_usd: None,
            error: None,
        };
        let entry = match &result.state {
            ResultState::Retrying { .. } => return Ok(ResultsFile::Incomplete { line }),
            ResultState::Answered { response, batch_cost_usd, on_demand_cost_usd, .. } => {
                let (cost_usd, pricing) = match batch_cost_usd {
                    Some(cost) => (Some(*cost), Some("batch")),
                    None => (*on_demand_cost_usd, on_demand_cost_usd.map(|_| "on_demand")),
                };
                ResultLine {
                    status: "answered",
                    output: Some(response),
                    cost_usd,
                    pricing,
                    on_demand_cost_usd: *on_demand_cost_usd,
                    ..base
                }
            }
            ResultState::Failed { failure } => ResultLine {
                status: "failed",
                error: Some(ErrorView { label: failure.label.as_str(), code: failure.code, message: &failure.message }),
                ..base
            },
        };
        push_json(&mut body, &entry)?;
    }
    if records != intake.records {
        return Ok(ResultsFile::Replaced {
            reason: format!("the object has {records} records, the intake took in {}", intake.records),
        });
    }
    files.write(&uri, body).await?;
    Ok(ResultsFile::Written { uri, lines: records })
}

async fn write_refusal<F: BatchFiles>(
    files: &F,
    intake: &FileIntake,
    uri: &str,
    reason: &str,
) -> Result<ResultsFile, BatchError> {
    let mut body = Vec::new();
    let line = RefusedLine {
        file: &intake.key,
        status: "refused",
        error: ErrorView { label: crate::label::ErrorLabel::InvalidRequest.as_str(), code: None, message: reason },
    };
    push_json(&mut body, &line)?;
    files.write(uri, body).await?;
    Ok(ResultsFile::Written { uri: uri.to_owned(), lines: 0 })
}
