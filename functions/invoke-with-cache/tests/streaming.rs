//! invoke-stream's handler driven by the Function URL events of `events/invoke-stream/`, over
//! in-memory fakes, reading the streamed body frame by frame as the runtime would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_core::catalog::Catalog;
use gateway_core::ports::InvokeError;
use gateway_core::service::{Gateway, GatewaySettings};
use gateway_core::testing::{FakeInvoker, TestPorts};
use gateway_core::usage::memory::MemoryUsageLedger;
use gateway_core::usage::{Minute, MinuteUsage, UsageError, UsageLedger, UsageRecord};
use http_body_util::BodyExt;
use invoke_with_cache::streaming::StreamHandler;
use lambda_http::Request;

/// A usage ledger as slow as a loaded DynamoDB: the stream's events must not wait for it.
#[derive(Debug, Default)]
struct SlowLedger(MemoryUsageLedger);

// Below the usage write budget (250 ms), past which the write is given up.
const LEDGER_DELAY: Duration = Duration::from_millis(200);

impl UsageLedger for SlowLedger {
    async fn record(&self, record: &UsageRecord) -> Result<(), UsageError> {
        tokio::time::sleep(LEDGER_DELAY).await;
        self.0.record(record).await
    }

    async fn minute(&self, minute: Minute) -> Result<MinuteUsage, UsageError> {
        self.0.minute(minute).await
    }
}

struct Fixture {
    handler: &'static StreamHandler<TestPorts>,
    invoker: Arc<FakeInvoker>,
    usage: Arc<SlowLedger>,
}

fn fixture() -> Fixture {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let ports = TestPorts::fakes();
    let invoker = ports.models.clone();
    let usage = Arc::new(SlowLedger::default());
    let gateway = Gateway::new(catalog, settings, ports).with_usage(usage.clone());
    Fixture { handler: Box::leak(Box::new(StreamHandler::new(gateway))), invoker, usage }
}

fn event(name: &str) -> Request {
    http_support::testing::event("invoke-stream", name)
}

/// The response as it arrives: status, headers, and each frame with when it came.
struct Streamed {
    status: u16,
    headers: lambda_http::http::HeaderMap,
    frames: Vec<(Duration, String)>,
}

impl Streamed {
    fn text(&self) -> String {
        self.frames.iter().map(|(_, f)| f.as_str()).collect()
    }

    /// The `data:` lines of the server-sent events, parsed (`[DONE]` left out).
    fn data(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn events(&self) -> Vec<String> {
        self.text().lines().filter_map(|l| l.strip_prefix("event: ")).map(str::to_owned).collect()
    }
}

async fn send(f: &Fixture, request: Request) -> Streamed {
    let started = Instant::now();
    let response = f.handler.handle(request).await.unwrap();
    let (parts, mut body) = response.into_parts();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        let data = frame.unwrap().into_data().unwrap();
        frames.push((started.elapsed(), String::from_utf8(data.to_vec()).unwrap()));
    }
    Streamed { status: parts.status.as_u16(), headers: parts.headers, frames }
}

#[tokio::test]
async fn converse_stream_sends_bedrocks_events_then_the_gateways_report() {
    let f = fixture();
    let first = send(&f, event("converse-stream.json")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.headers["content-type"], "text/event-stream");
    assert_eq!(first.headers["x-cache"], "MISS");
    let events = first.events();
    assert_eq!(events.first().map(String::as_str), Some("messageStart"));
    assert!(events.iter().filter(|e| *e == "contentBlockDelta").count() > 1);
    assert_eq!(&events[events.len() - 3..], ["messageStop", "metadata", "gateway"]);
    let report = first.data().pop().unwrap();
    assert_eq!(report["cache"]["result"], "MISS");
    assert!(report["costUsd"].as_f64().unwrap() > 0.0);
    assert!(report["timeToFirstTokenMs"].is_u64());

    // The events went out before the usage record was written, not all at the end.
    let (first_at, _) = first.frames[0];
    let (last_at, _) = *first.frames.last().unwrap();
    assert!(last_at >= LEDGER_DELAY, "the stream ends once its usage is recorded");
    assert!(first_at < LEDGER_DELAY / 2, "first event at {first_at:?}, last at {last_at:?}");
    assert_eq!(f.usage.0.all().len(), 1);

    let repeat = send(&f, event("converse-stream.json")).await;
    assert_eq!(repeat.headers["x-cache"], "HIT");
    assert_eq!(f.invoker.calls(), 1);
    let text = |s: &Streamed| -> String { s.data().iter().filter_map(|d| d["delta"]["text"].as_str()).collect() };
    assert_eq!(text(&repeat), text(&first));
}

#[tokio::test]
async fn openai_and_anthropic_streams_end_the_way_their_sdks_expect() {
    let f = fixture();
    let openai = send(&f, event("openai-stream.json")).await;
    assert_eq!(openai.status, 200);
    assert!(openai.text().ends_with("data: [DONE]\n\n"));
    let chunks = openai.data();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let anthropic = send(&f, event("anthropic-stream.json")).await;
    let events = anthropic.events();
    assert_eq!(events.first().map(String::as_str), Some("message_start"));
    assert_eq!(events.last().map(String::as_str), Some("message_stop"));
}

#[tokio::test]
async fn a_refusal_before_the_first_byte_is_an_ordinary_error_in_the_callers_api() {
    let f = fixture();
    let reply = send(&f, event("openai-unknown-model.json")).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.text()).unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "unknown_model");

    f.invoker.fail_with(|| InvokeError::Throttled { message: "slow down".into(), retry_after: None });
    let throttled = send(&f, event("anthropic-stream.json")).await;
    assert_eq!(throttled.status, 429);
    assert!(throttled.headers.contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_str(&throttled.text()).unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_event_in_every_api() {
    let f = fixture();
    f.invoker.cut_streams_after(3, || InvokeError::ModelFailed { message: "cut".into() });
    let converse = send(&f, event("converse-stream.json")).await;
    assert_eq!(converse.status, 200, "the status went out with the first byte");
    assert_eq!(converse.events().last().map(String::as_str), Some("error"));
    assert_eq!(converse.data().last().unwrap()["type"], "model_failed");

    let openai = send(&f, event("openai-stream.json")).await;
    let last = openai.data().pop().unwrap();
    assert_eq!(last["error"]["type"], "server_error");

    let anthropic = send(&f, event("anthropic-stream.json")).await;
    assert_eq!(anthropic.events().last().map(String::as_str), Some("error"));
    assert_eq!(anthropic.data().last().unwrap()["error"]["type"], "api_error");
    let records = f.usage.0.all();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| r.cost_usd > 0.0), "what was generated is paid for and recorded");
}

#[tokio::test]
async fn a_stream_names_the_sampling_parameters_its_model_was_not_sent() {
    let f = fixture();
    let mut request = event("openai-stream.json");
    let mut body: serde_json::Value = serde_json::from_slice(request.body().as_ref()).unwrap();
    body["temperature"] = serde_json::json!(0.5);
    body["top_p"] = serde_json::json!(0.8);
    *request.body_mut() = lambda_http::Body::from(body.to_string());
    let streamed = send(&f, request).await;
    assert_eq!(streamed.status, 200, "{}", streamed.text());
    assert_eq!(streamed.headers["x-sampling-omitted"], "topP");
    let config = f.invoker.seen_requests()[0].inference_config.clone().unwrap();
    assert_eq!((config.temperature, config.top_p), (Some(0.5), None));
}
