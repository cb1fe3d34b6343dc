//! The ports implemented over the AWS SDK, and the wiring of a gateway from configuration.

pub mod batch;
pub mod batch_remote;
pub mod batch_store;
pub mod bedrock;
pub mod budget;
pub mod calibration;
pub mod cloudwatch;
pub mod dynamo;
pub mod publisher;
pub mod service_quotas;
pub mod usage_store;

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::admission::{Admission, Admit};
use crate::calibration::Sampler;
use crate::catalog::{Catalog, CatalogError};
use crate::config::{ConfigError, GatewayConfig, QuotaConfig, QuotaSource};
use crate::ports::Ports;
use crate::quota::QuotaTable;
use crate::service::Gateway;

pub use bedrock::BedrockInvoker;
pub use budget::DynamoBudgetStore;
pub use dynamo::DynamoCacheStore;

/// The production ports: the cache in DynamoDB, the models in Bedrock.
#[derive(Debug)]
pub struct AwsPorts {
    pub cache: DynamoCacheStore,
    pub models: BedrockInvoker,
}

impl Ports for AwsPorts {
    type Cache = DynamoCacheStore;
    type Models = BedrockInvoker;

    fn cache(&self) -> &DynamoCacheStore {
        &self.cache
    }

    fn models(&self) -> &BedrockInvoker {
        &self.models
    }
}

/// The production gateway.
pub type AwsGateway = Gateway<AwsPorts>;

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Builds the gateway once per cold start. Endpoints come from the standard
/// `AWS_ENDPOINT_URL_<SERVICE>` variables, so the same code runs against AWS and the local
/// emulators.
pub async fn aws_gateway(config: &GatewayConfig) -> Result<AwsGateway, InitError> {
    let catalog = Catalog::load(config.catalog_path.as_deref())?;
    let settings = config.gateway_settings(&catalog)?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let ports = AwsPorts {
        cache: DynamoCacheStore::new(dynamodb_client(&sdk, config), config.cache_table.clone()),
        models: BedrockInvoker::new(bedrock_client(&sdk, config)),
    };
    let router = config.routing.router(Arc::new(catalog.clone()))?;
    let admission = match (&config.admission.table, config.admission.enabled) {
        (Some(table), true) => {
            let quotas = quota_table(&config.quota, &catalog, &sdk).await?;
            let limits = quotas.iter().map(|(key, limits)| (key.clone(), limits.quota)).collect();
            let store = DynamoBudgetStore::new(dynamodb_client(&sdk, config), table.clone());
            let admission = Admission::new(store, config.admission.settings.clone(), limits, instance_id());
            tracing::info!(quotas = quotas.iter().count(), "quota admission on");
            Some(Arc::new(admission) as Arc<dyn Admit>)
        }
        _ => None,
    };
    let mut gateway = Gateway::new(Arc::new(catalog), settings, ports).with_router(router);
    if let Some(admission) = admission {
        gateway = gateway.with_admission(admission);
    }
    if let Some(table) = &config.usage_table {
        let store = usage_store::DynamoUsageStore::new(dynamodb_client(&sdk, config), table.clone());
        gateway = gateway.with_usage(Arc::new(store));
    }
    if let Some(sampling) = &config.calibration {
        let files = Arc::new(calibration::sample_files(&sdk));
        gateway = gateway.with_sampler(Arc::new(Sampler::new(sampling, files)));
        tracing::info!(bucket = sampling.bucket, "calibration sampling on for the opted-in tenants");
    }
    Ok(gateway)
}

/// A name for this instance's leases: Lambda's log stream names one execution environment.
fn instance_id() -> String {
    std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        format!("{}-{nanos}", std::process::id())
    })
}

/// The DynamoDB client with the configured connect, attempt and operation timeouts; without
/// them a stalled table would hold a request for as long as the TCP connection lives.
pub fn dynamodb_client(sdk: &SdkConfig, config: &GatewayConfig) -> aws_sdk_dynamodb::Client {
    let timeouts = &config.dynamodb;
    let dynamodb_config = aws_sdk_dynamodb::config::Builder::from(sdk)
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeouts.connect_timeout)
                .operation_timeout(timeouts.operation_timeout)
                .operation_attempt_timeout(timeouts.attempt_timeout)
                .build(),
        )
        .build();
    aws_sdk_dynamodb::Client::from_conf(dynamodb_config)
}

/// The Bedrock Runtime client with the configured retries and timeouts; each call further
/// cuts the operation timeout to what its deadline leaves ([`BedrockInvoker`]).
pub fn bedrock_client(sdk: &SdkConfig, config: &GatewayConfig) -> aws_sdk_bedrockruntime::Client {
    let bedrock = &config.bedrock;
    let bedrock_config = aws_sdk_bedrockruntime::config::Builder::from(sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(bedrock.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(bedrock.connect_timeout)
                .operation_timeout(bedrock.operation_timeout)
                .operation_attempt_timeout(bedrock.attempt_timeout)
                .build(),
        )
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(bedrock_config)
}

/// The limits in force, once per cold start: the catalog's, then (with
/// `QUOTA_SOURCE=service-quotas`) the account's applied values from Service Quotas, then
/// `QUOTA_OVERRIDES`. Invalid overrides fail the cold start; a Service Quotas read that fails
/// or times out only logs a warning, and the catalog's values stand.
pub async fn quota_table(config: &QuotaConfig, catalog: &Catalog, sdk: &SdkConfig) -> Result<QuotaTable, ConfigError> {
    // Checked before any call, so that a typo fails fast whatever Service Quotas does.
    let without_service_quotas = config.table(catalog, &[])?;
    match config.source {
        QuotaSource::Catalog => Ok(without_service_quotas),
        QuotaSource::ServiceQuotas => {
            let client = service_quotas::service_quotas_client(sdk, config.service_quotas_timeout);
            match service_quotas::list_bedrock_quotas(&client, config.service_quotas_timeout).await {
                Ok(listed) => {
                    let detected = service_quotas::detected_limits(catalog, &listed);
                    tracing::info!(
                        listed = listed.len(),
                        matched = detected.len(),
                        "read Bedrock quotas from Service Quotas"
                    );
                    config.table(catalog, &detected)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Service Quotas; planning against the catalog's quotas");
                    Ok(without_service_quotas)
                }
            }
        }
    }
}
