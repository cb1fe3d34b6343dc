//! Stage 2, lookup: the read, the single flight identical concurrent misses of this instance
//! share, and the cross-instance claim a miss takes (or waits on) before paying for a call.

use std::time::{Duration, Instant, SystemTime};

use crate::cache::{CacheEntry, CacheKey};
use crate::deadline::Deadline;
use crate::ports::{CacheError, CacheStore, Claim, ClaimToken, InvokeError, Ports};
use crate::routing::RouteDecision;
use crate::singleflight::Flight;

use super::prepare::Prepared;
use super::{Answer, CacheReport, CacheResult, Gateway, GatewayError};

/// How the lookup ended.
pub(super) enum Lookup {
    /// A live entry, read at `read_at` (from which its age is counted).
    Found { entry: Box<CacheEntry>, read_at: SystemTime },
    /// The request calls a model; with `claim`, it holds the key's claim until it stores.
    Missed { claim: Option<ClaimToken> },
}

/// Requests coalesce when they would read and write the same entry the same way.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct FlightKey {
    pub(super) key: CacheKey,
    pub(super) write: bool,
    pub(super) ttl: Duration,
}

/// How a miss ended its wait on a claim of the key.
enum ClaimWait {
    /// This request holds the claim and makes the call.
    Claimed(ClaimToken),
    /// The holder's answer arrived in the cache.
    Answered(Box<CacheEntry>),
    /// The wait budget ran out: the request pays for its own call.
    GaveUp,
    Unsupported,
    Failed(CacheError),
}

/// Polls often enough that a follower's added latency stays a small fraction of its wait,
/// rarely enough that waiting instances do not load the table.
fn claim_poll_interval(max_wait: Duration) -> Duration {
    (max_wait / 20).clamp(Duration::from_millis(10), Duration::from_millis(100))
}

/// What a leader's followers receive: its answer, or the same failure. Sharing the failure
/// keeps followers from multiplying the load on a throttled or failing model.
fn share_outcome(outcome: &Result<Answer, GatewayError>) -> Result<Answer, GatewayError> {
    match outcome {
        Ok(answer) => Ok(answer.clone()),
        Err(error) => Err(duplicate_error(error)),
    }
}

/// A follower did not pay: the answer costs it nothing and saves what the leader paid (or,
/// when the leader found it cached, what the stored call cost). It made no model call and
/// wrote nothing.
fn follow(
    outcome: &Result<Answer, GatewayError>,
    requested_model: String,
    routing: Option<RouteDecision>,
    started: Instant,
) -> Result<Answer, GatewayError> {
    let leader = outcome.as_ref().map_err(duplicate_error)?;
    let saved_usd = match leader.cache.result {
        CacheResult::Hit => leader.cache.saved_usd,
        CacheResult::Miss | CacheResult::Bypass => leader.cost_usd,
    };
    Ok(Answer {
        response: leader.response.clone(),
        requested_model,
        model_id: leader.model_id.clone(),
        cost_usd: Some(0.0),
        latency: started.elapsed(),
        cache: CacheReport {
            result: CacheResult::Hit,
            saved_usd,
            age_seconds: leader.cache.age_seconds.or(Some(0)),
            write: None,
            error: None,
            coalesced: true,
            ..leader.cache.clone()
        },
        routing,
        hops: Vec::new(),
        admission: None,
    })
}

/// The same failure for another caller. Sources that cannot be cloned keep their message.
fn duplicate_error(error: &GatewayError) -> GatewayError {
    match error {
        GatewayError::InvalidRequest(e) => GatewayError::InvalidRequest(e.clone()),
        GatewayError::UnknownModel(e) => GatewayError::UnknownModel(e.clone()),
        GatewayError::Model(e) => GatewayError::Model(duplicate_invoke_error(e)),
        GatewayError::FallbackExhausted { hops, source } => {
            GatewayError::FallbackExhausted { hops: hops.clone(), source: duplicate_invoke_error(source) }
        }
        GatewayError::DeadlineExceeded { hops, remaining, needed, last } => GatewayError::DeadlineExceeded {
            hops: hops.clone(),
            remaining: *remaining,
            needed: *needed,
            last: last.as_ref().map(duplicate_invoke_error),
        },
        GatewayError::QuotaExhausted { hops, refusal } => {
            GatewayError::QuotaExhausted { hops: hops.clone(), refusal: refusal.clone() }
        }
    }
}

fn duplicate_invoke_error(error: &InvokeError) -> InvokeError {
    let chain = |e: &(dyn std::error::Error + Send + Sync)| -> Box<dyn std::error::Error + Send + Sync> {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text.into()
    };
    match error {
        InvokeError::Throttled { message, retry_after } => {
            InvokeError::Throttled { message: message.clone(), retry_after: *retry_after }
        }
        InvokeError::Rejected { message } => InvokeError::Rejected { message: message.clone() },
        InvokeError::AccessDenied { message } => InvokeError::AccessDenied { message: message.clone() },
        InvokeError::ModelNotFound { message } => InvokeError::ModelNotFound { message: message.clone() },
        InvokeError::ModelNotReady { message } => InvokeError::ModelNotReady { message: message.clone() },
        InvokeError::ModelFailed { message } => InvokeError::ModelFailed { message: message.clone() },
        InvokeError::ModelTimeout { message } => InvokeError::ModelTimeout { message: message.clone() },
        InvokeError::Unavailable { message } => InvokeError::Unavailable { message: message.clone() },
        InvokeError::Internal { message } => InvokeError::Internal { message: message.clone() },
        InvokeError::Timeout(source) => InvokeError::Timeout(chain(source.as_ref())),
        InvokeError::Transport(source) => InvokeError::Transport(chain(source.as_ref())),
        InvokeError::BadResponse(message) => InvokeError::BadResponse(message.clone()),
    }
}

