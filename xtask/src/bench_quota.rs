//! `cargo xtask bench-quota`: the same open-loop overload, from several `quota-load`
//! processes (as several Lambda instances), under each way of living with Bedrock's quotas:
//! the SDK's standard retries, its adaptive retries, and the gateway's shared admission.
//!
//! The emulator runs with a scaled-down window ([`WINDOW_SECONDS`]), short latencies and
//! quotas sized from the workload so that the sustainable rate is [`SUSTAINABLE_RATE`]
//! requests per second; the processes together send three times that.
//!
//! **Goodput**, as printed: the emulator's counters are read one window after the start and
//! again when arrivals stop, so the measured interval (`seconds - window`) is a whole number of
//! windows of saturated demand, after the empty first window's burst. Served cost in it is
//! `input + cacheWrite + output × burndown` of the answered requests (Bedrock's settlement).
//! The theoretical maximum is the quota over that interval, `min(tpm, rpm × c) × interval /
//! window`, where `c` is the mean settled cost of the requests the emulator answered in the
//! whole run (so a quota bound by RPM is counted in requests). `goodput_ratio` = served cost /
//! maximum.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use gateway_core::catalog::Catalog;
use gateway_core::request::ConverseRequest;
use gateway_core::routing::dataset;
use gateway_core::splitmix::SplitMix64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Result;
use crate::process::{check_interrupted, sleep_interruptibly};
use crate::stack::{Stack, StackOptions, build_binaries, scrub_aws_env};
use crate::{dynamo, http, paths, tools};

pub const QUOTA_LOAD_BINARY: &str = "quota-load";
/// The model every request calls, through its US geographic profile.
const MODEL: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const WINDOW_SECONDS: u64 = 10;
/// Requests per second the quota sustains; the load is three times this.
const SUSTAINABLE_RATE: f64 = 10.0;
const OVERLOAD: f64 = 3.0;
/// RPM is set above what TPM allows, so that tokens (where `maxTokens` matters) bind.
const RPM_HEADROOM: f64 = 2.0;
/// The emulator's latency model at this fraction of real time: Haiku answers 500 tokens in
/// about a tenth of a second, short beside the window, as real latencies are beside a minute.
const LATENCY_SCALE: f64 = 0.05;
/// Output lengths from the data are cut to this, and the emulator's answers are this long
/// before `maxTokens` cuts them, so every answer is exactly as long as the data says.
const MAX_OUTPUT_TOKENS: u64 = 4_096;
const WORKLOAD_PROMPTS: usize = 3_000;
const SEED: u64 = 9;
/// How long admission holds a request before refusing it with a retry-after: the gateway's
/// default `ADMISSION_WAIT_MS` (10 s of a 60 s window), scaled with the window.
const ADMISSION_WAIT: Duration = Duration::from_millis(10_000 * WINDOW_SECONDS / 60);
/// How long a caller waits for its answer, retries included.
const PATIENCE: Duration = Duration::from_secs(150);

#[derive(Debug, Args)]
pub struct BenchQuotaArgs {
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds of arrivals per strategy (at least two windows of 10 s).
    #[arg(long, default_value_t = 30)]
    pub seconds: u64,
    /// Client processes, each one Lambda instance with its share of the load.
    #[arg(long, default_value_t = 3)]
    pub processes: usize,
}

/// `(name in the output, --strategy of quota-load)`, in the order they run.
const STRATEGIES: [(&str, &str); 3] =
    [("sdk_standard", "sdk-standard"), ("sdk_adaptive", "sdk-adaptive"), ("admission", "admission")];
/// Admission's headroom for estimate error: none is needed here, where every answer is exactly
/// as long as its `maxTokens`, but a lease book that takes the whole quota would hide rounding.
const HEADROOM_PERCENT: u8 = 1;

#[derive(Debug, Clone, serde::Serialize)]
struct Prompt {
    prompt: String,
    max_tokens: u64,
}

/// The part of a `quota-load` summary line the bench adds up.
#[derive(Debug, Deserialize)]
struct ProcessSummary {
    requests: u64,
    lost: u64,
    dynamodb_ops: u64,
    dynamodb_writes: u64,
    latencies_ms: Vec<u64>,
}

