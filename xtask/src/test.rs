//! `cargo xtask test`: every check CI runs, in one command. Steps keep running after a
//! failure (unless --fail-fast) so one run reports everything that is wrong.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;

use crate::demo_metrics::{self, Expected};
use crate::process::{interrupted, run_captured, run_status, sleep_interruptibly};
use crate::stack::{self, Stack, StackOptions, cargo};
use crate::{Result, dashboard, demo, demo_batch, features, fuzz, paths, tools, workload};

/// Requests of the CloudWatch step: every tenant of the workload, HITs among them.
const METRICS_WORKLOAD: usize = 40;

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Stop at the first failing step.
    #[arg(long)]
    pub fail_fast: bool,
    /// Seconds of in-process fuzzing (shared by its four targets); HTTP fuzzing of the
    /// running functions gets half as long. Raise it for a longer run.
    #[arg(long, default_value_t = 60)]
    pub fuzz_seconds: u64,
    /// Seed of the fuzzing steps (default: the clock, printed in the summary).
    #[arg(long)]
    pub fuzz_seed: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: u64,
    pub failed: u64,
}

impl std::ops::AddAssign for TestCounts {
    fn add_assign(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Passed,
    Failed,
    Skipped,
}

/// What a step reports: whether it passed, and the tests it ran if it runs tests.
#[derive(Debug)]
struct StepOutcome {
    passed: bool,
    skipped: bool,
    counts: Option<TestCounts>,
    note: String,
}

impl StepOutcome {
    fn check(passed: bool) -> Self {
        Self { passed, skipped: false, counts: None, note: String::new() }
    }

    fn skipped(note: &str) -> Self {
        Self { passed: true, skipped: true, counts: None, note: note.to_string() }
    }
}

#[derive(Debug)]
struct StepRecord {
    name: String,
    status: Status,
    duration: Duration,
    counts: Option<TestCounts>,
    note: String,
}

#[derive(Debug)]
struct Steps {
    fail_fast: bool,
    records: Vec<StepRecord>,
}

impl Steps {
    fn stop_requested(&self) -> bool {
        interrupted() || (self.fail_fast && self.records.iter().any(|r| r.status == Status::Failed))
    }

    fn run(&mut self, name: &str, step: impl FnOnce() -> Result<StepOutcome>) -> bool {
        if self.stop_requested() {
            self.records.push(StepRecord {
                name: name.to_string(),
                status: Status::Skipped,
                duration: Duration::ZERO,
                counts: None,
                note: "not run".into(),
            });
            return false;
        }
        println!("\n==> {name}");
        let started = Instant::now();
        let (status, counts, note) = match step() {
            Ok(outcome) => {
                let status = match (outcome.passed, outcome.skipped) {
                    (false, _) => Status::Failed,
                    (true, true) => Status::Skipped,
                    (true, false) => Status::Passed,
                };
                (status, outcome.counts, outcome.note)
            }
            Err(error) => {
                eprintln!("{name}: {error}");
                (Status::Failed, None, error.to_string())
            }
        };
        self.records.push(StepRecord { name: name.to_string(), status, duration: started.elapsed(), counts, note });
        status != Status::Failed
    }

    /// Tests passed and failed across steps. A failed step that ran no countable tests
    /// (fmt, clippy, a server that would not start) counts as one failure, so the total
    /// never reads "0 failed" for a failing run.
    fn totals(&self) -> TestCounts {
        let mut total = TestCounts::default();
        for record in &self.records {
            match (record.status, record.counts) {
                (_, Some(counts)) if counts.failed > 0 || record.status != Status::Failed => {
                    total += counts;
                }
                (Status::Failed, Some(counts)) => {
                    total += TestCounts { passed: counts.passed, failed: 1 };
                }
                (Status::Failed, None) => total.failed += 1,
                _ => {}
            }
        }
        total
    }

