//! A run's manifest: the one object that says where a run stands. Every stage writes what it
//! made (inputs, jobs) before the manifest that names it, so the manifest is each stage's
//! commit point and a run read back from it resumes where it was.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::catalog::Tier;

/// Where a run is. A run moves forward only, one stage at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Prompts chosen and written to the run's prompts file; no job yet.
    Collected,
    /// The answer jobs (one per tier: a Bedrock job runs one model) are created.
    Answering,
    /// The answers are read and priced, the grading job is created.
    Grading,
    /// The grades are read and priced; the dataset file is next.
    Publishing,
    Done,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Collected => "collected",
            Stage::Answering => "answering",
            Stage::Grading => "grading",
            Stage::Publishing => "publishing",
            Stage::Done => "done",
        }
    }
}

/// A batch job of the run, by the name it is created under (its client token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobRef {
    pub job_name: String,
    pub model_id: String,
    pub job_arn: String,
    pub records: u64,
}

/// One prompt of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptEntry {
    /// `p<index>`: the record ID of its answers (`p7`) and of its grades (`p7-haiku`).
    pub record_id: String,
    pub prompt_id: String,
    pub tenant: String,
    pub sampled_at: String,
    /// The sample object's URI: what the next run's collection leaves out.
    pub sample_uri: String,
    /// Per tier that answered, the answer's output tokens (filled when answers are read).
    #[serde(default)]
    pub output_tokens: BTreeMap<Tier, u64>,
    /// Per graded tier, the grade (filled when grades are read); the grader's own tier is not
    /// listed, its 10 is by definition.
    #[serde(default)]
    pub scores: BTreeMap<Tier, u8>,
}

/// What the run spent at the catalog's batch prices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunCost {
    pub answers_usd: f64,
    pub grading_usd: f64,
    pub total_usd: f64,
    pub prompts: u64,
    /// `total_usd` per 1,000 prompts of the run.
    pub per_1000_prompts_usd: f64,
}

impl RunCost {
    pub fn new(answers_usd: f64, grading_usd: f64, prompts: u64) -> Self {
        let total_usd = answers_usd + grading_usd;
        let per_1000_prompts_usd = if prompts == 0 { 0.0 } else { total_usd * 1000.0 / prompts as f64 };
        RunCost { answers_usd, grading_usd, total_usd, prompts, per_1000_prompts_usd }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunManifest {
    pub schema: u32,
    pub run_id: String,
    pub created_at: String,
    pub stage: Stage,
    /// The tiers' model IDs and the grader's, fixed when the run starts.
    pub models: BTreeMap<Tier, String>,
    pub grader: String,
    pub prompts: Vec<PromptEntry>,
    #[serde(default)]
    pub answer_jobs: BTreeMap<Tier, JobRef>,
    #[serde(default)]
    pub grade_job: Option<JobRef>,
    #[serde(default)]
    pub cost: RunCost,
    /// Grades the grader gave but that could not be read, and answers that failed.
    #[serde(default)]
    pub missing_answers: u64,
    #[serde(default)]
    pub missing_grades: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_uri: Option<String>,
}
