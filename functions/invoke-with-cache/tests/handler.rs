//! The handler driven by the same API Gateway events that `sam local invoke -e` and
//! `cargo lambda invoke --data-file` use, over in-memory fakes of the ports.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::Duration;

use gateway_core::admission::memory::MemoryBudgetStore;
use gateway_core::admission::{Admission, AdmissionSettings};
use gateway_core::catalog::{Catalog, Quota, Scope};
use gateway_core::ports::InvokeError;
use gateway_core::quota::QuotaKey;
use gateway_core::service::{Gateway, GatewaySettings};
use gateway_core::testing::{FakeInvoker, InMemoryCacheStore, TestPorts};
use http_support::testing::{with_body, with_header};
use invoke_with_cache::Handler;
use lambda_http::Request;

type TestHandler = Handler<TestPorts>;

struct Fixture {
    handler: TestHandler,
    store: Arc<InMemoryCacheStore>,
    invoker: Arc<FakeInvoker>,
}

fn fixture() -> Fixture {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let ports = TestPorts::fakes();
    let (store, invoker) = (ports.cache.clone(), ports.models.clone());
    Fixture { handler: Handler::new(Gateway::new(catalog, settings, ports)), store, invoker }
}

fn event(name: &str) -> Request {
    http_support::testing::event("invoke-with-cache", name)
}

struct Reply {
    status: u16,
    cache_header: Option<String>,
    retry_after: Option<String>,
    body: serde_json::Value,
}

async fn send(f: &Fixture, request: Request) -> Reply {
    let reply = http_support::testing::Reply::from(f.handler.handle(request).await.unwrap());
    Reply {
        status: reply.status,
        cache_header: reply.header("x-cache"),
        retry_after: reply.header("retry-after"),
        body: reply.body,
    }
}

