//! Deferrable requests (`x-defer: true`) and `GET /v1/requests/{id}`, over the in-memory
//! batch fakes: what the caller is told now, and what the status shows as the request
//! moves through a job.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::SystemTime;

use gateway_core::batch::memory::MemoryStatuses;
use gateway_core::batch::{
    JobPlan, JobPlans, PutOnce, RecordFailure, RecordResult, RecordSource, ResultState, ResultStore, SubmittedRecord,
};
use gateway_core::catalog::Catalog;
use gateway_core::cost::Usage;
use gateway_core::label::ErrorLabel;
use gateway_core::service::{Gateway, GatewaySettings};
use gateway_core::testing::{FakeInvoker, TestPorts};
use http_support::testing::{Reply, with_body, with_header};
use invoke_with_cache::Handler;
use lambda_http::{Request, RequestExt};

const HAIKU_BASE_ID: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";

struct Fixture {
    handler: Handler<TestPorts, MemoryStatuses>,
    batch: MemoryStatuses,
    invoker: Arc<FakeInvoker>,
}

fn gateway() -> (Gateway<TestPorts>, Arc<FakeInvoker>) {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let ports = TestPorts::fakes();
    let invoker = ports.models.clone();
    (Gateway::new(catalog, settings, ports), invoker)
}

fn fixture() -> Fixture {
    let (gateway, invoker) = gateway();
    let batch = MemoryStatuses::default();
    Fixture { handler: Handler::new(gateway).with_batch(batch.clone()), batch, invoker }
}

fn event(name: &str) -> Request {
    http_support::testing::event("invoke-with-cache", name)
}

/// `request-status.json` asking for `id`.
fn status_of(id: &str) -> Request {
    event("request-status.json").with_raw_http_path(format!("/v1/requests/{id}"))
}

async fn send<B: gateway_core::batch::defer::DeferPorts>(h: &Handler<TestPorts, B>, request: Request) -> Reply {
    Reply::from(h.handle(request).await.unwrap())
}

/// Sends `deferred-request.json`, checks the 202, and returns the record that waits.
async fn defer(f: &Fixture) -> SubmittedRecord {
    let reply = send(&f.handler, event("deferred-request.json")).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["requestId"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(reply.body["status"], "pending");
    assert_eq!(reply.body["statusUrl"], format!("/v1/requests/{id}"));
    assert_eq!(reply.header("location"), Some(format!("/v1/requests/{id}")));
    let waiting = f.batch.pending.all();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].record_id.request_id(), id);
    waiting[0].clone()
}

fn answer(text: &str) -> gateway_core::request::ConverseResponse {
    serde_json::from_value(serde_json::json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 40, "outputTokens": 60, "totalTokens": 100},
        "metrics": {"latencyMs": 900}
    }))
    .unwrap()
}

fn result(record: &SubmittedRecord, job: &str, state: ResultState) -> RecordResult {
    RecordResult {
        job_id: job.to_owned(),
        record_id: record.record_id.clone(),
        tenant: record.tenant.clone(),
        model_id: record.model_id.clone(),
        state,
        missing_from_output: false,
        run_id: "run-1".to_owned(),
        stored_at_ms: 1_700_000_000_000,
    }
}

fn plan(record: &SubmittedRecord, job: &str) -> JobPlan {
    JobPlan {
        job_name: job.to_owned(),
        model_id: record.model_id.clone(),
        input_uri: format!("s3://bucket/batch/input/{job}.jsonl"),
        output_uri: "s3://bucket/batch/output/".to_owned(),
        records: 1,
        planned_at: SystemTime::now(),
    }
}

#[tokio::test]
async fn a_deferred_request_is_accepted_then_shows_pending_in_job_and_answered_with_costs() {
    let f = fixture();
    let record = defer(&f).await;
    assert_eq!(f.invoker.calls(), 0, "a deferred request calls no model now");
    assert_eq!(record.model_id, HAIKU_BASE_ID, "the record names the base model the tier resolves to");
    assert_eq!(record.source, RecordSource::Deferred);
    assert_eq!(record.record_id.attempt(), 1);
    assert!(record.request.model_id.is_none(), "keyed as online: the request without its modelId");
    let id = record.record_id.request_id().to_owned();

    let pending = send(&f.handler, status_of(&id)).await;
    assert_eq!(pending.status, 200, "{}", pending.body);
    assert_eq!(pending.body["requestId"], id.as_str());
    assert_eq!((pending.body["status"].as_str(), pending.body["attempt"].as_u64()), (Some("pending"), Some(1)));
    assert!(pending.body.get("jobName").is_none() && pending.body.get("output").is_none());
    assert_eq!(pending.body["costUsd"], 0.0);

    let job = "gw-20261202141500-0123456789ab";
    f.batch.plans.plan(&plan(&record, job), std::slice::from_ref(&record)).await.unwrap();
    let in_job = send(&f.handler, status_of(&id)).await;
    assert_eq!((in_job.body["status"].as_str(), in_job.body["jobName"].as_str()), (Some("in_job"), Some(job)));

    // The completion writes the record's result.
    let state = ResultState::Answered {
        response: answer("Batch it."),
        usage: Usage { input_tokens: 40, output_tokens: 60, ..Usage::default() },
        batch_cost_usd: Some(0.00017),
        on_demand_cost_usd: Some(0.00034),
    };
    assert_eq!(f.batch.results.put_once(&result(&record, job, state)).await.unwrap(), PutOnce::Written);
    let done = send(&f.handler, status_of(&id)).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(done.body["status"], "answered");
    assert_eq!(done.body["jobName"], job);
    assert_eq!(done.body["output"]["output"]["message"]["content"][0]["text"], "Batch it.");
    assert_eq!(done.body["output"]["stopReason"], "end_turn");
    assert_eq!(done.body["usage"]["inputTokens"], 40);
    assert_eq!(done.body["usage"]["outputTokens"], 60);
    assert_eq!(done.body["costUsd"], 0.00017);
    assert_eq!(done.body["onDemandCostUsd"], 0.00034);
    assert!((done.body["savedUsd"].as_f64().unwrap() - 0.00017).abs() < 1e-12);
    assert!(done.body.get("error").is_none());
}

