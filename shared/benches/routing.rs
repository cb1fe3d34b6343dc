//! One routing decision (features, both heads, policy, expected costs) on a short and a long
//! prompt: `cargo bench -p gateway-core --bench routing`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_core::catalog::{Catalog, Tier};
use gateway_core::request::ConverseRequest;
use gateway_core::routing::{RouteOverrides, Router, RouterModel, RoutingPolicy};

/// Mixed prose, code and numbers, so every feature path is exercised.
const PASSAGE: &str = "Explain step by step why the following Python function returns 42 when called with n = 7, \
    and compare it with an iterative version. def f(n): return n * 6 if n > 0 else 0. \
    Then summarise the trade-offs in a table with at least three rows; cite numbers like 3.14 and 2,718. ";

fn prompt_of(chars: usize) -> String {
    let mut text = String::with_capacity(chars + PASSAGE.len());
    while text.len() < chars {
        text.push_str(PASSAGE);
    }
    text.truncate(chars);
    text
}

fn request_of(text: &str) -> ConverseRequest {
    let body = serde_json::json!({
        "modelId": "auto",
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0}
    });
    match ConverseRequest::from_json(body.to_string().as_bytes()) {
        Ok(request) => request,
        Err(e) => unreachable!("benchmark request is valid: {e}"),
    }
}

fn bench_decision(c: &mut Criterion) {
    let (Ok(model), Ok(catalog)) = (RouterModel::embedded(), Catalog::embedded()) else {
        unreachable!("the embedded model and catalog load");
    };
    let catalog = Arc::new(catalog);
    let tiers: BTreeMap<Tier, String> = Tier::ALL.iter().map(|t| (*t, catalog.tier_default(*t).to_owned())).collect();
    let router = Router::new(model, catalog, tiers, RoutingPolicy::default());
    let overrides = RouteOverrides::default();
    let mut group = c.benchmark_group("route_decision");
    for chars in [100usize, 8_000] {
        let request = request_of(&prompt_of(chars));
        group.bench_function(format!("{chars}_chars"), |b| b.iter(|| router.decide(black_box(&request), &overrides)));
    }
    group.finish();

    // Where the time of a long decision goes: the model's features and scoring alone, and
    // the token estimate behind the expected costs.
    let long = request_of(&prompt_of(8_000));
    let mut parts = c.benchmark_group("route_decision_parts_8000_chars");
    parts.bench_function("adequacy", |b| {
        b.iter(|| model.adequacy(&gateway_core::routing::Conversation::from_request(black_box(&long))))
    });
    parts.bench_function("token_estimate", |b| b.iter(|| gateway_core::tokens::estimate_request(black_box(&long))));
    parts.finish();
}

criterion_group!(benches, bench_decision);
criterion_main!(benches);
