//! The streamed path: the same stages as [`Gateway::converse`], with the call stage opening a
//! ConverseStream instead of waiting for the whole answer.
//!
//! [`Gateway::open_stream`] runs everything that can still change the answer's status before
//! the first byte goes out: prepare (routing included), the cache lookup, and the fallback
//! chain with admission, where an attempt counts as answered once its stream has sent a first
//! event. A failure up to there is the request's error, as on the buffered path.
//! [`OpenStream::forward`] then sends the events on as they arrive, assembling them; at the end
//! of the stream come settle, store and the record stage, before the caller's stream is closed
//! (Lambda may freeze as soon as it is). A HIT is replayed as the events ConverseStream would
//! have sent ([`crate::stream::replay`]).
//!
//! After the first byte nothing can be taken back: a failure of the model's stream, of its
//! grammar or of the deadline ends the forwarding with [`Ending::Failed`] and the entry point
//! sends it as an error event. A cut answer, and one whose caller went away, is settled for
//! what was generated (Bedrock bills the tokens it produced), priced, recorded and not cached.
//!
//! Streams are not coalesced (each caller wants its own first token now) and are sent with
//! the caller's `maxTokens` or none: a learned limit would need continuations spliced into a
//! live stream.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use crate::admission::Permit;
use crate::cache::Tenant;
use crate::catalog::ModelSpec;
use crate::cost::PricingMode;
use crate::label::ErrorLabel;
use crate::ports::{ClaimToken, InvokeError, ModelInvoker, ModelStream, Ports};
use crate::request::{ConverseResponse, TokenUsage};
use crate::stream::{Assembler, Delta, ReasoningDelta, StreamEvent, replay};
use crate::tokens::{estimate_request, estimate_text};
use crate::usage::{UsageOutcome, build};

use super::call::{Chained, Failure, Served};
use super::lookup::Lookup;
use super::prepare::{Attempt, Prepared};
use super::{
    Answer, CacheReport, CacheResult, ConverseCall, Gateway, GatewayError, Hop, Origin, USAGE_WRITE_BUDGET, add_error,
};

/// The caller's side of a stream, as the entry point's transport sees it.
pub trait StreamSink: Send {
    /// Sends one event on; [`CallerGone`] when nobody is reading any more.
    fn send(&mut self, event: &StreamEvent) -> impl Future<Output = Result<(), CallerGone>> + Send;
}

/// The caller closed its connection: the rest of the answer is not wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerGone;

/// A stream ready to forward: its status is decided, no byte has gone out yet.
#[derive(Debug)]
pub struct OpenStream<'g, P> {
    gateway: &'g Gateway<P>,
    tenant: Tenant,
    state: State,
    sample: Option<super::sample::Candidate>,
}

#[derive(Debug)]
enum State {
    /// A stored answer, replayed.
    Hit(Box<Answer>),
    Live(Box<Live>),
}

#[derive(Debug)]
struct Live {
    prepared: Prepared,
    /// Index into `prepared.attempts` of the attempt that opened.
    attempt: usize,
    stream: ModelStream,
    first: StreamEvent,
    permit: Option<Permit>,
    claim: Option<ClaimToken>,
    report: CacheReport,
    hops: Vec<Hop>,
    waited: Duration,
    spilled: bool,
}

/// An attempt whose stream opened.
struct Opened {
    stream: ModelStream,
    first: StreamEvent,
    permit: Option<Permit>,
}

/// How a forwarded stream ended.
#[derive(Debug)]
pub enum Ending {
    /// The whole answer went out.
    Completed,
    /// The caller went away; the answer is what was generated until then.
    CallerGone,
    /// The model's stream failed after the first byte: the entry point sends this as the
    /// stream's error event.
    Failed(GatewayError),
}

/// What a forwarded stream delivered.
#[derive(Debug)]
pub struct StreamEnd {
    /// The answer as priced and recorded: whole, or as far as it went (usage then estimated).
    pub answer: Answer,
    pub ending: Ending,
    /// From the request's start to the first content sent.
    pub time_to_first_token: Option<Duration>,
    /// Output tokens per second after the first one.
    pub output_tokens_per_second: Option<f64>,
}

