//! Tail latency of single routing decisions, which criterion's per-sample means hide:
//! `cargo bench -p gateway-core --no-default-features --bench routing_latency`.
//!
//! Times 20,000 decisions one by one on a 100- and an 8,000-character prompt (after a
//! warm-up) and prints p50, p90, p99, p99.9 and the maximum.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use gateway_core::catalog::{Catalog, Tier};
use gateway_core::request::ConverseRequest;
use gateway_core::routing::{RouteOverrides, Router, RouterModel, RoutingPolicy};

const PASSAGE: &str = "Explain step by step why the following Python function returns 42 when called with n = 7, \
    and compare it with an iterative version. def f(n): return n * 6 if n > 0 else 0. \
    Then summarise the trade-offs in a table with at least three rows; cite numbers like 3.14 and 2,718. ";
const DECISIONS: usize = 20_000;

fn request_of(chars: usize) -> Option<ConverseRequest> {
    let mut text = String::with_capacity(chars + PASSAGE.len());
    while text.len() < chars {
        text.push_str(PASSAGE);
    }
    text.truncate(chars);
    let body = serde_json::json!({
        "modelId": "auto",
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0}
    });
    ConverseRequest::from_json(body.to_string().as_bytes()).ok()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    let (Ok(model), Ok(catalog)) = (RouterModel::embedded(), Catalog::embedded()) else {
        eprintln!("the embedded model or catalog does not load");
        std::process::exit(1);
    };
    let catalog = Arc::new(catalog);
    let tiers: BTreeMap<Tier, String> = Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
    let router = Router::new(model, catalog, tiers, RoutingPolicy::default());
    let overrides = RouteOverrides::default();
    println!("model {}, {DECISIONS} decisions per prompt, times in microseconds", model.version());
    println!("{:>8} {:>8} {:>8} {:>8} {:>8} {:>8}", "chars", "p50", "p90", "p99", "p99.9", "max");
    for chars in [100usize, 8_000] {
        let Some(request) = request_of(chars) else {
            eprintln!("benchmark request is invalid");
            std::process::exit(1);
        };
        for _ in 0..2_000 {
            black_box(router.decide(black_box(&request), &overrides));
        }
        let mut micros: Vec<f64> = (0..DECISIONS)
            .map(|_| {
                let started = Instant::now();
                black_box(router.decide(black_box(&request), &overrides));
                started.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        micros.sort_by(f64::total_cmp);
        println!(
            "{chars:>8} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            percentile(&micros, 50.0),
            percentile(&micros, 90.0),
            percentile(&micros, 99.0),
            percentile(&micros, 99.9),
            micros[micros.len() - 1]
        );
    }
}
