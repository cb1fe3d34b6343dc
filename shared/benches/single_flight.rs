//! What single-flight saves and what it costs the requests that wait:
//! `cargo bench -p gateway-core --no-default-features --bench single_flight` (without
//! `--no-default-features` it also works, after compiling the AWS SDK in release).
//!
//! N identical requests arrive at once, spread round-robin over 1, 2 or 4 instances (each a
//! `Gateway` with its own in-process flights) that share one in-memory table and one model.
//! The model answers in 300 ms, every table operation takes 5 ms. For each setting it prints
//! the model calls per round and the latency of the requests that waited (followers, in-process
//! or on another instance's claim) against that of the requests that called the model.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::cache::{CacheOptions, Tenant};
use gateway_core::catalog::Catalog;
use gateway_core::deadline::Deadline;
use gateway_core::request::ConverseRequest;
use gateway_core::routing::RouteOverrides;
use gateway_core::service::{ConverseCall, Gateway, GatewaySettings};
use gateway_core::testing::{Delayed, FakeInvoker, InMemoryCacheStore, TestPorts};

const MODEL_LATENCY: Duration = Duration::from_millis(300);
const STORE_LATENCY: Duration = Duration::from_millis(5);
const CLAIM_WAIT: Duration = Duration::from_secs(2);
const ROUNDS: usize = 10;

type BenchGateway = Gateway<TestPorts<Delayed<Arc<InMemoryCacheStore>>, Delayed<Arc<FakeInvoker>>>>;

#[derive(Clone, Copy)]
struct Setting {
    name: &'static str,
    instances: usize,
    single_flight: bool,
    claims: bool,
}

const SETTINGS: [Setting; 6] = [
    Setting { name: "no single-flight", instances: 1, single_flight: false, claims: false },
    Setting { name: "in-process", instances: 1, single_flight: true, claims: false },
    Setting { name: "in-process", instances: 2, single_flight: true, claims: false },
    Setting { name: "in-process + claim", instances: 2, single_flight: true, claims: true },
    Setting { name: "in-process", instances: 4, single_flight: true, claims: false },
    Setting { name: "in-process + claim", instances: 4, single_flight: true, claims: true },
];

struct Round {
    calls: usize,
    paid_ms: Vec<f64>,
    waited_ms: Vec<f64>,
}

fn call(prompt: &str) -> Option<ConverseCall> {
    let body = serde_json::json!({
        "modelId": "haiku",
        "messages": [{"role": "user", "content": [{"text": prompt}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 200}
    });
    Some(ConverseCall {
        request: ConverseRequest::from_json(body.to_string().as_bytes()).ok()?,
        tenant: Tenant::new("bench"),
        cache: CacheOptions::default(),
        routing: RouteOverrides::default(),
        deadline: Deadline::after(Duration::from_secs(30)),
    })
}

async fn round(catalog: &Arc<Catalog>, setting: Setting, requests: usize, prompt: &str) -> Option<Round> {
    let store = Arc::new(InMemoryCacheStore::default());
    let model = Arc::new(FakeInvoker::default());
    let settings = GatewaySettings {
        single_flight: setting.single_flight,
        claim_wait: setting.claims.then_some(CLAIM_WAIT),
        ..GatewaySettings::from_catalog(catalog)
    };
    let instances: Vec<Arc<BenchGateway>> = (0..setting.instances)
        .map(|_| {
            Arc::new(Gateway::new(
                catalog.clone(),
                settings.clone(),
                TestPorts::new(Delayed::new(store.clone(), STORE_LATENCY), Delayed::new(model.clone(), MODEL_LATENCY)),
            ))
        })
        .collect();
    let mut tasks = Vec::with_capacity(requests);
    for i in 0..requests {
        let gateway = instances[i % instances.len()].clone();
        let call = call(prompt)?;
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let answer = gateway.converse(call).await;
            (answer, started.elapsed())
        }));
    }
    let mut result = Round { calls: 0, paid_ms: Vec::new(), waited_ms: Vec::new() };
    for task in tasks {
        let (answer, latency) = task.await.ok()?;
        let ms = latency.as_secs_f64() * 1e3;
        if answer.ok()?.cache.coalesced { result.waited_ms.push(ms) } else { result.paid_ms.push(ms) }
    }
    result.calls = model.calls();
    Some(result)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn main() {
    let Ok(catalog) = Catalog::embedded() else {
        eprintln!("the embedded catalog does not load");
        std::process::exit(1);
    };
    let catalog = Arc::new(catalog);
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread().enable_all().build() else {
        eprintln!("no tokio runtime");
        std::process::exit(1);
    };
    println!(
        "model {} ms, table {} ms per operation, claim wait {} ms, {ROUNDS} rounds per row; latencies in ms",
        MODEL_LATENCY.as_millis(),
        STORE_LATENCY.as_millis(),
        CLAIM_WAIT.as_millis()
    );
    println!(
        "{:>4} {:<20} {:>9} {:>11} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9}",
        "N",
        "setting",
        "instances",
        "calls/round",
        "paid p50",
        "waited",
        "wait p50",
        "wait p99",
        "added p50",
        "added p99"
    );
    for requests in [8usize, 32] {
        for setting in SETTINGS {
            let mut calls = 0;
            let (mut paid, mut waited) = (Vec::new(), Vec::new());
            for r in 0..ROUNDS {
                let prompt = format!("round {r} of {} with {requests} requests", setting.name);
                let Some(result) = runtime.block_on(round(&catalog, setting, requests, &prompt)) else {
                    eprintln!("a bench request failed");
                    std::process::exit(1);
                };
                calls += result.calls;
                paid.extend(result.paid_ms);
                waited.extend(result.waited_ms);
            }
            let (paid, waited) = (sorted(paid), sorted(waited));
            let paid_p50 = percentile(&paid, 50.0);
            let (wait_p50, wait_p99) = (percentile(&waited, 50.0), percentile(&waited, 99.0));
            println!(
                "{requests:>4} {:<20} {:>9} {:>11.1} {:>8.1} {:>8} {:>8.1} {:>8.1} {:>9.1} {:>9.1}",
                setting.name,
                setting.instances,
                calls as f64 / ROUNDS as f64,
                paid_p50,
                waited.len() / ROUNDS,
                wait_p50,
                wait_p99,
                wait_p50 - paid_p50,
                wait_p99 - paid_p50,
            );
        }
    }
}
