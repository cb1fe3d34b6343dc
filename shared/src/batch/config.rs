//! The batch pipeline's deployer configuration, read from the environment once per cold start.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `BATCH_TABLE_NAME` | required | DynamoDB table of pending records, jobs, results (keys `pk`, `sk`) |
//! | `BATCH_BUCKET` | required | S3 bucket of dropped files, job inputs and outputs |
//! | `BATCH_INPUT_PREFIX` | `batch/drop/` | where dropped JSONL files are picked up; ends with `/`, outside `batch/input/`, `batch/output/` and `batch/results/` |
//! | `BATCH_ROLE_ARN` | required to submit | the service role Bedrock assumes to read a job's input and write its output |
//! | `BATCH_MIN_RECORDS` | 100 | fewest records a job is submitted with (Bedrock's minimum for most models) |
//! | `BATCH_MAX_RECORDS` | 10000 | most records in one job (at most 50000, Bedrock's per-file limit) |
//! | `BATCH_MAX_WAIT_SECONDS` | 900 | longest a record waits for a job to fill before it is answered on demand |
//! | `BATCH_MAX_ATTEMPTS` | 3 | attempts a record gets in all, the first included (1 to 10) |
//! | `BATCH_FILE_TENANT` | `batch-files` | the tenant dropped files run as: their answers are cached for it, as if it had sent them with `x-tenant-id` |
//!
//! invoke-with-cache needs only the table: without `BATCH_TABLE_NAME` it answers deferrable
//! requests with a 400 ([`deferral_table`]).

use std::time::Duration;

use super::DroppedFile;
use super::complete::BatchSettings;
use super::pipeline::PipelineSettings;
use super::results_file::ResultsLayout;
use super::submit::SubmissionSettings;
use crate::cache::{CacheSettings, Tenant};
use crate::config::{ConfigError, Env};
use crate::identity::Identity;

/// Where the submission writes job inputs, Bedrock the outputs, the pipeline the results
/// files. A drop prefix that overlapped one would take the pipeline's own files for new work.
pub const JOB_INPUT_PREFIX: &str = "batch/input/";
pub const JOB_OUTPUT_PREFIX: &str = "batch/output/";
/// Where the results file of a dropped file is written.
pub const RESULTS_PREFIX: &str = "batch/results/";

/// Bedrock's limit on records per input file, and the most a job here may hold.
pub const MAX_RECORDS_PER_JOB: u64 = 50_000;

/// Jobs small enough to finish well within Bedrock's 24-hour window, as the submission plans them.
const DEFAULT_MAX_RECORDS: u64 = 10_000;

const MAX_ATTEMPTS_LIMIT: u32 = 10;

const DEFAULT_FILE_TENANT: &str = "batch-files";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    pub table: String,
    pub bucket: String,
    /// Ends with `/`; never the pipeline's own prefixes.
    pub input_prefix: String,
    /// `None` when unset: only the submission needs it ([`BatchConfig::submission_role`]).
    pub role_arn: Option<String>,
    pub min_records: u64,
    pub max_records: u64,
    pub max_wait: Duration,
    pub max_attempts: u32,
    /// Files carry no caller identity; their records are this tenant's.
    pub file_tenant: String,
}

/// Why a dropped object is not work for the pipeline. S3 event rules can be broad (a whole
/// bucket), so these are answered, not failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAnInput {
    #[error("bucket `{bucket}` is not the batch bucket `{expected}`")]
    OtherBucket { bucket: String, expected: String },
    #[error("key `{key}` is not under the input prefix `{prefix}`")]
    OutsidePrefix { key: String, prefix: String },
    #[error("key `{key}` does not end with `.jsonl`")]
    NotJsonl { key: String },
    #[error("key `{key}` is a folder marker, not a file")]
    Folder { key: String },
    #[error("object `{key}` is empty")]
    Empty { key: String },
}

