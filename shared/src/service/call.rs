//! Stage 3, call: the fallback chain over the planned attempts, one [`Hop`] per attempt.
//!
//! [`Gateway::call_model`] is the only place a model is called. With admission on, every call
//! is first admitted against its attempt's quota: an attempt that is not the chain's last
//! waits at most `spill_after` and then spills to the next (another profile or tier, before
//! Bedrock throttles rather than after); the last waits up to the admission wait, and a
//! refusal there is the request's 429. A permit is released when its call fails and settled
//! at the call's usage when it answers.
//!
//! A request without `maxTokens` is sent with a learned one ([`crate::outputs`]); when the
//! answer stops there, it is continued ([`crate::continuation`]) so the caller receives it
//! whole, every continuation admitted and settled as the call it is.

use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, SystemTime};

use crate::admission::{Ask, Permit, Refusal};
use crate::cache::{CacheEntry, CacheKey};
use crate::catalog::{ModelSpec, ResolveError};
use crate::continuation;
use crate::cost::Usage;
use crate::deadline::Deadline;
use crate::label::ErrorLabel;
use crate::ports::{InvokeError, ModelInvoker, Ports};
use crate::request::{ConverseRequest, ConverseResponse};
use crate::sampling::Given;
use crate::tokens::estimate_request;

use super::prepare::{Attempt, Prepared, check_model_limits};
use super::{AdmissionSummary, Gateway, GatewayError, Hop};

/// How the fallback chain ended; `T` is what an attempt that answered gives (a buffered
/// response, or an opened stream).
pub(super) enum Served<'a, T> {
    Answered {
        output: T,
        attempt: &'a Attempt,
    },
    /// A fallback model had this request cached already: no need to call it.
    Cached {
        entry: Box<CacheEntry>,
        key: CacheKey,
    },
}

/// The fallback chain's outcome with what it went through on the way.
pub(super) struct Chained<'a, T> {
    pub(super) served: Served<'a, T>,
    pub(super) hops: Vec<Hop>,
    /// Time spent waiting for quota on attempts that spilled.
    pub(super) waited: Duration,
}

impl<T> Chained<'_, T> {
    /// Whether the answer came from another quota than the first choice's.
    pub(super) fn spilled(&self) -> bool {
        self.hops.iter().any(|h| h.outcome == ErrorLabel::QuotaExhausted.as_str())
    }
}

/// Why one attempt gave no answer.
pub(super) enum Failure {
    Model(InvokeError),
    /// Its quota had no room within the attempt's wait.
    Refused(Refusal),
}

impl Hop {
    fn of(attempt: &Attempt, request: &ConverseRequest, outcome: &'static str, error: Option<String>) -> Hop {
        let omitted = attempt.accepts.omitted(Given::of(request)).names();
        Hop { model_id: attempt.invoke_id.clone(), tier: attempt.tier, outcome, error, omitted }
    }
}

impl AdmissionSummary {
    fn add(&mut self, call: AdmissionSummary) {
        self.settled_tokens += call.settled_tokens;
        self.waited_ms += call.waited_ms;
        self.calls += call.calls;
        self.mode = call.mode;
    }
}

