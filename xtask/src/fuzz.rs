//! `cargo xtask fuzz`: runs the `gateway-fuzz` binary (crate `fuzz/`). xtask builds the
//! core without the AWS SDK, so the targets live in that crate, next to the emulator they
//! need, and share this workspace's `target/`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::process::run_captured;
use crate::stack::{self, Stack, StackOptions};
use crate::{Result, paths, tools};

pub const IN_PROCESS_TARGETS: &[&str] = &["request", "cache", "routing", "eventstream"];
pub const HTTP_TARGET: &str = "http";
const REPLAY_COMMAND: &str = "cargo xtask fuzz --replay";

#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Time budget of the run, shared equally by its targets.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the run (default: the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// request, cache, routing, eventstream, http (starts the local stack), or all
    /// (default: the four in-process targets).
    #[arg(long)]
    pub target: Option<String>,
    /// Runs one saved failure again, e.g. target/fuzz-failures/request/0123abcd.
    #[arg(long)]
    pub replay: Option<PathBuf>,
}

/// One target's line of the fuzzer's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    pub target: String,
    pub inputs: u64,
    pub failures: u64,
}

#[derive(Debug)]
pub struct FuzzRun {
    pub success: bool,
    pub seed: u64,
    pub results: Vec<TargetResult>,
}

impl FuzzRun {
    /// `request 12443, cache 14744 inputs, seed 7`: the inputs tried per target.
    pub fn note(&self) -> String {
        let per_target: Vec<String> = self.results.iter().map(|r| format!("{} {}", r.target, r.inputs)).collect();
        format!("{} inputs, seed {}", per_target.join(", "), self.seed)
    }
}

pub fn clock_seed() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Runs the fuzzer over `targets` for `seconds` in all; `lambda_port` is needed by `http`.
pub fn run_fuzzer(targets: &[&str], seconds: u64, seed: u64, lambda_port: Option<u16>) -> Result<FuzzRun> {
    let mut command = fuzzer_command(lambda_port);
    command.args(["--seconds", &seconds.to_string(), "--seed", &seed.to_string()]);
    for target in targets {
        command.args(["--target", target]);
    }
    let (status, lines) = run_captured(&mut command, true)?;
    let results = parse_results(&lines);
    Ok(FuzzRun { success: status.success() && results.iter().all(|r| r.failures == 0), seed, results })
}

fn fuzzer_command(lambda_port: Option<u16>) -> std::process::Command {
    let root = paths::repo_root();
    // Built by `stack::build_binaries` in the dev profile, which unwinds, as catch_unwind needs.
    let mut command = std::process::Command::new(paths::target_dir().join("debug").join(stack::FUZZ_BINARY));
    command.arg("--events").arg(root.join("events"));
    command.arg("--failures-dir").arg(paths::target_dir().join("fuzz-failures"));
    command.args(["--replay-command", REPLAY_COMMAND]);
    if let Some(port) = lambda_port {
        command.args(["--lambda-port", &port.to_string()]);
    }
    command.current_dir(root);
    command
}

pub fn parse_results(lines: &[String]) -> Vec<TargetResult> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("fuzz-result ")?;
            let field = |name: &str| {
                rest.split_whitespace().find_map(|item| item.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
            };
            Some(TargetResult {
                target: field("target")?,
                inputs: field("inputs")?.parse().ok()?,
                failures: field("failures")?.parse().ok()?,
            })
        })
        .collect()
}

fn replay_target(file: &Path) -> Option<String> {
    file.parent()?.file_name()?.to_str().map(str::to_owned)
}

/// The stack the http target fuzzes: the same one `cargo xtask test` starts.
fn start_stack() -> Result<Stack> {
    tools::ensure(&[tools::MOTO, tools::CARGO_LAMBDA])?;
    Stack::start(StackOptions {
        emulator_config: stack::emulator_test_config(),
        lambda_concurrency: 2,
        interactive: false,
    })
}

pub fn run(args: &FuzzArgs) -> Result<bool> {
    stack::build_binaries()?;
    if let Some(file) = &args.replay {
        let file = stack::absolute(file);
        let mut stack = None;
        if replay_target(&file).as_deref() == Some(HTTP_TARGET) {
            stack = Some(start_stack()?);
        }
        let mut command = fuzzer_command(stack.as_ref().and_then(|s| s.lambda_port));
        command.arg("--replay").arg(&file);
        let (status, _) = run_captured(&mut command, true)?;
        if let Some(mut stack) = stack {
            stack.stop();
        }
        return Ok(status.success());
    }
    let targets: Vec<&str> = match args.target.as_deref() {
        None => IN_PROCESS_TARGETS.to_vec(),
        Some("all") => IN_PROCESS_TARGETS.iter().copied().chain([HTTP_TARGET]).collect(),
        Some(name) if IN_PROCESS_TARGETS.contains(&name) || name == HTTP_TARGET => vec![name],
        Some(name) => {
            return Err(format!("unknown target `{name}`: request, cache, routing, eventstream, http or all").into());
        }
    };
    let seed = args.seed.unwrap_or_else(clock_seed);
    let mut stack = if targets.contains(&HTTP_TARGET) { Some(start_stack()?) } else { None };
    let outcome = run_fuzzer(&targets, args.seconds, seed, stack.as_ref().and_then(|s| s.lambda_port));
    if let Some(stack) = stack.as_mut() {
        stack.stop();
    }
    let run = outcome?;
    println!("fuzz: {}", run.note());
    Ok(run.success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_read_among_other_output() {
        let lines: Vec<String> = [
            "fuzz: seed 3, 15 s per target",
            "fuzz-result target=request inputs=12443 failures=0",
            "fuzz: FAILURE in cache: panic",
            "fuzz-result target=cache inputs=10 failures=2",
            "fuzz-result target=broken inputs=x failures=0",
        ]
        .map(str::to_owned)
        .to_vec();
        let results = parse_results(&lines);
        assert_eq!(
            results,
            vec![
                TargetResult { target: "request".into(), inputs: 12443, failures: 0 },
                TargetResult { target: "cache".into(), inputs: 10, failures: 2 },
            ]
        );
        let run = FuzzRun { success: false, seed: 3, results };
        assert_eq!(run.note(), "request 12443, cache 10 inputs, seed 3");
    }

    #[test]
    fn a_saved_input_replays_under_the_target_of_its_directory() {
        assert_eq!(replay_target(Path::new("target/fuzz-failures/http/00ff")).as_deref(), Some("http"));
        assert_eq!(replay_target(Path::new("lonely")), None);
    }
}