#[tokio::test]
async fn a_failed_record_shows_its_label_and_a_retry_shows_retrying() {
    let f = fixture();
    let record = defer(&f).await;
    let id = record.record_id.request_id().to_owned();
    let failure = RecordFailure { label: ErrorLabel::Throttled, code: Some(429), message: "slow down".into() };
    f.batch
        .results
        .put_once(&result(&record, "gw-job-1", ResultState::Retrying { failure: failure.clone() }))
        .await
        .unwrap();
    let retrying = send(&f.handler, status_of(&id)).await;
    assert_eq!(retrying.body["status"], "retrying", "{}", retrying.body);
    assert_eq!(retrying.body["error"]["label"], "throttled");
    assert_eq!(retrying.body["error"]["message"], "slow down");

    let mut second = record.clone();
    second.record_id = record.record_id.next_attempt();
    f.batch.results.put_once(&result(&second, "gw-job-2", ResultState::Failed { failure })).await.unwrap();
    let failed = send(&f.handler, status_of(&id)).await;
    assert_eq!((failed.body["status"].as_str(), failed.body["attempt"].as_u64()), (Some("failed"), Some(2)));
    assert_eq!(failed.body["jobName"], "gw-job-2");
}

#[tokio::test]
async fn a_deferrable_request_the_cache_can_answer_is_answered_at_once() {
    let f = fixture();
    let first = send(&f.handler, event("valid-request.json")).await;
    assert_eq!((first.status, first.header("x-cache").as_deref()), (200, Some("MISS")));
    let hit = send(&f.handler, with_header(event("repeat-request.json"), "x-defer", "true")).await;
    assert_eq!(hit.status, 200, "{}", hit.body);
    assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(hit.body["output"], first.body["output"]);
    assert_eq!(hit.body["costUsd"], 0.0);
    assert!(f.batch.pending.is_empty(), "a hit waits for nothing");
    assert_eq!(f.invoker.calls(), 1);
}

#[tokio::test]
async fn a_deferred_record_is_keyed_as_the_same_request_online() {
    let f = fixture();
    let record = defer(&f).await;
    let online = send(&f.handler, with_header(event("deferred-request.json"), "x-defer", "false")).await;
    assert_eq!((online.status, online.header("x-cache").as_deref()), (200, Some("MISS")), "{}", online.body);
    assert_eq!(online.body["cache"]["key"], record.cache_key().to_hex());
}

#[tokio::test]
async fn bad_deferrable_requests_fail_exactly_as_online() {
    let f = fixture();
    let deferrable = |r: Request| with_header(r, "x-defer", "true");
    let bodies = [
        r#"{"modelId":"haiku","messages":[]}"#,
        r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":900000}}"#,
        r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"hi"}]}],"bogus":1}"#,
    ];
    let mut requests: Vec<Request> = vec![event("malformed-body.json"), event("unknown-model.json")];
    requests.extend(bodies.iter().map(|b| with_body(event("valid-request.json"), b)));
    for online in requests {
        let deferred = deferrable(online.clone());
        let (online, deferred) = (send(&f.handler, online).await, send(&f.handler, deferred).await);
        assert_eq!(deferred.status, 400, "{}", deferred.body);
        assert_eq!(deferred.status, online.status);
        assert_eq!(deferred.body["error"]["type"], online.body["error"]["type"], "{}", deferred.body);
        assert_eq!(deferred.body["error"]["field"], online.body["error"]["field"]);
    }
    assert!(f.batch.pending.is_empty());
    assert_eq!(f.invoker.calls(), 0);
}

