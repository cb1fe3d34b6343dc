//! The calibration's production wiring: the request path's sample writer, and the pipeline
//! over the batch pipeline's own S3 and Bedrock control-plane adapters.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

use super::InitError;
use super::batch_remote::{self, BedrockBatchJobs, S3BatchFiles};
use crate::calibration::{Calibration, CalibrationConfig, CalibrationPorts, CalibrationSettings, SAMPLE_WRITE_BUDGET};
use crate::catalog::Catalog;
use crate::config::ConfigError;

/// S3 for the request path's samples: no attempt may outlive the sample budget, so a slow
/// S3 costs a sampled request at most that and a retry never starts after it.
pub fn sample_files(sdk: &SdkConfig) -> S3BatchFiles {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(SAMPLE_WRITE_BUDGET)
        .operation_attempt_timeout(SAMPLE_WRITE_BUDGET)
        .operation_timeout(SAMPLE_WRITE_BUDGET)
        .build();
    let sdk = sdk.to_builder().timeout_config(timeouts).build();
    S3BatchFiles::new(batch_remote::s3_client(&sdk))
}

#[derive(Debug)]
pub struct AwsCalibrationPorts {
    pub files: S3BatchFiles,
    pub jobs: BedrockBatchJobs,
}

impl CalibrationPorts for AwsCalibrationPorts {
    type Files = S3BatchFiles;
    type Jobs = BedrockBatchJobs;

    fn files(&self) -> &S3BatchFiles {
        &self.files
    }

    fn jobs(&self) -> &BedrockBatchJobs {
        &self.jobs
    }
}

/// The calibration use case, built once per cold start: a deployment without the jobs' role
/// fails here rather than at its first job.
pub async fn aws_calibration(config: &CalibrationConfig) -> Result<Calibration<AwsCalibrationPorts>, InitError> {
    if config.role_arn.is_none() {
        return Err(ConfigError::Missing("CALIBRATION_ROLE_ARN").into());
    }
    let catalog = Catalog::load(config.catalog_path.as_deref())?;
    let settings = CalibrationSettings::from_config(config, &catalog)?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ports = AwsCalibrationPorts {
        files: S3BatchFiles::new(batch_remote::s3_client(&sdk)),
        jobs: BedrockBatchJobs::new(batch_remote::bedrock_control_client(&sdk)),
    };
    Ok(Calibration::new(Arc::new(catalog), settings, ports))
}
