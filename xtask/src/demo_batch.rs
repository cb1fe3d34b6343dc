//! The demo's batch section: a JSONL file dropped in the local bucket runs through the whole
//! pipeline (S3 "Object Created" on moto's EventBridge, the submission function, a job in
//! the emulator's batch control plane, its state-change events, the completion function),
//! then the same prompts sent online must be cache HITs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::catalog::{self, Catalog, Usage};
use crate::process::{check_interrupted, sleep_interruptibly};
use crate::stack::Stack;
use crate::{Result, aws, events, http};

/// Above the emulator's (and Bedrock's default) minimum of 100 records per job.
const GOOD_LINES: usize = 120;
/// A job walks its statuses in seconds locally, but the function is compiled on its first
/// event and failed records wait for an on-demand turn.
const RESULTS_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Online repeats of answered prompts: enough to show the cache was warmed.
const ONLINE_REPEATS: usize = 20;

#[derive(Debug, Default)]
pub struct BatchReport {
    pub file: String,
    pub lines: usize,
    pub answered: usize,
    pub failed: usize,
    /// Reason of each failed line, by label.
    pub failures: BTreeMap<String, usize>,
    /// Records answered or failed after more than one attempt.
    pub retried: usize,
    pub answered_at_batch_price: usize,
    pub answered_on_demand: usize,
    pub batch_cost_usd: f64,
    pub on_demand_cost_usd: f64,
    /// Answered lines whose cost differs from the catalog's recomputation.
    pub cost_mismatches: Vec<String>,
    pub online_hits: usize,
    pub online_repeats: usize,
    pub seconds: f64,
    /// Events the pump handed to the functions, and deliveries a function failed (each
    /// delivered again later).
    pub events_delivered: u64,
    pub event_failures: u64,
    pub errors: Vec<String>,
}

impl BatchReport {
    /// Every line accounted for, the bad ones failed, costs as the catalog says, repeats HITs.
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
            && self.answered + self.failed == self.lines
            && self.answered > 0
            && self.failed >= BAD_LINES.len()
            && self.cost_mismatches.is_empty()
            && self.online_repeats > 0
            && self.online_hits == self.online_repeats
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("Batch pipeline ({}, {:.0} s end to end)\n", self.file, self.seconds));
        out.push_str(&format!(
            "  records           {} lines: {} answered, {} failed with a reason, {} retried in a later job\n",
            self.lines, self.answered, self.failed, self.retried
        ));
        for (label, count) in &self.failures {
            out.push_str(&format!("    failed {label:<18} {count}\n"));
        }
        out.push_str(&format!(
            "  priced            {} at batch rates, {} on demand (waited too long for a job)\n",
            self.answered_at_batch_price, self.answered_on_demand
        ));
        let saved = self.on_demand_cost_usd - self.batch_cost_usd;
        let percent = if self.on_demand_cost_usd > 0.0 { saved / self.on_demand_cost_usd * 100.0 } else { 0.0 };
        out.push_str(&format!(
            "  cost              ${:.6} paid, ${:.6} on demand: ${saved:.6} saved ({percent:.1} %)\n",
            self.batch_cost_usd, self.on_demand_cost_usd
        ));
        let check = if self.cost_mismatches.is_empty() { "matches the catalog" } else { "DIFFERS from the catalog" };
        out.push_str(&format!("  cost check        every answered line {check}\n"));
        out.push_str(&format!(
            "  cache warmed      {}/{} online repeats of batch prompts were HITs\n",
            self.online_hits, self.online_repeats
        ));
        out.push_str(&format!(
            "  events            {} delivered to the functions through SQS, {} deliveries failed and were retried\n",
            self.events_delivered, self.event_failures
        ));
        for error in &self.errors {
            out.push_str(&format!("  ERROR             {error}\n"));
        }
        out
    }
}

