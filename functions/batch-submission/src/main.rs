use batch_submission::{StartupError, init_tracing};
use gateway_core::batch::config::BatchConfig;
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = BatchConfig::from_env().map_err(StartupError::from)?;
    config.submission_role().map_err(StartupError::from)?;
    // The submission use case over the batch table, S3 and Bedrock is wired at the merge
    // (`BatchPipeline` implements `Submission`); until then a cold start stops here, loudly.
    Err(StartupError::NotWired { table: config.table }.into())
}
