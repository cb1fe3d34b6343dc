//! The handler driven by the same API Gateway events that `sam local invoke -e` and
//! `cargo lambda invoke --data-file` use, over the embedded catalog and router model.
//!
//! The model artifact may be retrained, so routing assertions are relative (a hard prompt
//! never goes to a cheaper tier than an easy one) or follow from the policy alone (bounds,
//! tolerance extremes), never a specific tier for a specific prompt under the default policy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::collections::BTreeMap;

use gateway_core::catalog::Catalog;
use gateway_core::config::RoutingConfig;
use gateway_core::routing::RouterModel;
use http_support::testing::{with_body, with_header};
use lambda_http::Request;
use router::{Handler, StartupError};

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";
const SONNET: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

fn handler_with(vars: &[(&str, &str)]) -> Result<Handler, StartupError> {
    let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Handler::from_config(&RoutingConfig::from_lookup(|k| vars.get(k).cloned())?)
}

/// The deployment defaults: tolerance 10 %, Haiku to Opus, no default model.
fn handler() -> Handler {
    handler_with(&[]).unwrap()
}

fn event(name: &str) -> Request {
    http_support::testing::event("router", name)
}

#[derive(Debug)]
struct Reply {
    status: u16,
    tier_header: Option<String>,
    allow: Option<String>,
    body: serde_json::Value,
}

impl Reply {
    fn tier_rank(&self) -> usize {
        let tier = self.body["tier"].as_str().unwrap();
        ["haiku", "sonnet", "opus"].iter().position(|t| *t == tier).unwrap_or_else(|| panic!("tier {tier}"))
    }

    fn tier_estimate(&self, tier: &str) -> &serde_json::Value {
        self.body["tiers"].as_array().unwrap().iter().find(|t| t["tier"] == tier).unwrap()
    }
}

async fn send(handler: &Handler, request: Request) -> Reply {
    let reply = http_support::testing::Reply::from(handler.handle(request).await.unwrap());
    Reply {
        status: reply.status,
        tier_header: reply.header("x-route-tier"),
        allow: reply.header("allow"),
        body: reply.body,
    }
}

