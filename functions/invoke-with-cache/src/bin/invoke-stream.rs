use gateway_core::adapters::aws_gateway;
use gateway_core::config::GatewayConfig;
use invoke_with_cache::init_tracing;
use invoke_with_cache::streaming::StreamHandler;
use lambda_http::{Error, run_with_streaming_response, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = GatewayConfig::from_env()?;
    let handler = StreamHandler::new(aws_gateway(&config).await?).with_body_logging(config.routing.log_request_bodies);
    // Streams outlive the call that opens them; the handler lives as long as the process.
    let handler: &'static StreamHandler<_> = Box::leak(Box::new(handler));
    run_with_streaming_response(service_fn(|request| handler.handle(request))).await
}
