use super::*;
use crate::cache::CacheKey;
use crate::cache::CacheMode;
use crate::catalog::Target;
use crate::cost::Usage;
use crate::ports::{CacheStore, Claim};
use crate::routing::{RouteReason, RouterModel, RoutingPolicy};
use crate::testing::{FakeInvoker, InMemoryCacheStore, TestPorts};

type FakeGateway = Gateway<TestPorts<InMemoryCacheStore, FakeInvoker>>;

fn fakes() -> TestPorts<InMemoryCacheStore, FakeInvoker> {
    TestPorts::new(InMemoryCacheStore::default(), FakeInvoker::default())
}

fn gateway() -> FakeGateway {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    Gateway::new(catalog, settings, fakes())
}

fn routed_gateway(policy: RoutingPolicy) -> FakeGateway {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { fallback: policy.fallback, ..GatewaySettings::from_catalog(&catalog) };
    let router = Router::new(RouterModel::embedded().unwrap(), catalog.clone(), settings.tier_models.clone(), policy);
    Gateway::new(catalog, settings, fakes()).with_router(router)
}

fn only(tier: Tier) -> RouteOverrides {
    RouteOverrides { min_tier: Some(tier), max_tier: Some(tier), quality_tolerance: None }
}

/// An `auto` call that routes to haiku (a tolerance of 100 % picks the cheapest allowed
/// tier) with sonnet still allowed for fallback.
fn auto_haiku_with_sonnet_fallback() -> ConverseCall {
    let mut request = call("a", body("auto", "hello"));
    request.routing =
        RouteOverrides { max_tier: Some(Tier::Sonnet), quality_tolerance: Some(100.0), ..only(Tier::Haiku) };
    request
}

/// Throttles both of haiku's profiles.
fn throttle_haiku(invoker: &FakeInvoker) {
    let throttled = || InvokeError::Throttled { message: "slow down".into(), retry_after: None };
    invoker.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", throttled);
    invoker.fail_model("global.anthropic.claude-haiku-4-5-20251001-v1:0", throttled);
}

fn call(tenant: &str, body: serde_json::Value) -> ConverseCall {
    ConverseCall {
        request: ConverseRequest::from_json(body.to_string().as_bytes()).unwrap(),
        tenant: Tenant::new(tenant),
        cache: CacheOptions::default(),
        routing: RouteOverrides::default(),
        deadline: Budgets::default().deadline(None),
    }
}

fn body(model: &str, text: &str) -> serde_json::Value {
    serde_json::json!({
        "modelId": model,
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 200}
    })
}

#[tokio::test]
async fn a_repeat_is_a_hit_that_saves_the_first_calls_cost() {
    let g = gateway();
    let first = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    assert_eq!(first.cache.result, CacheResult::Miss);
    assert!(matches!(first.cache.write, Some(WriteReport::Stored { .. })));
    let cost = first.cost_usd.unwrap();
    assert!(cost > 0.0);
    assert_eq!(first.model_id, "us.anthropic.claude-haiku-4-5-20251001-v1:0");

    // The same model named by its profile ID is the same request.
    let second = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "hello"))).await.unwrap();
    assert_eq!(second.cache.result, CacheResult::Hit);
    assert_eq!(second.cache.saved_usd, Some(cost));
    assert_eq!(second.cost_usd, Some(0.0));
    assert_eq!(second.response, first.response);
    let arn =
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0";
    assert_eq!(g.converse(call("a", body(arn, "hello"))).await.unwrap().cache.result, CacheResult::Hit);
    assert_eq!(g.ports.models.calls(), 1);
    let sonnet = g.converse(call("a", body("sonnet", "hello"))).await.unwrap();
    assert_eq!(sonnet.cache.result, CacheResult::Miss, "another model is another answer");
}

#[tokio::test]
async fn tenants_do_not_share_entries() {
    let g = gateway();
    g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    let other = g.converse(call("b", body("haiku", "hello"))).await.unwrap();
    assert_eq!(other.cache.result, CacheResult::Miss);
    assert_eq!(g.ports.models.calls(), 2);
}

#[tokio::test]
async fn an_expired_entry_is_a_miss() {
    let g = gateway();
    g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    g.ports.cache.expire_all();
    let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    assert_eq!(again.cache.result, CacheResult::Miss);
}

#[tokio::test]
async fn cache_failures_are_reported_but_never_fail_the_request() {
    let g = gateway();
    g.ports.cache.fail_reads(true);
    g.ports.cache.fail_writes(true);
    let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    assert_eq!(answer.cache.result, CacheResult::Miss);
    assert_eq!(answer.cache.write, Some(WriteReport::Failed));
    let error = answer.cache.error.unwrap();
    assert!(error.contains("read failed") && error.contains("write failed"), "{error}");
}

#[tokio::test]
async fn oversized_answers_are_served_but_not_stored() {
    let g = gateway();
    g.ports.cache.set_item_limit(10);
    let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    assert!(matches!(answer.cache.write, Some(WriteReport::TooLarge { limit: 10, .. })));
    let again = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
    assert_eq!(again.cache.result, CacheResult::Miss);
}

#[tokio::test]
async fn modes_and_sampling_control_reads_and_writes() {
    let g = gateway();
    let mut sampled = call("a", body("haiku", "hi"));
    sampled.request.inference_config = None;
    let answer = g.converse(sampled.clone()).await.unwrap();
    assert_eq!(answer.cache.result, CacheResult::Bypass);
    assert_eq!(answer.cache.bypass_reason, Some(BypassReason::Sampling));

    let mut read_only = call("a", body("haiku", "hi"));
    read_only.cache.mode = Some(CacheMode::ReadOnly);
    assert_eq!(g.converse(read_only.clone()).await.unwrap().cache.write, None);
    assert_eq!(g.converse(read_only).await.unwrap().cache.result, CacheResult::Miss);

    let mut refresh = call("a", body("haiku", "hi"));
    refresh.cache.mode = Some(CacheMode::WriteOnly);
    let refreshed = g.converse(refresh).await.unwrap();
    assert_eq!(refreshed.cache.result, CacheResult::Bypass);
    assert!(matches!(refreshed.cache.write, Some(WriteReport::Stored { .. })));
    assert_eq!(g.converse(call("a", body("haiku", "hi"))).await.unwrap().cache.result, CacheResult::Hit);
}