/// Lines no job can run; each must come back failed with its reason.
const BAD_LINES: &[&str] = &[
    "{\"modelId\": \"haiku\", \"messages\": [",
    "{\"modelId\": \"no-such-model\", \"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"hi\"}]}]}",
    "{\"modelId\": \"haiku\", \"messages\": \"not a list\"}",
];

fn request(i: usize) -> Value {
    json!({
        "messages": [{"role": "user", "content": [{"text": format!("Batch demo {i}: give one practical use of a response cache.")}]}],
        "inferenceConfig": {"maxTokens": 200, "temperature": 0}
    })
}

fn line(i: usize) -> String {
    let mut body = request(i);
    body["modelId"] = json!("haiku");
    body["recordId"] = json!(format!("demo-{i:04}"));
    body.to_string()
}

pub fn run(stack: &Stack, catalog: Result<&Catalog, &str>, tenant: &str, seed: u64) -> BatchReport {
    let started = Instant::now();
    let mut report = BatchReport { file: format!("demo-{seed}.jsonl"), ..BatchReport::default() };
    if let Err(e) = drive(stack, catalog, tenant, &mut report) {
        report.errors.push(e.to_string());
    }
    report.seconds = started.elapsed().as_secs_f64();
    if let Some(counts) = stack.pump_counts() {
        report.events_delivered = counts.delivered.load(std::sync::atomic::Ordering::SeqCst);
        report.event_failures = counts.failed.load(std::sync::atomic::Ordering::SeqCst);
    }
    report
}

fn drive(stack: &Stack, catalog: Result<&Catalog, &str>, tenant: &str, report: &mut BatchReport) -> Result<()> {
    let moto = stack.moto_url.clone().ok_or("moto is not running")?;
    let key = format!("batch/drop/{}", report.file);
    let results_key = format!("batch/results/{}.results.jsonl", report.file);
    let mut lines: Vec<String> = (0..GOOD_LINES).map(line).collect();
    // The bad lines sit among the good ones: the rest of the file must still run.
    for (n, bad) in BAD_LINES.iter().enumerate() {
        lines.insert(10 + n * 37, (*bad).to_owned());
    }
    report.lines = lines.len();
    let body = lines.join("\n") + "\n";
    println!(
        "demo: dropping s3://{}/{key} ({} lines, {} of them bad) ...",
        events::LOCAL_BATCH_BUCKET,
        lines.len(),
        BAD_LINES.len()
    );
    let put = aws::s3("PUT", &moto, &format!("{}/{key}", events::LOCAL_BATCH_BUCKET), body.as_bytes())?;
    if put.status != 200 {
        return Err(format!("PutObject {key} answered {}: {}", put.status, put.body).into());
    }

    let results = wait_for_results(&moto, &results_key)?;
    tally(&results, catalog, report);
    repeat_online(stack, tenant, &results, report)?;
    Ok(())
}

fn wait_for_results(moto: &str, results_key: &str) -> Result<Vec<Value>> {
    let started = Instant::now();
    let mut last_note = Instant::now();
    loop {
        check_interrupted()?;
        let reply = aws::s3("GET", moto, &format!("{}/{results_key}", events::LOCAL_BATCH_BUCKET), b"")?;
        if reply.status == 200 {
            println!("demo: results file written after {:.1} s", started.elapsed().as_secs_f64());
            return reply
                .body
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).map_err(|e| format!("results line is not JSON ({e}): {l}").into()))
                .collect();
        }
        if started.elapsed() > RESULTS_TIMEOUT {
            return Err(format!(
                "no results file at {results_key} after {RESULTS_TIMEOUT:?} (see target/xtask-logs/event-pump.log)"
            )
            .into());
        }
        if last_note.elapsed() > Duration::from_secs(15) {
            println!("demo: waiting for the batch results ({:.0} s) ...", started.elapsed().as_secs_f64());
            last_note = Instant::now();
        }
        sleep_interruptibly(Duration::from_secs(2))?;
    }
}