#[tokio::test]
async fn valid_request_is_a_miss_then_the_reordered_repeat_is_a_hit() {
    let f = fixture();
    let first = send(&f, event("valid-request.json")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.cache_header.as_deref(), Some("MISS"));
    assert_eq!(first.body["cache"]["result"], "MISS");
    assert_eq!(first.body["modelId"], "us.anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_eq!(first.body["requestedModelId"], "haiku");
    assert!(first.body["costUsd"].as_f64().unwrap() > 0.0);
    assert!(first.body["output"]["message"]["content"][0]["text"].is_string());
    assert!(first.body["usage"]["inputTokens"].as_i64().unwrap() > 0);

    let repeat = send(&f, event("repeat-request.json")).await;
    assert_eq!(repeat.status, 200, "{}", repeat.body);
    assert_eq!(repeat.cache_header.as_deref(), Some("HIT"));
    assert_eq!(repeat.body["cache"]["savedUsd"], first.body["costUsd"]);
    assert_eq!(repeat.body["costUsd"], 0.0);
    assert_eq!(repeat.body["output"], first.body["output"]);
    assert_eq!(f.invoker.calls(), 1);
}

#[tokio::test]
async fn another_tenant_never_reads_the_first_tenants_answer() {
    let f = fixture();
    assert_eq!(send(&f, event("valid-request.json")).await.cache_header.as_deref(), Some("MISS"));
    let other = send(&f, event("other-tenant.json")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.cache_header.as_deref(), Some("MISS"));
    assert_eq!(f.invoker.calls(), 2);
}

#[tokio::test]
async fn an_expired_entry_is_a_miss() {
    let f = fixture();
    send(&f, event("valid-request.json")).await;
    f.store.expire_all();
    assert_eq!(send(&f, event("repeat-request.json")).await.cache_header.as_deref(), Some("MISS"));
}

#[tokio::test]
async fn malformed_body_is_a_400_naming_the_problem() {
    let f = fixture();
    let reply = send(&f, event("malformed-body.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "malformed_json");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("not valid JSON"));
    assert_eq!(f.invoker.calls(), 0);
}

#[tokio::test]
async fn unknown_model_is_a_400_naming_the_model() {
    let f = fixture();
    let reply = send(&f, event("unknown-model.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "unknown_model");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("gpt-4o"));
}

#[tokio::test]
async fn invalid_fields_are_400s_that_name_the_field() {
    let f = fixture();
    let cases = [
        (r#"{"modelId":"haiku","messages":[]}"#, "messages"),
        (r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#, "modelId"),
        (
            r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":3}}"#,
            "inferenceConfig.temperature",
        ),
        (
            r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":900000}}"#,
            "inferenceConfig.maxTokens",
        ),
        (r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"video":{}}]}]}"#, "messages[0].content[0]"),
        (r#"[1,2,3]"#, "$"),
    ];
    for (body, field) in cases {
        let reply = send(&f, with_body(event("valid-request.json"), body)).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.body["error"]["type"], "invalid_request", "{body}");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
    let bad_header = send(&f, with_header(event("valid-request.json"), "x-cache-mode", "maybe")).await;
    assert_eq!((bad_header.status, bad_header.body["error"]["field"].as_str()), (400, Some("x-cache-mode")));
    assert_eq!(f.invoker.calls(), 0);
}

#[tokio::test]
async fn cache_headers_bypass_and_refresh() {
    let f = fixture();
    let off = send(&f, with_header(event("valid-request.json"), "x-cache-mode", "off")).await;
    assert_eq!(off.cache_header.as_deref(), Some("BYPASS"));
    assert_eq!(f.store.len(), 0);
    send(&f, event("valid-request.json")).await;
    let refreshed = send(&f, with_header(event("valid-request.json"), "x-cache-mode", "write_only")).await;
    assert_eq!(refreshed.cache_header.as_deref(), Some("BYPASS"));
    assert_eq!(f.invoker.calls(), 3);
}

#[tokio::test]
async fn throttling_that_survives_retries_is_a_429_with_retry_after() {
    let f = fixture();
    f.invoker.fail_with(|| InvokeError::Throttled { message: "Too many tokens".into(), retry_after: None });
    let reply = send(&f, event("valid-request.json")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.body["error"]["type"], "throttled");
    assert!(reply.retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn a_request_admission_cannot_fit_is_a_429_quota_exhausted_with_the_windows_retry_after() {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings { fallback: false, ..GatewaySettings::from_catalog(&catalog) };
    // Haiku's `us.` quota admits one request per window: the second must be refused.
    let key = QuotaKey::new("anthropic.claude-haiku-4-5-20251001-v1:0", Scope::Geo("us".into()));
    let limits = [(key, Quota { tpm: 1_000_000, rpm: 1 })].into_iter().collect();
    let admission_settings =
        AdmissionSettings { headroom_percent: 0, wait: Duration::from_millis(50), ..AdmissionSettings::default() };
    let admission = Admission::new(MemoryBudgetStore::new(), admission_settings, limits, "i-1".into());
    let ports = TestPorts::fakes();
    let invoker = ports.models.clone();
    let gateway = Gateway::new(catalog, settings, ports).with_admission(Arc::new(admission));
    let f = Fixture { handler: Handler::new(gateway), store: Arc::new(InMemoryCacheStore::default()), invoker };
    let uncached = || with_header(event("valid-request.json"), "x-cache-mode", "off");

    assert_eq!(send(&f, uncached()).await.status, 200);
    let refused = send(&f, uncached()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let error = &refused.body["error"];
    assert_eq!(error["type"], "quota_exhausted");
    assert_eq!(error["limit"], "requests");
    assert_eq!(error["quota"], "us.anthropic.claude-haiku-4-5-20251001-v1:0");
    // The first request leaves the 60 s window within a minute of its admission; Retry-After
    // is that wait rounded up to whole seconds.
    let retry_after_ms = error["retryAfterMs"].as_u64().unwrap();
    assert!(retry_after_ms > 0 && retry_after_ms <= 60_000, "{error}");
    let seconds: u64 = refused.retry_after.unwrap().parse().unwrap();
    assert_eq!(seconds, retry_after_ms.div_ceil(1_000));
    assert!(error["waitedMs"].as_u64().unwrap() >= 50, "{error}");
    assert_eq!(f.invoker.calls(), 1, "the refused request never reached Bedrock");
}

#[tokio::test]
async fn bedrock_failures_map_to_gateway_statuses() {
    let cases: [(fn() -> InvokeError, u16); 5] = [
        (|| InvokeError::Unavailable { message: "x".into() }, 503),
        (|| InvokeError::Internal { message: "x".into() }, 502),
        (|| InvokeError::ModelTimeout { message: "x".into() }, 504),
        (|| InvokeError::Timeout("deadline".into()), 504),
        (|| InvokeError::Rejected { message: "too long".into() }, 400),
    ];
    for (make, status) in cases {
        let f = fixture();
        f.invoker.fail_with(make);
        assert_eq!(send(&f, event("valid-request.json")).await.status, status);
    }
}

#[tokio::test]
async fn a_failing_cache_does_not_fail_the_request() {
    let f = fixture();
    f.store.fail_reads(true);
    f.store.fail_writes(true);
    let reply = send(&f, event("valid-request.json")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.cache_header.as_deref(), Some("MISS"));
    assert!(reply.body["cache"]["error"].as_str().unwrap().contains("failed"));
}

#[tokio::test]
async fn wrong_route_and_method_are_rejected() {
    let f = fixture();
    let mut get = event("valid-request.json");
    *get.method_mut() = lambda_http::http::Method::GET;
    let reply = send(&f, get).await;
    assert_eq!(reply.status, 405);
}

fn routed_fixture() -> Fixture {
    use gateway_core::config::RoutingConfig;
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let router = RoutingConfig::from_lookup(|_| None).unwrap().router(catalog.clone()).unwrap();
    let ports = TestPorts::fakes();
    let (store, invoker) = (ports.cache.clone(), ports.models.clone());
    let gateway = Gateway::new(catalog, settings, ports).with_router(router);
    Fixture { handler: Handler::new(gateway), store, invoker }
}

#[tokio::test]
async fn auto_requests_carry_the_decision_and_hit_the_cache_on_repeat() {
    let f = routed_fixture();
    let first = send(&f, event("auto-request.json")).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let routing = &first.body["routing"];
    let tier = routing["tier"].as_str().unwrap();
    assert_eq!(first.body["modelId"], routing["modelId"], "served by the routed model");
    assert_eq!(first.body["requestedModelId"], "auto");
    assert_eq!(routing["tiers"].as_array().unwrap().len(), 3);
    assert_eq!(
        routing["modelVersion"].as_str().unwrap(),
        gateway_core::routing::RouterModel::embedded().unwrap().version()
    );
    assert_eq!(first.body["hops"][0]["outcome"], "served");
    assert_eq!(first.body["hops"][0]["tier"], tier);
    let again = send(&f, event("auto-request.json")).await;
    assert_eq!(again.cache_header.as_deref(), Some("HIT"));
    assert_eq!(again.body["routing"]["tier"], tier);
    assert_eq!(f.invoker.calls(), 1);
    assert_eq!(f.store.len(), 1);
}

#[tokio::test]
async fn route_headers_bound_the_choice() {
    let f = routed_fixture();
    let capped = send(&f, event("auto-capped.json")).await;
    assert_eq!(capped.status, 200, "{}", capped.body);
    assert_eq!(capped.body["routing"]["maxTier"], "sonnet");
    assert_eq!(capped.body["routing"]["qualityTolerance"], 5.0);
    assert_ne!(capped.body["routing"]["tier"], "opus");
    let only_haiku = with_header(event("auto-request.json"), "x-route-max-tier", "haiku");
    let reply = send(&f, only_haiku).await;
    assert_eq!(reply.body["routing"]["tier"], "haiku");
    assert_eq!(reply.body["routing"]["reason"], "single_tier");
}

#[tokio::test]
async fn bad_route_headers_are_named_in_a_400() {
    let f = routed_fixture();
    let reply = send(&f, event("bad-route-header.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "invalid_routing");
    assert_eq!(reply.body["error"]["field"], "x-route-min-tier");
    assert_eq!(f.invoker.calls(), 0);
}

#[tokio::test]
async fn auto_without_routing_configured_is_a_400_on_model_id() {
    let f = fixture();
    let reply = send(&f, event("auto-request.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["field"], "modelId");
}

#[tokio::test]
async fn every_served_request_leaves_one_usage_record_under_its_request_id() {
    use gateway_core::service::CacheResult;
    use gateway_core::usage::memory::MemoryUsageLedger;
    use gateway_core::usage::{Recorder, UsageOutcome, UsageSource};

    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let ports = TestPorts::fakes();
    let invoker = ports.models.clone();
    let ledger = Arc::new(MemoryUsageLedger::default());
    let gateway = Gateway::new(catalog, settings, ports).with_usage(ledger.clone() as Arc<dyn Recorder>);
    let handler = Handler::new(gateway);
    let send = |request| handler.handle(request);
    let first = http_support::testing::Reply::from(send(event("valid-request.json")).await.unwrap());
    let repeat = http_support::testing::Reply::from(send(event("repeat-request.json")).await.unwrap());
    invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
    let throttled = http_support::testing::Reply::from(
        send(with_body(
            event("valid-request.json"),
            r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"new"}]}]}"#,
        ))
        .await
        .unwrap(),
    );
    assert_eq!((first.status, repeat.status, throttled.status), (200, 200, 429));

    let records = ledger.all();
    assert_eq!(records.len(), 2, "the repeat and the throttled retry share the events' request ID: {records:?}");
    let hit = records.iter().find(|r| r.cache == Some(CacheResult::Hit)).unwrap();
    assert!(hit.saved.cache_usd > 0.0 && hit.source == UsageSource::Online);
    assert!(records.iter().any(|r| r.cache == Some(CacheResult::Miss) && r.cost_usd > 0.0));
    assert!(!records.iter().any(|r| matches!(r.outcome, UsageOutcome::Failed(_))), "keyed by request ID, stored once");
}

#[tokio::test]
async fn a_parameter_the_model_refuses_is_left_out_and_named_in_a_header() {
    let f = fixture();
    let request = event("openai-temperature-and-top-p.json");
    let reply = http_support::testing::Reply::from(f.handler.handle(request).await.unwrap());
    assert_eq!(reply.status, 200, "{}", reply.body);
    // Haiku 4.5 refuses temperature with top_p: the call went without top_p.
    assert_eq!(reply.header("x-sampling-omitted").as_deref(), Some("topP"));
    let sent = f.invoker.seen_requests();
    let config = sent[0].inference_config.as_ref().unwrap();
    assert_eq!((config.temperature, config.top_p), (Some(0.7), None));

    let plain = http_support::testing::Reply::from(f.handler.handle(event("openai-chat.json")).await.unwrap());
    assert_eq!(plain.header("x-sampling-omitted"), None);
}
