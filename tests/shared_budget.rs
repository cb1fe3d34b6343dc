//! The shared admission budget across OS processes, as across Lambda instances: several
//! `quota-load` processes with the `admission` strategy against one emulator (scaled window,
//! low quota) and one moto of the test's own. They prove that the emulator never throttles an
//! admitted request beyond the stated tolerance, and that neither a killed process nor a
//! stopped DynamoDB loses a request.
//!
//! The tests need the `admission` strategy of `quota-load`, which needs the core's admission
//! module and its DynamoDB budget store (branch `admission`); until they are merged the tests
//! are ignored. `cargo xtask test` builds `quota-load` with the servers (`QUOTA_LOAD` overrides).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bedrock_emulator::testing::MotoServer;
use bedrock_emulator::{AnswerLength, QuotaOverride, RunningEmulator};
use integration_tests::{cache_table, emulator, emulator_stats, sdk_defaults};
use serde_json::Value;

const PROFILE: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const WINDOW_MS: u64 = 3_000;
/// Every prompt settles at about 25 input + 5 × 40 output tokens.
const TPM: u64 = 2_400;
const RPM: u64 = 40;
/// The share of Bedrock calls the emulator may throttle although admission let them go: the
/// issue's bound of 1 %. Every answer here is exactly as long as its `maxTokens` and admission
/// reserves the burndown of all of it, so none is expected.
const THROTTLE_TOLERANCE: f64 = 0.01;

/// Whether the emulator's throttles are within the tolerance of its calls.
fn throttles_within_tolerance(stats: &Value) -> bool {
    throttled(stats) as f64 <= THROTTLE_TOLERANCE * stats["totals"]["requests"].as_u64().unwrap() as f64
}

fn quota_load() -> PathBuf {
    std::env::var_os("QUOTA_LOAD").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        target.join("debug/quota-load")
    })
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A workload of short prompts, each answered with exactly 40 tokens.
fn workload(dir: &Path) -> PathBuf {
    let prompts: Vec<Value> = (0..50)
        .map(|i| serde_json::json!({"prompt": format!("Question {i}: how do quotas, leases and windows fit together?"), "max_tokens": 40}))
        .collect();
    let path = dir.join("workload.json");
    std::fs::write(&path, serde_json::to_string(&prompts).unwrap()).unwrap();
    path
}

struct Fleet {
    dir: PathBuf,
    children: Vec<Child>,
}

