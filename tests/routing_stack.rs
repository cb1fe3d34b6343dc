//! `"modelId": "auto"` and the fallback chain on the production adapters: DynamoDB (moto)
//! and Bedrock (the emulator, with its quotas and injected faults), wired as the Lambda wires
//! them. Exact tiers are never asserted for free choices: the router may be retrained.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bedrock_emulator::{EmulatorConfig, FaultOverride, QuotaOverride, RunningEmulator};
use gateway_core::adapters::{BedrockInvoker, DynamoCacheStore};
use gateway_core::catalog::{Catalog, Target, Tier};
use gateway_core::cost::{PricingMode, Usage};
use gateway_core::deadline::Deadline;
use gateway_core::ports::{InvokeError, ModelInvoker};
use gateway_core::request::{ConverseRequest, ConverseResponse};
use gateway_core::routing::{RouteOverrides, Router, RouterModel, RoutingPolicy};
use gateway_core::service::{Answer, CacheResult, ConverseCall, Gateway, GatewayError, GatewaySettings};
use gateway_core::testing::TestPorts;
use integration_tests::{bedrock, cache_table, converse_call, dynamodb, emulator, moto_budgets};

const HAIKU_BASE: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
const HAIKU_US: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const HAIKU_EU: &str = "eu.anthropic.claude-haiku-4-5-20251001-v1:0";
const HAIKU_GLOBAL: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
const SONNET_US: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
const OPUS_US: &str = "us.anthropic.claude-opus-4-5-20251101-v1:0";

const EASY: &str = "What is 2 + 2?";

/// A long, hard, multi-part prompt: code, math, proofs and an analysis with constraints.
fn hard_prompt() -> String {
    let mut text = String::from(
        "You are reviewing a distributed storage engine. Analyze the following Rust code step by step, \
         prove or disprove that it is linearizable under concurrent writers, and derive a tight upper bound \
         on the number of messages per commit as a function of n replicas and f tolerated failures.\n\n\
         ```rust\nfn commit(&mut self, txn: Txn) -> Result<Version, Abort> {\n    let quorum = self.replicas.len() / 2 + 1;\n    \
         let votes = self.replicas.iter().filter_map(|r| r.prepare(&txn).ok()).take(quorum).count();\n    \
         if votes < quorum { return Err(Abort::NoQuorum); }\n    let v = self.clock.tick();\n    \
         for r in &self.replicas { r.commit(&txn, v)?; }\n    Ok(v)\n}\n```\n\n",
    );
    for i in 1..=12 {
        text.push_str(&format!(
            "Part {i}: Let T_{i}(n) = 2T_{i}(n/2) + n log n. Solve the recurrence with the Akra-Bazzi method, \
             then compare it with the master theorem, and explain rigorously why the replica vote in the code \
             above can or cannot violate serializability when a partition heals after step {i}. Justify every \
             inequality, state your assumptions about clock skew, and give a counterexample if one exists.\n",
        ));
    }
    text.push_str("Finally, propose a corrected protocol, prove its safety and liveness, and estimate its latency.");
    text
}

/// The real Bedrock adapter, with a record of every model ID it was asked to call, so that a
/// failed request still shows whether it fell back.
#[derive(Debug)]
struct Recording {
    inner: BedrockInvoker,
    calls: Arc<Mutex<Vec<String>>>,
}

impl ModelInvoker for Recording {
    async fn converse(
        &self,
        model_id: &str,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        self.calls.lock().unwrap().push(model_id.to_owned());
        self.inner.converse(model_id, request, deadline).await
    }
}

struct Stack {
    gateway: Gateway<TestPorts<DynamoCacheStore, Recording>>,
    calls: Arc<Mutex<Vec<String>>>,
    _emulator: RunningEmulator,
}

