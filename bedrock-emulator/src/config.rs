//! The emulator's configuration: one TOML file in which every field is optional.
//!
//! Unknown keys are rejected so that a typo (`latency_scal = 0`) fails loudly instead of
//! silently running with the default. Model keys are checked against the catalog when the
//! emulator starts, for the same reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gateway_core::catalog::{Catalog, CatalogError, Tier};
use gateway_core::date::Date;
use serde::{Deserialize, Serialize};

/// Everything that can be configured. `EmulatorConfig::default()` behaves like Bedrock with
/// its default quotas, realistic latency and no injected faults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmulatorConfig {
    /// Multiplies every modeled delay: 1.0 is real time, 0 answers at once. Default 1.0.
    pub latency_scale: f64,
    /// Length of the sliding quota window in seconds (Bedrock: one minute). Default 60.
    pub quota_window_seconds: f64,
    /// Seed of the fault-injection draws. Default 0.
    pub seed: u64,
    /// A catalog file to use instead of the one compiled into `gateway-core`. In a config
    /// file, a relative path is relative to that file.
    pub catalog: Option<PathBuf>,
    /// Quota overrides keyed by the ID that selects a quota: a base model ID (in-Region
    /// on-demand), an inference-profile ID such as `us.anthropic...` or `global.anthropic...`,
    /// or the ARN of either.
    pub quotas: BTreeMap<String, QuotaOverride>,
    pub faults: FaultsConfig,
    pub latency: LatencyConfig,
    pub answers: AnswerLength,
    pub batch: BatchConfig,
    /// The day the models' lifecycle is judged on (`yyyy-mm-dd`): from a model's
    /// `end_of_life` in the catalog, Bedrock answers its calls `ResourceNotFoundException`.
    /// Absent: the real UTC day. Set it to rehearse a retirement before it happens.
    pub today: Option<Date>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            latency_scale: 1.0,
            quota_window_seconds: 60.0,
            seed: 0,
            catalog: None,
            quotas: BTreeMap::new(),
            faults: FaultsConfig::default(),
            latency: LatencyConfig::default(),
            answers: AnswerLength::default(),
            batch: BatchConfig::default(),
            today: None,
        }
    }
}

/// The batch control plane (`bedrock` service): where jobs read and write, how fast they walk
/// their statuses, Bedrock's batch quotas, and the faults a test can ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// S3 endpoint for job input and output; absent: `AWS_ENDPOINT_URL_S3`, then
    /// `AWS_ENDPOINT_URL`, then AWS's own.
    pub s3_endpoint_url: Option<String>,
    /// EventBridge endpoint for job state events; absent: `AWS_ENDPOINT_URL_EVENTBRIDGE`, then
    /// `AWS_ENDPOINT_URL`, then AWS's own.
    pub eventbridge_endpoint_url: Option<String>,
    /// The bus Bedrock delivers its events to (`default` on AWS).
    pub event_bus: String,
    /// Whether state changes are published at all (EventBridge delivery is best effort anyway).
    pub publish_events: bool,
    /// Region and account in job ARNs and events.
    pub region: String,
    pub account_id: String,
    /// Seconds a job spends in Submitted, Validating and Scheduled before moving on.
    pub submitted_seconds: f64,
    pub validating_seconds: f64,
    pub scheduled_seconds: f64,
    /// Seconds of InProgress per record.
    pub record_seconds: f64,
    /// Real seconds per hour of `timeoutDurationInHours`: a job still Scheduled when its
    /// timeout has passed ends Expired.
    pub hour_seconds: f64,
    /// Bedrock's batch quotas: records per job (minimum and maximum), records per input file,
    /// bytes per input file and per job, and submitted or in-progress jobs per model.
    pub min_records_per_job: u64,
    pub max_records_per_job: u64,
    pub max_records_per_file: u64,
    pub max_file_bytes: u64,
    pub max_job_bytes: u64,
    pub max_jobs_per_model: u64,
    /// Bytes of `.jsonl.out` held before they go up as one part of a multipart upload (an
    /// output smaller than a part is one PutObject). S3 refuses parts under 5 MiB but the
    /// last; moto too, unless started with `S3_UPLOAD_PART_MIN_SIZE`.
    pub output_part_bytes: u64,
    /// Share of records (0..=1) answered with an injected model error instead of an output.
    pub record_failure_rate: f64,
    /// Share of events (0..=1) delivered twice.
    pub event_duplicate_rate: f64,
    /// Share of events (0..=1) held back and delivered after the job's next event.
    pub event_reorder_rate: f64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            s3_endpoint_url: None,
            eventbridge_endpoint_url: None,
            event_bus: "default".to_owned(),
            publish_events: true,
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
            submitted_seconds: 1.0,
            validating_seconds: 1.0,
            scheduled_seconds: 1.0,
            record_seconds: 0.01,
            hour_seconds: 3600.0,
            min_records_per_job: 100,
            max_records_per_job: 50_000,
            max_records_per_file: 50_000,
            max_file_bytes: 1 << 30,
            max_job_bytes: 5 << 30,
            max_jobs_per_model: 20,
            output_part_bytes: 8 << 20,
            record_failure_rate: 0.0,
            event_duplicate_rate: 0.0,
            event_reorder_rate: 0.0,
        }
    }
}

