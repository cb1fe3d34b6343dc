//! Every request answers by its deadline, through the production SDK clients: with DynamoDB
//! stalled (a moto of the test's own, stopped with SIGSTOP) and with the model hanging (the
//! emulator's model-timeout fault). Each test prints its worst latency against its bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bedrock_emulator::FaultOverride;
use bedrock_emulator::testing::MotoServer;
use gateway_core::adapters::{AwsGateway, AwsPorts, BedrockInvoker, DynamoCacheStore, bedrock_client, dynamodb_client};
use gateway_core::catalog::{Catalog, Tier};
use gateway_core::config::GatewayConfig;
use gateway_core::routing::RouteOverrides;
use gateway_core::service::{CacheResult, ConverseCall, Gateway, GatewayError};
use integration_tests::{cache_table, converse_call, dynamodb_endpoint, emulator, sdk_defaults};

const HAIKU_BASE: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

fn config(vars: &[(&str, &str)]) -> GatewayConfig {
    let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    GatewayConfig::from_lookup(|k| vars.get(k).cloned()).unwrap()
}

/// The gateway as `aws_gateway` wires it, with the clients' endpoints pointed at `dynamodb_url`
/// and `bedrock_url`.
async fn gateway(config: &GatewayConfig, dynamodb_url: &str, bedrock_url: &str) -> AwsGateway {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = config.gateway_settings(&catalog).unwrap();
    let dynamodb_sdk = sdk_defaults().endpoint_url(dynamodb_url).load().await;
    let bedrock_sdk = sdk_defaults().endpoint_url(bedrock_url).load().await;
    let store = DynamoCacheStore::new(dynamodb_client(&dynamodb_sdk, config), config.cache_table.clone());
    let invoker = BedrockInvoker::new(bedrock_client(&bedrock_sdk, config));
    let router = config.routing.router(catalog.clone()).unwrap();
    Gateway::new(catalog, settings, AwsPorts { cache: store, models: invoker }).with_router(router)
}

/// A call whose deadline the gateway's budgets set, as the handler does without a Lambda context.
fn call(g: &AwsGateway, model: &str, text: &str, routing: RouteOverrides) -> ConverseCall {
    let mut call = converse_call("deadline", model, text, routing);
    call.deadline = g.settings().budgets.deadline(None);
    call
}

async fn table_on(url: &str) -> String {
    let sdk = sdk_defaults().endpoint_url(url).load().await;
    cache_table(&aws_sdk_dynamodb::Client::new(&sdk)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_dynamodb_delays_no_request_beyond_the_cache_budget() {
    // Finding 1: with moto stopped, every request (hits included) waited as long as it stayed stopped.
    let moto = MotoServer::start().unwrap();
    let emu = emulator(|_| {}).await;
    let table = table_on(moto.url()).await;
    let cache_ms = 200;
    let config = config(&[("CACHE_TABLE_NAME", &table), ("CACHE_TIMEOUT_MS", &cache_ms.to_string())]);
    let g = Arc::new(gateway(&config, moto.url(), &emu.url()).await);
    g.converse(call(&g, "haiku", "cached before the stall", RouteOverrides::default())).await.unwrap();
    let hit = g.converse(call(&g, "haiku", "cached before the stall", RouteOverrides::default())).await.unwrap();
    assert_eq!(hit.cache.result, CacheResult::Hit);

    moto.signal("-STOP").unwrap();
    let texts = ["cached before the stall", "new 1", "new 2", "new 3", "new 4", "new 5"];
    let requests = texts.map(|text| {
        let g = g.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let answer = g.converse(call(&g, "haiku", text, RouteOverrides::default())).await;
            (text, answer, started.elapsed())
        })
    });
    let mut worst = Duration::ZERO;
    for request in requests {
        let (text, answer, took) = request.await.unwrap();
        let answer = answer.unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(answer.cache.result, CacheResult::Miss, "{text}");
        assert_eq!(answer.hops.last().map(|h| h.outcome), Some("served"), "{text}: answered by Bedrock");
        let error = answer.cache.error.unwrap_or_default();
        assert!(error.contains("read failed (timeout)") && error.contains("write abandoned (timeout)"), "{error}");
        worst = worst.max(took);
    }
    // A read and a write, each at most the cache budget, plus an instant model with slack.
    let bound = Duration::from_millis(2 * cache_ms + 600);
    println!("deadline: stalled moto, worst {} ms against a bound of {} ms", worst.as_millis(), bound.as_millis());
    assert!(worst <= bound, "worst {worst:?} over {bound:?}");
    moto.signal("-CONT").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_model_answers_504_by_the_deadline_not_after_every_hop() {
    // Finding 2: with every Haiku profile hanging, two hops x 60 s made the caller wait 120 s.
    let emu = emulator(|c| {
        c.faults.models.insert(
            HAIKU_BASE.into(),
            FaultOverride { model_timeout_rate: Some(1.0), model_timeout_ms: Some(60_000), ..FaultOverride::default() },
        );
    })
    .await;
    let url = dynamodb_endpoint();
    let table = table_on(&url).await;
    let request_ms = 3_000;
    let config = config(&[
        ("CACHE_TABLE_NAME", &table),
        ("CACHE_TIMEOUT_MS", "2000"),
        ("REQUEST_TIMEOUT_MS", &request_ms.to_string()),
        ("FALLBACK_MIN_HOP_MS", "1000"),
    ]);
    let g = gateway(&config, &url, &emu.url()).await;
    let haiku_then_sonnet =
        RouteOverrides { min_tier: Some(Tier::Haiku), max_tier: Some(Tier::Sonnet), quality_tolerance: Some(100.0) };
    let mut worst = Duration::ZERO;
    for (model, routing) in [("auto", haiku_then_sonnet), ("haiku", RouteOverrides::default())] {
        let started = Instant::now();
        let err = g.converse(call(&g, model, "is anyone there?", routing)).await.unwrap_err();
        let took = started.elapsed();
        match &err {
            GatewayError::DeadlineExceeded { hops, .. } => {
                assert_eq!(hops.len(), 1, "{model}: {hops:?}");
                assert_eq!(hops[0].outcome, "timeout", "{model}: {hops:?}");
            }
            other => panic!("{model}: expected the deadline to stop the chain, got {other:?}"),
        }
        worst = worst.max(took);
    }
    let bound = Duration::from_millis(request_ms + 500);
    println!("deadline: hanging model, worst {} ms against a bound of {} ms", worst.as_millis(), bound.as_millis());
    assert!(worst <= bound, "worst {worst:?} over {bound:?}");
}
