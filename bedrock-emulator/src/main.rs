use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    match bedrock_emulator::cli::run(bedrock_emulator::cli::Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bedrock-emulator: {e}");
            ExitCode::FAILURE
        }
    }
}
