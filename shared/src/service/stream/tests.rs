use std::sync::Arc;

use super::*;
use crate::cache::{CacheOptions, Tenant};
use crate::catalog::Catalog;
use crate::deadline::Budgets;
use crate::request::ConverseRequest;
use crate::routing::RouteOverrides;
use crate::service::GatewaySettings;
use crate::stream::Assembler;
use crate::testing::{FakeInvoker, InMemoryCacheStore, TestPorts};
use crate::usage::UsageSource;
use crate::usage::memory::MemoryUsageLedger;

type FakeGateway = Gateway<TestPorts<InMemoryCacheStore, FakeInvoker>>;

const HAIKU: &str = "us.anthropic.claude-haiku-4-5-20251001-v1:0";

fn gateway() -> (FakeGateway, Arc<MemoryUsageLedger>) {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings::from_catalog(&catalog);
    let usage = Arc::new(MemoryUsageLedger::default());
    let ports = TestPorts::new(InMemoryCacheStore::default(), FakeInvoker::default());
    (Gateway::new(catalog, settings, ports).with_usage(usage.clone()), usage)
}

fn call(model: &str, text: &str) -> ConverseCall {
    let body = serde_json::json!({
        "modelId": model,
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 300}
    });
    ConverseCall {
        request: ConverseRequest::from_json(body.to_string().as_bytes()).unwrap(),
        tenant: Tenant::new("t"),
        cache: CacheOptions::default(),
        routing: RouteOverrides::default(),
        deadline: Budgets::default().deadline(None),
    }
}

fn origin(id: &str) -> Origin {
    Origin { source: UsageSource::Online, request_id: id.into() }
}

/// Collects what a caller would receive; with `leave_after`, goes away after that many events.
#[derive(Default)]
struct Caller {
    events: Vec<StreamEvent>,
    leave_after: Option<usize>,
}

impl StreamSink for Caller {
    async fn send(&mut self, event: &StreamEvent) -> Result<(), CallerGone> {
        if self.leave_after.is_some_and(|n| self.events.len() >= n) {
            return Err(CallerGone);
        }
        self.events.push(event.clone());
        Ok(())
    }
}

async fn stream(g: &FakeGateway, call: ConverseCall, caller: &mut Caller, id: &str) -> StreamEnd {
    let open = g.open_stream(call).await.unwrap();
    open.forward(caller, &origin(id)).await
}

fn assembled(events: &[StreamEvent]) -> ConverseResponse {
    let mut assembler = Assembler::new();
    for event in events {
        assembler.push(event).unwrap();
    }
    assembler.finish().unwrap()
}

const LONG: &str = "tell me about the seven wonders of the ancient world in order";

#[tokio::test]
async fn a_streamed_miss_is_stored_and_its_repeats_are_hits_either_way() {
    let (g, usage) = gateway();
    let mut first = Caller::default();
    let end = stream(&g, call("haiku", LONG), &mut first, "r1").await;
    assert!(matches!(end.ending, Ending::Completed), "{:?}", end.ending);
    assert_eq!(end.answer.cache.result, CacheResult::Miss);
    assert!(matches!(end.answer.cache.write, Some(crate::service::WriteReport::Stored { .. })));
    assert!(end.answer.cost_usd.unwrap() > 0.0);
    assert!(end.time_to_first_token.is_some());
    let delivered = assembled(&first.events);
    assert_eq!(delivered, end.answer.response, "what went out is what was priced and stored");

    // The buffered path reads the streamed entry, and a streamed repeat replays the same events.
    let buffered = g.converse(call("haiku", LONG)).await.unwrap();
    assert_eq!(buffered.cache.result, CacheResult::Hit);
    assert_eq!(buffered.response.text(), delivered.text());
    let mut again = Caller::default();
    let hit = stream(&g, call("haiku", LONG), &mut again, "r2").await;
    assert_eq!(hit.answer.cache.result, CacheResult::Hit);
    assert_eq!(hit.answer.cost_usd, Some(0.0));
    assert_eq!(again.events, first.events);
    assert_eq!(g.ports().models().calls(), 1);

    let records = usage.all();
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.outcome == UsageOutcome::Answered));
    assert_eq!(records.iter().filter(|r| r.cache == Some(CacheResult::Hit)).count(), 1);
}

