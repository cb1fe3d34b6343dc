//! Which sampling parameters (`temperature`, `topP`, and `top_k` in
//! `additionalModelRequestFields`) and which forms of extended thinking each model accepts,
//! and the request a model is sent once what it refuses is left out.
//!
//! Claude models differ, and Bedrock answers a parameter a model refuses with a 400: Claude 3.x
//! and 4 take all three together; Opus 4.1 and the 4.5 and 4.6 generations refuse
//! `temperature` with `topP` ("cannot both be specified for this model"); Opus 4.7 and later
//! refuse all three. Thinking has three generations too: models before Claude 3.7 Sonnet do
//! not know the field; Claude 3.7 Sonnet to the 4.5 generation think only with a budget
//! (`{"type": "enabled", "budget_tokens": n}`) and refuse `{"type": "adaptive"}`; the 4.6
//! generation takes both; Opus 4.7 and later take only adaptive thinking, and refuse a budget
//! and `{"type": "disabled"}` alike. A caller who names a tier, or whose request falls back to
//! another model, cannot know which rule the answering model follows, so the gateway sends
//! each attempt what its model accepts and reports in the attempt's hop what it left out.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::request::{ConverseRequest, ToolChoice};

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
    /// None of them: the model samples at its own settings.
    Fixed,
}

/// A model's rule for extended thinking (`thinking` in the catalog).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Thinking {
    /// Every form the request may take, sent as it is.
    #[default]
    Any,
    /// Only thinking with a token budget.
    Budgeted,
    /// Only adaptive thinking: the model decides how long it thinks, and whether.
    Adaptive,
    /// No `thinking` field at all.
    #[serde(rename = "none")]
    Unsupported,
}

/// The form of extended thinking a request asks for (`thinking.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThinkingForm {
    /// `enabled`, with a token budget.
    Budgeted,
    Adaptive,
    Disabled,
    /// A `thinking` field of another shape, which only Bedrock can judge.
    Other,
}

impl ThinkingForm {
    fn of(thinking: &serde_json::Value) -> ThinkingForm {
        match thinking.get("type").and_then(|kind| kind.as_str()) {
            Some("enabled") => ThinkingForm::Budgeted,
            Some("adaptive") => ThinkingForm::Adaptive,
            Some("disabled") => ThinkingForm::Disabled,
            _ => ThinkingForm::Other,
        }
    }

    /// The name a hop lists when this form was not sent.
    fn name(self) -> &'static str {
        match self {
            ThinkingForm::Budgeted => "thinking.budget_tokens",
            ThinkingForm::Adaptive => "thinking.adaptive",
            ThinkingForm::Disabled => "thinking.disabled",
            ThinkingForm::Other => THINKING,
        }
    }
}

/// What a request sets that some model refuses.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Given {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: bool,
    pub thinking: Option<ThinkingForm>,
    pub max_tokens: Option<u32>,
    /// `toolChoice` `any` or `tool`: the answer must call a tool.
    pub forced_tool: bool,
}

impl Given {
    pub fn of(request: &ConverseRequest) -> Given {
        let config = request.inference_config.as_ref();
        let fields = request.additional_model_request_fields.as_ref();
        Given {
            temperature: config.and_then(|c| c.temperature),
            top_p: config.and_then(|c| c.top_p),
            top_k: fields.is_some_and(|f| f.get(TOP_K).is_some()),
            thinking: fields.and_then(|f| f.get(THINKING)).map(ThinkingForm::of),
            max_tokens: request.max_tokens(),
            forced_tool: request
                .tool_config
                .as_ref()
                .is_some_and(|t| matches!(t.tool_choice, Some(ToolChoice::Any(_) | ToolChoice::Tool(_)))),
        }
    }

    /// Whether the request asks the model to think.
    pub fn thinks(self) -> bool {
        thinks(self.thinking)
    }

    /// The sampling parameters it sets.
    fn sampled(self) -> Omitted {
        Omitted {
            temperature: self.temperature.is_some(),
            top_p: self.top_p.is_some(),
            top_k: self.top_k,
            thinking: None,
        }
    }
}

fn thinks(form: Option<ThinkingForm>) -> bool {
    matches!(form, Some(ThinkingForm::Budgeted | ThinkingForm::Adaptive))
}

