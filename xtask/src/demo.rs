//! `cargo xtask demo`: the local stack under a realistic, repeatable workload.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::process::{check_interrupted, interrupted, sleep_interruptibly};
use crate::report::{self, Outcome, RunInfo};
use crate::stack::{self, FUNCTION_NAME, Stack, StackOptions};
use crate::workload::{self, PlannedRequest};
use crate::{Result, http, paths, tools};

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of requests in the workload.
    #[arg(long, default_value_t = 400)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seed of the workload generator; the same seed sends the same requests.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Bedrock emulator configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// The first invocation may compile the function inside `cargo lambda watch`; on a cold
/// two-core CI machine that takes minutes.
const WARM_UP_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub fn run(args: &DemoArgs) -> Result<bool> {
    tools::ensure(&[tools::MOTO, tools::CARGO_LAMBDA])?;
    let catalog_path = paths::repo_root().join("shared").join("catalog.toml");
    let catalog = Catalog::load(&catalog_path).map_err(|e| e.to_string());
    if let Err(reason) = &catalog {
        eprintln!("demo: warning: the cost check will fail: {reason}");
    }
    let concurrency = args.concurrency.max(1);
    let mut stack = Stack::start(StackOptions {
        emulator_config: args.config.as_deref().map(stack::absolute),
        lambda_concurrency: concurrency,
        interactive: false,
    })?;
    stack.print_endpoints();
    let url = stack.function_url(FUNCTION_NAME, "/v1/converse").ok_or("cargo lambda watch is not running")?;

    warm_up(&mut stack, &url)?;
    let plan = workload::plan(args.requests, args.seed);
    println!("demo: sending {} requests, {concurrency} at a time ...", plan.len());
    let started = Instant::now();
    let outcomes = drive(&url, &plan, concurrency)?;
    let duration_s = started.elapsed().as_secs_f64();
    let emulator_stats = stack.emulator_url.as_deref().and_then(fetch_stats);
    stack.stop();

    let run = RunInfo { requests: outcomes.len(), concurrency, seed: args.seed, duration_s };
    let report = report::build(&outcomes, &run, catalog.as_ref().map_err(String::as_str), emulator_stats);
    println!();
    print!("{}", report::render_table(&report));
    let path = paths::target_dir().join("demo-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("Report written to {}", path.display());
    let passed = report::passed(&report);
    if passed {
        println!("demo: PASSED");
    } else {
        println!("demo: FAILED (needs zero errors and at least one cache hit)");
    }
    Ok(passed)
}

/// One request outside the workload, with caching off so it cannot skew the numbers,
/// that waits for the function to be compiled and started.
fn warm_up(stack: &mut Stack, url: &str) -> Result<()> {
    println!("demo: warm-up request (the first one may compile the function) ...");
    let agent = http::agent(WARM_UP_TIMEOUT);
    let body = json!({
        "modelId": "haiku",
        "messages": [{"role": "user", "content": [{"text": "Reply with the word ready."}]}],
        "inferenceConfig": {"maxTokens": 16, "temperature": 0},
    })
    .to_string();
    let started = Instant::now();
    let headers = [("content-type", "application/json"), ("x-cache-mode", "off"), ("x-tenant-id", "warm-up")];
    loop {
        check_interrupted()?;
        stack.check_running()?;
        match http::post(&agent, url, &headers, &body) {
            Ok(reply) if reply.status == 200 => break,
            Ok(reply) => {
                let hint = stack
                    .log_of("cargo-lambda-watch")
                    .map(|p| format!(" (function log: {})", p.display()))
                    .unwrap_or_default();
                return Err(format!("warm-up answered {}: {}{hint}", reply.status, reply.body).into());
            }
            // The watcher can drop connections while it restarts a function; retry.
            Err(e) if started.elapsed() < WARM_UP_TIMEOUT => {
                eprintln!("demo: warm-up not answered yet ({e}); retrying");
                sleep_interruptibly(Duration::from_secs(2))?;
            }
            Err(e) => return Err(format!("warm-up failed: {e}").into()),
        }
    }
    println!("demo: function ready after {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn drive(url: &str, plan: &[PlannedRequest], concurrency: usize) -> Result<Vec<Outcome>> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; plan.len()]);
    thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                let agent = http::agent(REQUEST_TIMEOUT);
                while !interrupted() {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(request) = plan.get(index) else {
                        break;
                    };
                    let outcome = send(&agent, url, request);
                    if let Ok(mut slots) = results.lock()
                        && let Some(slot) = slots.get_mut(index)
                    {
                        *slot = Some(outcome);
                    }
                    let finished = done.fetch_add(1, Ordering::SeqCst) + 1;
                    if finished.is_multiple_of(50) || finished == plan.len() {
                        println!("demo: {finished}/{} done", plan.len());
                    }
                }
            });
        }
    });
    check_interrupted()?;
    let slots = results.into_inner().map_err(|_| "a worker thread panicked")?;
    Ok(slots.into_iter().flatten().collect())
}

fn send(agent: &ureq::Agent, url: &str, request: &PlannedRequest) -> Outcome {
    let outcome = Outcome {
        requested_model: request.model.to_string(),
        tenant: request.tenant.to_string(),
        cache_off: request.cache_off,
        ..Outcome::default()
    };
    let body = workload::request_body(request).to_string();
    let mut call = agent.post(url);
    for (name, value) in workload::request_headers(request) {
        call = call.header(name, value);
    }
    let started = Instant::now();
    let response = call.send(&body);
    let reply = response.and_then(|mut response| {
        let status = response.status().as_u16();
        let header = response.headers().get("x-cache").and_then(|v| v.to_str().ok()).map(str::to_string);
        let text = response.body_mut().read_to_string()?;
        Ok((status, header, text))
    });
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match reply {
        Ok((status, header, text)) => outcome.classify(status, header.as_deref(), &text, latency_ms),
        Err(e) => Outcome { latency_ms, error: Some(format!("transport error: {e}")), ..outcome },
    }
}

fn fetch_stats(emulator_url: &str) -> Option<Value> {
    let agent = http::agent(Duration::from_secs(5));
    let reply = http::get(&agent, &format!("{emulator_url}/_emulator/stats")).ok()?;
    serde_json::from_str(&reply.body).ok()
}