#[tokio::test]
async fn a_throttled_model_falls_back_before_the_first_byte() {
    let (g, _) = gateway();
    let throttled = || InvokeError::Throttled { message: "slow down".into(), retry_after: None };
    g.ports().models().fail_model(HAIKU, throttled);
    let mut caller = Caller::default();
    let end = stream(&g, call("haiku", "hello"), &mut caller, "r").await;
    assert!(matches!(end.ending, Ending::Completed));
    let outcomes: Vec<&str> = end.answer.hops.iter().map(|h| h.outcome).collect();
    assert_eq!(outcomes, ["throttled", "served"]);
    assert_ne!(end.answer.model_id, HAIKU);
    assert!(matches!(caller.events.first(), Some(StreamEvent::MessageStart(_))));
}

#[tokio::test]
async fn failures_before_the_stream_opens_are_the_requests_error() {
    let (g, _) = gateway();
    assert!(matches!(g.open_stream(call("no-such-model", "hi")).await, Err(GatewayError::UnknownModel(_))));
    g.ports().models().fail_with(|| InvokeError::Rejected { message: "bad".into() });
    let error = g.open_stream(call("haiku", "hi")).await.unwrap_err();
    assert_eq!(error.label(), ErrorLabel::InvalidRequest);
}

#[tokio::test]
async fn a_cut_stream_ends_with_an_error_is_settled_for_what_was_sent_and_not_cached() {
    let (g, usage) = gateway();
    let cut = || InvokeError::ModelFailed { message: "The model encountered an error while streaming".into() };
    g.ports().models().cut_streams_after(3, cut);
    let mut caller = Caller::default();
    let end = stream(&g, call("haiku", LONG), &mut caller, "r").await;
    assert_eq!(end.ending.label(), Some(ErrorLabel::ModelFailed));
    assert_eq!(caller.events.len(), 3, "everything before the cut went out");
    assert_eq!(end.answer.response.stop_reason, "stream_error");
    assert!(end.answer.response.usage.output_tokens > 0);
    assert!(end.answer.cost_usd.unwrap() > 0.0, "generated tokens are billed");
    assert_eq!(end.answer.cache.write, None);
    let records = usage.all();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].outcome, UsageOutcome::Failed(ErrorLabel::ModelFailed));
    assert!(records[0].cost_usd > 0.0);

    g.ports().models().succeed();
    let next = g.converse(call("haiku", LONG)).await.unwrap();
    assert_eq!(next.cache.result, CacheResult::Miss, "a cut answer is never served again");
}

#[tokio::test]
async fn a_caller_that_leaves_is_settled_for_what_it_received() {
    let (g, usage) = gateway();
    let mut caller = Caller { leave_after: Some(2), ..Caller::default() };
    let end = stream(&g, call("haiku", LONG), &mut caller, "r").await;
    assert!(matches!(end.ending, Ending::CallerGone));
    assert_eq!(end.answer.response.stop_reason, "caller_gone");
    assert!(end.answer.response.usage.output_tokens > 0);
    assert_eq!(usage.all()[0].outcome, UsageOutcome::Answered);
    assert_eq!(g.converse(call("haiku", LONG)).await.unwrap().cache.result, CacheResult::Miss);
}

#[tokio::test]
async fn a_bypassing_request_streams_without_writing() {
    let (g, _) = gateway();
    let mut bypass = call("haiku", LONG);
    bypass.cache.mode = Some(crate::cache::CacheMode::Off);
    let mut caller = Caller::default();
    let end = stream(&g, bypass, &mut caller, "r").await;
    assert_eq!(end.answer.cache.result, CacheResult::Bypass);
    assert!(matches!(end.ending, Ending::Completed));
    assert_eq!(g.converse(call("haiku", LONG)).await.unwrap().cache.result, CacheResult::Miss);
}

#[tokio::test]
async fn a_whole_stream_of_an_opted_in_tenant_is_sampled_and_a_cut_one_is_not() {
    let files = Arc::new(crate::batch::memory::MemoryFiles::default());
    let (g, _) = gateway();
    let g = g.with_sampler(crate::service::tests::sampler_for("t", files.clone()));
    let mut gone = Caller { leave_after: Some(1), ..Caller::default() };
    let cut = stream(&g, call("haiku", "cut short"), &mut gone, "r1").await;
    assert!(matches!(cut.ending, Ending::CallerGone), "{:?}", cut.ending);
    assert!(files.uris().is_empty());
    let end = stream(&g, call("haiku", LONG), &mut Caller::default(), "r2").await;
    assert!(matches!(end.ending, Ending::Completed));
    assert_eq!(files.uris().len(), 1);
}