/// Anthropic's bounds on sampling while a model thinks: `temperature` only 1, no `top_k`,
/// `topP` from 0.95.
const THINKING_TEMPERATURE: f32 = 1.0;
const THINKING_MIN_TOP_P: f32 = 0.95;

/// What is left out of a request, or changed in it, for its model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Omitted {
    pub temperature: bool,
    pub top_p: bool,
    pub top_k: bool,
    /// The form of thinking asked for and not sent as it was.
    pub thinking: Option<ThinkingForm>,
}

impl Omitted {
    pub fn is_empty(self) -> bool {
        self == Omitted::default()
    }

    /// The parameters' names as a Converse request spells them.
    pub fn names(self) -> Vec<&'static str> {
        [(self.temperature, "temperature"), (self.top_p, "topP"), (self.top_k, TOP_K)]
            .into_iter()
            .filter_map(|(set, name)| set.then_some(name))
            .chain(self.thinking.map(ThinkingForm::name))
            .collect()
    }
}

/// Why a model refuses a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `temperature` and `topP` together.
    Both,
    /// The model takes no sampling parameter; the first of them the request sets.
    Unsupported(&'static str),
    /// A thinking budget; the model thinks only adaptively.
    BudgetedThinking,
    /// `thinking.type` `disabled`; the model thinks only adaptively.
    DisabledThinking,
    /// Adaptive thinking; the model thinks only with a budget.
    AdaptiveThinking,
    /// A `thinking` field; the model does not think.
    Thinking,
    /// Thinking with `toolChoice` forcing a tool.
    ThinkingWithForcedTool,
    /// Thinking with a sampling parameter outside its bounds while thinking (its name).
    SampledWhileThinking(&'static str),
}

impl Sampling {
    fn refusal(self, given: Given) -> Option<Refusal> {
        match self {
            Sampling::Any => None,
            Sampling::TemperatureOrTopP => {
                (given.temperature.is_some() && given.top_p.is_some()).then_some(Refusal::Both)
            }
            Sampling::Fixed => given.sampled().names().first().copied().map(Refusal::Unsupported),
        }
    }

    /// Of `temperature` and `topP` together, `topP` goes: `temperature` is the one callers
    /// set on purpose far more often, and SDKs that send both fill `topP` with a default.
    fn omitted(self, given: Given) -> Omitted {
        match self.refusal(given) {
            None => Omitted::default(),
            Some(Refusal::Both) => Omitted { top_p: true, ..Omitted::default() },
            Some(_) => given.sampled(),
        }
    }
}

impl Thinking {
    fn refusal(self, given: Given) -> Option<Refusal> {
        match (self, given.thinking?) {
            (Thinking::Adaptive, ThinkingForm::Budgeted) => Some(Refusal::BudgetedThinking),
            (Thinking::Adaptive, ThinkingForm::Disabled) => Some(Refusal::DisabledThinking),
            (Thinking::Budgeted, ThinkingForm::Adaptive) => Some(Refusal::AdaptiveThinking),
            (Thinking::Unsupported, _) => Some(Refusal::Thinking),
            _ => None,
        }
    }

    /// The `thinking` field a model with this rule is sent instead of `asked`, which it
    /// refuses; `None` to send none. A budget on an adaptive-only model becomes adaptive
    /// thinking (the caller asked for thinking, and the model sizes it). Adaptive thinking
    /// on a budget-only model becomes half of `maxTokens` as the budget: Anthropic's budget
    /// must be at least 1,024 tokens and below `maxTokens`, so without room for that (or
    /// without a `maxTokens` to measure it by) the model answers without thinking. Without
    /// thinking is what `disabled` asks of an adaptive-only model, whose default is to think
    /// only when asked.
    fn replacement(self, asked: &serde_json::Value, max_tokens: Option<u32>) -> Option<serde_json::Value> {
        let mut thinking = asked.as_object()?.clone();
        match (self, ThinkingForm::of(asked)) {
            (Thinking::Adaptive, ThinkingForm::Budgeted) => {
                thinking.remove(BUDGET_TOKENS);
                thinking.insert("type".to_owned(), "adaptive".into());
            }
            (Thinking::Budgeted, ThinkingForm::Adaptive) => {
                let budget = adaptive_budget(max_tokens)?;
                thinking.insert("type".to_owned(), "enabled".into());
                thinking.insert(BUDGET_TOKENS.to_owned(), budget.into());
            }
            _ => return None,
        }
        Some(thinking.into())
    }

    /// The form of thinking a model with this rule is sent for `given`.
    fn sent(self, given: Given) -> Option<ThinkingForm> {
        let asked = given.thinking?;
        match (self, asked) {
            (Thinking::Unsupported, _) | (Thinking::Adaptive, ThinkingForm::Disabled) => None,
            (Thinking::Adaptive, ThinkingForm::Budgeted) => Some(ThinkingForm::Adaptive),
            (Thinking::Budgeted, ThinkingForm::Adaptive) => {
                adaptive_budget(given.max_tokens).map(|_| ThinkingForm::Budgeted)
            }
            (_, form) => Some(form),
        }
    }
}

/// The sampling parameters a thinking request must leave out, first `temperature`.
fn outside_thinking_bounds(given: Given) -> Omitted {
    Omitted {
        temperature: given.temperature.is_some_and(|t| t != THINKING_TEMPERATURE),
        top_p: given.top_p.is_some_and(|p| p < THINKING_MIN_TOP_P),
        top_k: given.top_k,
        thinking: None,
    }
}

/// Anthropic's smallest thinking budget.
pub const MIN_THINKING_BUDGET: u32 = 1_024;

/// The budget adaptive thinking becomes on a budget-only model: half of `maxTokens`, if
/// that is a budget Anthropic takes.
fn adaptive_budget(max_tokens: Option<u32>) -> Option<u32> {
    max_tokens.map(|max| max / 2).filter(|budget| *budget >= MIN_THINKING_BUDGET)
}
const BUDGET_TOKENS: &str = "budget_tokens";

/// What a model accepts of a request: the catalog's `sampling` and `thinking` of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepts {
    pub sampling: Sampling,
    pub thinking: Thinking,
}