fn tally(results: &[Value], catalog: Result<&Catalog, &str>, report: &mut BatchReport) {
    if results.len() != report.lines {
        report.errors.push(format!("{} result lines for {} input lines", results.len(), report.lines));
    }
    for result in results {
        let attempts = result["attempts"].as_u64().unwrap_or(1);
        if attempts > 1 {
            report.retried += 1;
        }
        match result["status"].as_str() {
            Some("answered") => {
                report.answered += 1;
                let cost = result["costUsd"].as_f64().unwrap_or(0.0);
                let on_demand = result["onDemandCostUsd"].as_f64().unwrap_or(cost);
                let batch = result["pricing"] == "batch";
                if batch {
                    report.answered_at_batch_price += 1;
                } else {
                    report.answered_on_demand += 1;
                }
                report.batch_cost_usd += cost;
                report.on_demand_cost_usd += on_demand;
                check_cost(result, batch, cost, catalog, report);
            }
            Some("failed") => {
                report.failed += 1;
                let label = result.pointer("/error/label").and_then(Value::as_str).unwrap_or("(no label)");
                if result.pointer("/error/message").and_then(Value::as_str).is_none_or(str::is_empty) {
                    report.errors.push(format!("line {} failed without a reason", result["line"]));
                }
                *report.failures.entry(label.to_owned()).or_default() += 1;
            }
            other => report.errors.push(format!("line {} has status {other:?}", result["line"])),
        }
    }
}

fn check_cost(result: &Value, batch: bool, cost: f64, catalog: Result<&Catalog, &str>, report: &mut BatchReport) {
    let Ok(catalog) = catalog else {
        report.cost_mismatches.push("the catalog could not be loaded".to_owned());
        return;
    };
    let model = result["modelId"].as_str().unwrap_or_default();
    let usage: Option<Usage> =
        serde_json::from_value(result.pointer("/output/usage").cloned().unwrap_or(Value::Null)).ok();
    // An on-demand answer names the profile it was served by; a batch one, the base model.
    let served = result.pointer("/output/invokedModelId").and_then(Value::as_str).unwrap_or(model);
    let expected =
        usage.and_then(|u| if batch { catalog.batch_cost_usd(served, &u) } else { catalog.cost_usd(served, &u) });
    match expected {
        Some(expected) if catalog::costs_match(cost, expected) => {}
        Some(expected) => {
            report.cost_mismatches.push(format!("line {}: {cost} reported, {expected} expected", result["line"]))
        }
        None => report.cost_mismatches.push(format!("line {}: {served} or its usage is not priceable", result["line"])),
    }
}

/// Answered prompts sent again to invoke-with-cache, as the tenant the files run for.
fn repeat_online(stack: &Stack, tenant: &str, results: &[Value], report: &mut BatchReport) -> Result<()> {
    let url =
        stack.function_url(crate::stack::FUNCTION_NAME, "/v1/converse").ok_or("cargo lambda watch is not running")?;
    let agent = http::agent(Duration::from_secs(120));
    let answered = results.iter().filter(|r| r["status"] == "answered");
    for result in answered.take(ONLINE_REPEATS) {
        let Some(index) =
            result["recordId"].as_str().and_then(|id| id.strip_prefix("demo-")).and_then(|n| n.parse().ok())
        else {
            continue;
        };
        let mut body = request(index);
        body["modelId"] = json!("haiku");
        let mut call = agent.post(&url).header("content-type", "application/json").header("x-tenant-id", tenant);
        call = call.header("accept", "application/json");
        let mut response = call.send(body.to_string())?;
        let hit = response.headers().get("x-cache").and_then(|v| v.to_str().ok()) == Some("HIT");
        let _ = response.body_mut().read_to_string();
        report.online_repeats += 1;
        if hit {
            report.online_hits += 1;
        }
    }
    Ok(())
}