impl<P: Ports> Gateway<P> {
    /// The buffered call through the chain: each attempt's answer whole, continuations included.
    pub(super) async fn call<'a>(
        &self,
        prepared: &'a Prepared,
    ) -> Result<(Served<'a, ConverseResponse>, Vec<Hop>, Option<AdmissionSummary>), GatewayError> {
        let chained = self.chain(prepared, |attempt, last| self.invoke(attempt, prepared, last)).await?;
        let spilled = chained.spilled();
        let Chained { served, hops, waited } = chained;
        Ok(match served {
            Served::Answered { output: (response, mut admission), attempt } => {
                if let Some(summary) = admission.as_mut() {
                    summary.waited_ms += waited.as_millis() as u64;
                    summary.spilled = spilled;
                }
                (Served::Answered { output: response, attempt }, hops, admission)
            }
            Served::Cached { entry, key } => (Served::Cached { entry, key }, hops, None),
        })
    }

    /// Tries the attempts in order. Only failures another model might not share (capacity,
    /// persistent model or service errors) move on, and a quota without room. Before calling a
    /// fallback model, its own cache entry is looked up: during a throttling episode the repeats
    /// of a request are then served from the entry the first fallback wrote instead of paying it
    /// again.
    ///
    /// `run` makes one attempt (told whether it is the chain's last): the buffered call and the
    /// opening of a stream differ only there.
    pub(super) async fn chain<'a, T, Fut>(
        &self,
        prepared: &'a Prepared,
        mut run: impl FnMut(&'a Attempt, bool) -> Fut,
    ) -> Result<Chained<'a, T>, GatewayError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        let (attempts, request, deadline) = (&prepared.attempts, &prepared.request, prepared.deadline);
        let mut hops: Vec<Hop> = Vec::with_capacity(1);
        let mut last_error: Option<InvokeError> = None;
        let mut waited = Duration::ZERO;
        for (i, attempt) in attempts.iter().enumerate() {
            if i > 0 {
                if let Some((max_output, name)) = &attempt.max_output
                    && check_model_limits(request, *max_output, name).is_err()
                {
                    continue;
                }
                let unseen_model = attempts[..i].iter().all(|a| a.key_model != attempt.key_model);
                if prepared.decision.read && unseen_model {
                    let key = CacheKey::compute(&prepared.tenant, &attempt.key_model, request);
                    match self.cache_get(&key, SystemTime::now(), deadline).await {
                        Ok(Some(entry)) => {
                            hops.push(Hop::of(attempt, request, "cache_hit", None));
                            return Ok(Chained {
                                served: Served::Cached { entry: Box::new(entry), key },
                                hops,
                                waited,
                            });
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, kind = %e.label(), "cache read of a fallback model failed")
                        }
                    }
                }
            }
            // The first call gets whatever is left, since it is the request's only chance; a
            // fallback only if it can plausibly finish.
            let needed = if i == 0 { Duration::ZERO } else { self.settings.budgets.min_hop };
            let remaining = deadline.remaining();
            if remaining.is_zero() || remaining < needed {
                tracing::warn!(
                    ?hops,
                    remaining_ms = remaining.as_millis() as u64,
                    "no time left for another model call"
                );
                return Err(GatewayError::DeadlineExceeded { hops, remaining, needed, last: last_error });
            }
            let last = i + 1 == attempts.len();
            match run(attempt, last).await {
                Ok(output) => {
                    hops.push(Hop::of(attempt, request, "served", None));
                    return Ok(Chained { served: Served::Answered { output, attempt }, hops, waited });
                }
                Err(Failure::Refused(refusal)) => {
                    waited += refusal.waited;
                    hops.push(Hop::of(
                        attempt,
                        request,
                        ErrorLabel::QuotaExhausted.as_str(),
                        Some(refusal.to_string()),
                    ));
                    if last {
                        let refusal = Refusal { waited, ..refusal };
                        tracing::info!(
                            ?hops,
                            retry_after_ms = refusal.retry_after.as_millis() as u64,
                            "no quota has room"
                        );
                        return Err(GatewayError::QuotaExhausted { hops, refusal });
                    }
                    tracing::info!(quota = %refusal.key, "quota full; spilling to the next of the chain");
                }
                Err(Failure::Model(error)) => {
                    hops.push(Hop::of(attempt, request, error.label().as_str(), Some(error.to_string())));
                    if !error.warrants_fallback() || last {
                        let error = self.with_retry_hint(error);
                        if hops.len() > 1 {
                            tracing::warn!(?hops, "every model of the fallback chain failed");
                            return Err(GatewayError::FallbackExhausted { hops, source: error });
                        }
                        return Err(error.into());
                    }
                    tracing::info!(
                        model_id = attempt.invoke_id,
                        quota = attempt.quota.as_ref().map(tracing::field::display),
                        error = %error,
                        "falling back"
                    );
                    last_error = Some(error);
                }
            }
        }
        Err(ResolveError::UnknownModel(String::new()).into())
    }

    /// One attempt: the call with the caller's or a learned `maxTokens`, and its
    /// continuations when the learned limit cut the answer.
    async fn invoke(
        &self,
        attempt: &Attempt,
        prepared: &Prepared,
        last: bool,
    ) -> Result<(ConverseResponse, Option<AdmissionSummary>), Failure> {
        let request = attempt.accepts.fit(&prepared.request);
        let spec = attempt.quota.as_ref().and_then(|q| self.catalog.by_model_id(&q.model_id));
        let model_max = attempt.max_output.as_ref().map(|(max, _)| *max).or(spec.map(|s| s.max_output_tokens));
        let tenant = prepared.tenant.as_str();
        let learned = match model_max {
            // A thinking request keeps the model's own limit: a learned one could fall below
            // its budget, and an answer that thinks cannot be continued from a prefill.
            Some(model_max)
                if self.settings.learned_max_tokens
                    && request.max_tokens().is_none()
                    && !Given::of(&request).thinks() =>
            {
                Some((self.outputs.max_tokens(tenant, &attempt.key_model, model_max), model_max))
            }
            _ => None,
        };
        let sent = match learned {
            Some((max_tokens, _)) => {
                let mut sent = request.into_owned();
                sent.inference_config.get_or_insert_with(Default::default).max_tokens = Some(max_tokens);
                Cow::Owned(sent)
            }
            None => request,
        };
        let wait = if last { prepared.deadline } else { prepared.deadline.within(self.settings.spill_after) };
        let (mut response, mut admission) = self.admitted_call(attempt, spec, &sent, wait, prepared).await?;
        if let Some((first_max, model_max)) = learned {
            let mut calls = 0;
            while calls < self.settings.max_continuations {
                let Some(text) = continuation::continuable(&response).map(str::to_owned) else {
                    break;
                };
                let produced = u32::try_from(response.usage.output_tokens).unwrap_or(u32::MAX);
                let Some(left) = model_max.checked_sub(produced).filter(|left| *left > 0) else {
                    break;
                };
                calls += 1;
                let next = continuation::next_request(&sent, &text, left.min(first_max.saturating_mul(2)));
                match self.admitted_call(attempt, spec, &next, prepared.deadline, prepared).await {
                    Ok((part, part_admission)) => {
                        if let (Some(total), Some(part)) = (admission.as_mut(), part_admission) {
                            total.add(part);
                        }
                        if !continuation::join(&mut response, part) {
                            break;
                        }
                    }
                    Err(Failure::Refused(refusal)) => {
                        tracing::warn!(%refusal, "continuation not admitted; answering with the text so far");
                        break;
                    }
                    Err(Failure::Model(error)) => {
                        tracing::warn!(%error, "continuation failed; answering with the text so far");
                        break;
                    }
                }
            }
        }
        // Answers cut at the caller's own limit say nothing about how long the answer would be.
        if learned.is_some() || response.stop_reason != continuation::MAX_TOKENS_STOP {
            let output = u64::try_from(response.usage.output_tokens).unwrap_or(0);
            self.outputs.observe(tenant, &attempt.key_model, output);
        }
        Ok((response, admission))
    }

    /// One model call, admitted first when admission is on.
    async fn admitted_call(
        &self,
        attempt: &Attempt,
        spec: Option<&ModelSpec>,
        request: &ConverseRequest,
        wait: Deadline,
        prepared: &Prepared,
    ) -> Result<(ConverseResponse, Option<AdmissionSummary>), Failure> {
        let permit = self.admit(attempt, spec, request, wait, prepared).await?;
        let response = self.call_model(attempt, request, prepared.deadline).await.map_err(Failure::Model)?;
        let admission = Self::settle_permit(permit, spec, &response.usage);
        Ok((response, admission))
    }

    /// The permit for one model call when admission is on. The reservation is at least
    /// Bedrock's (prompt + `maxTokens`) and at least what the call may settle at with an
    /// answer of the learned length (prompt + burndown x that length).
    pub(super) async fn admit(
        &self,
        attempt: &Attempt,
        spec: Option<&ModelSpec>,
        request: &ConverseRequest,
        wait: Deadline,
        prepared: &Prepared,
    ) -> Result<Option<Permit>, Failure> {
        match (&self.admission, &attempt.quota, spec) {
            (Some(admission), Some(key), Some(spec)) => {
                let tenant = prepared.tenant.as_str();
                let max_tokens = u64::from(request.max_tokens().unwrap_or(spec.max_output_tokens));
                let expected = u64::from(self.outputs.max_tokens(tenant, &attempt.key_model, spec.max_output_tokens))
                    .min(max_tokens);
                let burned = expected.saturating_mul(u64::from(spec.output_burndown));
                let tokens = estimate_request(request).saturating_add(max_tokens.max(burned));
                let ask = Ask { key, tenant, tokens, deadline: wait };
                Ok(Some(admission.admit(ask).await.map_err(Failure::Refused)?))
            }
            _ => Ok(None),
        }
    }

    /// Settles a call's permit at the usage Bedrock reported for it.
    pub(super) fn settle_permit(
        permit: Option<Permit>,
        spec: Option<&ModelSpec>,
        usage: &crate::request::TokenUsage,
    ) -> Option<AdmissionSummary> {
        let (permit, spec) = (permit?, spec?);
        let report = permit.settle(spec.quota_tokens(&Usage::from(usage)));
        Some(AdmissionSummary {
            quota: report.quota,
            mode: report.mode,
            reserved_tokens: report.reserved_tokens,
            settled_tokens: report.settled_tokens.unwrap_or(0),
            waited_ms: report.waited_ms,
            spilled: false,
            calls: 1,
        })
    }

    /// One model call, cut at the request's deadline even if the invoker overruns it.
    async fn call_model(
        &self,
        attempt: &Attempt,
        request: &ConverseRequest,
        deadline: Deadline,
    ) -> Result<ConverseResponse, InvokeError> {
        match deadline.bound(self.ports.models().converse(&attempt.invoke_id, request, deadline)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(InvokeError::Timeout("the request's deadline passed during the model call".into())),
        }
    }

    fn with_retry_hint(&self, error: InvokeError) -> InvokeError {
        match error {
            InvokeError::Throttled { message, retry_after: None } => {
                InvokeError::Throttled { message, retry_after: Some(self.settings.throttle_retry_after) }
            }
            other => other,
        }
    }
}
