use calibration::{Handler, init_tracing};
use gateway_core::adapters::calibration::aws_calibration;
use gateway_core::calibration::CalibrationConfig;
use lambda_runtime::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    init_tracing();
    let config = CalibrationConfig::from_env()?.ok_or("CALIBRATION_TENANTS names no tenant: nothing to calibrate")?;
    let handler = Handler::new(aws_calibration(&config).await?);
    run(service_fn(|event| handler.handle(event))).await
}