    fn print_summary(&self) {
        println!("\n==> summary");
        for record in &self.records {
            let status = match record.status {
                Status::Passed => "ok",
                Status::Failed => "FAILED",
                Status::Skipped => "skipped",
            };
            let counts = record
                .counts
                .filter(|c| *c != TestCounts::default())
                .map(|c| format!(" ({} passed, {} failed)", c.passed, c.failed))
                .unwrap_or_default();
            let note = if record.note.is_empty() { String::new() } else { format!(" - {}", first_line(&record.note)) };
            println!("  {:<8} {:<28} {:>7.1} s{counts}{note}", status, record.name, record.duration.as_secs_f64());
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

pub fn run(args: &TestArgs) -> Result<bool> {
    let mut steps = Steps { fail_fast: args.fail_fast, records: Vec::new() };
    let root = paths::repo_root();
    steps.run("tools", || {
        tools::ensure(&[tools::MOTO, tools::LINT, tools::CARGO_LAMBDA, tools::CLIENTS])
            .map(|()| StepOutcome::check(true))
    });
    steps.run("cargo fmt --check", || {
        Ok(StepOutcome::check(run_status(cargo().args(["fmt", "--all", "--check"]).current_dir(&root))?.success()))
    });
    steps.run("one feature set per dependency", || {
        let divergences = features::check()?;
        print!("{}", features::render(&divergences));
        Ok(StepOutcome::check(divergences.is_empty()))
    });
    steps.run("cargo clippy", || {
        let mut command = cargo();
        command.args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]).current_dir(&root);
        Ok(StepOutcome::check(run_status(&mut command)?.success()))
    });

    let mut stack = Stack::new(StackOptions {
        emulator_config: stack::emulator_test_config(),
        lambda_concurrency: 2,
        interactive: false,
    });
    steps.run("build servers and functions", || stack::build_binaries().map(|()| StepOutcome::check(true)));
    steps.run("start moto", || stack.start_moto().map(|_| StepOutcome::check(true)));
    steps.run("create cache table", || stack.create_cache_table().map(|()| StepOutcome::check(true)));
    steps.run("create budget table", || stack.create_budget_table().map(|()| StepOutcome::check(true)));
    steps.run("create batch table", || stack.create_batch_table().map(|()| StepOutcome::check(true)));
    steps.run("create usage table", || stack.create_usage_table().map(|()| StepOutcome::check(true)));
    steps
        .run("create batch bucket, queues, rules", || stack.create_batch_plumbing().map(|()| StepOutcome::check(true)));
    steps.run("start bedrock-emulator", || stack.start_emulator().map(|_| StepOutcome::check(true)));
    steps.run("dashboard in headless Chromium", || {
        let cloudwatch = stack.cloudwatch_url.as_deref().ok_or("the Bedrock emulator is not running")?;
        dashboard::browser_check(cloudwatch).map(StepOutcome::check)
    });
    let mut env = match (&stack.moto_url, &stack.emulator_url) {
        (Some(moto), Some(emulator)) => stack::test_env(moto, emulator),
        _ => Vec::new(),
    };
    if let Some(quotas) = &stack.service_quotas_url {
        env.push(("SERVICE_QUOTAS_EMULATOR_URL", quotas.clone()));
    }
    if let Some(cloudwatch) = &stack.cloudwatch_url {
        env.push(("CLOUDWATCH_EMULATOR_URL", cloudwatch.clone()));
    }
    steps.run("cargo nextest", || rust_tests(&root, &env));
    steps.run("pytest tests/python", || python_tests(&root, &env));
    let fuzz_seed = args.fuzz_seed.unwrap_or_else(fuzz::clock_seed);
    steps.run("fuzz (in-process)", || fuzz_step(fuzz::IN_PROCESS_TARGETS, args.fuzz_seconds, fuzz_seed, None));
    steps.run("cfn-lint template.yaml", || cfn_lint(&root));
    steps.run("SAM transform + cfn-lint", || sam_transform_check(&root));
    steps.run("start cargo lambda watch", || stack.start_lambda().map(|_| StepOutcome::check(true)));
    steps.run("start event pump", || stack.start_pump(None).map(|()| StepOutcome::check(true)));
    steps.run("events smoke check", || events_smoke(&root, stack.lambda_port));
    steps.run("official OpenAI and Anthropic SDKs", || client_tests(&root, &stack));
    steps.run("batch pipeline end to end", || batch_end_to_end(&root, &mut stack));
    steps.run("online requests in CloudWatch", || metrics_end_to_end(&stack));
    steps.run("fuzz http", || {
        let port = stack.lambda_port.ok_or("cargo lambda watch is not running")?;
        fuzz_step(&[fuzz::HTTP_TARGET], (args.fuzz_seconds / 2).max(1), fuzz_seed, Some(port))
    });
    stack.stop();

    steps.print_summary();
    let totals = steps.totals();
    let all_passed = steps.records.iter().all(|r| r.status != Status::Failed) && !interrupted() && totals.failed == 0;
    println!("{} passed, {} failed", totals.passed, totals.failed);
    Ok(all_passed)
}

/// A dropped file through EventBridge, SQS, both batch functions and the emulator's jobs
/// (with its failures, duplicate and reordered events on), then its prompts online.
fn batch_end_to_end(root: &Path, stack: &mut Stack) -> Result<StepOutcome> {
    stack.start_pump(Some(Duration::from_secs(3)))?;
    let catalog = crate::catalog::Catalog::load(&root.join("shared").join("catalog.toml")).map_err(|e| e.to_string());
    let report = demo_batch::run(stack, catalog.as_ref().map_err(String::as_str), stack::LOCAL_FILE_TENANT, 7);
    print!("{}", report.render());
    Ok(StepOutcome::check(report.passed()))
}

/// A workload through invoke-with-cache, then the figures the metrics publisher (on the
/// pump's schedule) put in the emulator's CloudWatch, checked against what the client saw.
fn metrics_end_to_end(stack: &Stack) -> Result<StepOutcome> {
    // Starting on a minute boundary keeps the earlier steps' requests out of the minutes
    // compared: CloudWatch's figures are per minute.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    sleep_interruptibly(Duration::from_millis(u64::try_from(60_000 - now_ms % 60_000).unwrap_or(0) + 250))?;
    let since = SystemTime::now();
    let url = stack.function_url(stack::FUNCTION_NAME, "/v1/converse").ok_or("cargo lambda watch is not running")?;
    let plan = workload::plan(METRICS_WORKLOAD, 11);
    let outcomes = demo::drive(&url, &plan, 2)?;
    let failed: Vec<String> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
    let report = demo_metrics::check(stack, since, &Expected::from_outcomes(&outcomes, 0, 0, 0.0));
    print!("{}", report.render());
    for error in &failed {
        println!("  request failed: {error}");
    }
    Ok(StepOutcome::check(report.passed() && failed.is_empty() && outcomes.len() == plan.len()))
}

/// Each fuzz target counts as one test: passed when it tried its inputs without a failure.
fn fuzz_step(targets: &[&str], seconds: u64, seed: u64, lambda_port: Option<u16>) -> Result<StepOutcome> {
    let run = fuzz::run_fuzzer(targets, seconds, seed, lambda_port)?;
    let mut counts = TestCounts::default();
    for result in &run.results {
        if result.failures == 0 { counts.passed += 1 } else { counts.failed += 1 }
    }
    let outcome = runner_outcome(run.success, (!run.results.is_empty()).then_some(counts));
    Ok(StepOutcome { note: run.note(), ..outcome })
}

fn with_env<'a>(command: &'a mut Command, env: &[(&str, String)]) -> &'a mut Command {
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

fn nextest_available() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn rust_tests(root: &Path, env: &[(&str, String)]) -> Result<StepOutcome> {
    let mut command = cargo();
    command.current_dir(root);
    stack::scrub_aws_env(&mut command);
    with_env(&mut command, env);
    let nextest = nextest_available();
    if nextest {
        command.args(["nextest", "run", "--workspace", "--no-fail-fast", "--no-tests=warn"]);
    } else {
        println!("cargo nextest is not installed; falling back to cargo test");
        command.args(["test", "--workspace", "--no-fail-fast"]);
    }
    let (status, lines) = run_captured(&mut command, true)?;
    let parsed = if nextest { parse_nextest_summary(&lines) } else { parse_cargo_test_summary(&lines) };
    let mut outcome = runner_outcome(status.success(), parsed);
    if parsed.is_none() {
        outcome.note = failure_note(&status, &lines);
    }
    Ok(outcome)
}

/// Why a runner ended without a summary, for the step's line: its exit and its last error
/// line, since a summary table is all CI shows when the full log is cut.
fn failure_note(status: &std::process::ExitStatus, lines: &[String]) -> String {
    let last_error =
        lines.iter().rev().find(|l| l.contains("error")).or_else(|| lines.iter().rev().find(|l| !l.trim().is_empty()));
    let mut note = format!("no test summary found ({status})");
    if let Some(line) = last_error {
        let line: String = line.trim().chars().take(160).collect();
        note.push_str(&format!(": {line}"));
    }
    note
}

/// A runner that failed without reporting a failed test (a compile error, a crash) still
/// has to show up as a failure in the counts.
fn runner_outcome(success: bool, parsed: Option<TestCounts>) -> StepOutcome {
    let mut counts = parsed.unwrap_or_default();
    if !success && counts.failed == 0 {
        counts.failed = 1;
    }
    StepOutcome {
        passed: success,
        skipped: false,
        counts: Some(counts),
        note: if parsed.is_none() { "no test summary found".into() } else { String::new() },
    }
}

fn python_tests(root: &Path, env: &[(&str, String)]) -> Result<StepOutcome> {
    let dir = root.join("tests").join("python");
    if !has_python_tests(&dir) {
        return Ok(StepOutcome::skipped("no tests in tests/python"));
    }
    let mut command = Command::new(tools::MOTO.bin("python"));
    command.args(["-m", "pytest", "-q", "tests/python"]).current_dir(root);
    stack::scrub_aws_env(&mut command);
    with_env(&mut command, env);
    let (status, lines) = run_captured(&mut command, true)?;
    // Exit code 5 is pytest's "no tests collected".
    if status.code() == Some(5) {
        return Ok(StepOutcome::skipped("pytest collected no tests"));
    }
    Ok(runner_outcome(status.success(), parse_pytest_summary(&lines)))
}

/// `tests/clients/` with the official `openai` and `anthropic` packages against the functions
/// under `cargo lambda watch`: the buffered endpoint and the streaming one.
fn client_tests(root: &Path, stack: &Stack) -> Result<StepOutcome> {
    let buffered = stack.function_url(stack::FUNCTION_NAME, "/v1").ok_or("cargo lambda watch is not running")?;
    let streaming =
        stack.function_url(stack::STREAM_FUNCTION_NAME, "/v1").ok_or("cargo lambda watch is not running")?;
    let mut command = Command::new(tools::CLIENTS.bin("python"));
    command.args(["-m", "pytest", "-q", "tests/clients"]).current_dir(root);
    stack::scrub_aws_env(&mut command);
    let emulator = stack.emulator_url.clone().ok_or("the Bedrock emulator is not running")?;
    command.env("GATEWAY_BASE_URL", buffered).env("GATEWAY_STREAM_BASE_URL", streaming).env("EMULATOR_URL", emulator);
    let (status, lines) = run_captured(&mut command, true)?;
    Ok(runner_outcome(status.success(), parse_pytest_summary(&lines)))
}

fn has_python_tests(dir: &Path) -> bool {
    fn walk(dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.filter_map(|e| e.ok()).any(|entry| {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path)
            } else {
                name.ends_with(".py") && (name.starts_with("test_") || name.ends_with("_test.py"))
            }
        })
    }
    walk(dir)
}

