//! The metrics publisher wired over AWS: usage and progress in DynamoDB, figures in CloudWatch.

use crate::catalog::Catalog;
use crate::metrics::publish::config::PublisherSettings;
use crate::metrics::publish::{Publisher, PublisherPorts};

use super::InitError;
use super::cloudwatch::CloudWatchMetrics;
use super::usage_store::DynamoUsageStore;

#[derive(Debug)]
pub struct AwsPublisherPorts {
    pub store: DynamoUsageStore,
    pub cloudwatch: CloudWatchMetrics,
}

impl PublisherPorts for AwsPublisherPorts {
    type Usage = DynamoUsageStore;
    type Sink = CloudWatchMetrics;
    type Bedrock = CloudWatchMetrics;
    type Log = DynamoUsageStore;

    fn usage(&self) -> &DynamoUsageStore {
        &self.store
    }
    fn sink(&self) -> &CloudWatchMetrics {
        &self.cloudwatch
    }
    fn bedrock(&self) -> &CloudWatchMetrics {
        &self.cloudwatch
    }
    fn log(&self) -> &DynamoUsageStore {
        &self.store
    }
}

pub type AwsPublisher = Publisher<AwsPublisherPorts>;

/// Builds the publisher once per cold start; the quotas come from the same sources as
/// invoke-with-cache's, so utilisation is measured against what admission plans with.
pub async fn aws_publisher(settings: &PublisherSettings) -> Result<AwsPublisher, InitError> {
    let catalog = Catalog::load(settings.catalog_path.as_deref())?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let quotas = super::quota_table(&settings.quota, &catalog, &sdk).await?;
    let ports = AwsPublisherPorts {
        store: DynamoUsageStore::new(aws_sdk_dynamodb::Client::new(&sdk), settings.usage_table.clone()),
        cloudwatch: CloudWatchMetrics::new(aws_sdk_cloudwatch::Client::new(&sdk)),
    };
    Ok(Publisher::new(ports, settings.publisher.clone(), &quotas))
}
