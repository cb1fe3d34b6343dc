//! Stage 5, store: the write of a served answer under the key of the model that gave it, and
//! the release of the claim taken at lookup. Both happen before the reply, because Lambda
//! may freeze the environment as soon as the handler returns; neither fails the request.

use std::time::SystemTime;

use crate::cache::{self, CacheEntry, CacheKey};
use crate::deadline::Deadline;
use crate::ports::{CacheError, CacheStore, ClaimToken, Ports, PutOutcome};
use crate::request::ConverseResponse;

use super::prepare::Prepared;
use super::settle::Settled;
use super::{CacheReport, Gateway, WriteReport, add_error};

/// A settled answer after the store: what the reply carries.
#[derive(Debug)]
pub(super) struct Reply {
    pub(super) response: ConverseResponse,
    pub(super) model_id: String,
    pub(super) cost_usd: Option<f64>,
}

impl<P: Ports> Gateway<P> {
    /// Writes the answer when the policy allows, then releases the claim; what happened is
    /// recorded in `report`.
    pub(super) async fn store(
        &self,
        prepared: &Prepared,
        settled: Settled<'_>,
        claim: Option<ClaimToken>,
        report: &mut CacheReport,
    ) -> Reply {
        let Settled { mut response, model_id, cost_usd, served_by } = settled;
        let (decision, deadline) = (prepared.decision, prepared.deadline);
        if decision.write {
            report.write = Some(if !cache::is_cacheable(&response) {
                WriteReport::NotCacheable
            } else {
                let now = SystemTime::now();
                // The answer moves into the entry for the write and back out: no copy.
                let entry = CacheEntry {
                    key: prepared.key_for(served_by),
                    response,
                    model_id: model_id.clone(),
                    cost_usd: cost_usd.unwrap_or(0.0),
                    created_at: now,
                    expires_at: now + decision.ttl,
                };
                let outcome = self.cache_op(self.ports.cache().put(&entry), deadline).await;
                response = entry.response;
                match outcome {
                    Ok(PutOutcome::Stored { bytes }) => WriteReport::Stored { bytes },
                    Ok(PutOutcome::TooLarge { bytes, limit }) => {
                        tracing::info!(bytes, limit, "answer too large to cache");
                        WriteReport::TooLarge { bytes, limit }
                    }
                    Err(e) => {
                        let (verb, write) = match e {
                            CacheError::Timeout(_) => ("abandoned", WriteReport::Abandoned),
                            CacheError::Store(_) | CacheError::Throttled(_) | CacheError::Corrupt(_) => {
                                ("failed", WriteReport::Failed)
                            }
                        };
                        tracing::warn!(error = %e, kind = %e.label(), "cache write {verb}");
                        add_error(report, Some(format!("write {verb} ({}): {e}", e.label())));
                        write
                    }
                }
            });
        }
        // The answer may be stored under a fallback model's key; the claim is on the first.
        add_error(report, self.release_claim(&prepared.key, claim, deadline).await);
        Reply { response, model_id, cost_usd }
    }

    /// Releases a claim this request holds; the failure's message, if any, for the report.
    pub(super) async fn release_claim(
        &self,
        key: &CacheKey,
        token: Option<ClaimToken>,
        deadline: Deadline,
    ) -> Option<String> {
        let token = token?;
        match self.cache_op(self.ports.cache().release(key, &token), deadline).await {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(error = %e, kind = %e.label(), "cache claim release failed; it will expire");
                Some(format!("claim release failed ({}): {e}", e.label()))
            }
        }
    }
}
