//! `cargo xtask demo`: the local stack under a realistic, repeatable workload.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use crate::catalog::Catalog;
use crate::demo_metrics::{self, Expected};
use crate::demo_stream;
use crate::process::{check_interrupted, interrupted, sleep_interruptibly};
use crate::prompts::DRY_RUNS;
use crate::report::{self, DryRun, Outcome, RoutingInputs, RunInfo};
use crate::stack::{self, FUNCTION_NAME, Stack, StackOptions};
use crate::workload::{self, PlannedRequest};
use crate::{Result, dashboard, demo_batch, http, paths, tools};

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
    let strongest_model = strongest_tier_model(&catalog_path);
    if let Err(reason) = &strongest_model {
        eprintln!("demo: warning: routed costs will not be compared with the strongest tier: {reason}");
    }
    let concurrency = args.concurrency.max(1);
    let mut stack = Stack::start(StackOptions {
        emulator_config: args.config.as_deref().map(stack::absolute),
        lambda_concurrency: concurrency,
        interactive: false,
    })?;
    stack.print_endpoints();
    let url = stack.function_url(FUNCTION_NAME, "/v1/converse").ok_or("cargo lambda watch is not running")?;

    let since = SystemTime::now();
    warm_up(&mut stack, &url)?;
    let plan = workload::plan(args.requests, args.seed);
    let routed = plan.iter().filter(|r| r.is_routed()).count();
    println!("demo: sending {} requests ({routed} with modelId auto), {concurrency} at a time ...", plan.len());
    let started = Instant::now();
    let outcomes = drive(&url, &plan, concurrency)?;
    let duration_s = started.elapsed().as_secs_f64();
    println!("demo: streaming the same prompts through invoke-stream in its three APIs ...");
    let streaming = demo_stream::run(&stack);
    let emulator_stats = stack.emulator_url.as_deref().and_then(fetch_stats);
    let dry_runs = match stack.router_url() {
        Some(router_url) => route_dry_runs(&router_url)?,
        None => vec![DryRun {
            prompt: "(all)".into(),
            error: Some("the router function has no URL: cargo lambda watch is not running".into()),
            ..DryRun::default()
        }],
    };
    // The planner runs every few seconds instead of every minute: the demo cannot wait.
    stack.start_pump(Some(Duration::from_secs(3)))?;
    let batch = demo_batch::run(&stack, catalog.as_ref().map_err(String::as_str), stack::LOCAL_FILE_TENANT, args.seed);
    // Beside the workload: the warm-up, the batch section's online repeats, and each of its
    // lines (answered in a job or on demand, or failed with a reason) once.
    let expected = Expected::from_outcomes(
        &outcomes,
        1 + (batch.online_repeats + batch.lines) as u64 + streaming.requests(),
        batch.online_hits as u64 + streaming.hits(),
        batch.on_demand_cost_usd - batch.batch_cost_usd,
    );
    let metrics = demo_metrics::check(&stack, since, &expected);
    // Written while the emulator still holds the figures; the page needs nothing running.
    let window = since.elapsed().unwrap_or_default() + Duration::from_secs(5 * 60);
    let dashboard = stack
        .cloudwatch_url
        .as_deref()
        .ok_or_else(|| "the emulator's CloudWatch is not running".into())
        .and_then(|url| dashboard::write(url, window, &dashboard::default_output()));
    stack.stop();

    let run = RunInfo { requests: outcomes.len(), concurrency, seed: args.seed, duration_s };
    let routing =
        RoutingInputs { strongest_model: strongest_model.as_deref().map_err(String::as_str), dry_runs: &dry_runs };
    let report = report::build(&outcomes, &run, catalog.as_ref().map_err(String::as_str), routing, emulator_stats);
    println!();
    print!("{}", report::render_table(&report));
    println!();
    print!("{}", streaming.render());
    println!();
    print!("{}", batch.render());
    println!();
    print!("{}", metrics.render());
    match &dashboard {
        Ok(page) => println!(
            "Dashboard: {} ({} of {} charts with data; `cargo xtask dashboard --serve PORT` while `cargo xtask stack` runs)",
            page.file_url, page.charts_with_data, page.charts
        ),
        Err(e) => println!("Dashboard: not written: {e}"),
    }
    let path = paths::target_dir().join("demo-report.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("Report written to {}", path.display());
    let passed = report::passed(&report) && streaming.passed() && batch.passed() && metrics.passed();
    if passed {
        println!("demo: PASSED");
    } else {
        println!(
            "demo: FAILED (needs zero errors, at least one cache hit, at least one routed request, \
             successful /v1/route dry runs, every streamed request answered with a HIT on its repeat, a batch with every record accounted for, costs as the \
             catalog says and its prompts HITs online, and CloudWatch's figures agreeing with the demo's)"
        );
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

pub fn drive(url: &str, plan: &[PlannedRequest], concurrency: usize) -> Result<Vec<Outcome>> {
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
        route_knob: request.route_knob_label(),
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
        let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let (cache, tier) = (header("x-cache"), header("x-route-tier"));
        let text = response.body_mut().read_to_string()?;
        Ok((status, cache, tier, text))
    });
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    match reply {
        Ok((status, cache, tier, text)) => {
            Outcome { route_tier_header: tier, ..outcome }.classify(status, cache.as_deref(), &text, latency_ms)
        }
        Err(e) => Outcome { latency_ms, error: Some(format!("transport error: {e}")), ..outcome },
    }
}

