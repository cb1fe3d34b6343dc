//! An offline Amazon Bedrock Runtime.
//!
//! It speaks Bedrock's REST-JSON protocol (Converse, ConverseStream, InvokeModel,
//! InvokeModelWithResponseStream, CountTokens) well enough for the unmodified AWS SDKs to
//! use it through `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`, and it behaves like Bedrock where tests
//! care: deterministic answers, per-model RPM/TPM quotas with Bedrock's reservation
//! arithmetic, modeled latency, prompt-cache usage, and injectable faults.
//!
//! Run it as a binary (`bedrock-emulator --addr 127.0.0.1:4010 --config FILE`) or in-process
//! with [`spawn`]:
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let emulator = bedrock_emulator::spawn(bedrock_emulator::EmulatorConfig::instant()).await?;
//! println!("Bedrock at {}", emulator.url());
//! emulator.shutdown().await
//! # }
//! ```

mod anthropic;
mod cache;
pub mod cli;
mod config;
mod engine;
mod errors;
pub mod eventstream;
mod faults;
mod generate;
mod latency;
mod quota;
mod routes;
mod stats;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::{
    AnswerLength, ConfigError, EmulatorConfig, FaultOverride, FaultRates, FaultsConfig, LatencyConfig, QuotaOverride,
    StreamErrorType, TierLatency,
};

/// The emulator as an axum router, for embedding it in another server.
pub fn router(config: &EmulatorConfig) -> Result<axum::Router, ConfigError> {
    let state = engine::AppState::new(config)?;
    Ok(routes::router(Arc::new(state)))
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
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

/// Starts an emulator on `127.0.0.1:0`; it is accepting connections when this returns.
pub async fn spawn(config: EmulatorConfig) -> io::Result<RunningEmulator> {
    let app = router(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, error_chain(&e)))?;
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_router(listener, app, async {
        // A dropped sender means the handle is gone: stop too.
        let _ = stopped.await;
    }));
    Ok(RunningEmulator { addr, stop: Some(stop), task: Some(task) })
}

impl RunningEmulator {
    /// The base URL to give an SDK as its endpoint, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
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