impl Accepts {
    /// What a model with these rules refuses in a request that sets `given`, the sampling
    /// parameters first.
    pub fn refusal(self, given: Given) -> Option<Refusal> {
        self.sampling.refusal(given).or_else(|| self.thinking.refusal(given)).or_else(|| {
            if !given.thinks() {
                None
            } else if given.forced_tool {
                Some(Refusal::ThinkingWithForcedTool)
            } else {
                outside_thinking_bounds(given).names().first().copied().map(Refusal::SampledWhileThinking)
            }
        })
    }

    /// What to leave out of, or change in, a request that sets `given` so that the model
    /// accepts it (the thinking sent instead, if any, is [`Thinking::replacement`]'s).
    /// Anthropic's models refuse to think while a tool is forced, and refuse most sampling
    /// while they think: a forced tool keeps its call and thinking goes (the caller's code
    /// depends on the call), and thinking keeps its place over the sampling parameters (as
    /// with a budget on an adaptive-only model, the caller asked for thinking).
    pub fn omitted(self, given: Given) -> Omitted {
        let sent = self.thinking.sent(given).filter(|form| !(given.forced_tool && thinks(Some(*form))));
        let mut omitted = self.sampling.omitted(given);
        if sent != given.thinking {
            omitted.thinking = given.thinking;
        }
        if thinks(sent) {
            let bounds = outside_thinking_bounds(given);
            omitted.temperature |= bounds.temperature;
            omitted.top_p |= bounds.top_p;
            omitted.top_k |= bounds.top_k;
        }
        omitted
    }