impl Stack {
    /// Every model ID called so far, and forgets them.
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

/// A routed gateway on moto and an emulator configured by `configure`; the SDK makes one
/// attempt per call so that throttling surfaces at once.
async fn stack_with(
    configure: impl FnOnce(&mut EmulatorConfig),
    policy: RoutingPolicy,
    tiers: &[(Tier, &str)],
) -> Stack {
    let emu = emulator(configure).await;
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let mut settings = GatewaySettings {
        fallback: policy.fallback,
        budgets: moto_budgets(),
        ..GatewaySettings::from_catalog(&catalog)
    };
    for (tier, id) in tiers {
        settings.tier_models.insert(*tier, (*id).to_owned());
    }
    let router = Router::new(RouterModel::embedded().unwrap(), catalog.clone(), settings.tier_models.clone(), policy);
    let ddb = dynamodb().await;
    let store = DynamoCacheStore::new(ddb.clone(), cache_table(&ddb).await);
    let calls = Arc::new(Mutex::new(Vec::new()));
    let invoker = Recording { inner: BedrockInvoker::new(bedrock(&emu.url(), 1).await), calls: calls.clone() };
    let gateway = Gateway::new(catalog, settings, TestPorts::new(store, invoker)).with_router(router);
    Stack { gateway, calls, _emulator: emu }
}

async fn stack(configure: impl FnOnce(&mut EmulatorConfig)) -> Stack {
    stack_with(configure, RoutingPolicy::default(), &[]).await
}

fn call(model: &str, text: &str, routing: RouteOverrides) -> ConverseCall {
    converse_call("routing", model, text, routing)
}

fn only(tier: Tier) -> RouteOverrides {
    RouteOverrides { min_tier: Some(tier), max_tier: Some(tier), quality_tolerance: None }
}

/// Haiku chosen (tolerance 100 % picks the cheapest allowed tier), Sonnet allowed as fallback.
fn haiku_then_sonnet() -> RouteOverrides {
    RouteOverrides { min_tier: Some(Tier::Haiku), max_tier: Some(Tier::Sonnet), quality_tolerance: Some(100.0) }
}

fn hops(answer: &Answer) -> Vec<(&str, &str)> {
    answer.hops.iter().map(|h| (h.model_id.as_str(), h.outcome)).collect()
}

/// The catalog's base model ID behind any Bedrock ID.
fn base_model(catalog: &Catalog, id: &str) -> String {
    catalog.resolve_served(id).unwrap().0.model_id.clone()
}

/// The answer is priced by the model that served it, per the catalog.
fn assert_priced_by_server(catalog: &Catalog, answer: &Answer) -> f64 {
    let usage = Usage::from(&answer.response.usage);
    let expected = catalog.cost_of(&answer.model_id, &usage, PricingMode::OnDemand).unwrap();
    assert!(expected > 0.0);
    assert_eq!(answer.cost_usd, Some(expected), "priced by {}", answer.model_id);
    expected
}

#[tokio::test]
async fn auto_routes_end_to_end_and_the_key_carries_the_chosen_model() {
    let s = stack(|_| {}).await;
    let catalog = s.gateway.catalog();
    let version = RouterModel::embedded().unwrap().version();
    let hard = hard_prompt();

    let mut tiers = Vec::new();
    for text in [EASY, hard.as_str()] {
        let answer = s.gateway.converse(call("auto", text, RouteOverrides::default())).await.unwrap();
        assert_eq!(answer.requested_model, "auto");
        assert_eq!(answer.cache.result, CacheResult::Miss);
        let decision = answer.routing.as_ref().expect("an auto answer carries its decision");
        assert_eq!(decision.model_version, version);
        assert!(decision.tiers.iter().all(|t| t.allowed), "default policy allows every tier");
        assert!(decision.expected_cost_usd.unwrap() > 0.0);
        // Served by the decision's model, through its own profile or a wider one.
        assert_eq!(base_model(catalog, &answer.model_id), base_model(catalog, &decision.model_id));
        assert_eq!(answer.hops.first().unwrap().model_id, decision.model_id);
        assert_eq!(answer.hops.last().unwrap().outcome, "served");
        assert_priced_by_server(catalog, &answer);
        let adequacy = |tier: Tier| decision.tiers.iter().find(|t| t.tier == tier).unwrap().adequacy;
        tiers.push((decision.tier, adequacy(Tier::Haiku), adequacy(Tier::Sonnet)));
    }
    let [(easy_tier, easy_weak, easy_mid), (hard_tier, hard_weak, hard_mid)] = tiers[..] else { unreachable!() };
    assert!(hard_tier >= easy_tier, "hard prompt routed to {hard_tier}, easy one to {easy_tier}");
    // Whatever the thresholds, the model must rank the hard prompt as harder for the cheaper tiers.
    assert!(hard_weak < easy_weak, "haiku adequacy: hard {hard_weak} vs easy {easy_weak}");
    assert!(hard_mid < easy_mid, "sonnet adequacy: hard {hard_mid} vs easy {easy_mid}");

    // The same auto request again is a hit, still with its decision and no model call.
    let first = s.gateway.converse(call("auto", EASY, RouteOverrides::default())).await.unwrap();
    assert_eq!(first.cache.result, CacheResult::Hit);
    assert!(first.routing.is_some() && first.hops.is_empty());
    assert_eq!(first.cost_usd, Some(0.0));
    assert!(first.cache.saved_usd.unwrap() > 0.0);

    // Forcing the tier the router chose names the same model: a hit. Forcing another: a miss.
    let same = s.gateway.converse(call("auto", EASY, only(easy_tier))).await.unwrap();
    assert_eq!(same.cache.result, CacheResult::Hit, "forced {easy_tier}, the tier auto chose");
    let other = if easy_tier == Tier::Opus { Tier::Haiku } else { Tier::Opus };
    let forced = s.gateway.converse(call("auto", EASY, only(other))).await.unwrap();
    assert_eq!(forced.cache.result, CacheResult::Miss, "forced {other}: another model, another key");
    assert_eq!(forced.routing.as_ref().unwrap().tier, other);
    assert_eq!(
        base_model(catalog, &forced.model_id),
        base_model(catalog, s.gateway.settings().tier_models[&other].as_str())
    );
    assert_priced_by_server(catalog, &forced);

    // Routed to haiku (tolerance 100 % between haiku and sonnet), then forced to opus: a miss.
    let cheap = s.gateway.converse(call("auto", "Name a colour.", haiku_then_sonnet())).await.unwrap();
    assert_eq!(cheap.routing.as_ref().unwrap().tier, Tier::Haiku);
    assert_eq!(cheap.model_id, HAIKU_US);
    assert_priced_by_server(catalog, &cheap);
    let cheap_again = s.gateway.converse(call("auto", "Name a colour.", haiku_then_sonnet())).await.unwrap();
    assert_eq!(cheap_again.cache.result, CacheResult::Hit);
    let opus = s.gateway.converse(call("auto", "Name a colour.", only(Tier::Opus))).await.unwrap();
    assert_eq!(opus.cache.result, CacheResult::Miss, "opus is another model in the key");
    assert_eq!(opus.model_id, OPUS_US);
    assert_priced_by_server(catalog, &opus);
}

#[tokio::test]
async fn a_throttled_profile_falls_back_to_the_global_profile_then_the_adjacent_tier() {
    let s = stack(|c| {
        for profile in [HAIKU_US, HAIKU_GLOBAL] {
            c.quotas.insert(profile.into(), QuotaOverride { rpm: Some(1), tpm: None });
        }
    })
    .await;
    let catalog = s.gateway.catalog();

    // The first request takes the us. profile's only slot in the window.
    let first = s.gateway.converse(call("auto", "first question", haiku_then_sonnet())).await.unwrap();
    assert_eq!(first.routing.as_ref().unwrap().tier, Tier::Haiku);
    assert_eq!(hops(&first), vec![(HAIKU_US, "served")]);
    assert_priced_by_server(catalog, &first);

    // The second is throttled there and served by the global profile, without the regional premium.
    let second = s.gateway.converse(call("auto", "second question", haiku_then_sonnet())).await.unwrap();
    assert_eq!(second.routing.as_ref().unwrap().tier, Tier::Haiku);
    assert_eq!(hops(&second), vec![(HAIKU_US, "throttled"), (HAIKU_GLOBAL, "served")]);
    assert!(second.hops[0].error.as_deref().unwrap_or_default().contains("throttled"), "{:?}", second.hops[0]);
    assert_eq!(second.model_id, HAIKU_GLOBAL);
    let cost = assert_priced_by_server(catalog, &second);
    let usage = Usage::from(&second.response.usage);
    let at_us_price = catalog.cost_of(HAIKU_US, &usage, PricingMode::OnDemand).unwrap();
    assert!(cost < at_us_price, "global {cost} vs us. {at_us_price}");
    // The global profile serves the same model: its answer is haiku's cache entry.
    let again = s.gateway.converse(call("haiku", "second question", RouteOverrides::default())).await.unwrap();
    assert_eq!(again.cache.result, CacheResult::Hit);
    assert_eq!(again.cache.saved_usd, Some(cost));

    // The third finds both haiku profiles full and is served by sonnet, priced as sonnet.
    let third = s.gateway.converse(call("auto", "third question", haiku_then_sonnet())).await.unwrap();
    assert_eq!(third.routing.as_ref().unwrap().tier, Tier::Haiku);
    assert_eq!(hops(&third), vec![(HAIKU_US, "throttled"), (HAIKU_GLOBAL, "throttled"), (SONNET_US, "served")]);
    assert_eq!(third.hops[2].tier, Some(Tier::Sonnet));
    assert_eq!(third.model_id, SONNET_US);
    let cost = assert_priced_by_server(catalog, &third);
    let usage = Usage::from(&third.response.usage);
    assert!(cost > catalog.cost_of(HAIKU_US, &usage, PricingMode::OnDemand).unwrap());
    // Stored under sonnet, the model that answered, not under haiku.
    let by_name = s.gateway.converse(call("sonnet", "third question", RouteOverrides::default())).await.unwrap();
    assert_eq!(by_name.cache.result, CacheResult::Hit);
    assert_eq!(by_name.cache.saved_usd, Some(cost));
}

#[tokio::test]
async fn an_unavailable_model_hands_over_to_the_adjacent_tier() {
    // A base model ID faults every way of calling that model.
    let s = stack(|c| {
        c.faults.models.insert(
            HAIKU_BASE.into(),
            FaultOverride { service_unavailable_rate: Some(1.0), ..FaultOverride::default() },
        );
    })
    .await;
    let answer = s.gateway.converse(call("auto", "is anyone there?", haiku_then_sonnet())).await.unwrap();
    assert_eq!(answer.routing.as_ref().unwrap().tier, Tier::Haiku);
    assert_eq!(hops(&answer), vec![(HAIKU_US, "unavailable"), (HAIKU_GLOBAL, "unavailable"), (SONNET_US, "served")]);
    assert_priced_by_server(s.gateway.catalog(), &answer);

    // A tier range that ends at haiku has nowhere to go: the 503 surfaces, with the hops tried.
    s.take_calls();
    let err = s.gateway.converse(call("auto", "still there?", only(Tier::Haiku))).await.unwrap_err();
    match &err {
        GatewayError::FallbackExhausted { hops, source: InvokeError::Unavailable { .. } } => {
            let tried: Vec<&str> = hops.iter().map(|h| h.model_id.as_str()).collect();
            assert_eq!(tried, vec![HAIKU_US, HAIKU_GLOBAL]);
        }
        other => panic!("expected an exhausted chain, got {other:?}"),
    }
    assert_eq!(s.take_calls(), vec![HAIKU_US, HAIKU_GLOBAL]);
}

#[tokio::test]
async fn a_persistent_internal_error_falls_back_like_capacity_trouble() {
    // A 500 that survived the SDK's retries is the model failing there; another may not.
    let s = stack(|c| {
        c.faults
            .models
            .insert(HAIKU_BASE.into(), FaultOverride { internal_error_rate: Some(1.0), ..FaultOverride::default() });
    })
    .await;
    let answer = s.gateway.converse(call("auto", "hello", haiku_then_sonnet())).await.unwrap();
    assert_eq!(hops(&answer), vec![(HAIKU_US, "internal"), (HAIKU_GLOBAL, "internal"), (SONNET_US, "served")]);
}

/// The embedded catalog as an emulated Bedrock without Haiku 4.5's `us.` profile, as when a
/// region or account lacks a profile the gateway's catalog lists.
fn catalog_without_haiku_us_profile() -> std::path::PathBuf {
    let text = include_str!("../shared/catalog.toml");
    let entry = text.find(&format!("model_id = \"{HAIKU_BASE}\"")).expect("haiku 4.5 in the catalog");
    let profiles = entry + text[entry..].find("profiles = [").expect("haiku 4.5 profiles");
    let end = profiles + text[profiles..].find(']').unwrap();
    let line = &text[profiles..=end];
    assert!(line.contains("\"us\""), "{line}");
    let without_us = line.replace("\"us\", ", "").replace(", \"us\"", "");
    let tier_line = format!("haiku = \"{HAIKU_US}\"");
    assert!(text.contains(&tier_line), "haiku's default tier model moved");
    let edited = format!("{}{}{}", &text[..profiles], without_us, &text[end + 1..])
        .replace(&tier_line, &format!("haiku = \"{HAIKU_GLOBAL}\""));
    let path = std::env::temp_dir().join(format!("routing-stack-catalog-{}.toml", std::process::id()));
    std::fs::write(&path, edited).unwrap();
    path
}

#[tokio::test]
async fn a_validation_error_does_not_fall_back() {
    let catalog = catalog_without_haiku_us_profile();
    let s = stack(|c| c.catalog = Some(catalog.clone())).await;
    let err = s.gateway.converse(call("auto", "hello", haiku_then_sonnet())).await.unwrap_err();
    let _ = std::fs::remove_file(&catalog);
    assert!(
        matches!(&err, GatewayError::Model(InvokeError::Rejected { message }) if message.contains("model identifier")),
        "{err:?}"
    );
    assert_eq!(s.take_calls(), vec![HAIKU_US], "global haiku and sonnet would have answered");
}

#[tokio::test]
async fn with_fallback_disabled_throttling_surfaces() {
    let policy = RoutingPolicy { fallback: false, ..RoutingPolicy::default() };
    let s = stack_with(
        |c| {
            c.quotas.insert(HAIKU_US.into(), QuotaOverride { rpm: Some(1), tpm: None });
        },
        policy,
        &[],
    )
    .await;
    assert!(!s.gateway.settings().fallback);
    s.gateway.converse(call("auto", "first", haiku_then_sonnet())).await.unwrap();
    let err = s.gateway.converse(call("auto", "second", haiku_then_sonnet())).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })), "{err:?}");
    assert_eq!(s.take_calls(), vec![HAIKU_US, HAIKU_US]);
}

