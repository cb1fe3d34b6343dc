//! The router's calibration from the deployer's own traffic: prompts of tenants who opted in
//! are sampled on the request path, answered by every tier and graded by the strongest tier
//! through Bedrock batch inference (half price), and appended as a dataset the router's
//! trainer reads.
//!
//! - [`record`]: the sample objects and the dataset line ([`CalibrationOutcome`]).
//! - [`sample`]: the request path's sampling stage (opted-in tenants, a hash of the prompt).
//! - [`manifest`]: a run's state, persisted as one object per run.
//! - [`pipeline`]: [`Calibration::advance`] and its stages: `collect` (samples no run holds)
//!   → `answer` (a job per tier) → `grade` (one job, the grader forced to call a tool whose
//!   schema is the grade) → `publish` (the dataset file) → done.
//! - [`grade`]: the grading request and the strict reading of a grade.
//! - [`config`], the deployer settings (`CALIBRATION_*`).
//!
//! Everything lives in S3 under one prefix:
//!
//! ```text
//! <prefix>samples/<tenant>/<id>.json      what the request path sampled
//! <prefix>runs/<run-id>/manifest.json     where the run stands (its commit point)
//! <prefix>runs/<run-id>/prompts.jsonl     the run's prompts, frozen when it starts
//! <prefix>runs/<run-id>/<job>.jsonl       job inputs; Bedrock writes under output/
//! <prefix>dataset/<run-id>.jsonl          the outcome, one line per prompt
//! ```

pub mod config;
pub mod grade;
pub mod manifest;
pub mod pipeline;
pub mod record;
pub mod sample;

#[cfg(test)]
mod tests;

pub use config::{CalibrationConfig, OptIns};
pub use manifest::{RunCost, RunManifest, Stage};
pub use pipeline::Calibration;
pub use record::{CalibrationOutcome, SampledPrompt, TierOutcome};
pub use sample::{SAMPLE_WRITE_BUDGET, SampleWriter, Sampled, Sampler};

use std::collections::BTreeMap;

use crate::batch::{BatchError, BatchFiles, BatchJobs};
use crate::cache::Tenant;
use crate::catalog::{Catalog, Target, Tier};
use crate::config::ConfigError;
use crate::label::ErrorLabel;

/// The pipeline's ports: S3 and Bedrock's batch control plane, exactly the batch pipeline's.
pub trait CalibrationPorts: Send + Sync {
    type Files: BatchFiles;
    type Jobs: BatchJobs;

    fn files(&self) -> &Self::Files;
    fn jobs(&self) -> &Self::Jobs;
}

/// Where the calibration's objects are: `s3://<bucket>/<prefix>…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub bucket: String,
    /// Ends with `/`.
    pub prefix: String,
}

impl Layout {
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        Layout { bucket: bucket.into(), prefix: prefix.into() }
    }

    fn uri(&self, rest: &str) -> String {
        format!("s3://{}/{}{rest}", self.bucket, self.prefix)
    }

    pub fn samples_prefix(&self) -> String {
        self.uri("samples/")
    }

    pub fn sample_uri(&self, tenant: &Tenant, id: &str) -> String {
        self.uri(&format!("samples/{}/{id}.json", Layout::key_segment(tenant.as_str())))
    }

    pub fn runs_prefix(&self) -> String {
        self.uri("runs/")
    }

    pub fn run_file(&self, run_id: &str, name: &str) -> String {
        self.uri(&format!("runs/{run_id}/{name}"))
    }

    pub fn dataset_prefix(&self) -> String {
        self.uri("dataset/")
    }

    pub fn dataset_uri(&self, run_id: &str) -> String {
        self.uri(&format!("dataset/{run_id}.jsonl"))
    }

    /// The tenant's folder name: an encoded tenant holds `/` and `:`, so every byte outside
    /// `[A-Za-z0-9._-]` is written `~XX`, which no two tenants can share.
    pub fn key_segment(tenant: &str) -> String {
        let mut out = String::with_capacity(tenant.len());
        for byte in tenant.bytes() {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-') {
                out.push(char::from(byte));
            } else {
                out.push_str(&format!("~{byte:02X}"));
            }
        }
        out
    }

    /// The tenant folder of a sample's URI.
    fn tenant_segment_of<'a>(&self, uri: &'a str) -> Option<&'a str> {
        let rest = uri.strip_prefix(&self.samples_prefix())?;
        let (segment, name) = rest.split_once('/')?;
        (!name.contains('/')).then_some(segment)
    }
}