impl BatchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let seconds = [
            ("submitted_seconds", self.submitted_seconds),
            ("validating_seconds", self.validating_seconds),
            ("scheduled_seconds", self.scheduled_seconds),
            ("record_seconds", self.record_seconds),
            ("hour_seconds", self.hour_seconds),
        ];
        for (name, value) in seconds {
            if !value.is_finite() || value < 0.0 {
                return Err(ConfigError::Invalid(format!("batch.{name} = {value} must be a finite number >= 0")));
            }
        }
        let rates = [
            ("record_failure_rate", self.record_failure_rate),
            ("event_duplicate_rate", self.event_duplicate_rate),
            ("event_reorder_rate", self.event_reorder_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::Invalid(format!("batch.{name} = {rate} is outside 0..=1")));
            }
        }
        if self.min_records_per_job > self.max_records_per_job {
            return Err(ConfigError::Invalid(format!(
                "batch: min_records_per_job = {} is above max_records_per_job = {}",
                self.min_records_per_job, self.max_records_per_job
            )));
        }
        if self.output_part_bytes == 0 {
            return Err(ConfigError::Invalid("batch.output_part_bytes must be at least 1".to_owned()));
        }
        if self.max_jobs_per_model == 0 {
            return Err(ConfigError::Invalid("batch.max_jobs_per_model must be at least 1".to_owned()));
        }
        Ok(())
    }
}

/// The range of an answer's natural length, in estimated tokens, before `maxTokens` or a stop
/// sequence cuts it. The default (30 to 300) suits chat tests; a load test that takes output
/// lengths from real data raises `max_tokens` so that its `maxTokens`, not the emulator, sets
/// how long answers are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnswerLength {
    pub min_tokens: u64,
    pub max_tokens: u64,
}

impl Default for AnswerLength {
    fn default() -> Self {
        AnswerLength { min_tokens: 30, max_tokens: 300 }
    }
}

/// Longer natural answers than any catalog model's output limit would only be cut anyway.
const MAX_NATURAL_ANSWER_TOKENS: u64 = 128_000;

/// Replaces one or both limits of a quota; an absent field keeps the catalog's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaOverride {
    pub tpm: Option<u64>,
    pub rpm: Option<u64>,
}

/// Fault rates are probabilities per request in `0..=1`; 1.0 means every request.
///
/// The throttling, internal-error, unavailable and timeout rates share one draw per request,
/// so together they must not exceed 1. The stream-error rate is drawn separately and only
/// applies to streaming operations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsConfig {
    /// `ThrottlingException` (429) before the quota check, consuming no quota.
    pub throttling_rate: f64,
    /// `InternalServerException` (500).
    pub internal_error_rate: f64,
    /// `ServiceUnavailableException` (503).
    pub service_unavailable_rate: f64,
    /// `ModelTimeoutException` (408), after holding the request for `model_timeout_ms`.
    pub model_timeout_rate: f64,
    /// How long a timed-out request hangs before the 408, in milliseconds. Default 0.
    pub model_timeout_ms: u64,
    /// Streams cut after some deltas by an in-stream exception frame, inside the HTTP 200.
    pub stream_error_rate: f64,
    /// The exception that cuts a stream. Default `modelStreamErrorException`.
    pub stream_error_type: StreamErrorType,
    /// Per-model overrides. A base model ID applies to every way of calling that model; a
    /// profile ID or ARN applies to that one only and wins over the base ID.
    pub models: BTreeMap<String, FaultOverride>,
}

/// Per-model fault rates; an absent field inherits the global `[faults]` value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultOverride {
    pub throttling_rate: Option<f64>,
    pub internal_error_rate: Option<f64>,
    pub service_unavailable_rate: Option<f64>,
    pub model_timeout_rate: Option<f64>,
    pub model_timeout_ms: Option<u64>,
    pub stream_error_rate: Option<f64>,
    pub stream_error_type: Option<StreamErrorType>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamErrorType {
    #[default]
    #[serde(rename = "modelStreamErrorException")]
    ModelStreamError,
    #[serde(rename = "internalServerException")]
    InternalServer,
    #[serde(rename = "serviceUnavailableException")]
    ServiceUnavailable,
    #[serde(rename = "throttlingException")]
    Throttling,
}

