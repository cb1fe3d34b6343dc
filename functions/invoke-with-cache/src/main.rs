use gateway_core::adapters::aws_gateway;
use gateway_core::adapters::batch::aws_deferral_store;
use gateway_core::batch::config::deferral_table;
use gateway_core::config::GatewayConfig;
use invoke_with_cache::{Handler, init_tracing};
use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = GatewayConfig::from_env()?;
    let handler = Handler::new(aws_gateway(&config).await?).with_body_logging(config.routing.log_request_bodies);
    // Deferral is on exactly when the deployment has a batch table.
    match deferral_table(|name| std::env::var(name).ok())? {
        Some(table) => {
            let handler = handler.with_batch(aws_deferral_store(&config, table).await);
            run(service_fn(|request| handler.handle(request))).await
        }
        None => run(service_fn(|request| handler.handle(request))).await,
    }
}