impl<P: Ports> Gateway<P> {
    /// Runs the request's remaining stages in a flight of identical concurrent requests: the
    /// first leads, the others are answered from its outcome.
    pub(super) async fn serve_in_flight(&self, prepared: Prepared) -> Result<Answer, GatewayError> {
        let flight = prepared.flight_key();
        let (own_model, own_routing) = (prepared.requested_model.clone(), prepared.routing.clone());
        let (started, deadline) = (prepared.started, prepared.deadline);
        let lead = || self.serve(prepared);
        // A leader's stages are bounded by its own deadline; a follower must not outwait its own.
        match deadline.bound(self.flights.run(flight, lead, share_outcome)).await {
            Ok(Flight::Led(result)) => result,
            Ok(Flight::Followed(outcome)) => follow(&outcome, own_model, own_routing, started),
            Err(_) => Err(GatewayError::DeadlineExceeded {
                hops: Vec::new(),
                remaining: Duration::ZERO,
                needed: Duration::ZERO,
                last: None,
            }),
        }
    }

    /// The read, then for a miss that will write, the claim. Failures are recorded in
    /// `report` and end in a miss: the request is served from Bedrock.
    pub(super) async fn lookup(&self, prepared: &Prepared, report: &mut CacheReport) -> Lookup {
        let (key, decision, deadline) = (&prepared.key, prepared.decision, prepared.deadline);
        if let Some((entry, read_at)) = self.read(prepared, report).await {
            return Lookup::Found { entry, read_at };
        }
        if !decision.read {
            return Lookup::Missed { claim: None };
        }
        // Only a request that will store its answer may make others wait for it.
        let Some(max_wait) = self.settings.claim_wait.filter(|_| decision.write && report.error.is_none()) else {
            return Lookup::Missed { claim: None };
        };
        let max_wait = max_wait.min(deadline.remaining());
        match self.claim_or_wait(key, max_wait, claim_poll_interval(max_wait), deadline).await {
            ClaimWait::Claimed(token) => Lookup::Missed { claim: Some(token) },
            ClaimWait::Answered(entry) => {
                report.coalesced = true;
                Lookup::Found { entry, read_at: SystemTime::now() }
            }
            ClaimWait::GaveUp => {
                tracing::info!(wait_ms = max_wait.as_millis() as u64, "no answer from the claim's holder in time");
                Lookup::Missed { claim: None }
            }
            ClaimWait::Unsupported => Lookup::Missed { claim: None },
            ClaimWait::Failed(e) => {
                tracing::warn!(error = %e, kind = %e.label(), "cache claim failed; serving from Bedrock");
                report.error = Some(format!("claim failed ({}): {e}", e.label()));
                Lookup::Missed { claim: None }
            }
        }
    }

    /// Takes the claim on `key` for this request's call, or waits for the answer of the
    /// instance holding it, polling the entry. A claim that expires or is released while
    /// waiting (its holder crashed or failed) is taken over, so at most one waiter calls at a
    /// time; none waits beyond `max_wait`.
    async fn claim_or_wait(&self, key: &CacheKey, max_wait: Duration, poll: Duration, deadline: Deadline) -> ClaimWait {
        let waiting = Instant::now();
        loop {
            match self.cache_op(self.ports.cache().claim(key, SystemTime::now(), max_wait), deadline).await {
                Ok(Claim::Acquired(token)) => return ClaimWait::Claimed(token),
                Ok(Claim::HeldElsewhere) => {}
                Ok(Claim::Unsupported) => return ClaimWait::Unsupported,
                Err(e) => return ClaimWait::Failed(e),
            }
            let Some(left) = max_wait.checked_sub(waiting.elapsed()).filter(|left| !left.is_zero()) else {
                return ClaimWait::GaveUp;
            };
            tokio::time::sleep(poll.min(left)).await;
            match self.cache_get(key, SystemTime::now(), deadline).await {
                Ok(Some(entry)) => return ClaimWait::Answered(Box::new(entry)),
                Ok(None) if waiting.elapsed() >= max_wait => return ClaimWait::GaveUp,
                Ok(None) => {}
                Err(e) => return ClaimWait::Failed(e),
            }
        }
    }

    /// The read alone, for a request that may read: a live entry and when it was read. A
    /// failure is recorded in `report` and ends in a miss. A deferred request stops here: it
    /// calls no model now, so it must not claim the key others would wait on.
    pub(crate) async fn read(
        &self,
        prepared: &Prepared,
        report: &mut CacheReport,
    ) -> Option<(Box<CacheEntry>, SystemTime)> {
        if !prepared.decision.read {
            return None;
        }
        let now = SystemTime::now();
        match self.cache_get(&prepared.key, now, prepared.deadline).await {
            Ok(Some(entry)) => Some((Box::new(entry), now)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, kind = %e.label(), "cache read failed; serving from Bedrock");
                report.error = Some(format!("read failed ({}): {e}", e.label()));
                None
            }
        }
    }

    /// A cache read bounded by the cache budget and the deadline: over it, the read is a failure
    /// the request survives like any other.
    pub(super) async fn cache_get(
        &self,
        key: &CacheKey,
        now: SystemTime,
        deadline: Deadline,
    ) -> Result<Option<CacheEntry>, CacheError> {
        self.cache_op(self.ports.cache().get(key, now), deadline).await
    }
}