/// The fault rates in force for one model, after overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultRates {
    pub throttling_rate: f64,
    pub internal_error_rate: f64,
    pub service_unavailable_rate: f64,
    pub model_timeout_rate: f64,
    pub model_timeout_ms: u64,
    pub stream_error_rate: f64,
    pub stream_error_type: StreamErrorType,
}

impl FaultsConfig {
    pub fn global_rates(&self) -> FaultRates {
        FaultRates {
            throttling_rate: self.throttling_rate,
            internal_error_rate: self.internal_error_rate,
            service_unavailable_rate: self.service_unavailable_rate,
            model_timeout_rate: self.model_timeout_rate,
            model_timeout_ms: self.model_timeout_ms,
            stream_error_rate: self.stream_error_rate,
            stream_error_type: self.stream_error_type,
        }
    }
}

impl FaultOverride {
    pub fn apply_to(&self, base: FaultRates) -> FaultRates {
        FaultRates {
            throttling_rate: self.throttling_rate.unwrap_or(base.throttling_rate),
            internal_error_rate: self.internal_error_rate.unwrap_or(base.internal_error_rate),
            service_unavailable_rate: self.service_unavailable_rate.unwrap_or(base.service_unavailable_rate),
            model_timeout_rate: self.model_timeout_rate.unwrap_or(base.model_timeout_rate),
            model_timeout_ms: self.model_timeout_ms.unwrap_or(base.model_timeout_ms),
            stream_error_rate: self.stream_error_rate.unwrap_or(base.stream_error_rate),
            stream_error_type: self.stream_error_type.unwrap_or(base.stream_error_type),
        }
    }
}

impl FaultRates {
    pub(crate) fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let rates = [
            ("throttling_rate", self.throttling_rate),
            ("internal_error_rate", self.internal_error_rate),
            ("service_unavailable_rate", self.service_unavailable_rate),
            ("model_timeout_rate", self.model_timeout_rate),
            ("stream_error_rate", self.stream_error_rate),
        ];
        for (name, rate) in rates {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ConfigError::Invalid(format!("{at}.{name} = {rate} is outside 0..=1")));
            }
        }
        let shared =
            self.throttling_rate + self.internal_error_rate + self.service_unavailable_rate + self.model_timeout_rate;
        if shared > 1.0 + 1e-9 {
            return Err(ConfigError::Invalid(format!(
                "{at}: throttling, internal-error, unavailable and timeout rates add up to {shared}, more than 1"
            )));
        }
        Ok(())
    }
}

/// Latency per tier; an absent field keeps the tier's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LatencyConfig {
    pub haiku: TierLatency,
    pub sonnet: TierLatency,
    pub opus: TierLatency,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierLatency {
    /// Time to first token, milliseconds.
    pub ttft_ms: Option<u64>,
    /// Time per output token after the first, milliseconds.
    pub per_token_ms: Option<f64>,
}

impl LatencyConfig {
    pub fn for_tier(&self, tier: Tier) -> TierLatency {
        match tier {
            Tier::Haiku => self.haiku,
            Tier::Sonnet => self.sonnet,
            Tier::Opus => self.opus,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl EmulatorConfig {
    /// Reads a TOML config file.
    pub fn from_file(path: &Path) -> Result<EmulatorConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        let mut config = EmulatorConfig::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse { path: path.display().to_string(), source },
            other => other,
        })?;
        if let (Some(catalog), Some(dir)) = (&config.catalog, path.parent())
            && catalog.is_relative()
        {
            config.catalog = Some(dir.join(catalog));
        }
        Ok(config)
    }