/// The emulator's totals the figures come from.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counters {
    requests: u64,
    succeeded: u64,
    throttled: u64,
    settled_cost: u64,
}

impl Counters {
    fn from_stats(stats: &Value, burndown: u64) -> Counters {
        let totals = &stats["totals"];
        let n = |pointer: &str| totals.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
        Counters {
            requests: n("/requests"),
            succeeded: n("/succeeded"),
            throttled: n("/throttled/rpm") + n("/throttled/tpm"),
            settled_cost: n("/input_tokens") + n("/cache_write_input_tokens") + n("/output_tokens") * burndown,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
struct Figures {
    goodput_ratio: f64,
    lost: u64,
    throttled_ratio: f64,
    p50_ms: u64,
    p99_ms: u64,
    dynamodb_ops_per_request: f64,
    /// The writes among those operations (the rest are strongly consistent reads).
    dynamodb_writes_per_request: f64,
    requests: u64,
    bedrock_calls: u64,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    tpm: u64,
    rpm: u64,
    burndown: u64,
}

/// The figures of one strategy from the emulator's counters (at the start and end of the
/// measured interval, and at the end of the run) and the processes' summaries.
fn figures(
    limits: Limits,
    interval_windows: f64,
    at_start: Counters,
    at_end: Counters,
    run: Counters,
    processes: &[ProcessSummary],
) -> Figures {
    let mean_cost = if run.succeeded == 0 { 0.0 } else { run.settled_cost as f64 / run.succeeded as f64 };
    let per_window = (limits.tpm as f64).min(limits.rpm as f64 * mean_cost);
    let maximum = per_window * interval_windows;
    let served = at_end.settled_cost.saturating_sub(at_start.settled_cost) as f64;
    let mut latencies: Vec<u64> = processes.iter().flat_map(|p| p.latencies_ms.iter().copied()).collect();
    latencies.sort_unstable();
    let requests: u64 = processes.iter().map(|p| p.requests).sum();
    let ratio = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    Figures {
        goodput_ratio: ratio(served, maximum),
        lost: processes.iter().map(|p| p.lost).sum(),
        throttled_ratio: ratio(run.throttled as f64, run.requests as f64),
        p50_ms: nearest_rank(&latencies, 0.50),
        p99_ms: nearest_rank(&latencies, 0.99),
        dynamodb_ops_per_request: ratio(processes.iter().map(|p| p.dynamodb_ops).sum::<u64>() as f64, requests as f64),
        dynamodb_writes_per_request: ratio(
            processes.iter().map(|p| p.dynamodb_writes).sum::<u64>() as f64,
            requests as f64,
        ),
        requests,
        bedrock_calls: run.requests,
    }
}

fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied().unwrap_or(0)
}

/// Prompts and output lengths from the shipped routing data: each question with the answer
/// length of one of the models that answered it, drawn with a fixed seed.
fn workload(dir: &Path) -> Result<Vec<Prompt>> {
    let examples = dataset::load_shipped(dir)?;
    let mut rng = SplitMix64::new(SEED);
    let mut prompts: Vec<Prompt> = examples
        .iter()
        .filter_map(|example| {
            let lengths: Vec<f64> = example.out_chars.values().copied().filter(|c| *c > 0.0).collect();
            let chars = lengths.get(rng.below(lengths.len() as u64) as usize)?;
            // The data's own rule of thumb: about four characters per token.
            let max_tokens = ((chars / 4.0).ceil() as u64).clamp(1, MAX_OUTPUT_TOKENS);
            Some(Prompt { prompt: example.prompt.clone(), max_tokens })
        })
        .collect();
    rng.shuffle(&mut prompts);
    prompts.truncate(WORKLOAD_PROMPTS);
    if prompts.is_empty() {
        return Err(format!("no prompt with an output length in {}", dir.display()).into());
    }
    Ok(prompts)
}

/// Input tokens as the emulator counts them, for sizing the quota.
fn input_tokens(prompt: &Prompt) -> u64 {
    let body = json!({"messages": [{"role": "user", "content": [{"text": prompt.prompt}]}]});
    ConverseRequest::from_json(body.to_string().as_bytes())
        .map(|request| gateway_core::tokens::estimate_request(&request))
        .unwrap_or(0)
}

fn emulator_config(limits: Limits) -> String {
    format!(
        "# Written by `cargo xtask bench-quota`.\n\
         latency_scale = {LATENCY_SCALE}\n\
         quota_window_seconds = {WINDOW_SECONDS}\n\
         [quotas.\"{MODEL}\"]\n\
         tpm = {}\n\
         rpm = {}\n\
         [answers]\n\
         min_tokens = {MAX_OUTPUT_TOKENS}\n\
         max_tokens = {MAX_OUTPUT_TOKENS}\n",
        limits.tpm, limits.rpm
    )
}

fn unix_ms_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

struct Run<'a> {
    dir: &'a Path,
    workload: &'a Path,
    emulator: &'a str,
    moto: &'a str,
    limits: Limits,
    seconds: u64,
    processes: usize,
}

impl Run<'_> {
    fn start_process(&self, name: &str, strategy: &str, index: usize, table: &str, start_at: u64) -> Result<Child> {
        let binary = paths::target_dir().join("debug").join(QUOTA_LOAD_BINARY);
        let rate = SUSTAINABLE_RATE * OVERLOAD / self.processes as f64;
        let mut command = Command::new(&binary);
        command
            .args(["--strategy", strategy, "--model", MODEL, "--bedrock-url", self.emulator])
            .arg("--workload")
            .arg(self.workload)
            .args(["--rate", &rate.to_string(), "--seconds", &self.seconds.to_string()])
            .args(["--seed", &(SEED * 1_000 + index as u64).to_string()])
            .args(["--instance", &format!("{name}-{index}")])
            .args(["--patience-ms", &PATIENCE.as_millis().to_string()])
            .args(["--wait-ms", &ADMISSION_WAIT.as_millis().to_string()])
            .args(["--start-at-unix-ms", &start_at.to_string()])
            .args(["--dynamodb-url", self.moto, "--budget-table", table])
            .args(["--tpm", &self.limits.tpm.to_string(), "--rpm", &self.limits.rpm.to_string()])
            .args(["--window-ms", &(WINDOW_SECONDS * 1_000).to_string()])
            .args(["--headroom-percent", &HEADROOM_PERCENT.to_string()])
            .arg("--records")
            .arg(self.dir.join(format!("{name}-{index}.jsonl")))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(fs::File::create(self.dir.join(format!("{name}-{index}.stderr")))?);
        scrub_aws_env(&mut command);
        command.spawn().map_err(|e| format!("could not start {}: {e}", binary.display()).into())
    }

