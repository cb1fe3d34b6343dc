//! The sample stage: after a request is answered, a copy of its prompt goes to the
//! calibration's samples when its tenant opted in ([`crate::calibration::sample`]).
//!
//! The copy is taken before the request is consumed, and only for an opted-in tenant, so a
//! tenant who did not opt in costs one lookup and nothing else. The write runs after the
//! answer is complete (and, for a stream, after its last event), within the sampler's budget;
//! its failure is logged and counted by the sampler, never the request's.

use std::time::SystemTime;

use super::{ConverseCall, Gateway};
use crate::cache::Tenant;
use crate::ports::Ports;
use crate::request::ConverseRequest;

/// A request that may be sampled once it is answered.
#[derive(Debug)]
pub(super) struct Candidate {
    tenant: Tenant,
    request: ConverseRequest,
}

impl<P: Ports> Gateway<P> {
    pub(super) fn sample_candidate(&self, call: &ConverseCall) -> Option<Candidate> {
        let sampler = self.sampler.as_ref()?;
        sampler.opted_in(&call.tenant).then(|| Candidate { tenant: call.tenant.clone(), request: call.request.clone() })
    }

    pub(super) async fn sample(&self, candidate: Option<Candidate>) {
        if let (Some(sampler), Some(candidate)) = (&self.sampler, candidate) {
            sampler.sample(&candidate.tenant, &candidate.request, SystemTime::now()).await;
        }
    }
}
