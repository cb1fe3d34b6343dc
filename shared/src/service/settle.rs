//! Stage 4, settle: what the served call cost, priced by the model that actually served it
//! (a prompt router's `invokedModelId` included). Quota settlement belongs here too: the
//! served usage is what Bedrock settles the call's reservation at (`ModelSpec::quota_tokens`).

use crate::cost::{PricingMode, Usage};
use crate::ports::Ports;
use crate::request::ConverseResponse;

use super::Gateway;
use super::prepare::Attempt;

/// A served answer with its price, on its way to the store.
#[derive(Debug)]
pub(super) struct Settled<'a> {
    pub(super) response: ConverseResponse,
    /// The Bedrock ID that produced the answer.
    pub(super) model_id: String,
    /// `None` when the serving model is not in the catalog.
    pub(super) cost_usd: Option<f64>,
    pub(super) served_by: &'a Attempt,
}

impl<P: Ports> Gateway<P> {
    pub(super) fn settle<'a>(&self, response: ConverseResponse, served_by: &'a Attempt) -> Settled<'a> {
        let model_id = response.invoked_model_id().map_or_else(|| served_by.invoke_id.clone(), str::to_owned);
        let cost_usd = match self.catalog.cost_of(&model_id, &Usage::from(&response.usage), PricingMode::OnDemand) {
            Ok(cost) => Some(cost),
            Err(e) => {
                tracing::warn!(model_id, error = %e, "served by a model outside the catalog; cost unknown");
                None
            }
        };
        Settled { response, model_id, cost_usd, served_by }
    }
}