#[tokio::test]
async fn what_batch_inference_cannot_run_and_bad_defer_headers_are_400s_naming_the_field() {
    let f = fixture();
    let tools = r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"weather?"}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"weather","inputSchema":{"json":{"type":"object"}}}}]}}"#;
    let reply = send(&f.handler, with_body(event("deferred-request.json"), tools)).await;
    assert_eq!((reply.status, reply.body["error"]["field"].as_str()), (400, Some("toolConfig")), "{}", reply.body);
    assert_eq!(reply.body["error"]["type"], "invalid_request");
    for value in ["yes", "1", "TRUE"] {
        let reply = send(&f.handler, with_header(event("deferred-request.json"), "x-defer", value)).await;
        assert_eq!((reply.status, reply.body["error"]["field"].as_str()), (400, Some("x-defer")), "{value}");
    }
    let twice = http_support::testing::add_header(event("deferred-request.json"), "x-defer", "true");
    let reply = send(&f.handler, twice).await;
    assert_eq!((reply.status, reply.body["error"]["field"].as_str()), (400, Some("x-defer")));
    assert!(f.batch.pending.is_empty());
}

#[tokio::test]
async fn another_tenants_request_is_unknown() {
    let f = fixture();
    let id = defer(&f).await.record_id.request_id().to_owned();
    // other-tenant.json's authorizer names another subject.
    let path = format!("{}/../../events/invoke-with-cache/other-tenant.json", env!("CARGO_MANIFEST_DIR"));
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["rawPath"] = format!("/v1/requests/{id}").into();
    json["requestContext"]["http"]["method"] = "GET".into();
    json.as_object_mut().unwrap().remove("body");
    let reply = send(&f.handler, http_support::testing::event_from_json(&json.to_string())).await;
    assert_eq!((reply.status, reply.body["error"]["type"].as_str()), (404, Some("not_found")), "{}", reply.body);
    assert!(!reply.body.to_string().contains("pending"));
    assert_eq!(send(&f.handler, status_of(&id)).await.status, 200, "its own tenant still sees it");
}

#[tokio::test]
async fn an_unknown_request_id_is_a_404() {
    let f = fixture();
    defer(&f).await;
    let reply = send(&f.handler, event("request-status.json")).await;
    assert_eq!((reply.status, reply.body["error"]["type"].as_str()), (404, Some("not_found")), "{}", reply.body);
    for id in ["no%20such", "a.b", &"a".repeat(129)] {
        assert_eq!(send(&f.handler, status_of(id)).await.status, 404, "{id}");
    }
}

#[tokio::test]
async fn the_routes_answer_their_own_method_only() {
    let f = fixture();
    let mut post_status = event("request-status.json");
    *post_status.method_mut() = lambda_http::http::Method::POST;
    let reply = send(&f.handler, post_status).await;
    assert_eq!((reply.status, reply.header("allow").as_deref()), (405, Some("GET")), "{}", reply.body);
    let mut get_converse = event("valid-request.json");
    *get_converse.method_mut() = lambda_http::http::Method::GET;
    let reply = send(&f.handler, get_converse).await;
    assert_eq!((reply.status, reply.header("allow").as_deref()), (405, Some("POST")));
    for path in ["/v1/requests/", "/v1/requests/a/b", "/v1/requests"] {
        let reply = send(&f.handler, event("request-status.json").with_raw_http_path(path)).await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.body["error"]["message"].as_str().unwrap().contains("GET /v1/requests/{id}"));
    }
}

#[tokio::test]
async fn behind_a_named_stage_the_status_url_keeps_the_stage() {
    let f = fixture();
    let path = format!("{}/../../events/invoke-with-cache/deferred-request.json", env!("CARGO_MANIFEST_DIR"));
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["requestContext"]["stage"] = "prod".into();
    json["rawPath"] = "/prod/v1/converse".into();
    let reply = send(&f.handler, http_support::testing::event_from_json(&json.to_string())).await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let id = reply.body["requestId"].as_str().unwrap();
    assert_eq!(reply.body["statusUrl"], format!("/prod/v1/requests/{id}"));
}

#[tokio::test]
async fn without_a_batch_table_deferral_is_a_400_and_every_id_unknown() {
    let (gateway, invoker) = gateway();
    let handler = Handler::new(gateway);
    let reply = send(&handler, event("deferred-request.json")).await;
    assert_eq!((reply.status, reply.body["error"]["field"].as_str()), (400, Some("x-defer")), "{}", reply.body);
    assert!(reply.body["error"]["message"].as_str().unwrap().contains("no batch table"));
    assert_eq!(invoker.calls(), 0);
    let reply = send(&handler, event("request-status.json")).await;
    assert_eq!((reply.status, reply.body["error"]["type"].as_str()), (404, Some("not_found")));
    // The same body without the header is served online.
    let online = send(&handler, with_header(event("deferred-request.json"), "x-defer", "false")).await;
    assert_eq!(online.status, 200, "{}", online.body);
}
