//! The batch pipeline's production ports, one bundle for both batch functions: the ledger in
//! the batch table, the answers in the response cache, the jobs in Bedrock's batch control
//! plane, the files in S3.

use std::sync::Arc;

use aws_config::SdkConfig;

use super::batch_remote::{self, BedrockBatchJobs, S3BatchFiles};
use super::batch_store::DynamoBatchStore;
use super::{AwsPorts, DynamoCacheStore, InitError, aws_gateway, dynamodb_client};
use crate::batch::BatchPorts;
use crate::batch::config::BatchConfig;
use crate::batch::pipeline::{BatchPipeline, PipelinePorts};
use crate::batch::submit::{BatchSubmission, SubmissionPorts};
use crate::catalog::Catalog;
use crate::config::GatewayConfig;

#[derive(Debug)]
pub struct AwsBatchPorts {
    pub store: DynamoBatchStore,
    pub cache: DynamoCacheStore,
    pub remote: BedrockBatchJobs,
    pub files: S3BatchFiles,
}

impl AwsBatchPorts {
    fn new(sdk: &SdkConfig, config: &GatewayConfig, batch: &BatchConfig) -> Self {
        AwsBatchPorts {
            store: DynamoBatchStore::new(dynamodb_client(sdk, config), batch.table.clone()),
            cache: DynamoCacheStore::new(dynamodb_client(sdk, config), config.cache_table.clone()),
            remote: BedrockBatchJobs::new(batch_remote::bedrock_control_client(sdk)),
            files: S3BatchFiles::new(batch_remote::s3_client(sdk)),
        }
    }
}

impl BatchPorts for AwsBatchPorts {
    type Submissions = DynamoBatchStore;
    type Results = DynamoBatchStore;
    type Jobs = DynamoBatchStore;
    type Cache = DynamoCacheStore;

    fn submissions(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn results(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn jobs(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn cache(&self) -> &DynamoCacheStore {
        &self.cache
    }
}

impl PipelinePorts for AwsBatchPorts {
    type Pending = DynamoBatchStore;
    type Statuses = DynamoBatchStore;
    type Plans = DynamoBatchStore;
    type Intakes = DynamoBatchStore;
    type Remote = BedrockBatchJobs;
    type Files = S3BatchFiles;

    fn pending(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn statuses(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn plans(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn intakes(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn remote(&self) -> &BedrockBatchJobs {
        &self.remote
    }

    fn files(&self) -> &S3BatchFiles {
        &self.files
    }
}

impl SubmissionPorts for AwsBatchPorts {
    type Pending = DynamoBatchStore;
    type Plans = DynamoBatchStore;
    type Submissions = DynamoBatchStore;
    type Results = DynamoBatchStore;
    type Intakes = DynamoBatchStore;
    type Remote = BedrockBatchJobs;
    type Files = S3BatchFiles;
    type Online = AwsPorts;

    fn pending(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn plans(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn submissions(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn results(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn intakes(&self) -> &DynamoBatchStore {
        &self.store
    }

    fn remote(&self) -> &BedrockBatchJobs {
        &self.remote
    }

    fn files(&self) -> &S3BatchFiles {
        &self.files
    }
}

/// The completion's use case, built once per cold start.
pub async fn aws_batch_pipeline(
    config: &GatewayConfig,
    batch: &BatchConfig,
) -> Result<BatchPipeline<AwsBatchPorts>, InitError> {
    let catalog = Catalog::load(config.catalog_path.as_deref())?;
    let cache = config.gateway_settings(&catalog)?.cache;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ports = AwsBatchPorts::new(&sdk, config, batch);
    let pipeline = BatchPipeline::new(Arc::new(catalog), batch.pipeline_settings(cache), ports);
    Ok(match &config.usage_table {
        Some(table) => pipeline.with_usage(Arc::new(super::usage_store::DynamoUsageStore::new(
            dynamodb_client(&sdk, config),
            table.clone(),
        ))),
        None => pipeline,
    })
}

/// The submission's use case, with the online gateway (admission included) its overdue
/// records run through.
pub async fn aws_batch_submission(
    config: &GatewayConfig,
    batch: &BatchConfig,
) -> Result<BatchSubmission<AwsBatchPorts>, InitError> {
    let catalog = Catalog::load(config.catalog_path.as_deref())?;
    let settings = batch.submission_settings()?;
    let gateway = Arc::new(aws_gateway(config).await?);
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ports = AwsBatchPorts::new(&sdk, config, batch);
    Ok(BatchSubmission::new(Arc::new(catalog), settings, ports, gateway))
}

/// Where invoke-with-cache queues deferred requests and reads their status back.
pub async fn aws_deferral_store(config: &GatewayConfig, table: String) -> DynamoBatchStore {
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    DynamoBatchStore::new(dynamodb_client(&sdk, config), table)
}
