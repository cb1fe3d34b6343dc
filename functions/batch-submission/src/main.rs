// The use case's future nests every stage of a batch run (store, S3 and Bedrock calls),
// and its layout needs more query depth than the default 128.
#![recursion_limit = "256"]

use batch_submission::{Handler, StartupError, init_tracing};
use gateway_core::adapters::batch::aws_batch_submission;
use gateway_core::batch::config::BatchConfig;
use gateway_core::config::GatewayConfig;
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let (config, batch) = (GatewayConfig::from_env()?, BatchConfig::from_env().map_err(StartupError::from)?);
    let handler = Handler::new(aws_batch_submission(&config, &batch).await?, batch);
    run(service_fn(|event| handler.handle(event))).await
}