fn cfn_lint(root: &Path) -> Result<StepOutcome> {
    let mut command = Command::new(tools::LINT.bin("cfn-lint"));
    command.arg("template.yaml").current_dir(root);
    Ok(StepOutcome::check(run_status(&mut command)?.success()))
}

/// cfn-lint 1.x validates SAM resources against schemas but no longer runs the SAM
/// transform, so a template SAM would reject can still lint clean. This runs the real
/// translator for each auth mode and lints the CloudFormation it produces.
fn sam_transform_check(root: &Path) -> Result<StepOutcome> {
    let out_dir = paths::logs_dir().join("sam-transform");
    std::fs::create_dir_all(&out_dir)?;
    let script = root.join("xtask").join("sam_transform.py");
    let mut all_passed = true;
    for (mode, extra) in [
        ("IAM", &[][..]),
        ("JWT", &["JwtIssuer=https://issuer.example.com", "JwtAudience=example-client"][..]),
        ("NONE", &[][..]),
    ] {
        let output = out_dir.join(format!("template-{mode}.json"));
        let mut transform = Command::new(tools::LINT.bin("python"));
        transform
            .arg(&script)
            .arg("template.yaml")
            .arg(&output)
            .arg(format!("AuthMode={mode}"))
            .args(extra)
            .current_dir(root);
        stack::scrub_aws_env(&mut transform);
        if !run_status(&mut transform)?.success() {
            all_passed = false;
            continue;
        }
        let mut lint = Command::new(tools::LINT.bin("cfn-lint"));
        lint.arg(&output).current_dir(root);
        all_passed &= run_status(&mut lint)?.success();
    }
    Ok(StepOutcome::check(all_passed))
}