/// The strongest tier's Bedrock ID, `[tiers] opus` of the catalog file: the price every routed
/// answer is compared with. The local stack sets no `TIER_OPUS_MODEL_ID`, so the catalog's
/// default is what the functions use.
fn strongest_tier_model(catalog_path: &Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(catalog_path).map_err(|e| format!("could not read {}: {e}", catalog_path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("could not parse {}: {e}", catalog_path.display()))?;
    table
        .get("tiers")
        .and_then(|tiers| tiers.get("opus"))
        .and_then(toml::Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("{} has no `opus` in [tiers]", catalog_path.display()))
}

/// Asks the router function for its decision on a few prompts, from easy to hard, without
/// calling a model. The first call may start the function, so transport errors are retried
/// for a while; every failure is recorded in its dry run and fails the demo.
fn route_dry_runs(router_url: &str) -> Result<Vec<DryRun>> {
    println!("demo: {} dry runs of POST /v1/route ...", DRY_RUNS.len());
    let agent = http::agent(WARM_UP_TIMEOUT);
    let mut runs = Vec::with_capacity(DRY_RUNS.len());
    for prompt in DRY_RUNS {
        let body = json!({
            "modelId": workload::AUTO_MODEL,
            "system": [{"text": prompt.kind.system_prompt()}],
            "messages": [{"role": "user", "content": [{"text": prompt.text}]}],
            "inferenceConfig": {"maxTokens": 400, "temperature": 0},
        })
        .to_string();
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(prompt.header);
        let run = DryRun {
            prompt: prompt.text.to_string(),
            knob: prompt.header.map(|(name, value)| format!("{name}: {value}")),
            ..DryRun::default()
        };
        let started = Instant::now();
        let mut attempts = 0;
        let reply = loop {
            check_interrupted()?;
            attempts += 1;
            match post_with_header(&agent, router_url, &headers, &body, "x-route-tier") {
                Err(e) if attempts < 10 => {
                    eprintln!("demo: /v1/route not answered yet ({e}); retrying");
                    sleep_interruptibly(Duration::from_secs(2))?;
                }
                other => break other,
            }
        };
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        runs.push(match reply {
            Ok((status, tier, text)) => run.classify(status, tier.as_deref(), &text, latency_ms),
            Err(e) => DryRun { latency_ms, error: Some(format!("transport error: {e}")), ..run },
        });
    }
    Ok(runs)
}

/// A POST that also returns one response header.
fn post_with_header(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
    wanted: &str,
) -> Result<(u16, Option<String>, String)> {
    let mut call = agent.post(url);
    for (name, value) in headers {
        call = call.header(*name, *value);
    }
    let mut response = call.send(body)?;
    let status = response.status().as_u16();
    let header = response.headers().get(wanted).and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = response.body_mut().read_to_string()?;
    Ok((status, header, text))
}

fn fetch_stats(emulator_url: &str) -> Option<Value> {
    let agent = http::agent(Duration::from_secs(5));
    let reply = http::get(&agent, &format!("{emulator_url}/_emulator/stats")).ok()?;
    serde_json::from_str(&reply.body).ok()
}