#[tokio::test]
async fn explicit_ids_never_fall_back_and_tier_names_only_widen_their_profile() {
    let s = stack(|c| {
        for profile in [HAIKU_US, HAIKU_GLOBAL] {
            c.quotas.insert(profile.into(), QuotaOverride { rpm: Some(1), tpm: None });
        }
    })
    .await;
    s.gateway.converse(call(HAIKU_US, "one", RouteOverrides::default())).await.unwrap();
    let err = s.gateway.converse(call(HAIKU_US, "two", RouteOverrides::default())).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { .. })), "{err:?}");
    assert_eq!(s.take_calls(), vec![HAIKU_US, HAIKU_US]);

    let widened = s.gateway.converse(call("haiku", "two", RouteOverrides::default())).await.unwrap();
    assert!(widened.routing.is_none());
    assert_eq!(hops(&widened), vec![(HAIKU_US, "throttled"), (HAIKU_GLOBAL, "served")]);
    assert_priced_by_server(s.gateway.catalog(), &widened);

    // Both haiku profiles full: a tier name never moves to another tier.
    s.take_calls();
    let err = s.gateway.converse(call("haiku", "three", RouteOverrides::default())).await.unwrap_err();
    assert!(matches!(err.invoke_error(), Some(InvokeError::Throttled { .. })), "{err:?}");
    assert_eq!(s.take_calls(), vec![HAIKU_US, HAIKU_GLOBAL]);
}