#[tokio::test]
async fn caller_mistakes_are_request_errors() {
    let g = gateway();
    let err = g.converse(call("a", body("gpt-4o", "hi"))).await.unwrap_err();
    assert!(matches!(err, GatewayError::UnknownModel(_)));

    let mut too_long = call("a", body("haiku", "hi"));
    too_long.request.inference_config.as_mut().unwrap().max_tokens = Some(1_000_000);
    let err = g.converse(too_long).await.unwrap_err();
    assert!(matches!(&err, GatewayError::InvalidRequest(e) if e.field() == Some("inferenceConfig.maxTokens")));

    let mut no_model = call("a", body("haiku", "hi"));
    no_model.request.model_id = None;
    assert!(matches!(g.converse(no_model).await.unwrap_err(), GatewayError::InvalidRequest(_)));
    assert_eq!(g.ports.models.calls(), 0);
}

#[tokio::test]
async fn a_model_past_its_end_of_life_is_refused_before_the_cache_or_bedrock_with_the_date() {
    let g = gateway();
    // Claude 3.5 Haiku left Bedrock on 2026-06-19.
    for id in ["us.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"] {
        let err = g.converse(call("a", body(id, "hi"))).await.unwrap_err();
        assert!(matches!(&err, GatewayError::UnknownModel(ResolveError::Retired { .. })), "{err:?}");
        assert_eq!(err.label(), ErrorLabel::ModelRetired);
        assert!(err.to_string().contains("2026-06-19"), "{err}");
    }
    assert_eq!(g.ports.models.calls(), 0);
    assert_eq!(g.ports.cache.len(), 0);
}

#[tokio::test]
async fn throttling_carries_a_retry_hint_and_is_not_cached() {
    let g = gateway();
    g.ports.models.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
    let err = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "hi"))).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })));
    // A tier name widens to the global profile first; both throttled, the hops come back.
    let err = g.converse(call("a", body("haiku", "hi"))).await.unwrap_err();
    match &err {
        GatewayError::FallbackExhausted { hops, source: InvokeError::Throttled { retry_after: Some(_), .. } } => {
            assert_eq!(hops.len(), 2);
        }
        other => panic!("expected an exhausted chain, got {other:?}"),
    }
    assert_eq!(g.ports.cache.len(), 0);
}

#[tokio::test]
async fn prompt_router_calls_are_priced_by_the_invoked_model() {
    let g = gateway();
    let router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    g.ports.models.route_to(
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    );
    let answer = g.converse(call("a", body(router, "hi"))).await.unwrap();
    assert!(answer.model_id.ends_with("us.anthropic.claude-3-5-haiku-20241022-v1:0"));
    let usage = Usage::from(&answer.response.usage);
    let expected = (usage.input_tokens as f64 * 0.8 + usage.output_tokens as f64 * 4.0) / 1e6;
    assert!((answer.cost_usd.unwrap() - expected).abs() < 1e-15);
}

#[tokio::test]
async fn auto_routes_before_the_cache_and_reports_the_decision() {
    let g = routed_gateway(RoutingPolicy::default());
    let mut first = call("a", body("auto", "hello"));
    first.routing = only(Tier::Sonnet);
    let answer = g.converse(first.clone()).await.unwrap();
    let decision = answer.routing.as_ref().unwrap();
    assert_eq!((decision.tier, decision.reason), (Tier::Sonnet, RouteReason::SingleTier));
    assert_eq!(answer.model_id, "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(answer.requested_model, "auto");
    assert_eq!(answer.hops.len(), 1);
    assert_eq!(answer.hops[0].outcome, "served");

    // The key carries the chosen model: the same prompt sent to sonnet by name is a hit,
    // routed to haiku it is not.
    let by_name = g.converse(call("a", body("sonnet", "hello"))).await.unwrap();
    assert_eq!(by_name.cache.result, CacheResult::Hit);
    let mut haiku = call("a", body("auto", "hello"));
    haiku.routing = only(Tier::Haiku);
    assert_eq!(g.converse(haiku).await.unwrap().cache.result, CacheResult::Miss);
    let repeat = g.converse(first).await.unwrap();
    assert_eq!(repeat.cache.result, CacheResult::Hit);
    assert!(repeat.routing.is_some() && repeat.hops.is_empty());
}

#[tokio::test]
async fn auto_without_a_router_or_model_is_a_request_error() {
    let g = gateway();
    let err = g.converse(call("a", body("auto", "hi"))).await.unwrap_err();
    assert!(matches!(&err, GatewayError::InvalidRequest(e) if e.field() == Some("modelId")), "{err}");

    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { default_model: Some("haiku".into()), ..GatewaySettings::from_catalog(&catalog) };
    let g = Gateway::new(catalog, settings, fakes());
    let mut no_model = call("a", body("haiku", "hi"));
    no_model.request.model_id = None;
    assert_eq!(g.converse(no_model).await.unwrap().requested_model, "haiku");
}

#[tokio::test]
async fn throttling_falls_back_through_profiles_then_the_adjacent_tier() {
    let g = routed_gateway(RoutingPolicy::default());
    throttle_haiku(&g.ports.models);
    let answer = g.converse(auto_haiku_with_sonnet_fallback()).await.unwrap();
    let outcomes: Vec<(&str, &str)> = answer.hops.iter().map(|h| (h.model_id.as_str(), h.outcome)).collect();
    assert_eq!(
        outcomes,
        vec![
            ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled"),
            ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled"),
            ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "served"),
        ]
    );
    assert_eq!(answer.hops[2].tier, Some(Tier::Sonnet));
    // Stored under the model that answered, so a later haiku call is not served sonnet's answer.
    let mut sonnet = call("a", body("sonnet", "hello"));
    sonnet.routing = RouteOverrides::default();
    assert_eq!(g.converse(sonnet).await.unwrap().cache.result, CacheResult::Hit);
}

#[tokio::test]
async fn fallback_stops_at_errors_another_model_cannot_fix_and_can_be_disabled() {
    let g = routed_gateway(RoutingPolicy::default());
    g.ports.models.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::AccessDenied {
        message: "no".into(),
    });
    let request = auto_haiku_with_sonnet_fallback();
    let err = g.converse(request.clone()).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::AccessDenied { .. })));
    assert_eq!(g.ports.models.calls(), 1);

    let g = routed_gateway(RoutingPolicy { fallback: false, ..RoutingPolicy::default() });
    g.ports.models.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::Unavailable {
        message: "down".into(),
    });
    let err = g.converse(request).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Unavailable { .. })));
    assert_eq!(g.ports.models.calls(), 1);
}

#[tokio::test]
async fn explicit_models_never_change_but_tier_names_widen_their_profile() {
    let g = gateway();
    g.ports.models.fail_model("us.anthropic.claude-haiku-4-5-20251001-v1:0", || InvokeError::Throttled {
        message: "slow".into(),
        retry_after: None,
    });
    let err = g.converse(call("a", body("us.anthropic.claude-haiku-4-5-20251001-v1:0", "x"))).await.unwrap_err();
    assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { .. })));
    let answer = g.converse(call("a", body("haiku", "x"))).await.unwrap();
    assert_eq!(answer.model_id, "global.anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_eq!(answer.hops.len(), 2);
}