impl BatchConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let invalid = |name: &'static str, value: &str, reason: &str| ConfigError::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let table = env.get("BATCH_TABLE_NAME").ok_or(ConfigError::Missing("BATCH_TABLE_NAME"))?;
        check_table_name(&table).map_err(|reason| invalid("BATCH_TABLE_NAME", &table, reason))?;
        let bucket = env.get("BATCH_BUCKET").ok_or(ConfigError::Missing("BATCH_BUCKET"))?;
        check_bucket_name(&bucket).map_err(|reason| invalid("BATCH_BUCKET", &bucket, reason))?;
        let input_prefix = env.get("BATCH_INPUT_PREFIX").unwrap_or_else(|| "batch/drop/".to_owned());
        check_input_prefix(&input_prefix).map_err(|reason| invalid("BATCH_INPUT_PREFIX", &input_prefix, reason))?;
        let role_arn = env.get("BATCH_ROLE_ARN");
        if let Some(arn) = &role_arn
            && !(arn.starts_with("arn:") && arn.contains(":role/"))
        {
            return Err(invalid(
                "BATCH_ROLE_ARN",
                arn,
                "must be an IAM role ARN (`arn:aws:iam::<account>:role/<name>`)",
            ));
        }
        let min_records: u64 = env.parsed("BATCH_MIN_RECORDS", 100)?;
        let max_records: u64 = env.parsed("BATCH_MAX_RECORDS", DEFAULT_MAX_RECORDS)?;
        if min_records == 0 {
            return Err(invalid("BATCH_MIN_RECORDS", "0", "must be at least 1"));
        }
        if max_records > MAX_RECORDS_PER_JOB || max_records < min_records {
            return Err(ConfigError::Invalid {
                name: "BATCH_MAX_RECORDS",
                value: max_records.to_string(),
                reason: format!(
                    "must be between BATCH_MIN_RECORDS ({min_records}) and {MAX_RECORDS_PER_JOB}, Bedrock's records per input file"
                ),
            });
        }
        let max_wait_seconds: u64 = env.parsed("BATCH_MAX_WAIT_SECONDS", 900)?;
        if max_wait_seconds == 0 {
            return Err(invalid("BATCH_MAX_WAIT_SECONDS", "0", "must be at least 1"));
        }
        let max_attempts: u32 = env.parsed("BATCH_MAX_ATTEMPTS", 3)?;
        if !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts) {
            return Err(ConfigError::Invalid {
                name: "BATCH_MAX_ATTEMPTS",
                value: max_attempts.to_string(),
                reason: format!("must be 1 to {MAX_ATTEMPTS_LIMIT}"),
            });
        }
        let file_tenant = env.get("BATCH_FILE_TENANT").unwrap_or_else(|| DEFAULT_FILE_TENANT.to_owned());
        if file_tenant.trim().is_empty() || file_tenant.len() > 128 {
            return Err(invalid("BATCH_FILE_TENANT", &file_tenant, "must be 1 to 128 characters"));
        }
        Ok(BatchConfig {
            table,
            bucket,
            input_prefix,
            role_arn,
            min_records,
            max_records,
            max_wait: Duration::from_secs(max_wait_seconds),
            max_attempts,
            file_tenant,
        })
    }

    /// The role a job is created with; a deployment that submits cannot run without it.
    pub fn submission_role(&self) -> Result<&str, ConfigError> {
        self.role_arn.as_deref().ok_or(ConfigError::Missing("BATCH_ROLE_ARN"))
    }

    /// The completion's settings: the attempts here, the cache policy the online path uses.
    pub fn completion_settings(&self, cache: CacheSettings) -> BatchSettings {
        BatchSettings { max_attempts: self.max_attempts, cache }
    }

    fn layout(&self) -> ResultsLayout {
        ResultsLayout { input_prefix: self.input_prefix.clone(), results_prefix: RESULTS_PREFIX.to_owned() }
    }

    /// The submission's settings: these values over the pipeline's defaults.
    pub fn submission_settings(&self) -> Result<SubmissionSettings, ConfigError> {
        let tenant = Tenant::from(Identity::TrustedHeader { tenant: self.file_tenant.clone() });
        let mut settings = SubmissionSettings::new(self.bucket.clone(), self.submission_role()?, tenant);
        settings.job_input_prefix = JOB_INPUT_PREFIX.to_owned();
        settings.job_output_prefix = JOB_OUTPUT_PREFIX.to_owned();
        settings.layout = self.layout();
        settings.min_records = usize::try_from(self.min_records).unwrap_or(usize::MAX);
        settings.max_records = usize::try_from(self.max_records).unwrap_or(usize::MAX);
        settings.max_wait = self.max_wait;
        settings.max_attempts = self.max_attempts;
        Ok(settings)
    }

    /// The completion's pipeline settings, with the online cache policy.
    pub fn pipeline_settings(&self, cache: CacheSettings) -> PipelineSettings {
        PipelineSettings {
            completion: self.completion_settings(cache),
            layout: self.layout(),
            ..PipelineSettings::default()
        }
    }

    /// Whether a dropped object is a file to take in: in the batch bucket, under the input
    /// prefix, a non-empty `.jsonl` object.
    pub fn check_dropped(&self, file: &DroppedFile) -> Result<(), NotAnInput> {
        if file.bucket != self.bucket {
            return Err(NotAnInput::OtherBucket { bucket: file.bucket.clone(), expected: self.bucket.clone() });
        }
        if !file.key.starts_with(&self.input_prefix) {
            return Err(NotAnInput::OutsidePrefix { key: file.key.clone(), prefix: self.input_prefix.clone() });
        }
        if file.key.ends_with('/') {
            return Err(NotAnInput::Folder { key: file.key.clone() });
        }
        if !file.key.ends_with(".jsonl") {
            return Err(NotAnInput::NotJsonl { key: file.key.clone() });
        }
        if file.size == Some(0) {
            return Err(NotAnInput::Empty { key: file.key.clone() });
        }
        Ok(())
    }
}

