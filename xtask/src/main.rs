//! `cargo xtask <command>`: the project's automation, written in Rust so that the only
//! prerequisites are the Rust toolchain and python3.

mod aws;
mod bench_quota;
mod bench_stream;
mod browser;
mod calibrate;
mod candidate;
mod catalog;
mod dashboard;
mod demo;
mod demo_batch;
mod demo_metrics;
mod demo_stream;
mod dynamo;
mod estimate;
mod eval;
mod events;
mod features;
mod fuzz;
mod http;
mod paths;
mod process;
mod prompts;
mod report;
mod stack;
mod template;
mod test;
mod tools;
mod train;
mod unseen;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Errors in xtask end up printed to a developer, so a boxed error with a readable message
/// is all the structure they need.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(name = "cargo xtask", about = "Local stack, demo workload and test suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the Python-based tools into .tools/ (idempotent).
    Tools,
    /// Run moto, the Bedrock emulator and `cargo lambda watch` until Ctrl-C.
    Stack {
        /// Bedrock emulator configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start the stack, drive a cached workload through it and print a report.
    Demo(demo::DemoArgs),
    /// Chart the deployed dashboard's figures from the emulator's CloudWatch in one HTML page
    /// (target/dashboard.html), or serve it with `--serve PORT`.
    Dashboard(dashboard::DashboardArgs),
    /// Formatting, lints, unit, integration, Python and template checks, event smoke tests.
    Test(test::TestArgs),
    /// Mutation fuzzing of the parser, cache codec, router, event-stream writer and (with
    /// `--target http` or `all`) the running functions; `--replay FILE` reruns a failure.
    Fuzz(fuzz::FuzzArgs),
    /// Goodput, losses, throttles, latency and DynamoDB work of the SDK's retry modes and of
    /// the gateway's admission, under 3x the sustainable load from several processes.
    BenchQuota(bench_quota::BenchQuotaArgs),
    /// Time to first token through the gateway's streaming endpoint against the emulator's
    /// own ConverseStream, for a MISS and a replayed HIT (p50, p99).
    BenchStream(bench_stream::BenchStreamArgs),
    /// Train the router's model from data/routing and write shared/router/model.bin.
    TrainRouter(train::TrainArgs),
    /// Evaluate routers (random, heuristic, length, learned) on a CSV of per-prompt outcomes.
    EvalRouter(eval::EvalArgs),
    /// Check that every separately built package resolves each dependency's features as the
    /// workspace does (else the SDK is compiled again); names what workspace-hack lacks.
    Features,
    /// Measure the local token estimate against the emulator and the shipped data's lengths.
    EstimateTokens(estimate::EstimateArgs),
    /// Start the stack, send an opted-in tenant's prompts and run the router's calibration
    /// (every tier answers, the strongest grades) until its dataset is written; prints its cost.
    Calibrate(calibrate::CalibrateArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = paths::resolve_root() {
        eprintln!("xtask: error: {error}");
        return ExitCode::FAILURE;
    }
    if let Err(error) = process::install_interrupt_handler() {
        eprintln!("xtask: error: could not install the Ctrl-C handler: {error}");
        return ExitCode::FAILURE;
    }
    let outcome = match cli.command {
        Command::Tools => tools::ensure(&tools::ALL).map(|()| true),
        Command::Stack { config } => stack::run_until_interrupted(config).map(|()| true),
        Command::Demo(args) => demo::run(&args),
        Command::Dashboard(args) => dashboard::run(&args),
        Command::Test(args) => test::run(&args),
        Command::Fuzz(args) => fuzz::run(&args),
        Command::BenchQuota(args) => bench_quota::run(&args),
        Command::BenchStream(args) => bench_stream::run(&args),
        Command::TrainRouter(args) => train::run(&args),
        Command::EvalRouter(args) => eval::run(&args),
        Command::EstimateTokens(args) => estimate::run(&args),
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Features => features::check().map(|divergences| {
            print!("{}", features::render(&divergences));
            divergences.is_empty()
        }),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}