    /// `request` as a model with these rules accepts it: borrowed when nothing is left out.
    pub fn fit(self, request: &ConverseRequest) -> Cow<'_, ConverseRequest> {
        let given = Given::of(request);
        let omitted = self.omitted(given);
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
            if omitted.thinking.is_some() {
                let replacement = (!given.forced_tool)
                    .then(|| fields.get(THINKING).and_then(|asked| self.thinking.replacement(asked, given.max_tokens)));
                match replacement.flatten() {
                    Some(replacement) => fields.insert(THINKING.to_owned(), replacement),
                    None => fields.remove(THINKING),
                };
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

    const ANY: Accepts = Accepts { sampling: Sampling::Any, thinking: Thinking::Any };
    const EITHER: Accepts = Accepts { sampling: Sampling::TemperatureOrTopP, thinking: Thinking::Any };
    const OPUS_4_7: Accepts = Accepts { sampling: Sampling::Fixed, thinking: Thinking::Adaptive };
    const HAIKU_4_5: Accepts = Accepts { sampling: Sampling::TemperatureOrTopP, thinking: Thinking::Budgeted };
    const CLAUDE_3_5: Accepts = Accepts { sampling: Sampling::Any, thinking: Thinking::Unsupported };

    fn thinking(max_tokens: Option<u32>, thinking: serde_json::Value) -> ConverseRequest {
        let config = max_tokens.map_or_else(|| json!({}), |max| json!({"maxTokens": max}));
        request(config, Some(json!({"thinking": thinking, "top_k": 4})))
    }

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
        assert!(matches!(ANY.fit(&all), Cow::Borrowed(_)));
        assert_eq!(ANY.refusal(Given::of(&all)), None);
    }

    #[test]
    fn temperature_with_top_p_loses_top_p_and_keeps_everything_else() {
        let both = request(json!({"temperature": 0.2, "topP": 0.9, "maxTokens": 50}), Some(json!({"top_k": 5})));
        let rule = EITHER;
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
        assert_eq!(OPUS_4_7.refusal(Given::of(&all)), Some(Refusal::Unsupported("temperature")));
        let fitted = OPUS_4_7.fit(&all);
        assert_eq!(Given::of(&fitted), Given { max_tokens: Some(9), ..Given::default() });
        assert_eq!(fitted.inference_config.as_ref().unwrap().max_tokens, Some(9));
        assert_eq!(fitted.additional_model_request_fields, None, "an emptied object is dropped, not sent as {{}}");
        assert_eq!(OPUS_4_7.omitted(Given::of(&all)).names(), ["temperature", "topP", "top_k"]);

        let thinking = request(json!({}), Some(json!({"top_k": 3, "thinking": {"type": "adaptive"}})));
        assert_eq!(OPUS_4_7.refusal(Given::of(&thinking)), Some(Refusal::Unsupported("top_k")));
        let fitted = OPUS_4_7.fit(&thinking);
        assert_eq!(fitted.additional_model_request_fields, Some(json!({"thinking": {"type": "adaptive"}})));
    }