/// One event of `events/manifest.json` and what its function must answer: an HTTP status
/// (and cache header) for API Gateway events; for other events, fields of the JSON answer
/// (by JSON pointer) or the `errorType` of the function error.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmokeCase {
    pub function: String,
    pub event: PathBuf,
    #[serde(default)]
    pub expect_status: Option<u16>,
    #[serde(default)]
    pub expect_cache: Option<String>,
    #[serde(default)]
    pub expect_fields: std::collections::BTreeMap<String, Value>,
    #[serde(default)]
    pub expect_error_type: Option<String>,
}

fn events_smoke(root: &Path, lambda_port: Option<u16>) -> Result<StepOutcome> {
    let port = lambda_port.ok_or("cargo lambda watch is not running")?;
    let manifest_path = root.join("events").join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("could not read {}: {e}", manifest_path.display()))?;
    let cases: Vec<SmokeCase> = serde_json::from_str(&manifest)?;
    let mut counts = TestCounts::default();
    for case in &cases {
        let verdict = invoke_case(root, port, case);
        match &verdict {
            Ok(summary) => {
                counts.passed += 1;
                println!("  ok    {} ({summary})", case.event.display());
            }
            Err(reason) => {
                counts.failed += 1;
                println!("  FAIL  {}: {reason}", case.event.display());
            }
        }
    }
    Ok(StepOutcome { passed: counts.failed == 0, skipped: false, counts: Some(counts), note: String::new() })
}

