//! The command line: `bedrock-emulator --addr 127.0.0.1:4010 [--service-quotas-addr
//! 127.0.0.1:4011] [--cloudwatch-addr 127.0.0.1:4012] [--config FILE]`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

use crate::config::EmulatorConfig;

#[derive(Debug, Parser)]
#[command(name = "bedrock-emulator", version, about = "Offline Amazon Bedrock Runtime for tests")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:4010")]
    pub addr: SocketAddr,
    /// Also serve Service Quotas (for service code `bedrock`) on this address.
    #[arg(long)]
    pub service_quotas_addr: Option<SocketAddr>,
    /// Also serve CloudWatch metrics (RPCv2-CBOR) on this address.
    #[arg(long)]
    pub cloudwatch_addr: Option<SocketAddr>,
    /// TOML configuration file (see the README); defaults apply without one.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Loads the configuration, binds, announces the address on stdout and serves until SIGINT
/// or SIGTERM. Logs go to stderr so that stdout carries only the readiness line.
pub async fn run(args: Args) -> io::Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only if a subscriber is already installed, which is then the one to keep.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(io::stderr).try_init();
    let config = match &args.config {
        Some(path) => EmulatorConfig::from_file(path),
        None => Ok(EmulatorConfig::default()),
    }
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, crate::error_chain(&e)))?;
    // Built before binding, so that a bad file never looks like a started server.
    let crate::Routers { bedrock, service_quotas, cloudwatch } =
        crate::routers(&config).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, crate::error_chain(&e)))?;
    let listener = TcpListener::bind(args.addr).await?;
    let addr = listener.local_addr()?;
    let quotas_listener = match args.service_quotas_addr {
        Some(quotas_addr) => Some(TcpListener::bind(quotas_addr).await?),
        None => None,
    };
    let cloudwatch_listener = match args.cloudwatch_addr {
        Some(cloudwatch_addr) => Some(TcpListener::bind(cloudwatch_addr).await?),
        None => None,
    };
    let mut stdout = io::stdout();
    // The first line is the readiness signal scripts wait for; every port is bound by then.
    writeln!(stdout, "bedrock-emulator listening on http://{addr}")?;
    if let Some(quotas_listener) = &quotas_listener {
        writeln!(stdout, "bedrock-emulator serving Service Quotas on http://{}", quotas_listener.local_addr()?)?;
    }
    if let Some(cloudwatch_listener) = &cloudwatch_listener {
        writeln!(stdout, "bedrock-emulator serving CloudWatch on http://{}", cloudwatch_listener.local_addr()?)?;
    }
    stdout.flush()?;
    let optional = |listener: Option<TcpListener>, router: axum::Router| async move {
        match listener {
            Some(listener) => crate::serve_router(listener, router, crate::shutdown_signal()).await,
            None => Ok(()),
        }
    };
    let (bedrock, quotas, cloudwatch) = tokio::join!(
        crate::serve_router(listener, bedrock, crate::shutdown_signal()),
        optional(quotas_listener, service_quotas),
        optional(cloudwatch_listener, cloudwatch),
    );
    bedrock?;
    quotas?;
    cloudwatch?;
    tracing::info!("bedrock-emulator stopped");
    Ok(())
}
