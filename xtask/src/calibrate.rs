//! `cargo xtask calibrate`: the router's calibration end to end on the local stack.
//!
//! Prompts of the one opted-in local tenant go through invoke-with-cache (whose sampling stage
//! copies each to `calibration/samples/` in the local bucket), then the calibration function
//! is invoked as its schedule would, again and again, until its run is done: answer jobs on
//! every tier and a grading job in the emulator's batch plane, the dataset in moto's S3. The
//! run's cost and its cost per 1,000 prompts are what the function reports. The dataset is
//! then copied to `target/calibration/dataset/` and retrains the router into a candidate,
//! evaluated beside the artifact in use (`cargo xtask train-router --data`, whose
//! `--promote` is the explicit last step).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};

use crate::process::{check_interrupted, sleep_interruptibly};
use crate::prompts::PROMPTS;
use crate::stack::{self, Stack, StackOptions};
use crate::{Result, aws, events, http, paths, tools};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Prompts sent for the opted-in tenant; a run needs at least 100 (Bedrock's, and the
    /// emulator's, fewest records per job).
    #[arg(long, default_value_t = 120)]
    pub prompts: usize,
}

/// Jobs walk their statuses in seconds locally; the function is compiled on first use.
const RUN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
const TIERS: [&str; 3] = ["haiku", "sonnet", "opus"];

#[derive(Debug, Default)]
struct Report {
    sent: usize,
    answered: usize,
    states: Vec<String>,
    done: Option<Value>,
    lines: usize,
    /// Per tier: grades read, their sum, and grades missing.
    grades: BTreeMap<&'static str, (usize, u64, usize)>,
    errors: Vec<String>,
    /// The local copy of the run's dataset.
    dataset: Option<std::path::PathBuf>,
}

impl Report {
    fn passed(&self) -> bool {
        let done = self.done.as_ref();
        let prompts = done.and_then(|d| d["prompts"].as_u64()).unwrap_or(0) as usize;
        self.errors.is_empty()
            && prompts > 0
            && self.lines == prompts
            && done.and_then(|d| d["totalUsd"].as_f64()).is_some_and(|usd| usd > 0.0)
            && self.grades.get("opus").is_some_and(|(_, sum, _)| *sum > 0)
    }

    fn print(&self) {
        println!();
        println!("calibration on the local stack");
        println!("  prompts sent as {}: {} ({} answered)", stack::LOCAL_CALIBRATION_TENANT, self.sent, self.answered);
        println!("  run states seen: {}", self.states.join(" -> "));
        if let Some(done) = &self.done {
            println!("  run {}: {} prompts, dataset {}", done["runId"], done["prompts"], done["datasetUri"]);
            for tier in TIERS {
                let (graded, sum, missing) = self.grades.get(tier).copied().unwrap_or_default();
                let mean = if graded == 0 { 0.0 } else { sum as f64 / graded as f64 };
                println!("    {tier:<6} mean score {mean:>5.2} over {graded} graded, {missing} missing");
            }
            let usd = |field: &str| done[field].as_f64().unwrap_or(0.0);
            println!(
                "  cost at batch prices: answers ${:.4} + grading ${:.4} = ${:.4}",
                usd("answersUsd"),
                usd("gradingUsd"),
                usd("totalUsd")
            );
            println!("  cost per 1,000 prompts: ${:.4}", usd("per1000PromptsUsd"));
        }
        for error in &self.errors {
            println!("  ERROR {error}");
        }
        println!("  {}", if self.passed() { "PASS" } else { "FAIL" });
    }
}

pub fn run(args: &CalibrateArgs) -> Result<bool> {
    tools::ensure(&[tools::MOTO, tools::CARGO_LAMBDA])?;
    let mut stack = Stack::start(StackOptions {
        emulator_config: stack::emulator_test_config(),
        lambda_concurrency: 2,
        interactive: false,
    })?;
    let outcome = calibrate(&stack, args);
    stack.stop();
    let report = outcome?;
    report.print();
    if !report.passed() {
        return Ok(false);
    }
    let dataset = report.dataset.as_deref().ok_or("the run's dataset was not copied")?;
    retrain(dataset)?;
    Ok(true)
}

/// The shipped data and the run's graded prompts into a router candidate and its evaluation,
/// as `cargo xtask train-router --data data/routing --data <dataset>` makes it.
fn retrain(dataset: &std::path::Path) -> Result<()> {
    let (examples, _) = crate::train::load_data(&[dataset.to_owned()])?;
    let params = gateway_core::routing::train::TrainParams::default();
    let model = gateway_core::routing::train::train(&examples, &params);
    crate::candidate::publish(&examples, &model, &params, None)?;
    Ok(())
}