fn invoke_case(root: &Path, port: u16, case: &SmokeCase) -> Result<String> {
    let mut command = cargo();
    command
        .args(["lambda", "invoke", &case.function, "--data-file"])
        .arg(&case.event)
        .args(["--invoke-address", "127.0.0.1", "--invoke-port", &port.to_string()])
        .args(["--output-format", "json"])
        .current_dir(root)
        .env("PATH", tools::path_with(&[tools::CARGO_LAMBDA.bin_dir()]));
    let (status, lines) = run_captured(&mut command, false)?;
    let output = lines.join("\n");
    if let Some(expected) = &case.expect_error_type {
        // A function error makes `cargo lambda invoke` fail and print the error's type.
        return if !status.success() && output.contains(expected.as_str()) {
            Ok(format!("function error {expected}"))
        } else {
            Err(format!("expected a function error {expected}; got ({status}): {output}").into())
        };
    }
    if !status.success() {
        return Err(format!("cargo lambda invoke exited with {status}: {output}").into());
    }
    let response = extract_json(&output).ok_or_else(|| format!("no JSON in output: {output}"))?;
    check_response(&response, case)
}

/// `cargo lambda invoke` may print log lines around the JSON it returns.
pub fn extract_json(output: &str) -> Option<Value> {
    let start = output.find('{')?;
    let end = output.rfind('}')?;
    serde_json::from_str(output.get(start..=end)?).ok()
}