#[tokio::test]
async fn a_geographic_profile_falls_back_within_its_geography() {
    // Haiku routed through eu.: when it throttles, the next stop is global, never us.
    let s = stack_with(
        |c| {
            c.quotas.insert(HAIKU_EU.into(), QuotaOverride { rpm: Some(1), tpm: None });
        },
        RoutingPolicy::default(),
        &[(Tier::Haiku, HAIKU_EU)],
    )
    .await;
    let Target::Model(m) = s.gateway.catalog().resolve(HAIKU_EU).unwrap() else { panic!("eu haiku is a model") };
    assert!(m.spec.profiles.iter().any(|p| p == "us"), "the test needs a us. profile to avoid");
    s.gateway.converse(call("auto", "eins", haiku_then_sonnet())).await.unwrap();
    let answer = s.gateway.converse(call("auto", "zwei", haiku_then_sonnet())).await.unwrap();
    assert_eq!(answer.routing.as_ref().unwrap().model_id, HAIKU_EU);
    assert_eq!(hops(&answer), vec![(HAIKU_EU, "throttled"), (HAIKU_GLOBAL, "served")]);
    assert_priced_by_server(s.gateway.catalog(), &answer);
}

#[tokio::test]
async fn the_decision_reports_the_allowed_range_of_a_single_tier_request() {
    let s = stack(|_| {}).await;
    let answer = s.gateway.converse(call("auto", EASY, only(Tier::Opus))).await.unwrap();
    let decision = answer.routing.as_ref().unwrap();
    assert_eq!((decision.tier, decision.min_tier, decision.max_tier), (Tier::Opus, Tier::Opus, Tier::Opus));
    assert_eq!(answer.model_id, OPUS_US);
    let allowed: BTreeMap<Tier, bool> = decision.tiers.iter().map(|t| (t.tier, t.allowed)).collect();
    assert_eq!(allowed, BTreeMap::from([(Tier::Haiku, false), (Tier::Sonnet, false), (Tier::Opus, true)]));
    assert_priced_by_server(s.gateway.catalog(), &answer);
}