fn assert_decision_shape(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(reply.tier_header.as_deref(), body["tier"].as_str());
    assert!(body["modelId"].as_str().unwrap().contains("anthropic"), "{body}");
    assert!(body["reason"].is_string() && body["qualityTolerance"].is_number());
    assert!(body["minTier"].is_string() && body["maxTier"].is_string());
    assert!(body["estimatedInputTokens"].as_u64().unwrap() > 0);
    assert!(body["expectedOutputTokens"].as_u64().unwrap() > 0);
    assert!(body["latencyMicros"].is_u64());
    assert!(body["expectedCostUsd"].as_f64().unwrap() <= body["strongestExpectedCostUsd"].as_f64().unwrap());
    let tiers = body["tiers"].as_array().unwrap();
    assert_eq!(tiers.iter().map(|t| t["tier"].as_str().unwrap()).collect::<Vec<_>>(), ["haiku", "sonnet", "opus"]);
    for tier in tiers {
        let adequacy = tier["adequacy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&adequacy), "{tier}");
        assert!(tier["expectedCostUsd"].as_f64().unwrap() > 0.0, "{tier}");
        assert!(tier["allowed"].is_boolean() && tier["modelId"].is_string());
    }
}

#[tokio::test]
async fn an_easy_prompt_never_routes_above_a_hard_reasoning_and_code_prompt() {
    let h = handler();
    let easy = send(&h, event("easy-prompt.json")).await;
    let hard = send(&h, event("hard-prompt.json")).await;
    assert_decision_shape(&easy);
    assert_decision_shape(&hard);
    assert!(hard.tier_rank() >= easy.tier_rank(), "easy {} / hard {}", easy.body["tier"], hard.body["tier"]);
    for tier in ["haiku", "sonnet"] {
        let adequacy = |r: &Reply| r.tier_estimate(tier)["adequacy"].as_f64().unwrap();
        let (e, d) = (adequacy(&easy), adequacy(&hard));
        assert!(e > d, "{tier}: easy {e} should be more adequate than hard {d}");
    }
    // Under the default policy every tier is allowed, the strongest has no threshold.
    assert_eq!((easy.body["minTier"].as_str(), easy.body["maxTier"].as_str()), (Some("haiku"), Some("opus")));
    assert_eq!(easy.body["qualityTolerance"], 10.0);
    assert!(easy.tier_estimate("opus")["threshold"].is_null());
    assert!(easy.tier_estimate("haiku")["threshold"].is_number());
    // Costs grow with the tier; the input estimate with the prompt; the predicted answer
    // length stays within the request's maxTokens (256 for the easy prompt).
    let cost = |r: &Reply, t: &str| r.tier_estimate(t)["expectedCostUsd"].as_f64().unwrap();
    assert!(cost(&easy, "haiku") < cost(&easy, "sonnet") && cost(&easy, "sonnet") < cost(&easy, "opus"));
    let number = |r: &Reply, field: &str| r.body[field].as_u64().unwrap();
    assert!(number(&hard, "estimatedInputTokens") > number(&easy, "estimatedInputTokens"));
    assert!((1..=256).contains(&number(&easy, "expectedOutputTokens")), "{}", easy.body);
    // `auto` is echoed.
    assert_eq!((easy.body["forced"].as_bool(), easy.body["requestedModelId"].as_str()), (Some(false), Some("auto")));
    assert_eq!((hard.body["forced"].as_bool(), hard.body["requestedModelId"].as_str()), (Some(false), Some("auto")));
}

#[tokio::test]
async fn tier_bounds_from_headers_are_honoured() {
    let h = handler();
    let capped = send(&h, event("max-tier-haiku.json")).await;
    assert_eq!(capped.status, 200, "{}", capped.body);
    assert_eq!((capped.body["tier"].as_str(), capped.body["reason"].as_str()), (Some("haiku"), Some("single_tier")));
    assert_eq!(capped.tier_header.as_deref(), Some("haiku"));
    assert_eq!(capped.body["modelId"], HAIKU);
    assert_eq!(capped.body["maxTier"], "haiku");
    assert_eq!(capped.tier_estimate("opus")["allowed"], false);
    assert_eq!(capped.body["expectedCostUsd"], capped.body["strongestExpectedCostUsd"]);

    let floored = send(&h, event("min-tier-opus.json")).await;
    assert_eq!((floored.body["tier"].as_str(), floored.body["reason"].as_str()), (Some("opus"), Some("single_tier")));
    assert_eq!(floored.tier_estimate("haiku")["allowed"], false);

    // Header values are case-insensitive; a narrower range stays inside its bounds.
    let mid = send(&h, with_header(event("hard-prompt.json"), "x-route-max-tier", "Sonnet")).await;
    assert!(mid.tier_rank() <= 1, "{}", mid.body);
    let top_two = send(&h, with_header(event("easy-prompt.json"), "x-route-min-tier", "sonnet")).await;
    assert!(top_two.tier_rank() >= 1, "{}", top_two.body);
}

#[tokio::test]
async fn tolerance_trades_quality_for_cost() {
    let h = handler();
    for name in ["easy-prompt.json", "hard-prompt.json"] {
        let strict = send(&h, with_header(event(name), "x-route-quality-tolerance", "0")).await;
        let loose = send(&h, with_header(event(name), "x-route-quality-tolerance", "100%")).await;
        assert_eq!((strict.status, loose.status), (200, 200));
        assert_eq!(
            (strict.body["qualityTolerance"].as_f64(), loose.body["qualityTolerance"].as_f64()),
            (Some(0.0), Some(100.0))
        );
        assert!(loose.tier_rank() <= strict.tier_rank(), "{name}: {} vs {}", loose.body["tier"], strict.body["tier"]);
        let threshold = |r: &Reply| r.tier_estimate("haiku")["threshold"].as_f64().unwrap();
        assert!(threshold(&loose) < threshold(&strict), "{name}");
    }
    // At 100 % the easy prompt goes to the cheapest allowed tier.
    let loose = send(&h, with_header(event("easy-prompt.json"), "x-route-quality-tolerance", "100")).await;
    assert_eq!(loose.body["tier"], "haiku", "{}", loose.body);
}

#[tokio::test]
async fn a_concrete_model_is_reported_as_forced_with_the_decision_it_skips() {
    let h = handler();
    let forced = send(&h, event("forced-model.json")).await;
    assert_decision_shape(&forced);
    assert_eq!(forced.body["forced"], true);
    assert_eq!(forced.body["requestedModelId"], SONNET);
    assert_eq!(
        (forced.body["forcedModelId"].as_str(), forced.body["forcedTier"].as_str()),
        (Some(SONNET), Some("sonnet"))
    );
    // The decision itself is the one the router would make for the same prompt.
    let routed = send(&h, event("easy-prompt.json")).await;
    assert_eq!(forced.body["tier"], routed.body["tier"]);
    assert_eq!(forced.body["tiers"], routed.body["tiers"]);

    let easy = |model: &str| {
        with_body(
            event("easy-prompt.json"),
            &format!(
                r#"{{"modelId":"{model}","messages":[{{"role":"user","content":[{{"text":"What is the capital of France?"}}]}}]}}"#
            ),
        )
    };
    let tier_name = send(&h, easy("HAIKU")).await;
    assert_eq!(
        (tier_name.body["forcedModelId"].as_str(), tier_name.body["forcedTier"].as_str()),
        (Some(HAIKU), Some("haiku"))
    );
    let arn = format!("arn:aws:bedrock:us-east-1:123456789012:inference-profile/{SONNET}");
    assert_eq!(send(&h, easy(&arn)).await.body["forcedModelId"], arn.as_str());
    let prompt_router = "arn:aws:bedrock:us-east-1:123456789012:default-prompt-router/anthropic.claude:1";
    let reply = send(&h, easy(prompt_router)).await;
    assert_eq!((reply.status, reply.body["forced"].as_bool()), (200, Some(true)));
    assert!(reply.body.get("forcedTier").is_none());
    // `auto` in any case routes.
    assert_eq!(send(&h, easy("AuTo")).await.body["forced"], false);
}

#[tokio::test]
async fn unknown_models_are_400s() {
    let h = handler();
    let reply = send(&h, event("unknown-model.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "unknown_model");
    assert_eq!(reply.body["error"]["field"], "modelId");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("gpt-4o"));
    assert_eq!(reply.body["error"]["requestId"], "Rt6fDqR7IAMEV6F=");
    assert!(reply.tier_header.is_none());
}

#[tokio::test]
async fn the_default_model_stands_in_for_a_missing_model_id() {
    let no_model =
        || with_body(event("hard-prompt.json"), r#"{"messages":[{"role":"user","content":[{"text":"Why?"}]}]}"#);
    let h = handler_with(&[("DEFAULT_MODEL_ID", "sonnet")]).unwrap();
    let reply = send(&h, no_model()).await;
    assert_eq!((reply.body["forced"].as_bool(), reply.body["requestedModelId"].as_str()), (Some(true), Some("sonnet")));
    let auto = handler_with(&[("DEFAULT_MODEL_ID", "auto")]).unwrap();
    assert_eq!(send(&auto, no_model()).await.body["forced"], false);
}

#[tokio::test]
async fn the_deployers_policy_applies_and_headers_move_it() {
    let h = handler_with(&[("ROUTER_MAX_TIER", "sonnet"), ("ROUTER_QUALITY_TOLERANCE", "25")]).unwrap();
    let reply = send(&h, event("hard-prompt.json")).await;
    assert_eq!((reply.body["maxTier"].as_str(), reply.body["qualityTolerance"].as_f64()), (Some("sonnet"), Some(25.0)));
    assert!(reply.tier_rank() <= 1);
    let raised = send(&h, with_header(event("hard-prompt.json"), "x-route-min-tier", "opus")).await;
    assert_eq!(raised.body["tier"], "opus", "a request's lone min above the deployer's max wins");
}

#[tokio::test]
async fn bad_override_headers_are_400s_naming_the_header() {
    let h = handler();
    let reply = send(&h, event("bad-override.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "invalid_routing");
    assert_eq!(reply.body["error"]["field"], "x-route-quality-tolerance");
    let cases = [
        ("x-route-min-tier", "gpt", "x-route-min-tier"),
        ("x-route-max-tier", "", "x-route-max-tier"),
        ("x-route-quality-tolerance", "-1", "x-route-quality-tolerance"),
        ("x-route-quality-tolerance", "lots", "x-route-quality-tolerance"),
    ];
    for (name, value, field) in cases {
        let reply = send(&h, with_header(event("easy-prompt.json"), name, value)).await;
        assert_eq!((reply.status, reply.body["error"]["field"].as_str()), (400, Some(field)), "{name}: {value}");
        assert_eq!(reply.body["error"]["type"], "invalid_routing");
    }
    let crossed =
        with_header(with_header(event("easy-prompt.json"), "x-route-min-tier", "opus"), "x-route-max-tier", "haiku");
    assert_eq!(send(&h, crossed).await.body["error"]["field"], "x-route-min-tier");
}

#[tokio::test]
async fn malformed_and_invalid_bodies_are_400s() {
    let h = handler();
    let reply = send(&h, event("malformed-body.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["type"], "malformed_json");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("not valid JSON"));
    assert!(reply.body["error"].get("field").is_none());
    let cases = [
        (r#"{"modelId":"auto","messages":[]}"#, "messages"),
        (r#"{"messages":[{"role":"assistant","content":[{"text":"hi"}]}]}"#, "messages[0].role"),
        (r#"{"messages":[{"role":"user","content":[{"video":{}}]}]}"#, "messages[0].content[0]"),
        (r#"[1,2,3]"#, "$"),
    ];
    for (body, field) in cases {
        let reply = send(&h, with_body(event("easy-prompt.json"), body)).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.body["error"]["type"], "invalid_request", "{body}");
        assert_eq!(reply.body["error"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn wrong_route_and_method_are_rejected() {
    let h = handler();
    let mut get = event("easy-prompt.json");
    *get.method_mut() = lambda_http::http::Method::GET;
    let reply = send(&h, get).await;
    assert_eq!((reply.status, reply.allow.as_deref()), (405, Some("POST")));
    assert_eq!(reply.body["error"]["type"], "method_not_allowed");

    let mut json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}/../../events/router/easy-prompt.json", env!("CARGO_MANIFEST_DIR")))
            .unwrap(),
    )
    .unwrap();
    json["rawPath"] = "/v1/converse".into();
    json["requestContext"]["http"]["path"] = "/v1/converse".into();
    let reply = send(&h, lambda_http::request::from_str(&json.to_string()).unwrap()).await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.body["error"]["type"], "not_found");
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("/v1/converse"));
}

#[tokio::test]
async fn decisions_name_the_embedded_model_version() {
    let reply = send(&handler(), event("easy-prompt.json")).await;
    assert_eq!(reply.body["modelVersion"], RouterModel::embedded().unwrap().version());
}

#[test]
fn bad_configuration_fails_the_cold_start_with_the_variable_named() {
    let error = handler_with(&[("ROUTER_MIN_TIER", "opus"), ("ROUTER_MAX_TIER", "haiku")]).unwrap_err();
    assert!(error.to_string().contains("ROUTER_MIN_TIER"), "{error}");
    let error = handler_with(&[("TIER_HAIKU_MODEL_ID", SONNET)]).unwrap_err();
    assert!(error.to_string().contains("TIER_HAIKU_MODEL_ID"), "{error}");
    let error = handler_with(&[("CATALOG_PATH", "/nonexistent/catalog.toml")]).unwrap_err();
    assert!(matches!(error, StartupError::Catalog(_)));
    assert!(
        error.to_string().contains("/nonexistent/catalog.toml") && error.to_string().contains("No such file"),
        "{error}"
    );
}

#[test]
fn tier_overrides_reach_the_decision() {
    let global = "global.anthropic.claude-haiku-4-5-20251001-v1:0";
    let h = handler_with(&[("TIER_HAIKU_MODEL_ID", global)]).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let reply = runtime.block_on(send(&h, event("max-tier-haiku.json")));
    assert_eq!(reply.body["modelId"], global);
    let catalog = Catalog::embedded().unwrap();
    assert_eq!(catalog.tier_default(gateway_core::catalog::Tier::Haiku), HAIKU);
}