    pub fn from_toml(text: &str) -> Result<EmulatorConfig, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse { path: "<inline>".to_owned(), source })
    }

    /// A configuration for tests: no latency, default quotas, no faults.
    pub fn instant() -> EmulatorConfig {
        EmulatorConfig { latency_scale: 0.0, ..EmulatorConfig::default() }
    }

    /// The catalog this configuration names, or the embedded one.
    pub fn load_catalog(&self) -> Result<Catalog, ConfigError> {
        Ok(Catalog::load(self.catalog.as_deref())?)
    }

    /// Checks ranges and that every model key names something in `catalog`.
    pub fn validate(&self, catalog: &Catalog) -> Result<(), ConfigError> {
        let invalid = |msg: String| Err(ConfigError::Invalid(msg));
        if !self.latency_scale.is_finite() || self.latency_scale < 0.0 {
            return invalid(format!("latency_scale = {} must be a finite number >= 0", self.latency_scale));
        }
        if !self.quota_window_seconds.is_finite() || self.quota_window_seconds <= 0.0 {
            return invalid(format!("quota_window_seconds = {} must be > 0", self.quota_window_seconds));
        }
        for tier in Tier::ALL {
            let latency = self.latency.for_tier(tier);
            if let Some(ms) = latency.per_token_ms
                && (!ms.is_finite() || ms < 0.0)
            {
                return invalid(format!("latency.{tier}.per_token_ms = {ms} must be a finite number >= 0"));
            }
        }
        let answers = self.answers;
        if answers.min_tokens == 0
            || answers.min_tokens > answers.max_tokens
            || answers.max_tokens > MAX_NATURAL_ANSWER_TOKENS
        {
            return invalid(format!(
                "answers: min_tokens = {} and max_tokens = {} must satisfy 1 <= min_tokens <= max_tokens <= {MAX_NATURAL_ANSWER_TOKENS}",
                answers.min_tokens, answers.max_tokens
            ));
        }
        for (id, quota) in &self.quotas {
            if let Err(e) = crate::engine::bucket_of(catalog, id) {
                return invalid(format!("quotas.\"{id}\": {e}"));
            }
            if quota.tpm == Some(0) || quota.rpm == Some(0) {
                return invalid(format!("quotas.\"{id}\": limits must be at least 1"));
            }
        }
        self.batch.validate()?;
        let global = self.faults.global_rates();
        global.validate("faults")?;
        for (id, rates) in &self.faults.models {
            if let Err(e) = crate::engine::selector_of(catalog, id) {
                return invalid(format!("faults.models.\"{id}\": {e}"));
            }
            rates.apply_to(global).validate(&format!("faults.models.\"{id}\""))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(EmulatorConfig::from_toml("").unwrap(), EmulatorConfig::default());
    }

    #[test]
    fn a_full_file_parses_and_validates() {
        let text = r#"
            latency_scale = 0.5
            quota_window_seconds = 10
            seed = 7
            today = "2026-06-01"
            [quotas."us.anthropic.claude-haiku-4-5-20251001-v1:0"]
            rpm = 3
            [faults]
            throttling_rate = 0.1
            stream_error_rate = 0.2
            stream_error_type = "internalServerException"
            [faults.models."anthropic.claude-sonnet-4-5-20250929-v1:0"]
            internal_error_rate = 0.5
            [latency.sonnet]
            ttft_ms = 100
            [answers]
            max_tokens = 4000
        "#;
        let config = EmulatorConfig::from_toml(text).unwrap();
        config.validate(&Catalog::embedded().unwrap()).unwrap();
        assert_eq!(config.quotas.values().next().unwrap().rpm, Some(3));
        assert_eq!(config.today.map(|day| day.to_string()).as_deref(), Some("2026-06-01"));
        assert_eq!(config.latency.sonnet.ttft_ms, Some(100));
        assert_eq!(config.faults.stream_error_type, StreamErrorType::InternalServer);
        assert_eq!(config.answers, AnswerLength { min_tokens: 30, max_tokens: 4000 });
    }

    #[test]
    fn a_relative_catalog_path_is_relative_to_the_config_file() {
        let dir = std::env::temp_dir().join(format!("bedrock-emulator-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("emulator.toml");
        std::fs::write(&file, "catalog = \"catalog.toml\"\n").unwrap();
        let config = EmulatorConfig::from_file(&file).unwrap();
        assert_eq!(config.catalog, Some(dir.join("catalog.toml")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn typos_and_bad_values_are_rejected_with_the_reason() {
        assert!(EmulatorConfig::from_toml("latency_scal = 0").is_err());
        assert!(EmulatorConfig::from_toml("[faults]\nthrottle_rate = 1").is_err());
        assert!(EmulatorConfig::from_toml("today = \"2026-6-1\"").is_err());
        let catalog = Catalog::embedded().unwrap();
        let check = |text: &str| EmulatorConfig::from_toml(text).unwrap().validate(&catalog).unwrap_err().to_string();
        assert!(check("[quotas.\"gpt-4o\"]\nrpm = 1").contains("unknown model"));
        assert!(check("[quotas.\"anthropic.claude-haiku-4-5-20251001-v1:0\"]\nrpm = 1").contains("profile ID"));
        assert!(check("[faults]\nthrottling_rate = 0.6\ninternal_error_rate = 0.6").contains("more than 1"));
        assert!(check("[faults]\nstream_error_rate = 2").contains("outside"));
        assert!(check("quota_window_seconds = 0").contains("quota_window_seconds"));
        assert!(check("[answers]\nmin_tokens = 0").contains("answers"));
        assert!(check("[answers]\nmin_tokens = 400").contains("min_tokens <= max_tokens"));
        assert!(check("[answers]\nmax_tokens = 1000000").contains("answers"));
        assert!(check("[batch]\nrecord_failure_rate = 1.5").contains("record_failure_rate"));
        assert!(check("[batch]\nmin_records_per_job = 10\nmax_records_per_job = 5").contains("min_records_per_job"));
        assert!(EmulatorConfig::from_toml("[batch]\nrecord_seconds_ = 1").is_err());
    }
}