pub fn check_response(response: &Value, case: &SmokeCase) -> Result<String> {
    for (pointer, expected) in &case.expect_fields {
        let found = response.pointer(pointer);
        if found != Some(expected) {
            return Err(format!("{pointer} is {found:?}, expected {expected}; answer {response}").into());
        }
    }
    let Some(expect_status) = case.expect_status else {
        return Ok(case.expect_fields.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "));
    };
    let status = response.get("statusCode").and_then(Value::as_u64);
    if status != Some(u64::from(expect_status)) {
        return Err(format!(
            "statusCode {status:?}, expected {expect_status}; body {}",
            response.get("body").unwrap_or(&Value::Null)
        )
        .into());
    }
    let cache = header(response, "x-cache");
    if let Some(expected) = &case.expect_cache
        && cache.as_deref() != Some(expected.as_str())
    {
        return Err(format!("x-cache {cache:?}, expected {expected}").into());
    }
    Ok(match cache {
        Some(cache) => format!("{expect_status}, x-cache {cache}"),
        None => expect_status.to_string(),
    })
}

/// A response header from an API Gateway v2 proxy response, looking at both header maps
/// and ignoring case as HTTP does.
fn header(response: &Value, name: &str) -> Option<String> {
    let find = |map: Option<&Value>| {
        map.and_then(Value::as_object).and_then(|headers| {
            headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.clone())
        })
    };
    match find(response.get("headers")) {
        Some(Value::String(value)) => Some(value),
        _ => match find(response.get("multiValueHeaders")) {
            Some(Value::Array(values)) => values.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        },
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end with a letter.
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts "<n> <word>" items in a comma-separated summary.
fn count_items(text: &str) -> TestCounts {
    let mut counts = TestCounts::default();
    for item in text.split([',', ';']) {
        let mut words = item.split_whitespace();
        let Some(number) = words.next().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let label: Vec<&str> = words.collect();
        match label.first().copied().map(|w| w.trim_end_matches(['.', ':'])) {
            Some("passed") => counts.passed += number,
            Some("failed" | "error" | "errors") => counts.failed += number,
            Some("timed") if label.get(1) == Some(&"out") => counts.failed += number,
            _ => {}
        }
    }
    counts
}

/// nextest ends with e.g. `Summary [ 2.0s] 12 tests run: 11 passed (1 slow), 1 failed, 0 skipped`.
pub fn parse_nextest_summary(lines: &[String]) -> Option<TestCounts> {
    lines.iter().rev().map(|l| strip_ansi(l)).find_map(|line| {
        let (head, tail) = line.split_once("run:")?;
        head.contains("Summary").then(|| count_items(tail))
    })
}

/// `cargo test` prints one `test result: ok. 3 passed; 0 failed; ...` per test binary.
pub fn parse_cargo_test_summary(lines: &[String]) -> Option<TestCounts> {
    let mut total: Option<TestCounts> = None;
    for line in lines.iter().map(|l| strip_ansi(l)) {
        if let Some(rest) = line.trim().strip_prefix("test result:") {
            let rest = rest.split_once('.').map_or(rest, |(_, after)| after);
            *total.get_or_insert_with(TestCounts::default) += count_items(rest);
        }
    }
    total
}

/// pytest ends with e.g. `3 passed, 1 failed in 0.12s` (decorated with `=` without -q).
pub fn parse_pytest_summary(lines: &[String]) -> Option<TestCounts> {
    lines.iter().rev().map(|l| strip_ansi(l)).find_map(|line| {
        let line = line.trim().trim_matches('=').trim();
        let (items, _) = line.rsplit_once(" in ")?;
        let counts = count_items(items);
        (counts != TestCounts::default() || items.contains("passed")).then_some(counts)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn parses_nextest_summaries() {
        let ok = lines(
            "        PASS [   0.010s] xtask tests::a\n────────────\n     Summary [   2.015s] 12 tests run: 12 passed, 0 skipped",
        );
        assert_eq!(parse_nextest_summary(&ok), Some(TestCounts { passed: 12, failed: 0 }));
        let bad = lines("     Summary [   2.015s] 14 tests run: 11 passed (2 slow), 2 failed, 1 timed out, 3 skipped");
        assert_eq!(parse_nextest_summary(&bad), Some(TestCounts { passed: 11, failed: 3 }));
        let colored = lines("\u{1b}[32;1m     Summary\u{1b}[0m [   0.1s] 1 test run: 1 passed, 0 skipped");
        assert_eq!(parse_nextest_summary(&colored).map(|c| c.passed), Some(1));
        assert_eq!(parse_nextest_summary(&lines("error: could not compile")), None);
    }

    #[test]
    fn parses_cargo_test_summaries() {
        let out = lines(
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
             test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        assert_eq!(parse_cargo_test_summary(&out), Some(TestCounts { passed: 5, failed: 1 }));
    }

    #[test]
    fn parses_pytest_summaries() {
        let quiet = lines("..F.\nFAILED tests/python/test_x.py::test_y\n3 passed, 1 failed in 0.12s");
        assert_eq!(parse_pytest_summary(&quiet), Some(TestCounts { passed: 3, failed: 1 }));
        let verbose = lines("========= 5 passed, 2 errors in 1.02s =========");
        assert_eq!(parse_pytest_summary(&verbose), Some(TestCounts { passed: 5, failed: 2 }));
        assert_eq!(parse_pytest_summary(&lines("collected 0 items")), None);
    }

    #[test]
    fn failed_runners_without_summaries_still_count_as_failures() {
        let outcome = runner_outcome(false, None);
        assert_eq!(outcome.counts.map(|c| c.failed), Some(1));
        let outcome = runner_outcome(true, Some(TestCounts { passed: 4, failed: 0 }));
        assert!(outcome.passed);
    }

    #[test]
    fn totals_count_failed_checks_once() {
        let record = |status, counts| StepRecord {
            name: "s".into(),
            status,
            duration: Duration::ZERO,
            counts,
            note: String::new(),
        };
        let steps = Steps {
            fail_fast: false,
            records: vec![
                record(Status::Passed, None),
                record(Status::Failed, None),
                record(Status::Passed, Some(TestCounts { passed: 10, failed: 0 })),
                record(Status::Failed, Some(TestCounts { passed: 2, failed: 3 })),
                record(Status::Skipped, None),
            ],
        };
        assert_eq!(steps.totals(), TestCounts { passed: 12, failed: 4 });
    }

    #[test]
    fn smoke_responses_are_checked_for_status_and_cache_header() {
        let case = SmokeCase {
            function: "invoke-with-cache".into(),
            event: "events/x.json".into(),
            expect_status: Some(200),
            expect_cache: Some("HIT".into()),
            ..SmokeCase::default()
        };
        let hit = json!({"statusCode": 200, "headers": {"X-Cache": "HIT"}, "body": "{}"});
        assert!(check_response(&hit, &case).is_ok());
        let miss = json!({"statusCode": 200, "headers": {"x-cache": "MISS"}});
        assert!(check_response(&miss, &case).is_err());
        let multi = json!({"statusCode": 200, "headers": {}, "multiValueHeaders": {"x-cache": ["HIT"]}});
        assert!(check_response(&multi, &case).is_ok());
        let error = json!({"statusCode": 400, "body": "{\"error\":{}}"});
        assert!(check_response(&error, &case).is_err());
    }

    #[test]
    fn event_answers_are_checked_by_their_fields() {
        let case = SmokeCase {
            function: "batch-completion".into(),
            event: "events/x.json".into(),
            expect_fields: [("/outcome".to_owned(), json!("completed"))].into(),
            ..SmokeCase::default()
        };
        assert!(check_response(&json!({"outcome": "completed", "answered": 3}), &case).is_ok());
        assert!(check_response(&json!({"outcome": "failed"}), &case).is_err());
        assert!(check_response(&json!({}), &case).is_err());
    }

    #[test]
    fn json_is_found_among_log_lines() {
        let output = "INFO invoking\n{\n  \"statusCode\": 200\n}\n";
        assert_eq!(extract_json(output), Some(json!({"statusCode": 200})));
    }

    #[test]
    fn repeat_event_differs_from_the_valid_one_only_in_formatting() {
        let root = paths::repo_root().join("events/invoke-with-cache");
        let body = |name: &str| {
            let event: Value = serde_json::from_str(&std::fs::read_to_string(root.join(name)).unwrap()).unwrap();
            event["body"].as_str().unwrap().to_string()
        };
        let (valid, repeat) = (body("valid-request.json"), body("repeat-request.json"));
        assert_ne!(valid, repeat);
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        assert_eq!(parse(&valid), parse(&repeat));
        assert_eq!(parse(&body("other-tenant.json")), parse(&valid));
        assert!(serde_json::from_str::<Value>(&body("malformed-body.json")).is_err());
    }

    #[test]
    fn repository_smoke_manifest_is_well_formed() {
        let root = paths::repo_root();
        let text = std::fs::read_to_string(root.join("events/manifest.json")).unwrap();
        let cases: Vec<SmokeCase> = serde_json::from_str(&text).unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let event: Value = serde_json::from_str(&std::fs::read_to_string(root.join(&case.event)).unwrap()).unwrap();
            let expectations =
                [case.expect_status.is_some(), !case.expect_fields.is_empty(), case.expect_error_type.is_some()];
            assert!(expectations.iter().any(|e| *e), "{}: expects nothing", case.event.display());
            if case.expect_status.is_some() {
                assert_eq!(event["version"], "2.0", "{}", case.event.display());
                assert!(event["requestContext"]["http"]["method"].is_string());
            } else {
                assert!(event["detail-type"].is_string(), "{}: not an EventBridge event", case.event.display());
            }
        }
    }
}
