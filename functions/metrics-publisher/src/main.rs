use gateway_core::adapters::publisher::aws_publisher;
use gateway_core::metrics::publish::config::PublisherSettings;
use lambda_runtime::{Error, run, service_fn};
use metrics_publisher::{Handler, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let settings = PublisherSettings::from_env()?;
    let handler = Handler::new(aws_publisher(&settings).await?);
    run(service_fn(|event| handler.handle(event))).await
}