/// `BATCH_TABLE_NAME` for invoke-with-cache, which defers requests only when it is set.
pub fn deferral_table(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let env = Env(&lookup);
    match env.get("BATCH_TABLE_NAME") {
        None => Ok(None),
        Some(table) => match check_table_name(&table) {
            Ok(()) => Ok(Some(table)),
            Err(reason) => {
                Err(ConfigError::Invalid { name: "BATCH_TABLE_NAME", value: table, reason: reason.to_owned() })
            }
        },
    }
}

fn check_table_name(name: &str) -> Result<(), &'static str> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if (3..=255).contains(&name.len()) && name.bytes().all(allowed) {
        Ok(())
    } else {
        Err("must be a DynamoDB table name: 3 to 255 of a-z, A-Z, 0-9, `_`, `-`, `.`")
    }
}

fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    let allowed = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-');
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if (3..=63).contains(&name.len())
        && name.bytes().all(allowed)
        && edge(name.bytes().next())
        && edge(name.bytes().last())
    {
        Ok(())
    } else {
        Err("must be an S3 bucket name: 3 to 63 of a-z, 0-9, `.`, `-`, starting and ending with a letter or digit")
    }
}

fn check_input_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.starts_with('/') || !prefix.ends_with('/') || prefix == "/" {
        return Err("must be a key prefix like `batch/drop/`: no leading `/`, one trailing `/`");
    }
    let overlaps = |own: &str| own.starts_with(prefix) || prefix.starts_with(own);
    if overlaps(JOB_INPUT_PREFIX) || overlaps(JOB_OUTPUT_PREFIX) || overlaps(RESULTS_PREFIX) {
        return Err(
            "must not contain or lie inside `batch/input/`, `batch/output/` or `batch/results/`: the pipeline's own files would be taken for new work",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn config(vars: &[(&str, &str)]) -> Result<BatchConfig, ConfigError> {
        let base = [("BATCH_TABLE_NAME", "gateway-batch"), ("BATCH_BUCKET", "gateway-batch-bucket")];
        let lookup =
            |name: &str| vars.iter().chain(base.iter()).find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned());
        BatchConfig::from_lookup(lookup)
    }

    fn invalid_name(result: Result<BatchConfig, ConfigError>) -> Option<&'static str> {
        match result {
            Err(ConfigError::Invalid { name, .. }) => Some(name),
            _ => None,
        }
    }

    #[test]
    fn defaults_need_the_table_and_the_bucket() {
        let c = config(&[]).unwrap();
        assert_eq!(c.input_prefix, "batch/drop/");
        assert_eq!((c.min_records, c.max_records, c.max_attempts), (100, 10_000, 3));
        assert_eq!(c.max_wait, Duration::from_secs(900));
        assert!(matches!(c.submission_role(), Err(ConfigError::Missing("BATCH_ROLE_ARN"))));
        assert!(matches!(BatchConfig::from_lookup(|_| None), Err(ConfigError::Missing("BATCH_TABLE_NAME"))));
        let only_table = |n: &str| (n == "BATCH_TABLE_NAME").then(|| "t-1".to_owned());
        assert!(matches!(BatchConfig::from_lookup(only_table), Err(ConfigError::Missing("BATCH_BUCKET"))));
    }

    #[test]
    fn values_are_read() {
        let c = config(&[
            ("BATCH_INPUT_PREFIX", "in/"),
            ("BATCH_ROLE_ARN", "arn:aws:iam::123456789012:role/batch"),
            ("BATCH_MIN_RECORDS", "10"),
            ("BATCH_MAX_RECORDS", "10"),
            ("BATCH_MAX_WAIT_SECONDS", "60"),
            ("BATCH_MAX_ATTEMPTS", "1"),
        ])
        .unwrap();
        assert_eq!(c.submission_role().unwrap(), "arn:aws:iam::123456789012:role/batch");
        assert_eq!((c.input_prefix.as_str(), c.min_records, c.max_records), ("in/", 10, 10));
        assert_eq!((c.max_wait, c.max_attempts), (Duration::from_secs(60), 1));
        assert_eq!(c.completion_settings(CacheSettings::default()).max_attempts, 1);
        let submission = c.submission_settings().unwrap();
        assert_eq!((submission.min_records, submission.max_records, submission.max_attempts), (10, 10, 1));
        assert_eq!((submission.layout.input_prefix.as_str(), submission.max_wait), ("in/", Duration::from_secs(60)));
        assert_eq!(submission.file_tenant, Tenant::new("batch-files"), "files run as a trusted-header tenant");
        assert_eq!(c.pipeline_settings(CacheSettings::default()).layout.input_prefix, "in/");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("BATCH_TABLE_NAME", "a b"),
            ("BATCH_BUCKET", "Upper"),
            ("BATCH_BUCKET", "-edge"),
            ("BATCH_INPUT_PREFIX", "/drop/"),
            ("BATCH_INPUT_PREFIX", "drop"),
            ("BATCH_INPUT_PREFIX", "batch/"),
            ("BATCH_INPUT_PREFIX", "batch/output/x/"),
            ("BATCH_INPUT_PREFIX", "batch/results/"),
            ("BATCH_ROLE_ARN", "batch-role"),
            ("BATCH_MIN_RECORDS", "0"),
            ("BATCH_MIN_RECORDS", "many"),
            ("BATCH_MAX_RECORDS", "50001"),
            ("BATCH_MAX_RECORDS", "99"),
            ("BATCH_MAX_WAIT_SECONDS", "0"),
            ("BATCH_MAX_ATTEMPTS", "0"),
            ("BATCH_MAX_ATTEMPTS", "11"),
        ] {
            assert_eq!(invalid_name(config(&[(name, value)])), Some(name), "{name}={value}");
        }
    }

    #[test]
    fn only_jsonl_files_under_the_prefix_of_the_bucket_are_inputs() {
        let c = config(&[]).unwrap();
        let file = |bucket: &str, key: &str, size: Option<u64>| DroppedFile {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            size,
            etag: None,
            version_id: None,
            event_time: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(c.check_dropped(&file("gateway-batch-bucket", "batch/drop/a.jsonl", Some(10))), Ok(()));
        assert_eq!(c.check_dropped(&file("gateway-batch-bucket", "batch/drop/sub/a.jsonl", None)), Ok(()));
        let reject = |f: DroppedFile| c.check_dropped(&f).unwrap_err();
        assert!(matches!(reject(file("other", "batch/drop/a.jsonl", None)), NotAnInput::OtherBucket { .. }));
        assert!(matches!(
            reject(file("gateway-batch-bucket", "batch/input/a.jsonl", None)),
            NotAnInput::OutsidePrefix { .. }
        ));
        assert!(matches!(reject(file("gateway-batch-bucket", "batch/drop/a.csv", None)), NotAnInput::NotJsonl { .. }));
        assert!(matches!(reject(file("gateway-batch-bucket", "batch/drop/d/", None)), NotAnInput::Folder { .. }));
        assert!(matches!(
            reject(file("gateway-batch-bucket", "batch/drop/a.jsonl", Some(0))),
            NotAnInput::Empty { .. }
        ));
    }

    #[test]
    fn the_deferral_table_is_optional_but_checked() {
        assert_eq!(deferral_table(|_| None).unwrap(), None);
        assert_eq!(deferral_table(|_| Some("t-1".into())).unwrap().as_deref(), Some("t-1"));
        assert!(matches!(deferral_table(|_| Some("x".into())), Err(ConfigError::Invalid { .. })));
    }
}
