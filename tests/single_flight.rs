//! Single-flight across instances on the production adapters: two gateways, each with its
//! own DynamoDB client (as two Lambda instances have) over one table in moto, and one
//! Bedrock emulator whose counters say how many calls were paid.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::adapters::{AwsPorts, BedrockInvoker, DynamoCacheStore};
use gateway_core::catalog::Catalog;
use gateway_core::service::{Answer, CacheResult, Gateway, GatewaySettings};
use gateway_core::testing::join_all;
use integration_tests::{bedrock, cache_table, converse_call, dynamodb, emulator, emulator_stats};

type AwsGateway = Gateway<AwsPorts>;

/// Two instances over `table`, claims on when `claim_wait` is set.
async fn instances(emulator_url: &str, table: &str, claim_wait: Option<Duration>) -> [AwsGateway; 2] {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { claim_wait, ..GatewaySettings::from_catalog(&catalog) };
    let mut instances = Vec::new();
    for _ in 0..2 {
        let store = DynamoCacheStore::new(dynamodb().await, table);
        let invoker = BedrockInvoker::new(bedrock(emulator_url, 1).await);
        instances.push(Gateway::new(catalog.clone(), settings.clone(), AwsPorts { cache: store, models: invoker }));
    }
    instances.try_into().unwrap()
}

/// Eight identical requests at once, alternating between the two instances; Converse calls
/// the emulator received.
async fn eight_identical(claim_wait: Option<Duration>) -> (Vec<Answer>, u64) {
    // Modeled latency at half speed (Haiku: 150 ms to the first token), so the requests overlap.
    let emu = emulator(|c| c.latency_scale = 0.5).await;
    let ddb = dynamodb().await;
    let table = cache_table(&ddb).await;
    let [a, b] = instances(&emu.url(), &table, claim_wait).await;
    let requests = (0..8).map(|i| {
        let g = if i % 2 == 0 { &a } else { &b };
        g.converse(converse_call("t", "haiku", "What does single-flight mean?", Default::default()))
    });
    let answers: Vec<Answer> = join_all(requests).await.into_iter().map(Result::unwrap).collect();
    let stats = emulator_stats(&emu).await;
    let calls = stats["totals"]["operations"]["converse"].as_u64().unwrap();
    (answers, calls)
}

#[tokio::test]
async fn a_claim_makes_two_instances_pay_one_call() {
    let (answers, calls) = eight_identical(Some(Duration::from_secs(10))).await;
    assert_eq!(calls, 1, "one Bedrock call for eight identical requests on two instances");
    let misses: Vec<&Answer> = answers.iter().filter(|a| a.cache.result == CacheResult::Miss).collect();
    assert_eq!(misses.len(), 1);
    let paid = misses[0].cost_usd.unwrap();
    for other in answers.iter().filter(|a| a.cache.result != CacheResult::Miss) {
        assert_eq!(other.cache.result, CacheResult::Hit);
        assert!(other.cache.coalesced);
        assert_eq!(other.cost_usd, Some(0.0));
        assert_eq!(other.cache.saved_usd, Some(paid));
        assert_eq!(other.response, misses[0].response);
    }
    assert!(answers.iter().all(|a| a.cache.error.is_none()), "no claim error on moto");
}

#[tokio::test]
async fn without_claims_each_instance_pays() {
    let (answers, calls) = eight_identical(None).await;
    assert!(calls > 1, "instances share no memory: {calls} calls");
    assert_eq!(calls, 2, "but each coalesces its own requests");
    assert_eq!(answers.iter().filter(|a| a.cache.result == CacheResult::Miss).count(), 2);
}