    fn strategy(&self, name: &str, strategy: &str) -> Result<Figures> {
        let agent = http::agent(Duration::from_secs(10));
        let reset = http::post(&agent, &format!("{}/_emulator/reset", self.emulator), &[], "")?;
        if reset.status != 200 {
            return Err(format!("emulator reset failed ({}): {}", reset.status, reset.body).into());
        }
        let table = format!("bench-quota-budget-{}", name.replace('_', "-"));
        dynamo::create_table(
            self.moto,
            &json!({
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            }),
            None,
        )?;
        // Every process loads its SDK clients first; arrivals begin together once all have.
        let start_at = unix_ms_now() + 2_000;
        let mut children = Vec::new();
        for index in 0..self.processes {
            children.push(self.start_process(name, strategy, index, &table, start_at)?);
        }
        let stats = |agent: &ureq::Agent| -> Result<Counters> {
            let reply = http::get(agent, &format!("{}/_emulator/stats", self.emulator))?;
            Ok(Counters::from_stats(&serde_json::from_str(&reply.body)?, self.limits.burndown))
        };
        let begin = Duration::from_millis(start_at.saturating_sub(unix_ms_now()));
        let outcome = (|| -> Result<(Counters, Counters)> {
            sleep_interruptibly(begin + Duration::from_secs(WINDOW_SECONDS))?;
            let at_start = stats(&agent)?;
            sleep_interruptibly(Duration::from_secs(self.seconds - WINDOW_SECONDS))?;
            Ok((at_start, stats(&agent)?))
        })();
        let summaries = collect(&mut children);
        let (at_start, at_end) = outcome?;
        let summaries = summaries?;
        let run = stats(&agent)?;
        let interval_windows = (self.seconds - WINDOW_SECONDS) as f64 / WINDOW_SECONDS as f64;
        Ok(figures(self.limits, interval_windows, at_start, at_end, run, &summaries))
    }
}

