//! The ports implemented over the AWS SDK, and the wiring of a gateway from configuration.

pub mod bedrock;
pub mod dynamo;

use std::sync::Arc;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

use crate::catalog::{Catalog, CatalogError};
use crate::config::{ConfigError, GatewayConfig};
use crate::service::Gateway;

pub use bedrock::BedrockInvoker;
pub use dynamo::DynamoCacheStore;

/// The production gateway: DynamoDB cache, Bedrock models.
pub type AwsGateway = Gateway<DynamoCacheStore, BedrockInvoker>;

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
    let bedrock_config = aws_sdk_bedrockruntime::config::Builder::from(&sdk)
        .retry_config(RetryConfig::standard().with_max_attempts(config.bedrock.max_attempts))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(config.bedrock.operation_timeout)
                .operation_attempt_timeout(config.bedrock.attempt_timeout)
                .build(),
        )
        .build();
    let store = DynamoCacheStore::new(aws_sdk_dynamodb::Client::new(&sdk), config.cache_table.clone());
    let invoker = BedrockInvoker::new(aws_sdk_bedrockruntime::Client::from_conf(bedrock_config));
    let catalog = Arc::new(catalog);
    let router = config.routing.router(catalog.clone())?;
    Ok(Gateway::new(catalog, settings, store, invoker).with_router(router))
}