#[derive(Debug, Clone)]
pub struct CalibrationSettings {
    pub layout: Layout,
    /// Only these tenants' samples are ever collected.
    pub tenants: Vec<Tenant>,
    /// The role Bedrock's jobs assume; a run cannot create a job without it.
    pub role_arn: Option<String>,
    pub min_prompts: usize,
    pub max_prompts: usize,
    pub timeout_hours: Option<u32>,
    /// `maxTokens` of every answer (samples keep no inference parameters).
    pub answer_max_tokens: u32,
    /// The model each tier's answers come from (the Opus tier's also grades): the ones the
    /// gateway's tiers serve, so that a run measures what is routed to.
    pub tier_models: BTreeMap<Tier, String>,
}

impl CalibrationSettings {
    /// The settings of `config` against `catalog`. Every tier's model must run in batch: one
    /// without a batch price (Opus 4.7 and 4.8) would fail every run at its first job, so it
    /// fails the cold start instead.
    pub fn from_config(config: &CalibrationConfig, catalog: &Catalog) -> Result<Self, ConfigError> {
        let tier_models = crate::config::tier_models(catalog, &config.tier_overrides)?;
        for (tier, id) in &tier_models {
            let invalid = |reason: String| ConfigError::Invalid {
                name: crate::config::tier_variable(*tier),
                value: id.clone(),
                reason,
            };
            let spec = match catalog.resolve(id) {
                Ok(Target::Model(m)) => m.spec,
                Ok(Target::PromptRouter { .. }) => {
                    return Err(invalid("a prompt router picks its model per call, so it cannot be calibrated".into()));
                }
                Err(e) => return Err(invalid(e.to_string())),
            };
            if !spec.offered_in_batch() {
                return Err(invalid(format!(
                    "{} has no batch price in the catalog: Bedrock does not run it in batch, so calibration cannot",
                    spec.display_name
                )));
            }
        }
        Ok(CalibrationSettings {
            layout: Layout::new(&config.bucket, &config.prefix),
            tenants: config.tenants.tenants().cloned().collect(),
            role_arn: config.role_arn.clone(),
            min_prompts: config.min_prompts,
            max_prompts: config.max_prompts,
            timeout_hours: Some(24),
            answer_max_tokens: 1024,
            tier_models,
        })
    }
}

/// How far one [`Calibration::advance`] got.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// No open run, and fewer new samples than a run needs: nothing was written.
    Idle { new_samples: usize, min_prompts: usize },
    /// A job of the run is still running; the next invocation goes on from `stage`.
    Waiting { run_id: String, stage: Stage },
    /// The run is done: its dataset is written and this is what it cost.
    Finished { run_id: String, dataset_uri: String, cost: RunCost },
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error(transparent)]
    Batch(#[from] BatchError),
    #[error("calibration object {uri} is malformed: {reason}")]
    Corrupt { uri: String, reason: String },
    #[error("a calibration item cannot be encoded: {0}")]
    Encode(String),
    #[error("the catalog cannot price a calibration answer: {0}")]
    Pricing(String),
    #[error("CALIBRATION_ROLE_ARN is required to create the calibration's batch jobs")]
    NoRole,
}

impl CalibrationError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            CalibrationError::Batch(e) => e.label(),
            CalibrationError::Corrupt { .. } => ErrorLabel::Corrupt,
            CalibrationError::Encode(_) | CalibrationError::Pricing(_) | CalibrationError::NoRole => {
                ErrorLabel::Internal
            }
        }
    }
}
