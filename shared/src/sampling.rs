//! Which of the sampling parameters (`temperature`, `topP`, and `top_k` in
//! `additionalModelRequestFields`) each model accepts, and the request a model is sent once
//! the ones it refuses are left out.
//!
//! Claude models differ, and Bedrock answers a parameter a model refuses with a 400: Claude 3.x
//! and 4 take all three together; Opus 4.1 and the 4.5 and 4.6 generations refuse
//! `temperature` with `topP` ("cannot both be specified for this model"); Opus 4.7 and later
//! refuse all three, and take thinking only as `{"type": "adaptive"}` (a budgeted
//! `{"type": "enabled", "budget_tokens": n}` is a 400 there). A caller who names a tier, or
//! whose request falls back to another model, cannot know which rule the answering model
//! follows, so the gateway sends each attempt what its model accepts and reports in the
//! attempt's hop what it left out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::request::ConverseRequest;

/// The keys of Anthropic's `top_k` and `thinking` in `additionalModelRequestFields`.
const TOP_K: &str = "top_k";
const THINKING: &str = "thinking";

/// A model's rule for the sampling parameters (`sampling` in the catalog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampling {
    /// Any combination of the three.
    #[default]
    Any,
    /// `temperature` or `topP`, not both; `top_k` with either.
    TemperatureOrTopP,
    /// None of them, and thinking only adaptive: the model samples, and decides how long it
    /// thinks, at its own settings.
    Fixed,
}

/// Which sampling parameters a request sets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Given {
    pub temperature: bool,
    pub top_p: bool,
    pub top_k: bool,
    /// Thinking with a token budget (`thinking.type` `enabled`).
    pub budgeted_thinking: bool,
}

impl Given {
    pub fn of(request: &ConverseRequest) -> Given {
        let config = request.inference_config.as_ref();
        Given {
            temperature: config.is_some_and(|c| c.temperature.is_some()),
            top_p: config.is_some_and(|c| c.top_p.is_some()),
            top_k: request.additional_model_request_fields.as_ref().is_some_and(|f| f.get(TOP_K).is_some()),
            budgeted_thinking: request
                .additional_model_request_fields
                .as_ref()
                .and_then(|f| f.get(THINKING)?.get("type")?.as_str().map(|kind| kind == "enabled"))
                .unwrap_or(false),
        }
    }

    pub fn is_empty(self) -> bool {
        self == Given::default()
    }