fn calibrate(stack: &Stack, args: &CalibrateArgs) -> Result<Report> {
    let mut report = Report::default();
    send_prompts(stack, args.prompts, &mut report)?;
    let port = stack.lambda_port.ok_or("the functions are not running")?;
    let url = format!("http://127.0.0.1:{port}/2015-03-31/functions/{}/invocations", stack::CALIBRATION_FUNCTION_NAME);
    let agent = http::agent(Duration::from_secs(300));
    let started = Instant::now();
    println!("calibrate: invoking {} until its run is done ...", stack::CALIBRATION_FUNCTION_NAME);
    let done = loop {
        check_interrupted()?;
        let event = json!({
            "version": "0", "id": "local-calibration", "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": events::rfc3339(std::time::SystemTime::now()), "region": "us-east-1",
            "resources": [], "detail": {}
        });
        let reply = http::post(&agent, &url, &[("Content-Type", "application/json")], &event.to_string())?;
        let answer: Value = serde_json::from_str(&reply.body).map_err(|e| format!("{e}: {}", reply.body))?;
        if answer.get("errorType").is_some() {
            report.errors.push(format!("the function failed: {answer}"));
            return Ok(report);
        }
        let state = match answer["state"].as_str() {
            Some("waiting") => format!("waiting({})", answer["stage"].as_str().unwrap_or("?")),
            Some(state) => state.to_owned(),
            None => return Err(format!("unexpected answer: {answer}").into()),
        };
        if report.states.last() != Some(&state) {
            println!("calibrate:   {state}");
            report.states.push(state);
        }
        match answer["state"].as_str() {
            Some("done") => break answer,
            Some("idle") => {
                report.errors.push(format!("no run started: {answer} (were the prompts sampled?)"));
                return Ok(report);
            }
            _ => {}
        }
        if started.elapsed() > RUN_TIMEOUT {
            report.errors.push(format!("the run was not done after {} s", RUN_TIMEOUT.as_secs()));
            return Ok(report);
        }
        sleep_interruptibly(Duration::from_secs(1))?;
    };
    read_dataset(stack, &done, &mut report)?;
    report.done = Some(done);
    Ok(report)
}

fn send_prompts(stack: &Stack, count: usize, report: &mut Report) -> Result<()> {
    let url = stack.function_url(stack::FUNCTION_NAME, "/v1/converse").ok_or("the functions are not running")?;
    let agent = http::agent(Duration::from_secs(60));
    let headers = [("content-type", "application/json"), ("x-tenant-id", stack::LOCAL_CALIBRATION_TENANT)];
    println!("calibrate: sending {count} prompts as tenant {} ...", stack::LOCAL_CALIBRATION_TENANT);
    for i in 0..count {
        check_interrupted()?;
        let (kind, text) = PROMPTS[i % PROMPTS.len()];
        // Past the list, a numbered variant: a distinct prompt is a distinct sample.
        let text = if i < PROMPTS.len() { text.to_owned() } else { format!("{text} (variant {})", i / PROMPTS.len()) };
        let body = json!({
            "modelId": "haiku",
            "system": [{"text": kind.system_prompt()}],
            "messages": [{"role": "user", "content": [{"text": text}]}],
            "inferenceConfig": {"maxTokens": 200}
        });
        report.sent += 1;
        match http::post(&agent, &url, &headers, &body.to_string()) {
            Ok(reply) if reply.status == 200 => report.answered += 1,
            Ok(reply) => report.errors.push(format!("prompt {i}: status {}", reply.status)),
            Err(e) => report.errors.push(format!("prompt {i}: {e}")),
        }
    }
    Ok(())
}

fn read_dataset(stack: &Stack, done: &Value, report: &mut Report) -> Result<()> {
    let moto = stack.moto_url.clone().ok_or("moto is not running")?;
    let uri = done["datasetUri"].as_str().unwrap_or_default();
    let path = uri.strip_prefix("s3://").ok_or_else(|| format!("not an S3 URI: {uri}"))?;
    let reply = aws::s3("GET", &moto, path, b"")?;
    if reply.status != 200 {
        return Err(format!("GET {uri}: status {}", reply.status).into());
    }
    let name = path.rsplit('/').next().unwrap_or("dataset.jsonl");
    let local_dir = paths::target_dir().join("calibration").join("dataset");
    std::fs::create_dir_all(&local_dir).map_err(|e| format!("cannot create {}: {e}", local_dir.display()))?;
    let local = local_dir.join(name);
    std::fs::write(&local, &reply.body).map_err(|e| format!("cannot write {}: {e}", local.display()))?;
    report.dataset = Some(local);
    for line in reply.body.lines().filter(|l| !l.trim().is_empty()) {
        let outcome: Value = serde_json::from_str(line)?;
        report.lines += 1;
        if outcome["schema"] != 1 {
            report.errors.push(format!("a line of schema {}", outcome["schema"]));
        }
        for tier in TIERS {
            let entry = report.grades.entry(tier).or_default();
            match outcome["outcomes"][tier]["score"].as_u64() {
                Some(score @ 1..=10) => {
                    entry.0 += 1;
                    entry.1 += score;
                }
                Some(score) => report.errors.push(format!("{tier} score {score} is outside 1..10")),
                None => entry.2 += 1,
            }
        }
        if outcome["outcomes"]["opus"]["score"].as_u64().is_some_and(|s| s != 10) {
            report.errors.push("the grader's own answer is not 10".to_owned());
        }
    }
    Ok(())
}
