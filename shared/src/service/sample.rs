//! The sample stage: after a request is answered, a copy of its prompt goes to the
//! calibration's samples when its tenant opted in ([`crate::calibration::sample`]).
//!
//! The sample is picked before the request is consumed, and only for an opted-in tenant, so a
//! tenant who did not opt in costs one lookup and nothing else, and a request the hash leaves
//! out is never copied. The write runs after the answer is complete (and, for a stream, after
//! its last event), within the sampler's budget; its failure is logged and counted by the
//! sampler, never the request's.

use std::time::SystemTime;

use super::{ConverseCall, Gateway};
use crate::ports::Ports;

/// A picked sample, written once its request is answered: its URI and body.
#[derive(Debug)]
pub(super) struct Candidate {
    uri: String,
    body: Vec<u8>,
}

impl<P: Ports> Gateway<P> {
    pub(super) fn sample_candidate(&self, call: &ConverseCall) -> Option<Candidate> {
        let sampler = self.sampler.as_ref()?;
        if !sampler.opted_in(&call.tenant) {
            return None;
        }
        let (uri, body) = sampler.pick(&call.tenant, &call.request, SystemTime::now()).ok()?;
        Some(Candidate { uri, body })
    }

    pub(super) async fn sample(&self, candidate: Option<Candidate>) {
        if let (Some(sampler), Some(candidate)) = (&self.sampler, candidate) {
            sampler.write(candidate.uri, candidate.body).await;
        }
    }
}