impl Fleet {
    /// `processes` instances sending together `rate` requests per second for `seconds`.
    fn start(
        name: &str,
        emulator: &RunningEmulator,
        moto: &str,
        table: &str,
        processes: usize,
        rate: f64,
        seconds: f64,
    ) -> Fleet {
        let dir = std::env::temp_dir().join(format!("shared-budget-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let workload = workload(&dir);
        let start_at = unix_ms() + 1_500;
        let children = (0..processes)
            .map(|i| {
                Command::new(quota_load())
                    .args(["--strategy", "admission", "--model", PROFILE, "--bedrock-url", &emulator.url()])
                    .arg("--workload")
                    .arg(&workload)
                    .args(["--rate", &(rate / processes as f64).to_string(), "--seconds", &seconds.to_string()])
                    .args(["--seed", &i.to_string(), "--instance", &format!("{name}-{i}")])
                    .args(["--start-at-unix-ms", &start_at.to_string(), "--patience-ms", "60000"])
                    .args(["--dynamodb-url", moto, "--budget-table", table])
                    .args(["--tpm", &TPM.to_string(), "--rpm", &RPM.to_string(), "--window-ms", &WINDOW_MS.to_string()])
                    .arg("--records")
                    .arg(dir.join(format!("{i}.jsonl")))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap_or_else(|e| {
                        panic!("start {}: {e} (build it: cargo build --bin quota-load)", quota_load().display())
                    })
            })
            .collect();
        Fleet { dir, children }
    }

    /// Each process's summary, `None` for one that did not exit cleanly.
    fn finish(mut self) -> Vec<Option<Value>> {
        let mut summaries = Vec::new();
        for child in &mut self.children {
            let output = std::mem::replace(child, Command::new("true").spawn().unwrap());
            let output = output.wait_with_output().unwrap();
            summaries.push(output.status.success().then(|| {
                serde_json::from_str(String::from_utf8_lossy(&output.stdout).lines().last().unwrap()).unwrap()
            }));
        }
        summaries
    }

    fn records(&self, i: usize) -> Vec<Value> {
        let text = std::fs::read_to_string(self.dir.join(format!("{i}.jsonl"))).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

async fn scaled_emulator() -> RunningEmulator {
    emulator(|config| {
        config.quota_window_seconds = WINDOW_MS as f64 / 1_000.0;
        config.quotas.insert(PROFILE.to_owned(), QuotaOverride { tpm: Some(TPM), rpm: Some(RPM) });
        config.answers = AnswerLength { min_tokens: 400, max_tokens: 400 };
    })
    .await
}

async fn budget_table(moto: &MotoServer) -> String {
    let config = sdk_defaults().endpoint_url(moto.url()).load().await;
    cache_table(&aws_sdk_dynamodb::Client::new(&config)).await
}

fn throttled(stats: &Value) -> u64 {
    stats["totals"]["throttled"]["rpm"].as_u64().unwrap() + stats["totals"]["throttled"]["tpm"].as_u64().unwrap()
}

/// Sustainable: TPM / (25 + 5 × 40) ≈ 10 requests per window of 3 s; the fleet sends 3x that.
const OVERLOAD_RATE: f64 = 10.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_instances_share_one_budget_and_every_request_is_answered() {
    let moto = MotoServer::start().unwrap();
    let table = budget_table(&moto).await;
    let emulator = scaled_emulator().await;
    let summaries = Fleet::start("share", &emulator, moto.url(), &table, 3, OVERLOAD_RATE, 6.0).finish();
    let stats = emulator_stats(&emulator).await;
    let mut requests = 0;
    for summary in summaries {
        let summary = summary.expect("every process exits cleanly");
        assert_eq!(summary["lost"], 0, "{summary}");
        requests += summary["requests"].as_u64().unwrap();
    }
    assert!(requests > 40, "the fleet sent {requests} requests");
    let throttled = throttled(&stats);
    println!("{requests} requests, {throttled} throttled by the emulator (tolerance {THROTTLE_TOLERANCE})");
    assert!(throttles_within_tolerance(&stats), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_loses_nothing_of_the_others_and_its_lease_returns() {
    let moto = MotoServer::start().unwrap();
    let table = budget_table(&moto).await;
    let emulator = scaled_emulator().await;
    let mut fleet = Fleet::start("kill", &emulator, moto.url(), &table, 3, OVERLOAD_RATE, 12.0);
    tokio::time::sleep(Duration::from_millis(1_500 + 3_000)).await;
    let killed_at = unix_ms();
    fleet.children[0].kill().unwrap();
    let dir = fleet.dir.clone();
    let reader = Fleet { dir, children: Vec::new() };
    let summaries = fleet.finish();
    assert!(summaries[0].is_none(), "the killed process has no summary");
    for summary in summaries.iter().skip(1) {
        let summary = summary.as_ref().expect("survivors exit cleanly");
        assert_eq!(summary["lost"], 0, "{summary}");
    }
    // The survivors want twice the quota; once the dead lease has expired they must be
    // served the whole of it again, so the tokens they were admitted in the last window
    // before arrivals end reach the quota (less the headroom and one request of slack).
    let lease_term_ms = 2 * WINDOW_MS + 2_000;
    let from = killed_at + lease_term_ms;
    let to = from + WINDOW_MS;
    let served: u64 = (1..3)
        .flat_map(|i| reader.records(i))
        .filter(|r| r["admitted_unix_ms"].as_u64().is_some_and(|t| (from..to).contains(&t)))
        .map(|r| r["settled_tokens"].as_u64().unwrap())
        .sum();
    println!("survivors admitted {served} tokens in the window after the lease term ({TPM} quota)");
    assert!(served as f64 >= TPM as f64 * 0.8, "survivors got {served} of {TPM}");
    let stats = emulator_stats(&emulator).await;
    assert!(throttles_within_tolerance(&stats), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_dynamodb_degrades_admission_and_loses_nothing() {
    let moto = MotoServer::start().unwrap();
    let table = budget_table(&moto).await;
    let emulator = scaled_emulator().await;
    let fleet = Fleet::start("stop", &emulator, moto.url(), &table, 2, OVERLOAD_RATE, 10.0);
    tokio::time::sleep(Duration::from_millis(1_500 + 2_000)).await;
    let stopped_at = unix_ms();
    moto.signal("-STOP").unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    moto.signal("-CONT").unwrap();
    let resumed_at = unix_ms();
    let dir = fleet.dir.clone();
    let summaries = fleet.finish();
    let reader = Fleet { dir, children: Vec::new() };
    for summary in &summaries {
        let summary = summary.as_ref().expect("every process exits cleanly");
        assert_eq!(summary["lost"], 0, "{summary}");
    }
    let during: Vec<Value> = (0..2)
        .flat_map(|i| reader.records(i))
        .filter(|r| r["admitted_unix_ms"].as_u64().is_some_and(|t| (stopped_at..resumed_at).contains(&t)))
        .collect();
    assert!(!during.is_empty(), "requests were admitted while DynamoDB was stopped");
    for record in &during {
        let mode = record["mode"].as_str().unwrap();
        assert!(mode == "degraded" || mode == "shared", "{record}");
    }
    println!(
        "{} admitted during the outage, {} of them degraded",
        during.len(),
        during.iter().filter(|r| r["mode"] == "degraded").count()
    );
}
