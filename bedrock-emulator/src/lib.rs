//! An offline Amazon Bedrock Runtime.
//!
//! It speaks Bedrock's REST-JSON protocol (Converse, ConverseStream, InvokeModel,
//! InvokeModelWithResponseStream, CountTokens) well enough for the unmodified AWS SDKs to
//! use it through `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, and it behaves like Bedrock where tests
//! care: deterministic answers, per-model RPM/TPM quotas with Bedrock's reservation
//! arithmetic, modeled latency, prompt-cache usage, and injectable faults.
//!
//! On the same port it serves Bedrock's batch control plane (Create, Get, List and Stop
//! ModelInvocationJob, for clients pointed at it through `AWS_ENDPOINT_URL_BEDROCK`): jobs read
//! their JSONL input from S3, run every record through the same engine, write their output and
//! manifest back, and publish their state changes to EventBridge.
//!
//! It also serves Service Quotas (`ListServiceQuotas`, `GetServiceQuota` for service code
//! `bedrock`) on a port of its own, with the limits it enforces, for clients pointed at it
//! through `AWS_ENDPOINT_URL_SERVICE_QUOTAS`.
//!
//! And CloudWatch metrics (`PutMetricData`, `GetMetricData` with its statistics and
//! percentiles, `ListMetrics`) over Smithy RPCv2-CBOR on another port, in memory, for clients
//! pointed at it through `AWS_ENDPOINT_URL_CLOUDWATCH`.
//!
//! Run it as a binary (`bedrock-emulator --addr 127.0.0.1:4010 [--service-quotas-addr
//! 127.0.0.1:4011] [--cloudwatch-addr 127.0.0.1:4012] --config FILE`) or in-process with
//! [`spawn`]:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = bedrock_emulator::spawn(bedrock_emulator::EmulatorConfig::instant()).await?;
//! println!("Bedrock at {}", emulator.url());
//! emulator.shutdown().await
//! # }
//! ```

mod anthropic;
mod batch;
mod cache;
pub mod cli;
mod cloudwatch;
mod config;
mod engine;
mod errors;
pub mod eventstream;
mod faults;
mod generate;
mod latency;
mod quota;
mod routes;
mod service_quotas;
mod stats;
#[cfg(feature = "test-support")]
pub mod testing;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{
    AnswerLength, BatchConfig, ConfigError, EmulatorConfig, FaultOverride, FaultRates, FaultsConfig, LatencyConfig,
    QuotaOverride, StreamErrorType, TierLatency,
};

/// The emulator as an axum router, for embedding it in another server.
pub fn router(config: &EmulatorConfig) -> Result<axum::Router, ConfigError> {
    Ok(routers(config)?.bedrock)
}

/// The servers of one emulator: what Service Quotas reports is what Bedrock Runtime enforces;
/// CloudWatch keeps the metrics its clients publish.
#[derive(Debug)]
pub struct Routers {
    pub bedrock: axum::Router,
    pub service_quotas: axum::Router,
    pub cloudwatch: axum::Router,
}

pub fn routers(config: &EmulatorConfig) -> Result<Routers, ConfigError> {
    let state = Arc::new(engine::AppState::new(config)?);
    let batch = Arc::new(batch::BatchService::new(Arc::clone(&state), &config.batch, config.seed));
    let cloudwatch = Arc::new(cloudwatch::CloudWatch::new());
    // Bedrock Runtime's own metrics land in this CloudWatch, as they do in AWS.
    state.stats.publish_to(Arc::clone(&cloudwatch));
    Ok(Routers {
        bedrock: routes::router(Arc::clone(&state), batch),
        service_quotas: service_quotas::router(state),
        cloudwatch: cloudwatch::router(cloudwatch),
    })
}

/// Serves on `listener` until SIGINT or SIGTERM, then finishes the requests in flight.
pub async fn serve(listener: TcpListener, config: EmulatorConfig) -> io::Result<()> {
    serve_with_shutdown(listener, config, shutdown_signal()).await
}

/// Serves on `listener` until `shutdown` completes, then finishes the requests in flight.
pub async fn serve_with_shutdown(
    listener: TcpListener,
    config: EmulatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, error_chain(&e)))?;
    serve_router(listener, app, shutdown).await
}

pub(crate) async fn serve_router(
    listener: TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// Resolves on the first SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}

/// An emulator running in this process, on a free port of 127.0.0.1. Dropping it stops the
/// server; [`RunningEmulator::shutdown`] also waits for it to finish.
#[derive(Debug)]
pub struct RunningEmulator {
    addr: SocketAddr,
    service_quotas_addr: SocketAddr,
    cloudwatch_addr: SocketAddr,
    stop: Option<watch::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Starts an emulator on three free ports of 127.0.0.1, Bedrock Runtime, Service Quotas and
/// CloudWatch; it is accepting connections on all of them when this returns.
pub async fn spawn(config: EmulatorConfig) -> io::Result<RunningEmulator> {
    let apps = routers(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, error_chain(&e)))?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let quotas_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let service_quotas_addr = quotas_listener.local_addr()?;
    let cloudwatch_listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let cloudwatch_addr = cloudwatch_listener.local_addr()?;
    let (stop, stopped) = watch::channel(());
    // A dropped sender means the handle is gone: stop too.
    let until_stopped = |mut stopped: watch::Receiver<()>| async move {
        let _ = stopped.changed().await;
    };
    let bedrock = serve_router(listener, apps.bedrock, until_stopped(stopped.clone()));
    let quotas = serve_router(quotas_listener, apps.service_quotas, until_stopped(stopped.clone()));
    let cloudwatch = serve_router(cloudwatch_listener, apps.cloudwatch, until_stopped(stopped));
    let task = tokio::spawn(async move {
        let (bedrock, quotas, cloudwatch) = tokio::join!(bedrock, quotas, cloudwatch);
        bedrock.and(quotas).and(cloudwatch)
    });
    Ok(RunningEmulator { addr, service_quotas_addr, cloudwatch_addr, stop: Some(stop), task: Some(task) })
}

impl RunningEmulator {
    /// The base URL to give an SDK as its endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The endpoint of the emulator's Service Quotas, for `AWS_ENDPOINT_URL_SERVICE_QUOTAS`.
    pub fn service_quotas_url(&self) -> String {
        format!("http://{}", self.service_quotas_addr)
    }

    /// The endpoint of the emulator's CloudWatch, for `AWS_ENDPOINT_URL_CLOUDWATCH`.
    pub fn cloudwatch_url(&self) -> String {
        format!("http://{}", self.cloudwatch_addr)
    }

    /// Stops accepting connections and waits for the requests in flight to finish.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// An error and its sources on one line, for messages that end up in a terminal.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
