//! Stage 3, call: the fallback chain over the planned attempts, one [`Hop`] per attempt.
//!
//! `Gateway::invoke` is the only place a model is called. Quota admission wraps it: admit
//! with `attempt.quota` before, release (drop the permit) when it fails, and hand the permit
//! to the settle stage when it answers. Every other stage stays as it is.

use std::time::{Duration, SystemTime};

use crate::cache::{CacheEntry, CacheKey};
use crate::catalog::ResolveError;
use crate::deadline::Deadline;
use crate::ports::{InvokeError, ModelInvoker, Ports};
use crate::request::{ConverseRequest, ConverseResponse};

use super::prepare::{Attempt, Prepared, check_model_limits};
use super::{Gateway, GatewayError, Hop};

/// How the fallback chain ended.
pub(super) enum Served<'a> {
    Answered {
        response: ConverseResponse,
        attempt: &'a Attempt,
    },
    /// A fallback model had this request cached already: no need to call it.
    Cached {
        entry: CacheEntry,
        key: CacheKey,
    },
}

impl Hop {
    fn of(attempt: &Attempt, outcome: &'static str, error: Option<String>) -> Hop {
        Hop { model_id: attempt.invoke_id.clone(), tier: attempt.tier, outcome, error }
    }
}

impl<P: Ports> Gateway<P> {
    /// Tries the attempts in order. Only failures another model might not share (capacity,
    /// persistent model or service errors) move on. Before calling a fallback model, its own
    /// cache entry is looked up: during a throttling episode the repeats of a request are
    /// then served from the entry the first fallback wrote instead of paying it again.
    pub(super) async fn call<'a>(&self, prepared: &'a Prepared) -> Result<(Served<'a>, Vec<Hop>), GatewayError> {
        let (attempts, request, deadline) = (&prepared.attempts, &prepared.request, prepared.deadline);
        let mut hops: Vec<Hop> = Vec::with_capacity(1);
        let mut last_error: Option<InvokeError> = None;
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
                            hops.push(Hop::of(attempt, "cache_hit", None));
                            return Ok((Served::Cached { entry, key }, hops));
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
            match self.invoke(attempt, request, deadline).await {
                Ok(response) => {
                    hops.push(Hop::of(attempt, "served", None));
                    return Ok((Served::Answered { response, attempt }, hops));
                }
                Err(error) => {
                    hops.push(Hop::of(attempt, error.label().as_str(), Some(error.to_string())));
                    let last = i + 1 == attempts.len();
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

    /// One model call, cut at the request's deadline even if the invoker overruns it.
    async fn invoke(
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