impl<P: Ports> Gateway<P> {
    /// The stages up to the first byte: see the module's documentation.
    pub async fn open_stream(&self, call: ConverseCall) -> Result<OpenStream<'_, P>, GatewayError> {
        let started = Instant::now();
        let sample = self.sample_candidate(&call);
        let prepared = self.prepare(call, started)?;
        let tenant = prepared.tenant.clone();
        let mut report = prepared.cache_report();
        let claim = match self.lookup(&prepared, &mut report).await {
            Lookup::Found { entry, read_at } => {
                let answer = prepared.into_hit(*entry, Vec::new(), report, read_at);
                return Ok(OpenStream { gateway: self, tenant, state: State::Hit(Box::new(answer)), sample });
            }
            Lookup::Missed { claim } => claim,
        };
        let chained = match self.chain(&prepared, |attempt, last| self.open_attempt(attempt, &prepared, last)).await {
            Ok(chained) => chained,
            Err(error) => {
                self.release_claim(&prepared.key, claim, prepared.deadline).await;
                return Err(error);
            }
        };
        let spilled = chained.spilled();
        let Chained { served, hops, waited } = chained;
        let (opened, attempt) = match served {
            Served::Answered { output, attempt } => {
                let index = prepared.attempts.iter().position(|a| std::ptr::eq(a, attempt)).unwrap_or(0);
                (output, index)
            }
            Served::Cached { entry, key } => {
                add_error(&mut report, self.release_claim(&prepared.key, claim, prepared.deadline).await);
                report.key = Some(key.to_hex());
                let answer = prepared.into_hit(*entry, hops, report, SystemTime::now());
                return Ok(OpenStream { gateway: self, tenant, state: State::Hit(Box::new(answer)), sample });
            }
        };
        let Opened { stream, first, permit } = opened;
        let live = Live { prepared, attempt, stream, first, permit, claim, report, hops, waited, spilled };
        Ok(OpenStream { gateway: self, tenant, state: State::Live(Box::new(live)), sample })
    }

    /// One attempt of the chain: admitted like a buffered call, answered once its stream has
    /// sent a first event (a throttle or failure before that still falls back).
    async fn open_attempt(&self, attempt: &Attempt, prepared: &Prepared, last: bool) -> Result<Opened, Failure> {
        let request = attempt.accepts.fit(&prepared.request);
        let spec = self.attempt_spec(attempt);
        let wait = if last { prepared.deadline } else { prepared.deadline.within(self.settings.spill_after) };
        let permit = self.admit(attempt, spec, &request, wait, prepared).await?;
        let deadline = prepared.deadline;
        let opening = self.ports.models().converse_stream(&attempt.invoke_id, &request, deadline);
        let mut stream = match deadline.bound(opening).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(Failure::Model(error)),
            Err(_) => return Err(Failure::Model(timed_out())),
        };
        match deadline.bound(stream.next()).await {
            Ok(Some(Ok(first))) => Ok(Opened { stream, first, permit }),
            Ok(Some(Err(error))) => Err(Failure::Model(error)),
            Ok(None) => Err(Failure::Model(InvokeError::BadResponse("the stream ended before its first event".into()))),
            Err(_) => Err(Failure::Model(timed_out())),
        }
    }

    fn attempt_spec(&self, attempt: &Attempt) -> Option<&ModelSpec> {
        attempt.quota.as_ref().and_then(|q| self.catalog.by_model_id(&q.model_id))
    }
}

fn timed_out() -> InvokeError {
    InvokeError::Timeout("the request's deadline passed during the model's stream".into())
}

