//! The whole invoke-with-cache use case on the production adapters: DynamoDB (moto) and
//! Bedrock (the emulator), wired exactly as the Lambda wires them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;

use gateway_core::adapters::{AwsPorts, BedrockInvoker, DynamoCacheStore};
use gateway_core::catalog::Catalog;
use gateway_core::cost::{PricingMode, Usage};
use gateway_core::ports::InvokeError;
use gateway_core::service::{CacheResult, ConverseCall, Gateway, GatewayError, GatewaySettings};
use integration_tests::{bedrock, cache_table, converse_call, dynamodb, emulator, moto_budgets};

fn call(tenant: &str, model: &str, text: &str) -> ConverseCall {
    converse_call(tenant, model, text, Default::default())
}

async fn gateway(emulator_url: &str) -> Gateway<AwsPorts> {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { budgets: moto_budgets(), ..GatewaySettings::from_catalog(&catalog) };
    let ddb = dynamodb().await;
    let store = DynamoCacheStore::new(ddb.clone(), cache_table(&ddb).await);
    Gateway::new(
        catalog,
        settings,
        AwsPorts { cache: store, models: BedrockInvoker::new(bedrock(emulator_url, 1).await) },
    )
}

#[tokio::test]
async fn miss_then_hit_with_catalog_exact_costs() {
    let emu = emulator(|_| {}).await;
    let g = gateway(&emu.url()).await;
    for (tier, id) in [
        ("haiku", "us.anthropic.claude-haiku-4-5-20251001-v1:0"),
        ("sonnet", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
        ("opus", "us.anthropic.claude-opus-4-5-20251101-v1:0"),
    ] {
        let miss = g.converse(call("t", tier, "Explain TCP slow start.")).await.unwrap();
        assert_eq!(miss.cache.result, CacheResult::Miss);
        assert_eq!(miss.model_id, id);
        let usage = Usage::from(&miss.response.usage);
        let expected = g.catalog().cost_of(id, &usage, PricingMode::OnDemand).unwrap();
        assert_eq!(miss.cost_usd, Some(expected));
        let spec = g.catalog().resolve_served(id).unwrap().0;
        let by_hand =
            (usage.input_tokens as f64 * spec.price.input + usage.output_tokens as f64 * spec.price.output) / 1e6 * 1.1;
        assert!((expected - by_hand).abs() < 1e-12, "{tier}: {expected} vs {by_hand}");

        let hit = g.converse(call("t", id, "Explain TCP slow start.")).await.unwrap();
        assert_eq!(hit.cache.result, CacheResult::Hit, "{tier}: the profile ID names the same model as the tier");
        assert_eq!(hit.cache.saved_usd, Some(expected));
        assert_eq!(hit.response, miss.response);
    }
}

#[tokio::test]
async fn tenants_are_isolated_end_to_end() {
    let emu = emulator(|_| {}).await;
    let g = gateway(&emu.url()).await;
    g.converse(call("a", "haiku", "hello")).await.unwrap();
    assert_eq!(g.converse(call("b", "haiku", "hello")).await.unwrap().cache.result, CacheResult::Miss);
    assert_eq!(g.converse(call("a", "haiku", "hello")).await.unwrap().cache.result, CacheResult::Hit);
}

#[tokio::test]
async fn a_broken_cache_table_does_not_fail_requests() {
    let emu = emulator(|_| {}).await;
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { budgets: moto_budgets(), ..GatewaySettings::from_catalog(&catalog) };
    let store = DynamoCacheStore::new(dynamodb().await, "table-that-does-not-exist");
    let g = Gateway::new(
        catalog,
        settings,
        AwsPorts { cache: store, models: BedrockInvoker::new(bedrock(&emu.url(), 1).await) },
    );
    let answer = g.converse(call("a", "haiku", "hello")).await.unwrap();
    assert_eq!(answer.cache.result, CacheResult::Miss);
    let error = answer.cache.error.unwrap_or_default();
    assert!(error.contains("read failed") && error.contains("write failed"), "{error}");
}

#[tokio::test]
async fn quota_exhaustion_surfaces_as_throttling_with_a_retry_hint() {
    let emu = emulator(|c| {
        c.quotas.insert(
            "us.anthropic.claude-opus-4-5-20251101-v1:0".into(),
            bedrock_emulator::QuotaOverride { tpm: Some(500), rpm: None },
        );
    })
    .await;
    let g = gateway(&emu.url()).await;
    // maxTokens 400 plus the prompt fits under 500 once; the reservation of the second does not.
    // The profile is named exactly: a tier name would widen to the global profile instead.
    let opus = "us.anthropic.claude-opus-4-5-20251101-v1:0";
    g.converse(call("a", opus, "first")).await.unwrap();
    let err = g.converse(call("a", opus, "second")).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })), "{err:?}");
}

/// A caller that reads every event.
#[derive(Default)]
struct Reader(Vec<gateway_core::stream::StreamEvent>);

impl gateway_core::service::StreamSink for Reader {
    async fn send(
        &mut self,
        event: &gateway_core::stream::StreamEvent,
    ) -> Result<(), gateway_core::service::CallerGone> {
        self.0.push(event.clone());
        Ok(())
    }
}

#[tokio::test]
async fn a_streamed_answer_is_cached_in_dynamodb_and_replayed() {
    use gateway_core::service::{Ending, Origin};
    use gateway_core::usage::UsageSource;
    let emu = emulator(|_| {}).await;
    let g = gateway(&emu.url()).await;
    let origin = Origin { source: UsageSource::Online, request_id: "stream-1".into() };
    let mut first = Reader::default();
    let open = g.open_stream(call("t", "sonnet", "Explain how a bloom filter works.")).await.unwrap();
    assert_eq!(open.cache_result(), CacheResult::Miss);
    let end = open.forward(&mut first, &origin).await;
    assert!(matches!(end.ending, Ending::Completed), "{:?}", end.ending);
    let usage = Usage::from(&end.answer.response.usage);
    let expected = g.catalog().cost_of(&end.answer.model_id, &usage, PricingMode::OnDemand).unwrap();
    assert_eq!(end.answer.cost_usd, Some(expected), "priced from the stream's own usage");

    let buffered = g.converse(call("t", "sonnet", "Explain how a bloom filter works.")).await.unwrap();
    assert_eq!(buffered.cache.result, CacheResult::Hit);
    assert_eq!(buffered.response, end.answer.response);
    let mut again = Reader::default();
    let open = g.open_stream(call("t", "sonnet", "Explain how a bloom filter works.")).await.unwrap();
    assert_eq!(open.cache_result(), CacheResult::Hit);
    open.forward(&mut again, &origin).await;
    // The same grammar and the same answer; only the chunking of the deltas may differ.
    let shape = |events: &[gateway_core::stream::StreamEvent]| {
        let mut kinds: Vec<&str> = events.iter().map(|e| e.event_type()).collect();
        kinds.dedup();
        kinds
    };
    assert_eq!(shape(&again.0), shape(&first.0));
    let assemble = |events: &[gateway_core::stream::StreamEvent]| {
        let mut assembler = gateway_core::stream::Assembler::new();
        events.iter().for_each(|e| assembler.push(e).unwrap());
        assembler.finish().unwrap()
    };
    assert_eq!(assemble(&again.0), assemble(&first.0));
}
