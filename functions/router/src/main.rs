use gateway_core::config::RoutingConfig;
use lambda_http::{Error, run, service_fn};
use router::{Handler, StartupError, init_tracing};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let handler = RoutingConfig::from_env()
        .map_err(StartupError::from)
        .and_then(|config| Handler::from_config(&config))
        .inspect_err(|error| tracing::error!(error = %error, "cold start failed"))?;
    run(service_fn(|request| handler.handle(request))).await
}