impl<P: Ports> OpenStream<'_, P> {
    /// The Bedrock ID answering: the stored answer's model on a HIT, else the attempt that opened.
    pub fn model_id(&self) -> &str {
        match &self.state {
            State::Hit(answer) => &answer.model_id,
            State::Live(live) => &live.prepared.attempts[live.attempt].invoke_id,
        }
    }

    /// The sampling parameters the answering model was not sent (see [`Answer::omitted`]).
    pub fn omitted(&self) -> &[&'static str] {
        match &self.state {
            State::Hit(_) => &[],
            State::Live(live) => super::served_omitted(&live.hops),
        }
    }

    pub fn cache_result(&self) -> CacheResult {
        match &self.state {
            State::Hit(answer) => answer.cache.result,
            State::Live(live) => live.report.result,
        }
    }

    /// Sends the answer's events to `sink`, then settles, stores and records it (see the
    /// module's documentation); `origin` names the request in its usage record.
    pub async fn forward(self, sink: &mut impl StreamSink, origin: &Origin) -> StreamEnd {
        let OpenStream { gateway, tenant, state, sample } = self;
        let end = match state {
            State::Hit(answer) => replay_hit(*answer, sink).await,
            State::Live(live) => gateway.forward_live(*live, sink).await,
        };
        gateway.record_stream(&end, &tenant, origin).await;
        // Only a whole answer: a cut stream's prompt may be what failed it.
        if matches!(end.ending, Ending::Completed) {
            gateway.sample(sample).await;
        }
        end
    }
}

async fn replay_hit(answer: Answer, sink: &mut impl StreamSink) -> StreamEnd {
    let mut ending = Ending::Completed;
    let mut first_token = None;
    for event in replay(&answer.response) {
        if sink.send(&event).await.is_err() {
            ending = Ending::CallerGone;
            break;
        }
        if first_token.is_none() && matches!(event, StreamEvent::ContentBlockDelta(_)) {
            first_token = Some(answer.latency);
        }
    }
    StreamEnd { answer, ending, time_to_first_token: first_token, output_tokens_per_second: None }
}

impl<P: Ports> Gateway<P> {
    async fn forward_live(&self, live: Live, sink: &mut impl StreamSink) -> StreamEnd {
        let Live { prepared, attempt, mut stream, first, permit, claim, mut report, hops, waited, spilled } = live;
        let deadline = prepared.deadline;
        let mut assembler = Assembler::new();
        let mut estimated_output = 0u64;
        let mut first_token: Option<Instant> = None;
        let mut ending = Ending::Completed;
        let mut next = Some(Ok(first));
        loop {
            let event = match next.take() {
                None => break,
                Some(Err(error)) => {
                    ending = Ending::Failed(GatewayError::Model(error));
                    break;
                }
                Some(Ok(event)) => event,
            };
            if let Err(error) = assembler.push(&event) {
                ending = Ending::Failed(GatewayError::Model(InvokeError::BadResponse(error.to_string())));
                break;
            }
            if let StreamEvent::ContentBlockDelta(delta) = &event {
                first_token.get_or_insert_with(Instant::now);
                estimated_output += match &delta.delta {
                    Delta::Text(text) | Delta::ReasoningContent(ReasoningDelta::Text(text)) => estimate_text(text),
                    Delta::ToolUse(piece) => estimate_text(&piece.input),
                    Delta::ReasoningContent(_) => 0,
                };
            }
            if sink.send(&event).await.is_err() {
                ending = Ending::CallerGone;
                break;
            }
            next = match deadline.bound(stream.next()).await {
                Ok(item) => item,
                Err(_) => Some(Err(timed_out())),
            };
        }
        // Dropping the model's stream closes it: a caller that left stops the generation.
        drop(stream);
        let time_to_first_token = first_token.map(|at| at.duration_since(prepared.started));
        let attempt_ref = &prepared.attempts[attempt];
        let spec = self.attempt_spec(attempt_ref);
        let finished = match ending {
            Ending::Completed => assembler.finish().map_err(|error| {
                ending = Ending::Failed(GatewayError::Model(InvokeError::BadResponse(error.to_string())));
            }),
            Ending::CallerGone | Ending::Failed(_) => Err(()),
        };
        let (response, usage) = match finished {
            Ok(response) => {
                let usage = response.usage.clone();
                (response, usage)
            }
            Err(()) => {
                let usage = estimated_usage(&prepared, estimated_output);
                (partial_response(&assembler, usage.clone(), &ending), usage)
            }
        };
        let mut admission = Self::settle_permit(permit, spec, &usage);
        if let Some(summary) = admission.as_mut() {
            summary.waited_ms += waited.as_millis() as u64;
            summary.spilled = spilled;
        }
        let generation = first_token.map(|at| at.elapsed());
        let output_tokens_per_second = generation
            .filter(|d| !d.is_zero())
            .map(|d| u64::try_from(usage.output_tokens).unwrap_or(0) as f64 / d.as_secs_f64());
        let answer = if matches!(ending, Ending::Completed) {
            if response.stop_reason != crate::continuation::MAX_TOKENS_STOP {
                let output = u64::try_from(response.usage.output_tokens).unwrap_or(0);
                self.outputs.observe(prepared.tenant.as_str(), &attempt_ref.key_model, output);
            }
            let settled = self.settle(response, attempt_ref);
            let reply = self.store(&prepared, settled, claim, &mut report).await;
            prepared.into_answer(reply, report, hops)
        } else {
            add_error(&mut report, self.release_claim(&prepared.key, claim, deadline).await);
            let settled = self.settle(response, attempt_ref);
            let (model_id, cost_usd) = (settled.model_id, settled.cost_usd);
            let reply = super::store::Reply { response: settled.response, model_id, cost_usd };
            prepared.into_answer(reply, report, hops)
        };
        let answer = Answer { admission, ..answer };
        StreamEnd { answer, ending, time_to_first_token, output_tokens_per_second }
    }