    #[test]
    fn a_thinking_budget_becomes_adaptive_thinking_where_only_that_is_taken() {
        let budgeted = request(
            json!({"maxTokens": 4000}),
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 2048, "display": "summarized"}})),
        );
        assert_eq!(OPUS_4_7.refusal(Given::of(&budgeted)), Some(Refusal::BudgetedThinking));
        let fitted = OPUS_4_7.fit(&budgeted);
        assert_eq!(
            fitted.additional_model_request_fields,
            Some(json!({"thinking": {"type": "adaptive", "display": "summarized"}}))
        );
        assert_eq!(OPUS_4_7.refusal(Given::of(&fitted)), None);
        assert_eq!(OPUS_4_7.omitted(Given::of(&budgeted)).names(), ["thinking.budget_tokens"]);
        // Models before Opus 4.7 take the budget.
        for rule in [ANY, EITHER] {
            assert!(matches!(rule.fit(&budgeted), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn disabled_thinking_is_not_sent_where_only_adaptive_thinking_is_taken() {
        let off = request(json!({"maxTokens": 100}), Some(json!({"thinking": {"type": "disabled"}})));
        assert_eq!(OPUS_4_7.refusal(Given::of(&off)), Some(Refusal::DisabledThinking));
        let fitted = OPUS_4_7.fit(&off);
        assert_eq!(fitted.additional_model_request_fields, None);
        assert_eq!(OPUS_4_7.omitted(Given::of(&off)).names(), ["thinking.disabled"]);
        for rule in [ANY, EITHER, HAIKU_4_5] {
            assert!(matches!(rule.fit(&off), Cow::Borrowed(_)), "{rule:?}");
        }
    }

    #[test]
    fn adaptive_thinking_becomes_half_of_max_tokens_as_the_budget_where_only_a_budget_is_taken() {
        let adaptive = thinking(Some(8_000), json!({"type": "adaptive"}));
        assert_eq!(HAIKU_4_5.refusal(Given::of(&adaptive)), Some(Refusal::AdaptiveThinking));
        let fitted = HAIKU_4_5.fit(&adaptive);
        assert_eq!(
            fitted.additional_model_request_fields,
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 4_000}})),
            "top_k goes: a model that thinks refuses it"
        );
        assert_eq!(HAIKU_4_5.refusal(Given::of(&fitted)), None);
        assert_eq!(HAIKU_4_5.omitted(Given::of(&adaptive)).names(), ["top_k", "thinking.adaptive"]);
        let budgeted = request(
            json!({"maxTokens": 8_000}),
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 2_000}})),
        );
        assert!(matches!(HAIKU_4_5.fit(&budgeted), Cow::Borrowed(_)));
        let adaptive_alone = request(json!({"maxTokens": 8_000}), Some(json!({"thinking": {"type": "adaptive"}})));
        assert!(matches!(ANY.fit(&adaptive_alone), Cow::Borrowed(_)), "the 4.6 generation takes both");

        // The smallest budget is 1,024 and must stay below maxTokens: without room, or
        // without a maxTokens, the model answers without thinking and top_k survives.
        let exact = HAIKU_4_5.fit(&thinking(Some(2_048), json!({"type": "adaptive"}))).into_owned();
        assert_eq!(exact.additional_model_request_fields.unwrap()["thinking"]["budget_tokens"], 1_024);
        for no_room in [thinking(Some(2_047), json!({"type": "adaptive"})), thinking(None, json!({"type": "adaptive"}))]
        {
            let fitted = HAIKU_4_5.fit(&no_room);
            assert_eq!(fitted.additional_model_request_fields, Some(json!({"top_k": 4})));
            assert_eq!(HAIKU_4_5.omitted(Given::of(&no_room)).names(), ["thinking.adaptive"]);
        }
    }

    #[test]
    fn a_thinking_request_is_sent_only_the_sampling_a_thinking_model_takes() {
        let sampled = |mut config: serde_json::Value| {
            config["maxTokens"] = json!(8_000);
            request(config, Some(json!({"top_k": 5, "thinking": {"type": "enabled", "budget_tokens": 2_000}})))
        };
        let claude_3_7 = Accepts { sampling: Sampling::Any, thinking: Thinking::Budgeted };
        let asked = sampled(json!({"temperature": 0.3, "topP": 0.9}));
        assert_eq!(claude_3_7.refusal(Given::of(&asked)), Some(Refusal::SampledWhileThinking("temperature")));
        let fitted = claude_3_7.fit(&asked);
        let config = fitted.inference_config.as_ref().unwrap();
        assert_eq!((config.temperature, config.top_p, config.max_tokens), (None, None, Some(8_000)));
        assert_eq!(
            fitted.additional_model_request_fields,
            Some(json!({"thinking": {"type": "enabled", "budget_tokens": 2_000}}))
        );
        assert_eq!(claude_3_7.omitted(Given::of(&asked)).names(), ["temperature", "topP", "top_k"]);
        assert_eq!(claude_3_7.refusal(Given::of(&fitted)), None);

        // Inside the bounds (temperature 1, topP from 0.95) the values stay.
        let within = sampled(json!({"temperature": 1.0, "topP": 0.95}));
        assert_eq!(claude_3_7.omitted(Given::of(&within)).names(), ["top_k"]);
        // Without thinking nothing is bounded; nor where thinking goes for a model that
        // cannot think.
        let plain = request(json!({"temperature": 0.3, "topP": 0.9}), Some(json!({"top_k": 5})));
        assert!(matches!(claude_3_7.fit(&plain), Cow::Borrowed(_)));
        assert_eq!(CLAUDE_3_5.omitted(Given::of(&asked)).names(), ["thinking.budget_tokens"]);
    }

    #[test]
    fn a_forced_tool_keeps_its_call_and_thinking_goes() {
        let mut forced: ConverseRequest = serde_json::from_value(json!({
            "messages": [{"role": "user", "content": [{"text": "weather?"}]}],
            "inferenceConfig": {"maxTokens": 8_000, "temperature": 0.2},
            "additionalModelRequestFields": {"thinking": {"type": "enabled", "budget_tokens": 2_000}},
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "weather", "inputSchema": {"json": {"type": "object"}}}}],
                "toolChoice": {"any": {}}
            }
        }))
        .unwrap();
        for rule in [ANY, HAIKU_4_5, OPUS_4_7] {
            assert!(rule.refusal(Given::of(&forced)).is_some(), "{rule:?}");
            let fitted = rule.fit(&forced);
            assert_eq!(fitted.additional_model_request_fields, None, "{rule:?}");
            assert_eq!(rule.refusal(Given::of(&fitted)), None, "{rule:?}");
        }
        assert_eq!(ANY.refusal(Given::of(&forced)), Some(Refusal::ThinkingWithForcedTool));
        assert_eq!(ANY.omitted(Given::of(&forced)).names(), ["thinking.budget_tokens"], "temperature stays");
        // `auto` leaves the choice to the model, which may think.
        let tool_config = forced.tool_config.as_mut().unwrap();
        tool_config.tool_choice = serde_json::from_value(json!({"auto": {}})).unwrap();
        assert_eq!(ANY.omitted(Given::of(&forced)).names(), ["temperature"]);
    }

    #[test]
    fn every_fitted_request_is_accepted_by_its_model() {
        let claude_3_7 = Accepts { sampling: Sampling::Any, thinking: Thinking::Budgeted };
        let forms = [
            None,
            Some(json!({"type": "enabled", "budget_tokens": 1_500})),
            Some(json!({"type": "adaptive"})),
            Some(json!({"type": "disabled"})),
        ];
        let samplings = [
            (None, None, false),
            (Some(0.5), None, true),
            (Some(1.0), Some(0.97), false),
            (Some(0.0), Some(0.5), true),
        ];
        for rule in [ANY, EITHER, OPUS_4_7, HAIKU_4_5, CLAUDE_3_5, claude_3_7] {
            for thinking in &forms {
                for (temperature, top_p, top_k) in samplings {
                    for max_tokens in [None, Some(1_000), Some(6_000)] {
                        let mut config = json!({});
                        if let Some(t) = temperature {
                            config["temperature"] = json!(t);
                        }
                        if let Some(p) = top_p {
                            config["topP"] = json!(p);
                        }
                        if let Some(m) = max_tokens {
                            config["maxTokens"] = json!(m);
                        }
                        let mut fields = serde_json::Map::new();
                        if top_k {
                            fields.insert("top_k".into(), json!(3));
                        }
                        if let Some(t) = thinking {
                            fields.insert("thinking".into(), t.clone());
                        }
                        let asked = request(config, (!fields.is_empty()).then(|| fields.into()));
                        let given = Given::of(&asked);
                        assert_eq!(rule.refusal(Given::of(&rule.fit(&asked))), None, "{rule:?} {asked:?}");
                        assert_eq!(rule.refusal(given).is_none(), rule.omitted(given).is_empty(), "{rule:?} {asked:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_model_that_does_not_think_is_sent_no_thinking_field_in_any_form() {
        for form in [
            json!({"type": "enabled", "budget_tokens": 2_000}),
            json!({"type": "adaptive"}),
            json!({"type": "disabled"}),
            json!({"kind": "unknown"}),
        ] {
            let asked = thinking(Some(4_000), form.clone());
            assert_eq!(CLAUDE_3_5.refusal(Given::of(&asked)), Some(Refusal::Thinking), "{form}");
            let fitted = CLAUDE_3_5.fit(&asked);
            assert_eq!(fitted.additional_model_request_fields, Some(json!({"top_k": 4})), "{form}");
            assert_eq!(CLAUDE_3_5.omitted(Given::of(&asked)).names().len(), 1, "{form}");
        }
        assert!(matches!(CLAUDE_3_5.fit(&request(json!({"topP": 0.5}), Some(json!({"top_k": 4})))), Cow::Borrowed(_)));
        // A shape only Bedrock can judge is passed on to a model that thinks.
        assert!(matches!(OPUS_4_7.fit(&thinking(None, json!({"kind": "unknown"}))), Cow::Owned(_)), "top_k goes");
        assert_eq!(OPUS_4_7.omitted(Given::of(&thinking(None, json!({"kind": "unknown"})))).names(), ["top_k"]);
    }
}