#[tokio::test]
async fn repeats_during_throttling_are_served_from_the_fallback_models_entry() {
    let g = routed_gateway(RoutingPolicy::default());
    throttle_haiku(&g.ports.models);
    let request = auto_haiku_with_sonnet_fallback();
    let first = g.converse(request.clone()).await.unwrap();
    assert_eq!(first.hops.last().unwrap().outcome, "served");
    let calls = g.ports.models.calls();
    let repeat = g.converse(request).await.unwrap();
    assert_eq!(repeat.cache.result, CacheResult::Hit);
    assert_eq!(repeat.cost_usd, Some(0.0));
    assert_eq!(repeat.hops.last().unwrap().outcome, "cache_hit");
    assert_eq!(repeat.model_id, first.model_id);
    assert_eq!(g.ports.models.calls(), calls + 2, "the two throttled haiku profiles, then sonnet's entry");
}

#[test]
fn every_planned_attempt_names_the_quota_it_spends() {
    use crate::catalog::Scope;
    use crate::quota::QuotaKey;
    let g = routed_gateway(RoutingPolicy::default());
    let prepared = g.prepare(auto_haiku_with_sonnet_fallback(), Instant::now()).unwrap();
    let quotas: Vec<(&str, Option<&QuotaKey>)> =
        prepared.attempts.iter().map(|a| (a.invoke_id.as_str(), a.quota.as_ref())).collect();
    let haiku = "anthropic.claude-haiku-4-5-20251001-v1:0";
    let sonnet = g.catalog().tier_default(Tier::Sonnet).trim_start_matches("us.").to_owned();
    let us = || Scope::Geo("us".into());
    assert_eq!(
        quotas,
        vec![
            ("us.anthropic.claude-haiku-4-5-20251001-v1:0", Some(&QuotaKey::new(haiku, us()))),
            ("global.anthropic.claude-haiku-4-5-20251001-v1:0", Some(&QuotaKey::new(haiku, Scope::Global))),
            (g.catalog().tier_default(Tier::Sonnet), Some(&QuotaKey::new(&sonnet, us()))),
            (format!("global.{sonnet}").as_str(), Some(&QuotaKey::new(&sonnet, Scope::Global))),
        ]
    );
    // The quota's canonical ID is the ID each attempt calls Bedrock with.
    for attempt in &prepared.attempts {
        assert_eq!(attempt.quota.as_ref().map(ToString::to_string).as_deref(), Some(attempt.invoke_id.as_str()));
    }
}

#[test]
fn a_prompt_router_attempt_names_no_quota_of_its_own() {
    let g = gateway();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let prepared = g.prepare(call("a", body(arn, "hello")), Instant::now()).unwrap();
    assert_eq!(prepared.attempts.len(), 1);
    assert_eq!(prepared.attempts[0].invoke_id, arn);
    assert_eq!(prepared.attempts[0].quota, None);
}

mod deadlines {
    use super::*;
    use crate::testing::HANG;

    const HAIKU_US: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    const HAIKU_GLOBAL: &str = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
    const SONNET_US: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

    fn with_budgets(mut g: FakeGateway, budgets: Budgets) -> FakeGateway {
        g.settings.budgets = budgets;
        g
    }

    fn due_in(mut call: ConverseCall, budget: Duration) -> ConverseCall {
        call.deadline = Deadline::after(budget);
        call
    }

    fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_cache_read_is_a_miss_with_a_cache_error_within_the_cache_budget() {
        // Finding 1: a stalled store held every request, hits included, as long as it stalled.
        let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        g.ports.cache.delay_reads(HANG);
        let started = tokio::time::Instant::now();
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(started.elapsed(), millis(50), "the read is given up at the cache budget, no later");
        assert_eq!(answer.cache.result, CacheResult::Miss, "a would-be hit is served from the model");
        let error = answer.cache.error.unwrap();
        assert!(error.starts_with("read failed (timeout)"), "{error}");
        assert_eq!(g.ports.models.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_cache_write_is_abandoned_and_reported() {
        let g = with_budgets(gateway(), Budgets { cache: millis(40), ..Budgets::default() });
        g.ports.cache.delay_writes(HANG);
        let started = tokio::time::Instant::now();
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(started.elapsed(), millis(40));
        assert_eq!(answer.cache.write, Some(WriteReport::Abandoned));
        let error = answer.cache.error.unwrap();
        assert!(error.starts_with("write abandoned (timeout)"), "{error}");
        assert_eq!(g.ports.cache.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_cache_within_budget_is_still_used() {
        let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
        g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        g.ports.cache.delay_reads(millis(49));
        let answer = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Hit);
        assert_eq!(answer.cache.error, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_model_is_told_what_the_deadline_leaves() {
        let g = with_budgets(gateway(), Budgets { cache: millis(50), ..Budgets::default() });
        g.ports.cache.delay_reads(millis(30));
        g.converse(due_in(call("a", body("haiku", "hello")), millis(1_000))).await.unwrap();
        assert_eq!(g.ports.models.seen_time_limits(), vec![millis(970)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fallback_hop_is_not_started_when_the_deadline_cannot_hold_it() {
        // Finding 2: each hop had its own timeout, so two hops took twice the limit.
        let g = with_budgets(
            routed_gateway(RoutingPolicy::default()),
            Budgets { min_hop: millis(2_000), ..Budgets::default() },
        );
        throttle_haiku(&g.ports.models);
        g.ports.models.delay_model(HAIKU_US, millis(1_500));
        let started = tokio::time::Instant::now();
        let err = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(3_000))).await.unwrap_err();
        assert_eq!(started.elapsed(), millis(1_500), "the chain stops when the first hop fails");
        match &err {
            GatewayError::DeadlineExceeded { hops, remaining, needed, last } => {
                let tried: Vec<(&str, &str)> = hops.iter().map(|h| (h.model_id.as_str(), h.outcome)).collect();
                assert_eq!(tried, vec![(HAIKU_US, "throttled")]);
                assert_eq!((*remaining, *needed), (millis(1_500), millis(2_000)));
                assert!(matches!(last, Some(InvokeError::Throttled { .. })));
            }
            other => panic!("expected the deadline to stop the chain, got {other:?}"),
        }
        assert_eq!(g.ports.models.seen_models(), vec![HAIKU_US]);

        // With time to spare the same chain runs to the adjacent tier.
        let answer = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(10_000))).await.unwrap();
        assert_eq!(answer.hops.last().map(|h| (h.model_id.as_str(), h.outcome)), Some((SONNET_US, "served")));
    }

    #[tokio::test(start_paused = true)]
    async fn the_whole_call_ends_by_the_deadline_when_every_model_hangs() {
        let g = routed_gateway(RoutingPolicy::default());
        for model in [HAIKU_US, HAIKU_GLOBAL, SONNET_US] {
            g.ports.models.delay_model(model, HANG);
        }
        let started = tokio::time::Instant::now();
        let err = g.converse(due_in(auto_haiku_with_sonnet_fallback(), millis(5_000))).await.unwrap_err();
        assert_eq!(started.elapsed(), millis(5_000), "never hop count x per-hop timeout");
        match &err {
            GatewayError::DeadlineExceeded { hops, remaining, .. } => {
                assert_eq!(hops.len(), 1);
                assert_eq!(hops[0].outcome, "timeout");
                assert_eq!(*remaining, Duration::ZERO);
            }
            other => panic!("expected the deadline to stop the chain, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_model_call_that_overruns_its_deadline_is_cut_by_the_core() {
        let g = gateway();
        g.ports.models.ignore_deadlines(true);
        g.ports.models.delay_model(HAIKU_US, millis(60_000));
        let started = tokio::time::Instant::now();
        let err = g.converse(due_in(call("a", body(HAIKU_US, "hello")), millis(2_000))).await.unwrap_err();
        assert_eq!(started.elapsed(), millis(2_000));
        assert!(matches!(err, GatewayError::Model(InvokeError::Timeout(_))), "{err:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_with_no_time_left_calls_no_model() {
        let g = gateway();
        let err = g.converse(due_in(call("a", body("haiku", "hello")), Duration::ZERO)).await.unwrap_err();
        assert!(matches!(&err, GatewayError::DeadlineExceeded { hops, .. } if hops.is_empty()), "{err:?}");
        assert_eq!(g.ports.models.calls(), 0);
    }
}

mod single_flight {
    use super::*;
    use crate::testing::{Delayed, join_all};

    const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
    const MODEL_LATENCY: Duration = Duration::from_millis(100);

    type SharedGateway = Gateway<TestPorts<Arc<InMemoryCacheStore>, Delayed<Arc<FakeInvoker>>>>;

    /// A gateway whose model takes a while, over a store and a model other instances may share.
    fn instance(
        store: &Arc<InMemoryCacheStore>,
        invoker: &Arc<FakeInvoker>,
        claim_wait: Option<Duration>,
    ) -> SharedGateway {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings = GatewaySettings { claim_wait, ..GatewaySettings::from_catalog(&catalog) };
        Gateway::new(catalog, settings, TestPorts::new(store.clone(), Delayed::new(invoker.clone(), MODEL_LATENCY)))
    }

    fn fresh() -> (Arc<InMemoryCacheStore>, Arc<FakeInvoker>) {
        (Arc::default(), Arc::default())
    }

    /// The cache key `converse` computes for `call`, to plant a claim of a crashed instance.
    fn key_of(g: &SharedGateway, call: &ConverseCall) -> CacheKey {
        let Ok(Target::Model(m)) = g.catalog().resolve(HAIKU) else { panic!("haiku resolves") };
        let mut request = call.request.clone();
        request.model_id = None;
        CacheKey::compute(&call.tenant, &m.spec.model_id, &request)
    }

    #[tokio::test]
    async fn identical_concurrent_misses_share_one_model_call() {
        let (store, invoker) = fresh();
        let g = instance(&store, &invoker, None);
        let answers = join_all((0..8).map(|_| g.converse(call("a", body("haiku", "new prompt"))))).await;
        assert_eq!(invoker.calls(), 1);
        let answers: Vec<Answer> = answers.into_iter().map(Result::unwrap).collect();
        let leaders: Vec<&Answer> = answers.iter().filter(|a| !a.cache.coalesced).collect();
        assert_eq!(leaders.len(), 1);
        let leader = leaders[0];
        assert_eq!(leader.cache.result, CacheResult::Miss);
        let paid = leader.cost_usd.unwrap();
        for follower in answers.iter().filter(|a| a.cache.coalesced) {
            assert_eq!(follower.cache.result, CacheResult::Hit, "x-cache stays a documented value");
            assert_eq!(follower.cost_usd, Some(0.0));
            assert_eq!(follower.cache.saved_usd, Some(paid));
            assert_eq!(follower.cache.write, None);
            assert!(follower.hops.is_empty(), "a follower made no model call");
            assert_eq!(follower.response, leader.response);
            assert_eq!(follower.cache.key, leader.cache.key);
        }
        let json = serde_json::to_value(&answers.iter().find(|a| a.cache.coalesced).unwrap().cache).unwrap();
        assert_eq!(json["coalesced"], true);
        assert!(serde_json::to_value(&leader.cache).unwrap().get("coalesced").is_none());
        assert_eq!(g.flights.in_flight(), 0, "the map keeps nothing once the flight lands");
    }

    #[tokio::test]
    async fn different_keys_and_bypasses_never_coalesce() {
        let (store, invoker) = fresh();
        let g = instance(&store, &invoker, None);
        let mut off = call("a", body("haiku", "p"));
        off.cache.mode = Some(CacheMode::Off);
        let mut refresh = call("a", body("haiku", "p"));
        refresh.cache.mode = Some(CacheMode::WriteOnly);
        let mut sampled = call("a", body("haiku", "p"));
        sampled.request.inference_config = None;
        let calls = vec![
            call("a", body("haiku", "p")),
            call("b", body("haiku", "p")),
            call("a", body("haiku", "q")),
            call("a", body("sonnet", "p")),
            off.clone(),
            off,
            refresh,
            sampled.clone(),
            sampled,
        ];
        let answers = join_all(calls.into_iter().map(|c| g.converse(c))).await;
        assert!(answers.iter().all(|a| !a.as_ref().unwrap().cache.coalesced));
        assert_eq!(invoker.calls(), 9);
    }

    #[tokio::test]
    async fn followers_share_the_leaders_failure_instead_of_calling_again() {
        let (store, invoker) = fresh();
        let g = instance(&store, &invoker, None);
        invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
        let results = join_all((0..8).map(|_| g.converse(call("a", body(HAIKU, "p"))))).await;
        assert_eq!(invoker.calls(), 1, "a throttled model is asked once, not eight times");
        for result in results {
            let err = result.unwrap_err();
            assert!(matches!(err, GatewayError::Model(InvokeError::Throttled { retry_after: Some(_), .. })), "{err:?}");
        }
        // The failure is not remembered: the next request tries again.
        invoker.succeed();
        assert_eq!(g.converse(call("a", body(HAIKU, "p"))).await.unwrap().cache.result, CacheResult::Miss);
        assert_eq!(g.flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_over_to_a_follower() {
        let (store, invoker) = fresh();
        let g = Arc::new(instance(&store, &invoker, None));
        let spawn = |g: &Arc<SharedGateway>| {
            let g = g.clone();
            tokio::spawn(async move { g.converse(call("a", body("haiku", "p"))).await })
        };
        let leader = spawn(&g);
        tokio::time::sleep(MODEL_LATENCY / 4).await;
        let follower = spawn(&g);
        tokio::time::sleep(MODEL_LATENCY / 4).await;
        leader.abort();
        let answer = tokio::time::timeout(Duration::from_secs(5), follower).await.unwrap().unwrap().unwrap();
        assert_eq!(answer.cache.result, CacheResult::Miss, "the follower called the model itself");
        assert!(!answer.cache.coalesced);
        // The leader was dropped during its model's latency, before the model counted it.
        assert_eq!(invoker.calls(), 1);
        assert_eq!(g.flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_claim_lets_two_instances_share_one_call() {
        let (store, invoker) = fresh();
        let wait = Some(Duration::from_secs(5));
        let (a, b) = (instance(&store, &invoker, wait), instance(&store, &invoker, wait));
        let requests = (0..8).map(|i| {
            let g = if i % 2 == 0 { &a } else { &b };
            g.converse(call("a", body("haiku", "p")))
        });
        let answers: Vec<Answer> = join_all(requests).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(invoker.calls(), 1);
        assert_eq!(answers.iter().filter(|a| a.cache.result == CacheResult::Miss).count(), 1);
        assert!(answers.iter().filter(|a| a.cache.result == CacheResult::Hit).all(|a| a.cache.coalesced));
        assert_eq!(store.claim_count(), 0, "the claim is released once the answer is stored");

        // Without the claim, each instance pays once.
        let (store, invoker) = fresh();
        let (a, b) = (instance(&store, &invoker, None), instance(&store, &invoker, None));
        let requests = (0..8).map(|i| {
            let g = if i % 2 == 0 { &a } else { &b };
            g.converse(call("a", body("haiku", "p")))
        });
        join_all(requests).await;
        assert_eq!(invoker.calls(), 2);
    }

    #[tokio::test]
    async fn a_crashed_claimant_blocks_no_one_beyond_the_wait_budget() {
        let (store, invoker) = fresh();
        let budget = Duration::from_millis(300);
        let g = instance(&store, &invoker, Some(budget));
        let request = call("a", body("haiku", "p"));
        let key = key_of(&g, &request);
        let Ok(Claim::Acquired(_)) = store.claim(&key, SystemTime::now(), Duration::from_secs(600)).await else {
            panic!("the planted claim is taken")
        };
        let started = Instant::now();
        let answer = g.converse(request).await.unwrap();
        let waited = started.elapsed();
        assert_eq!(answer.cache.result, CacheResult::Miss);
        assert_eq!(invoker.calls(), 1);
        assert!(waited >= budget, "waited {waited:?}");
        assert!(waited < budget + MODEL_LATENCY + Duration::from_millis(300), "waited {waited:?}");
    }

    #[tokio::test]
    async fn an_expired_claim_is_taken_over_at_once() {
        let (store, invoker) = fresh();
        let g = instance(&store, &invoker, Some(Duration::from_secs(5)));
        let request = call("a", body("haiku", "p"));
        let key = key_of(&g, &request);
        assert!(matches!(store.claim(&key, SystemTime::now(), Duration::from_secs(600)).await, Ok(Claim::Acquired(_))));
        store.expire_claims();
        let started = Instant::now();
        let answer = g.converse(request).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Miss);
        assert!(started.elapsed() < Duration::from_secs(1), "no wait on an expired claim: {:?}", started.elapsed());
        assert_eq!(store.claim_count(), 0);
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_claimant_fails() {
        let (store, failing) = fresh();
        let answering = Arc::new(FakeInvoker::default());
        let wait = Some(Duration::from_secs(5));
        let (a, b) = (instance(&store, &failing, wait), instance(&store, &answering, wait));
        failing.fail_with(|| InvokeError::ModelFailed { message: "boom".into() });
        let first = a.converse(call("a", body(HAIKU, "p")));
        let second = async {
            tokio::time::sleep(MODEL_LATENCY / 4).await;
            b.converse(call("a", body(HAIKU, "p"))).await
        };
        let started = Instant::now();
        let (first, second) = tokio::join!(first, second);
        assert!(matches!(first, Err(GatewayError::Model(InvokeError::ModelFailed { .. }))), "{first:?}");
        assert_eq!(second.unwrap().cache.result, CacheResult::Miss, "the waiter called once the claim was released");
        assert!(started.elapsed() < Duration::from_secs(2), "released, not waited out: {:?}", started.elapsed());
        assert_eq!((failing.calls(), answering.calls()), (1, 1));
        assert_eq!(store.claim_count(), 0);
    }

    #[tokio::test]
    async fn claim_failures_are_reported_and_the_request_served() {
        let (store, invoker) = fresh();
        let g = instance(&store, &invoker, Some(Duration::from_secs(5)));
        store.fail_claims(true);
        let answer = g.converse(call("a", body("haiku", "p"))).await.unwrap();
        assert_eq!(answer.cache.result, CacheResult::Miss);
        assert!(matches!(answer.cache.write, Some(WriteReport::Stored { .. })));
        assert!(answer.cache.error.unwrap().contains("claim failed (store)"));
        assert_eq!(invoker.calls(), 1);
    }
}

/// A model whose whole answer to anything is `words` one-token words, cut at `maxTokens`,
/// and continued from a prefill that is a prefix of it, as a real model continues.
#[derive(Debug, Default)]
struct Author {
    words: usize,
    seen_max_tokens: std::sync::Mutex<Vec<Option<u32>>>,
}

impl crate::ports::ModelInvoker for Author {
    async fn converse(
        &self,
        _model_id: &str,
        request: &ConverseRequest,
        _deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        self.seen_max_tokens.lock().unwrap().push(request.max_tokens());
        let full: String = (0..self.words).map(|i| format!(" w{}", i % 10)).collect();
        let full = full.trim_start().to_owned();
        let prefill = match request.messages.last() {
            Some(m) if m.role == crate::request::Role::Assistant => m.content.iter().find_map(|b| match b {
                crate::request::ContentBlock::Text(t) => Some(t.clone()),
                _ => None,
            }),
            _ => None,
        };
        let rest = match &prefill {
            Some(p) => full.strip_prefix(p.as_str()).unwrap().to_owned(),
            None => full,
        };
        let words: Vec<&str> = rest.split_inclusive(' ').collect();
        let limit = request.max_tokens().map_or(usize::MAX, |m| m as usize);
        let (text, stop) =
            if words.len() > limit { (words[..limit].concat(), "max_tokens") } else { (words.concat(), "end_turn") };
        let text = if prefill.is_some() && !text.starts_with(' ') { format!(" {text}") } else { text };
        let output = text.split_whitespace().count() as i64;
        Ok(serde_json::from_value(serde_json::json!({
            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
            "stopReason": stop,
            "usage": {"inputTokens": 10, "outputTokens": output, "totalTokens": 10 + output},
            "metrics": {"latencyMs": 5}
        }))
        .unwrap())
    }
}

fn author_gateway(words: usize, prior: u32) -> Gateway<TestPorts<InMemoryCacheStore, Arc<Author>>> {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings {
        output_lengths: crate::outputs::OutputLengthSettings {
            prior,
            floor: 1,
            ..crate::outputs::OutputLengthSettings::default()
        },
        ..GatewaySettings::from_catalog(&catalog)
    };
    let author = Arc::new(Author { words, ..Author::default() });
    Gateway::new(catalog, settings, TestPorts::new(InMemoryCacheStore::default(), author))
}

fn without_max_tokens(text: &str) -> serde_json::Value {
    serde_json::json!({"modelId": "haiku", "messages": [{"role": "user", "content": [{"text": text}]}]})
}

#[tokio::test]
async fn a_request_without_max_tokens_reserves_a_learned_limit_and_still_gets_its_whole_answer() {
    let gateway = author_gateway(250, 100);
    let answer = gateway.converse(call("t", without_max_tokens("tell me everything"))).await.unwrap();
    let seen = gateway.ports().models.seen_max_tokens.lock().unwrap().clone();
    // The learned limit, not the model's 64K; the continuation may take twice as much.
    assert_eq!(seen, [Some(100), Some(200)]);
    assert_eq!(answer.response.stop_reason, "end_turn");
    let text = answer.response.text();
    assert_eq!(text.split_whitespace().count(), 250);
    assert!(text.starts_with("w0 w1") && text.ends_with("w9"), "{text}");
    // Every call is priced and counted: two prompts, all the output.
    assert_eq!((answer.response.usage.input_tokens, answer.response.usage.output_tokens), (20, 250));
    let expected = gateway
        .catalog()
        .cost_of(&answer.model_id, &Usage::from(&answer.response.usage), crate::cost::PricingMode::OnDemand)
        .unwrap();
    assert_eq!(answer.cost_usd, Some(expected));
}

#[tokio::test]
async fn an_explicit_max_tokens_is_honoured_as_given_and_never_continued() {
    let gateway = author_gateway(250, 100);
    let mut body = without_max_tokens("tell me everything");
    body["inferenceConfig"] = serde_json::json!({"maxTokens": 40});
    let answer = gateway.converse(call("t", body)).await.unwrap();
    assert_eq!(*gateway.ports().models.seen_max_tokens.lock().unwrap(), vec![Some(40)]);
    assert_eq!(answer.response.stop_reason, "max_tokens");
    assert_eq!(answer.response.usage.output_tokens, 40);
}

#[tokio::test]
async fn learned_limits_follow_the_answers_seen_on_the_route() {
    let gateway = author_gateway(30, 4_096);
    for i in 0..25 {
        gateway.converse(call("t", without_max_tokens(&format!("question {i}")))).await.unwrap();
    }
    let seen = gateway.ports().models.seen_max_tokens.lock().unwrap().clone();
    assert_eq!(seen[0], Some(4_096), "the prior before anything is learned");
    let last = seen.last().copied().flatten().unwrap();
    assert!((30..=34).contains(&last), "learned from 30-token answers: {last}");
}

mod admission {
    use super::*;
    use crate::admission::{Admission, AdmissionSettings, memory::MemoryBudgetStore};
    use crate::catalog::{Quota, Scope};
    use crate::quota::QuotaKey;

    const HAIKU: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

    /// Haiku's `us.` quota holds one request's reservation at a time; its global one is ample.
    fn admitted_gateway(fallback: bool) -> FakeGateway {
        let catalog = Arc::new(Catalog::embedded().unwrap());
        let settings = GatewaySettings { fallback, ..GatewaySettings::from_catalog(&catalog) };
        let limits = [
            (QuotaKey::new(HAIKU, Scope::Geo("us".into())), Quota { tpm: 1_100, rpm: 100 }),
            (QuotaKey::new(HAIKU, Scope::Global), Quota { tpm: 1_000_000, rpm: 1_000 }),
        ]
        .into_iter()
        .collect();
        let admission_settings = AdmissionSettings { wait: Duration::from_millis(50), ..AdmissionSettings::default() };
        let admission = Admission::new(MemoryBudgetStore::new(), admission_settings, limits, "i-1".into());
        Gateway::new(catalog, settings, fakes()).with_admission(Arc::new(admission))
    }

    fn uncached(text: &str) -> ConverseCall {
        let mut c = call("t", body("haiku", text));
        c.cache = CacheOptions { mode: Some(CacheMode::Off), ..CacheOptions::default() };
        c
    }

    #[tokio::test]
    async fn an_admitted_answer_says_what_it_reserved_and_settled() {
        let gateway = admitted_gateway(true);
        let answer = gateway.converse(uncached("one")).await.unwrap();
        let admission = answer.admission.unwrap();
        assert_eq!(admission.quota, format!("us.{HAIKU}"));
        assert!(!admission.spilled);
        assert_eq!(admission.calls, 1);
        // input + max(maxTokens, burndown x maxTokens): at least Bedrock's own reservation.
        assert!(admission.reserved_tokens >= 1_000, "{admission:?}");
        let usage = Usage::from(&answer.response.usage);
        let spec = gateway.catalog().by_model_id(HAIKU).unwrap();
        assert_eq!(admission.settled_tokens, spec.quota_tokens(&usage));
    }

    #[tokio::test]
    async fn a_full_quota_spills_to_the_next_profile_before_bedrock_throttles() {
        let gateway = admitted_gateway(true);
        gateway.converse(uncached("one")).await.unwrap();
        let answer = gateway.converse(uncached("two")).await.unwrap();
        let admission = answer.admission.unwrap();
        assert!(admission.spilled, "{admission:?}");
        assert_eq!(admission.quota, format!("global.{HAIKU}"));
        let outcomes: Vec<&str> = answer.hops.iter().map(|h| h.outcome).collect();
        assert_eq!(outcomes, ["quota_exhausted", "served"]);
        assert_eq!(gateway.ports().models.seen_models(), [format!("us.{HAIKU}"), format!("global.{HAIKU}")]);
    }

    #[tokio::test]
    async fn without_a_spill_the_request_is_refused_with_a_retry_after_from_the_window() {
        let gateway = admitted_gateway(false);
        gateway.converse(uncached("one")).await.unwrap();
        let error = gateway.converse(uncached("two")).await.unwrap_err();
        let GatewayError::QuotaExhausted { refusal, hops } = &error else { panic!("{error}") };
        assert_eq!(error.label(), ErrorLabel::QuotaExhausted);
        assert_eq!(hops.len(), 1);
        // The first request's settled tokens leave the 60 s window no later than a minute.
        assert!(refusal.retry_after > Duration::ZERO && refusal.retry_after <= Duration::from_secs(60), "{refusal:?}");
        assert!(refusal.waited >= Duration::from_millis(50), "{refusal:?}");
        assert_eq!(gateway.ports().models.calls(), 1, "the refused request never reached Bedrock");
    }
}

mod usage_records {
    use super::*;
    use crate::cost::PricingMode;
    use crate::usage::build::{Served, answered, failed};
    use crate::usage::{UsageOutcome, UsageSource};

    fn served<'a>(tenant: &'a Tenant, id: &'a str) -> Served<'a> {
        Served { source: UsageSource::Online, request_id: id, tenant, finished_at_ms: 1_740_000_000_000 }
    }

    #[tokio::test]
    async fn a_miss_is_priced_and_counted_against_its_quota_and_a_hit_records_what_it_saved() {
        let g = gateway();
        let tenant = Tenant::new("a");
        let miss = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        let record = answered(served(&tenant, "r1"), &miss, g.catalog(), PricingMode::OnDemand);
        let usage = Usage::from(&miss.response.usage);
        assert_eq!((record.input_tokens, record.output_tokens), (usage.input_tokens, usage.output_tokens));
        assert_eq!(record.quota.as_deref(), Some("us.anthropic.claude-haiku-4-5-20251001-v1:0"));
        assert_eq!(record.quota_tokens, usage.input_tokens + 5 * usage.output_tokens, "haiku 4.5 burns output at 5x");
        assert_eq!((record.tier, record.model_calls, record.cost_usd), (Some(Tier::Haiku), 1, miss.cost_usd.unwrap()));
        assert_eq!(record.tenant, tenant.as_str());

        let hit = g.converse(call("a", body("haiku", "hello"))).await.unwrap();
        let record = answered(served(&tenant, "r2"), &hit, g.catalog(), PricingMode::OnDemand);
        assert_eq!((record.cache, record.quota.clone(), record.quota_tokens), (Some(CacheResult::Hit), None, 0));
        assert_eq!((record.cost_usd, record.saved.cache_usd), (0.0, miss.cost_usd.unwrap()));
        assert_eq!((record.input_tokens, record.model_calls), (0, 0));
    }

    #[tokio::test]
    async fn a_routed_answer_saves_what_the_strongest_allowed_tier_would_have_cost() {
        let g = routed_gateway(RoutingPolicy::default());
        let tenant = Tenant::new("a");
        let answer = g.converse(auto_haiku_with_sonnet_fallback()).await.unwrap();
        let record = answered(served(&tenant, "r1"), &answer, g.catalog(), PricingMode::OnDemand);
        let usage = Usage::from(&answer.response.usage);
        let sonnet =
            g.catalog().cost_of("us.anthropic.claude-sonnet-4-5-20250929-v1:0", &usage, PricingMode::OnDemand).unwrap();
        assert!((record.saved.routing_usd - (sonnet - record.cost_usd)).abs() < 1e-12, "{record:?}");
        assert!(record.saved.routing_usd > 0.0);
        let batch = answered(served(&tenant, "r1"), &answer, g.catalog(), PricingMode::Batch);
        assert_eq!(batch.saved.batch_usd, 0.0, "the answer was priced on demand; only a batch-priced one saves");
    }

    #[tokio::test]
    async fn a_throttled_chain_records_its_calls_and_throttles() {
        let g = gateway();
        throttle_haiku(&g.ports.models);
        let tenant = Tenant::new("a");
        let error = g.converse(call("a", body("haiku", "hi"))).await.unwrap_err();
        let record = failed(served(&tenant, "r1"), &error, g.catalog(), Duration::from_millis(40));
        assert_eq!(record.outcome, UsageOutcome::Failed(ErrorLabel::Throttled));
        assert_eq!((record.model_calls, record.throttles_received, record.latency_ms), (2, 2, 40));
        assert_eq!((record.tier, record.cost_usd, record.quota_refused), (Some(Tier::Haiku), 0.0, false));
    }
}

pub(crate) fn sampler_for(
    tenant: &str,
    files: Arc<crate::batch::memory::MemoryFiles>,
) -> Arc<crate::calibration::Sampler> {
    let config = crate::calibration::CalibrationConfig {
        tenants: crate::calibration::OptIns::new(vec![(Tenant::new(tenant), 1.0)]),
        bucket: "calibration-bucket".into(),
        prefix: "calibration/".into(),
        role_arn: None,
        min_prompts: 1,
        max_prompts: 1,
        catalog_path: None,
        tier_overrides: Default::default(),
    };
    Arc::new(crate::calibration::Sampler::new(&config, files))
}

#[tokio::test]
async fn only_opted_in_answered_requests_are_sampled_and_a_failed_sample_changes_no_answer() {
    let files = Arc::new(crate::batch::memory::MemoryFiles::default());
    let g = gateway().with_sampler(sampler_for("acme", files.clone()));
    let origin = Origin { source: crate::usage::UsageSource::Online, request_id: "r1".into() };
    let sampled = g.converse_and_record(call("acme", body("haiku", "hello")), &origin).await.unwrap();
    g.converse_and_record(call("other", body("haiku", "hello")), &origin).await.unwrap();
    let uris = files.uris();
    assert_eq!(uris.len(), 1, "{uris:?}");
    assert!(uris[0].starts_with("s3://calibration-bucket/calibration/samples/header~2F4~3Aacme/"), "{uris:?}");
    let sample: crate::calibration::SampledPrompt = serde_json::from_slice(&files.get(&uris[0]).unwrap()).unwrap();
    assert_eq!(sample.tenant, Tenant::new("acme").as_str());
    assert_eq!(sample.messages, call("acme", body("haiku", "hello")).request.messages);

    // A refused request is not sampled.
    assert!(g.converse_and_record(call("acme", body("no-such-model", "x")), &origin).await.is_err());
    assert_eq!(files.uris().len(), 1);

    files.fail_next_writes(1);
    let answer = g.converse_and_record(call("acme", body("haiku", "again")), &origin).await.unwrap();
    assert_eq!(answer.response.text().is_empty(), sampled.response.text().is_empty());
    let sampler = g.sampler().unwrap();
    assert_eq!((sampler.written(), sampler.failed()), (1, 1));
    assert_eq!(files.uris().len(), 1);
}

/// A body setting all three sampling parameters.
fn sampled_body(model: &str) -> serde_json::Value {
    let mut body = body(model, "hello");
    body["inferenceConfig"] = serde_json::json!({"temperature": 0.3, "topP": 0.9, "maxTokens": 200});
    body["additionalModelRequestFields"] = serde_json::json!({"top_k": 5});
    body
}

#[tokio::test]
async fn each_model_is_sent_only_the_sampling_parameters_it_accepts_and_the_hop_says_what_was_left_out() {
    let gateway = gateway();
    let sent_config = |i: usize| {
        let sent = &gateway.ports().models().seen_requests()[i];
        let config = sent.inference_config.clone().unwrap_or_default();
        (config.temperature, config.top_p, config.max_tokens, sent.additional_model_request_fields.clone())
    };
    let fields = Some(serde_json::json!({"top_k": 5}));

    // Claude 3.7 Sonnet takes the three together: sent as asked.
    let answer =
        gateway.converse(call("a", sampled_body("us.anthropic.claude-3-7-sonnet-20250219-v1:0"))).await.unwrap();
    assert_eq!(sent_config(0), (Some(0.3), Some(0.9), Some(200), fields.clone()));
    assert!(answer.hops[0].omitted.is_empty());

    // Haiku 4.5 refuses temperature with topP: topP goes, top_k stays.
    let answer = gateway.converse(call("a", sampled_body("haiku"))).await.unwrap();
    assert_eq!(sent_config(1), (Some(0.3), None, Some(200), fields));
    assert_eq!(answer.hops[0].omitted, ["topP"]);
    assert_eq!(answer.omitted(), ["topP"]);

    // Opus 4.7 takes none of them.
    let answer = gateway.converse(call("a", sampled_body("global.anthropic.claude-opus-4-7"))).await.unwrap();
    assert_eq!(sent_config(2), (None, None, Some(200), None));
    assert_eq!(answer.hops[0].omitted, ["temperature", "topP", "top_k"]);

    // The caller's request is the cache's: a repeat is a hit on the same entry.
    let repeat = gateway.converse(call("a", sampled_body("global.anthropic.claude-opus-4-7"))).await.unwrap();
    assert_eq!(repeat.cache.result, CacheResult::Bypass, "temperature 0.3 samples, so nothing is cached");
}

#[tokio::test]
async fn a_fallback_to_a_model_with_another_rule_is_sent_what_that_model_accepts() {
    // The sonnet tier on Claude 3.7 Sonnet, which takes temperature with topP; haiku throttled.
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let mut settings = GatewaySettings { fallback: true, ..GatewaySettings::from_catalog(&catalog) };
    settings.tier_models.insert(Tier::Sonnet, "us.anthropic.claude-3-7-sonnet-20250219-v1:0".into());
    let router = Router::new(
        RouterModel::embedded().unwrap(),
        catalog.clone(),
        settings.tier_models.clone(),
        RoutingPolicy::default(),
    );
    let g = Gateway::new(catalog, settings, fakes()).with_router(router);
    throttle_haiku(&g.ports.models);
    let mut request = auto_haiku_with_sonnet_fallback();
    request.request = ConverseRequest::from_json(sampled_body("auto").to_string().as_bytes()).unwrap();
    let answer = g.converse(request).await.unwrap();

    let hops: Vec<(&str, &str, Vec<&str>)> =
        answer.hops.iter().map(|h| (h.model_id.as_str(), h.outcome, h.omitted.clone())).collect();
    assert_eq!(
        hops,
        vec![
            ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled", vec!["topP"]),
            ("global.anthropic.claude-haiku-4-5-20251001-v1:0", "throttled", vec!["topP"]),
            ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", "served", vec![]),
        ]
    );
    let top_p: Vec<Option<f32>> =
        g.ports.models.seen_requests().iter().map(|r| r.inference_config.as_ref().and_then(|c| c.top_p)).collect();
    assert_eq!(top_p, [None, None, Some(0.9)]);
}

#[tokio::test]
async fn each_model_is_sent_the_form_of_thinking_it_takes() {
    let gateway = gateway();
    let thinking_body = |model: &str, thinking: serde_json::Value| {
        let mut body = body(model, "think first");
        body["inferenceConfig"] = serde_json::json!({"maxTokens": 6000});
        body["additionalModelRequestFields"] = serde_json::json!({"thinking": thinking});
        body
    };
    let sent_thinking = |i: usize| {
        let sent = &gateway.ports().models().seen_requests()[i];
        sent.additional_model_request_fields.as_ref().and_then(|f| f.get("thinking").cloned())
    };

    // Haiku 4.5 thinks only with a budget: adaptive thinking becomes half of maxTokens.
    let adaptive = serde_json::json!({"type": "adaptive"});
    let answer = gateway.converse(call("a", thinking_body("haiku", adaptive.clone()))).await.unwrap();
    assert_eq!(sent_thinking(0), Some(serde_json::json!({"type": "enabled", "budget_tokens": 3000})));
    assert_eq!(answer.omitted(), ["thinking.adaptive"]);

    // Sonnet 4.6 takes it as asked; Opus 4.7 refuses `disabled`, which is its default anyway.
    gateway.converse(call("a", thinking_body("us.anthropic.claude-sonnet-4-6", adaptive))).await.unwrap();
    assert_eq!(sent_thinking(1), Some(serde_json::json!({"type": "adaptive"})));
    let off = serde_json::json!({"type": "disabled"});
    let answer = gateway.converse(call("a", thinking_body("global.anthropic.claude-opus-4-7", off))).await.unwrap();
    assert_eq!(sent_thinking(2), None);
    assert_eq!(answer.hops[0].omitted, ["thinking.disabled"]);

    // A budget on Opus 4.7 becomes adaptive thinking; a temperature beside thinking goes.
    let mut budgeted = thinking_body(
        "global.anthropic.claude-opus-4-8",
        serde_json::json!({"type": "enabled", "budget_tokens": 2048}),
    );
    budgeted["inferenceConfig"]["temperature"] = serde_json::json!(0.2);
    let answer = gateway.converse(call("a", budgeted.clone())).await.unwrap();
    assert_eq!(sent_thinking(3), Some(serde_json::json!({"type": "adaptive"})));
    assert_eq!(answer.hops[0].omitted, ["temperature", "thinking.budget_tokens"]);
    budgeted["modelId"] = "us.anthropic.claude-3-7-sonnet-20250219-v1:0".into();
    let answer = gateway.converse(call("a", budgeted)).await.unwrap();
    let sent = &gateway.ports().models().seen_requests()[4];
    assert_eq!(sent.inference_config.as_ref().and_then(|c| c.temperature), None);
    assert_eq!(sent_thinking(4), Some(serde_json::json!({"type": "enabled", "budget_tokens": 2048})));
    assert_eq!(answer.hops[0].omitted, ["temperature"]);
}