    /// The record stage for a stream: an answer that went out whole or to a caller that left
    /// is answered; a cut one failed, with what it cost.
    async fn record_stream(&self, end: &StreamEnd, tenant: &Tenant, origin: &Origin) {
        let Some(usage) = &self.usage else {
            return;
        };
        let mut record = build::answered(origin.served(tenant), &end.answer, &self.catalog, PricingMode::OnDemand);
        if let Ending::Failed(error) = &end.ending {
            record.outcome = UsageOutcome::Failed(error.label());
        }
        let _ = build::write(usage.as_ref(), &record, USAGE_WRITE_BUDGET).await;
    }
}

/// What an unfinished stream is settled at: Bedrock reports no usage for it, so the prompt
/// and the delivered output are counted with the token estimator (the same one the emulator
/// settles a cut stream with).
fn estimated_usage(prepared: &Prepared, output_tokens: u64) -> TokenUsage {
    let input = i64::try_from(estimate_request(&prepared.request)).unwrap_or(i64::MAX);
    let output = i64::try_from(output_tokens).unwrap_or(i64::MAX);
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        total_tokens: input.saturating_add(output),
        ..TokenUsage::default()
    }
}

/// The answer as far as it went, its stop reason saying why it stopped there.
fn partial_response(assembler: &Assembler, usage: TokenUsage, ending: &Ending) -> ConverseResponse {
    let message = assembler
        .message()
        .unwrap_or(crate::request::Message { role: crate::request::Role::Assistant, content: Vec::new() });
    let stop_reason = match ending {
        Ending::CallerGone => "caller_gone",
        Ending::Completed | Ending::Failed(_) => "stream_error",
    };
    ConverseResponse {
        output: crate::request::ConverseOutput { message },
        stop_reason: stop_reason.into(),
        usage,
        metrics: crate::request::ConverseMetrics::default(),
        additional_model_response_fields: None,
        trace: None,
        performance_config: None,
        service_tier: None,
    }
}

impl Ending {
    /// The failure's label, when the stream failed.
    pub fn label(&self) -> Option<ErrorLabel> {
        match self {
            Ending::Failed(error) => Some(error.label()),
            Ending::Completed | Ending::CallerGone => None,
        }
    }
}

#[cfg(test)]
mod tests;