    /// The parameters' names as a Converse request spells them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.temperature, "temperature"),
            (self.top_p, "topP"),
            (self.top_k, TOP_K),
            (self.budgeted_thinking, "thinking.budget_tokens"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// Why a model refuses a request's sampling parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `temperature` and `topP` together.
    Both,
    /// The model takes no sampling parameter; the first of them the request sets.
    Unsupported(&'static str),
    /// The model thinks only adaptively.
    BudgetedThinking,
}

impl Sampling {
    /// What a model with this rule refuses in a request that sets `given`.
    pub fn refusal(self, given: Given) -> Option<Refusal> {
        match self {
            Sampling::Any => None,
            Sampling::TemperatureOrTopP => (given.temperature && given.top_p).then_some(Refusal::Both),
            Sampling::Fixed => {
                let sampled = Given { budgeted_thinking: false, ..given };
                match sampled.names().first() {
                    Some(name) => Some(Refusal::Unsupported(name)),
                    None => given.budgeted_thinking.then_some(Refusal::BudgetedThinking),
                }
            }
        }
    }

    /// The parameters to leave out of a request that sets `given` so that the model accepts
    /// it. Of `temperature` and `topP` together, `topP` goes: `temperature` is the one callers
    /// set on purpose far more often, and SDKs that send both fill `topP` with a default. A
    /// thinking budget goes and thinking stays on, adaptive: the caller asked for thinking.
    pub fn omitted(self, given: Given) -> Given {
        match self.refusal(given) {
            None => Given::default(),
            Some(Refusal::Both) => Given { top_p: true, ..Given::default() },
            Some(Refusal::Unsupported(_) | Refusal::BudgetedThinking) => given,
        }
    }

    /// `request` as a model with this rule accepts it: borrowed when nothing is left out.
    pub fn fit(self, request: &ConverseRequest) -> Cow<'_, ConverseRequest> {
        let omitted = self.omitted(Given::of(request));
        if omitted.is_empty() {
            return Cow::Borrowed(request);
        }
        let mut fitted = request.clone();
        if let Some(config) = fitted.inference_config.as_mut() {
            if omitted.temperature {
                config.temperature = None;
            }
            if omitted.top_p {
                config.top_p = None;
            }
        }
        if let Some(fields) = fitted.additional_model_request_fields.as_mut().and_then(|f| f.as_object_mut()) {
            if omitted.top_k {
                fields.remove(TOP_K);
            }
            if omitted.budgeted_thinking
                && let Some(thinking) = fields.get_mut(THINKING).and_then(|t| t.as_object_mut())
            {
                thinking.remove("budget_tokens");
                thinking.insert("type".to_owned(), "adaptive".into());
            }
            if fields.is_empty() {
                fitted.additional_model_request_fields = None;
            }
        }
        Cow::Owned(fitted)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn request(config: serde_json::Value, fields: Option<serde_json::Value>) -> ConverseRequest {
        let mut body = json!({"messages": [{"role": "user", "content": [{"text": "hi"}]}], "inferenceConfig": config});
        if let Some(fields) = fields {
            body["additionalModelRequestFields"] = fields;
        }
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn a_model_that_takes_any_combination_is_sent_the_request_as_it_is() {
        let all = request(json!({"temperature": 0.2, "topP": 0.9}), Some(json!({"top_k": 5})));
        assert!(matches!(Sampling::Any.fit(&all), Cow::Borrowed(_)));
        assert_eq!(Sampling::Any.refusal(Given::of(&all)), None);
    }

    #[test]
    fn temperature_with_top_p_loses_top_p_and_keeps_everything_else() {
        let both = request(json!({"temperature": 0.2, "topP": 0.9, "maxTokens": 50}), Some(json!({"top_k": 5})));
        let rule = Sampling::TemperatureOrTopP;
        assert_eq!(rule.refusal(Given::of(&both)), Some(Refusal::Both));
        let fitted = rule.fit(&both);
        let config = fitted.inference_config.as_ref().unwrap();
        assert_eq!((config.temperature, config.top_p, config.max_tokens), (Some(0.2), None, Some(50)));
        assert_eq!(fitted.additional_model_request_fields, Some(json!({"top_k": 5})));
        assert_eq!(rule.refusal(Given::of(&fitted)), None);
        assert_eq!(rule.omitted(Given::of(&both)).names(), ["topP"]);

        for one in [json!({"temperature": 0.2}), json!({"topP": 0.9})] {
            assert!(matches!(rule.fit(&request(one, None)), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn a_fixed_model_is_sent_none_of_the_three_and_other_fields_survive() {
        let all = request(json!({"temperature": 0.0, "topP": 0.5, "maxTokens": 9}), Some(json!({"top_k": 3})));
        assert_eq!(Sampling::Fixed.refusal(Given::of(&all)), Some(Refusal::Unsupported("temperature")));
        let fitted = Sampling::Fixed.fit(&all);
        assert!(Given::of(&fitted).is_empty());
        assert_eq!(fitted.inference_config.as_ref().unwrap().max_tokens, Some(9));
        assert_eq!(fitted.additional_model_request_fields, None, "an emptied object is dropped, not sent as {{}}");
        assert_eq!(Sampling::Fixed.omitted(Given::of(&all)).names(), ["temperature", "topP", "top_k"]);

        let thinking = request(json!({}), Some(json!({"top_k": 3, "thinking": {"type": "adaptive"}})));
        assert_eq!(Sampling::Fixed.refusal(Given::of(&thinking)), Some(Refusal::Unsupported("top_k")));
        let fitted = Sampling::Fixed.fit(&thinking);
        assert_eq!(fitted.additional_model_request_fields, Some(json!({"thinking": {"type": "adaptive"}})));
    }

    #[test]
    fn a_thinking_budget_becomes_adaptive_thinking_where_only_that_is_taken() {
        let budgeted = request(
            json!({"maxTokens": 4000}),
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}})),
        );
        assert_eq!(Sampling::Fixed.refusal(Given::of(&budgeted)), Some(Refusal::BudgetedThinking));
        let fitted = Sampling::Fixed.fit(&budgeted);
        assert_eq!(
            fitted.additional_model_request_fields,
            Some(json!({"thinking": {"type": "adaptive", "display": "summarized"}}))
        );
        assert_eq!(Sampling::Fixed.refusal(Given::of(&fitted)), None);
        assert_eq!(Sampling::Fixed.omitted(Given::of(&budgeted)).names(), ["thinking.budget_tokens"]);
        // Models before Opus 4.7 take the budget.
        for rule in [Sampling::Any, Sampling::TemperatureOrTopP] {
            assert!(matches!(rule.fit(&budgeted), Cow::Borrowed(_)));
        }
        let off = request(json!({}), Some(json!({"thinking": {"type": "disabled"}})));
        assert_eq!(Sampling::Fixed.refusal(Given::of(&off)), None);
    }
}