/// Waits for every process and reads its summary line; on an interrupt or a failed process,
/// kills the rest.
fn collect(children: &mut [Child]) -> Result<Vec<ProcessSummary>> {
    let deadline = Instant::now() + PATIENCE + Duration::from_secs(60);
    let waited = (|| -> Result<()> {
        for child in children.iter_mut() {
            loop {
                check_interrupted()?;
                if let Some(status) = child.try_wait()? {
                    if !status.success() {
                        return Err(format!("quota-load exited with {status}").into());
                    }
                    break;
                }
                if Instant::now() > deadline {
                    return Err("quota-load did not finish within its patience".into());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    })();
    if let Err(error) = waited {
        for child in children.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        return Err(error);
    }
    let mut summaries = Vec::new();
    for child in children.iter_mut() {
        let mut out = String::new();
        if let Some(stdout) = child.stdout.as_mut() {
            stdout.read_to_string(&mut out)?;
        }
        let line = out.lines().last().ok_or("quota-load printed no summary")?;
        summaries.push(serde_json::from_str(line)?);
    }
    Ok(summaries)
}

pub fn run(args: &BenchQuotaArgs) -> Result<bool> {
    if args.seconds < 2 * WINDOW_SECONDS {
        return Err(format!("--seconds {} is below two windows ({} s)", args.seconds, 2 * WINDOW_SECONDS).into());
    }
    if args.processes == 0 {
        return Err("--processes must be at least 1".into());
    }
    let dir = paths::target_dir().join("bench-quota");
    fs::create_dir_all(&dir)?;
    let prompts = workload(&paths::repo_root().join("data").join("routing"))?;
    let catalog = Catalog::embedded()?;
    let (spec, _) = catalog.resolve_served(MODEL)?;
    let burndown = u64::from(spec.output_burndown);
    let mean_cost =
        prompts.iter().map(|p| input_tokens(p) + p.max_tokens * burndown).sum::<u64>() as f64 / prompts.len() as f64;
    let per_window = SUSTAINABLE_RATE * WINDOW_SECONDS as f64;
    let limits = Limits {
        tpm: (per_window * mean_cost).round() as u64,
        rpm: (per_window * RPM_HEADROOM).round() as u64,
        burndown,
    };
    let workload_path = dir.join("workload.json");
    fs::write(&workload_path, serde_json::to_string(&prompts)?)?;
    let config_path = dir.join("emulator.toml");
    fs::write(&config_path, emulator_config(limits))?;

    tools::ensure(&[tools::MOTO])?;
    build_binaries()?;
    let mut stack =
        Stack::new(StackOptions { emulator_config: Some(config_path), lambda_concurrency: 1, interactive: false });
    let moto = stack.start_moto()?;
    let emulator = stack.start_emulator()?;
    let run = Run {
        dir: &dir,
        workload: &workload_path,
        emulator: &emulator,
        moto: &moto,
        limits,
        seconds: args.seconds,
        processes: args.processes,
    };
    let mut results = serde_json::Map::new();
    for (name, strategy) in STRATEGIES {
        if !args.json {
            println!(
                "bench-quota: {name}: {} processes, {} s at {OVERLOAD}x the sustainable rate",
                args.processes, args.seconds
            );
        }
        let figures = run.strategy(name, strategy)?;
        results.insert(name.to_owned(), serde_json::to_value(&figures)?);
    }
    stack.stop();
    if args.json {
        println!("{}", json!({ "strategies": results }));
    } else {
        print_table(limits, mean_cost, args, &results);
    }
    Ok(true)
}

fn print_table(limits: Limits, mean_cost: f64, args: &BenchQuotaArgs, results: &serde_json::Map<String, Value>) {
    println!();
    println!(
        "Model {MODEL}: tpm {} and rpm {} per {WINDOW_SECONDS} s window (mean settled cost {mean_cost:.0} tokens, \
         sustainable {SUSTAINABLE_RATE} req/s); load {:.1} req/s from {} processes for {} s.",
        limits.tpm,
        limits.rpm,
        SUSTAINABLE_RATE * OVERLOAD,
        args.processes,
        args.seconds
    );
    println!("goodput = settled cost served in [window, end of arrivals] / (min(tpm, rpm x mean cost) x windows)");
    println!(
        "{:<14} {:>8} {:>6} {:>10} {:>8} {:>8} {:>11} {:>13} {:>9} {:>7}",
        "strategy",
        "goodput",
        "lost",
        "throttled",
        "p50 ms",
        "p99 ms",
        "ddb ops/req",
        "ddb writes/req",
        "requests",
        "calls"
    );
    for (name, figures) in results {
        let f = |key: &str| figures.get(key).and_then(Value::as_f64).unwrap_or(0.0);
        println!(
            "{name:<14} {:>7.1}% {:>6} {:>9.1}% {:>8} {:>8} {:>11.3} {:>13.3} {:>9} {:>7}",
            f("goodput_ratio") * 100.0,
            f("lost"),
            f("throttled_ratio") * 100.0,
            f("p50_ms"),
            f("p99_ms"),
            f("dynamodb_ops_per_request"),
            f("dynamodb_writes_per_request"),
            f("requests"),
            f("bedrock_calls"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(requests: u64, succeeded: u64, throttled: u64, settled_cost: u64) -> Counters {
        Counters { requests, succeeded, throttled, settled_cost }
    }

    #[test]
    fn goodput_is_served_cost_over_the_quota_of_the_measured_windows() {
        let limits = Limits { tpm: 10_000, rpm: 100, burndown: 5 };
        let summary = ProcessSummary {
            requests: 40,
            lost: 2,
            dynamodb_ops: 8,
            dynamodb_writes: 4,
            latencies_ms: vec![10, 20, 30, 40],
        };
        // 20 answered at a mean cost of 1 000: tokens bind (10 000 < 100 x 1 000); two windows
        // measured, 15 000 served in them.
        let f = figures(
            limits,
            2.0,
            counters(10, 5, 0, 5_000),
            counters(30, 20, 5, 20_000),
            counters(50, 20, 10, 20_000),
            &[summary],
        );
        assert_eq!(f.goodput_ratio, 15_000.0 / 20_000.0);
        assert_eq!((f.lost, f.p50_ms, f.p99_ms), (2, 20, 40));
        assert_eq!(f.throttled_ratio, 0.2);
        assert_eq!(f.dynamodb_ops_per_request, 0.2);
        assert_eq!(f.dynamodb_writes_per_request, 0.1);
    }

    #[test]
    fn a_request_quota_that_binds_counts_in_requests() {
        let limits = Limits { tpm: 1_000_000, rpm: 10, burndown: 5 };
        let f = figures(limits, 1.0, Counters::default(), counters(10, 10, 0, 5_000), counters(10, 10, 0, 5_000), &[]);
        // 10 requests of 500 tokens per window is the most RPM allows.
        assert_eq!(f.goodput_ratio, 1.0);
        assert_eq!((f.p50_ms, f.dynamodb_ops_per_request), (0, 0.0));
    }

    #[test]
    fn the_emulator_config_sizes_answers_to_max_tokens() {
        let text = emulator_config(Limits { tpm: 1_234, rpm: 5, burndown: 5 });
        let value: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(value["quotas"][MODEL]["tpm"].as_integer(), Some(1_234));
        assert_eq!(value["answers"]["min_tokens"].as_integer(), Some(MAX_OUTPUT_TOKENS as i64));
    }
}
