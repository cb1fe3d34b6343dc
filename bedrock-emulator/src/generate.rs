//! Deterministic answers.
//!
//! The answer is a pure function of the model and the prompt: the SHA-256 of a canonical
//! JSON of (base model ID, system, messages, tools, tool choice, temperature, topP,
//! additional model fields) seeds a small PRNG that writes plausible English, after a short
//! echo of the last user text. So the same prompt always gets the same answer, on every run
//! and every emulator, and any change to the prompt gives another one.
//!
//! Deliberately left out of the seed: cache checkpoints (caching must not change answers),
//! and `maxTokens` and stop sequences, which only cut the answer short, so an answer with a
//! low `maxTokens` is a prefix of the full one, as with a real model.
//!
//! Output tokens are counted with the same estimator as input tokens
//! ([`gateway_core::tokens::estimate_text`]), so usage figures are consistent with each other
//! and with CountTokens.

use gateway_core::request::{ContentBlock, ConverseRequest, Role, Tool, ToolChoice, ToolInputSchema, ToolSpec};
use gateway_core::splitmix::SplitMix64;
use gateway_core::tokens::estimate_text;

use crate::config::AnswerLength;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Words of the last user text echoed at the start of the answer.
const ECHO_WORDS: usize = 12;
const ECHO_WORD_CHARS: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndTurn,
    MaxTokens,
    StopSequence,
    ToolUse,
}

impl StopReason {
    /// The wire value, the same in Converse and in the Anthropic Messages API.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::EndTurn => "end_turn",
            StopReason::MaxTokens => "max_tokens",
            StopReason::StopSequence => "stop_sequence",
            StopReason::ToolUse => "tool_use",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub input: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AnswerContent {
    Text(String),
    ToolUse(ToolCall),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub content: AnswerContent,
    pub stop_reason: StopReason,
    /// The stop sequence that ended the answer, when one did.
    pub stop_sequence: Option<String>,
    pub output_tokens: u64,
}

impl Answer {
    /// The JSON text of a tool call's input, as streams deliver it in pieces.
    pub fn tool_input_json(call: &ToolCall) -> String {
        call.input.to_string()
    }
}

/// The answer of model `model_id` to `request`, of a natural length within `length`, cut at
/// `max_tokens`.
///
/// A request whose last message is the assistant's (a prefill) asks the model to go on from
/// that text. When the text is the beginning of what the model would have answered without
/// it, the answer is the rest, so a reply cut at `maxTokens` and continued this way adds up
/// to the uncut reply, as with a real model. Any other prefill gets an answer of its own.
pub fn answer(model_id: &str, request: &ConverseRequest, max_tokens: u64, length: AnswerLength) -> Answer {
    if let Some(continued) = continuation(model_id, request, max_tokens, length) {
        return continued;
    }
    let seed = seed(model_id, request);
    let mut rng = Rng::new(&seed);
    let last_user = last_user_text(request);
    if let Some(spec) = choose_tool(request, last_user.as_deref(), &mut rng) {
        let input = fake_value(&schema_of(spec), last_user.as_deref().unwrap_or(""), &mut rng, 0);
        let call = ToolCall { id: format!("tooluse_{}", rng.base62(22)), name: spec.name.clone(), input };
        let output_tokens = estimate_text(&call.name) + estimate_text(&Answer::tool_input_json(&call));
        // A call that does not fit would be cut mid-JSON, which Bedrock reports as a broken
        // tool use; a model asked for so few tokens answers in prose instead.
        if output_tokens <= max_tokens {
            return Answer {
                content: AnswerContent::ToolUse(call),
                stop_reason: StopReason::ToolUse,
                stop_sequence: None,
                output_tokens,
            };
        }
    }
    let natural = natural_text(&mut rng, last_user.as_deref(), length);
    let stop_sequences = request.inference_config.as_ref().map(|c| c.stop_sequences.as_slice()).unwrap_or_default();
    let (text, mut stop_reason, mut stop_sequence) = match earliest_stop(&natural, stop_sequences) {
        Some((at, seq)) => (&natural[..at], StopReason::StopSequence, Some(seq.to_owned())),
        None => (natural.as_str(), StopReason::EndTurn, None),
    };
    let text = match truncate_to_tokens(text, max_tokens) {
        Some(cut) => {
            stop_reason = StopReason::MaxTokens;
            stop_sequence = None;
            cut
        }
        None => text,
    };
    Answer {
        output_tokens: estimate_text(text),
        content: AnswerContent::Text(text.to_owned()),
        stop_reason,
        stop_sequence,
    }
}

/// The text of a final assistant message made only of text blocks.
pub fn prefill(request: &ConverseRequest) -> Option<String> {
    let last = request.messages.last().filter(|m| m.role == Role::Assistant)?;
    let mut text = String::new();
    for block in &last.content {
        match block {
            ContentBlock::Text(t) => text.push_str(t),
            _ => return None,
        }
    }
    Some(text)
}

fn continuation(model_id: &str, request: &ConverseRequest, max_tokens: u64, length: AnswerLength) -> Option<Answer> {
    let prefill = prefill(request)?;
    let mut earlier = request.clone();
    earlier.messages.pop();
    let whole = answer(model_id, &earlier, u64::MAX, length);
    let AnswerContent::Text(full) = whole.content else {
        return None;
    };
    let rest = full.strip_prefix(prefill.as_str())?;
    let (text, stop_reason, stop_sequence) = match truncate_to_tokens(rest, max_tokens) {
        Some(cut) => (cut, StopReason::MaxTokens, None),
        None => (rest, whole.stop_reason, whole.stop_sequence),
    };
    Some(Answer {
        output_tokens: estimate_text(text),
        content: AnswerContent::Text(text.to_owned()),
        stop_reason,
        stop_sequence,
    })
}

/// The SHA-256 seed of a request; see the module documentation for what it covers.
pub fn seed(model_id: &str, request: &ConverseRequest) -> [u8; 32] {
    let config = request.inference_config.as_ref();
    let mut canonical = json!({
        "model": model_id,
        "system": request.system,
        "messages": request.messages,
        "toolConfig": request.tool_config,
        "temperature": config.and_then(|c| c.temperature),
        "topP": config.and_then(|c| c.top_p),
        "additionalModelRequestFields": request.additional_model_request_fields,
    });
    strip_cache_points(&mut canonical);
    Sha256::digest(gateway_core::cache::canonical_json(&canonical)).into()
}

fn strip_cache_points(value: &mut Value) {
    match value {
        Value::Array(items) => {
            items.retain(|item| !item.as_object().is_some_and(|o| o.len() == 1 && o.contains_key("cachePoint")));
            items.iter_mut().for_each(strip_cache_points);
        }
        Value::Object(map) => map.values_mut().for_each(strip_cache_points),
        _ => {}
    }
}

/// The text of the last user message, if it has any.
pub fn last_user_text(request: &ConverseRequest) -> Option<String> {
    let message = request.messages.iter().rev().find(|m| m.role == Role::User)?;
    let text: Vec<&str> = message
        .content
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect();
    (!text.is_empty()).then(|| text.join(" "))
}

fn ends_with_tool_result(request: &ConverseRequest) -> bool {
    request
        .messages
        .last()
        .is_some_and(|m| m.role == Role::User && m.content.iter().any(|b| matches!(b, ContentBlock::ToolResult(_))))
}

/// The tool the model calls, if any: the named one for `tool`, a mentioned (else a random)
/// one for `any`, and for `auto` a tool the last user text mentions by name, unless the
/// conversation has just returned a tool result, which the model answers in prose.
fn choose_tool<'a>(request: &'a ConverseRequest, last_user: Option<&str>, rng: &mut Rng) -> Option<&'a ToolSpec> {
    let config = request.tool_config.as_ref()?;
    let specs: Vec<&ToolSpec> = config
        .tools
        .iter()
        .filter_map(|t| match t {
            Tool::ToolSpec(spec) => Some(spec),
            Tool::CachePoint(_) => None,
        })
        .collect();
    let text = last_user.unwrap_or("").to_lowercase();
    let mentioned = specs.iter().copied().find(|s| {
        let name = s.name.to_lowercase();
        text.contains(&name) || text.contains(&name.replace(['_', '-'], " "))
    });
    match &config.tool_choice {
        Some(ToolChoice::Tool(named)) => specs.into_iter().find(|s| s.name == named.name),
        Some(ToolChoice::Any(_)) => mentioned.or_else(|| {
            let i = rng.below(specs.len() as u64) as usize;
            specs.get(i).copied()
        }),
        Some(ToolChoice::Auto(_)) | None => mentioned.filter(|_| !ends_with_tool_result(request)),
    }
}

fn schema_of(spec: &ToolSpec) -> Value {
    let ToolInputSchema::Json(schema) = &spec.input_schema;
    schema.clone()
}

/// A value that satisfies the schema's type and its required properties, and nothing more:
/// `{}`-ish, so tests can rely on it without the emulator pretending to reason.
fn fake_value(schema: &Value, user_text: &str, rng: &mut Rng, depth: usize) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    if let Some(constant) = schema.get("const") {
        return constant.clone();
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).find(|k| *k != "null").unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" if depth < 8 => {
            let mut object = Map::new();
            let required = schema.get("required").and_then(Value::as_array);
            for name in required.into_iter().flatten().filter_map(Value::as_str) {
                let property = schema.get("properties").and_then(|p| p.get(name)).cloned().unwrap_or(Value::Null);
                object.insert(name.to_owned(), fake_value(&property, user_text, rng, depth + 1));
            }
            Value::Object(object)
        }
        "object" => json!({}),
        "array" => {
            let min_items = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0).min(3);
            let items = schema.get("items").cloned().unwrap_or(Value::Null);
            Value::Array((0..min_items).map(|_| fake_value(&items, user_text, rng, depth + 1)).collect())
        }
        "integer" => {
            let low = schema.get("minimum").and_then(Value::as_i64).unwrap_or(1);
            json!(low + rng.below(10) as i64)
        }
        "number" => {
            let low = schema.get("minimum").and_then(Value::as_f64).unwrap_or(1.0);
            json!(low + rng.below(100) as f64 / 10.0)
        }
        "boolean" => json!(true),
        "null" => Value::Null,
        _ => {
            let words: Vec<&str> = user_text.split_whitespace().take(6).collect();
            if words.is_empty() { json!(rng.pick(NOUNS)) } else { json!(words.join(" ")) }
        }
    }
}

/// The earliest stop sequence in `text`: its byte offset and the sequence.
fn earliest_stop<'a>(text: &str, stop_sequences: &'a [String]) -> Option<(usize, &'a str)> {
    stop_sequences
        .iter()
        .filter_map(|seq| text.find(seq.as_str()).map(|at| (at, seq.as_str())))
        .min_by_key(|(at, _)| *at)
}

/// Byte offset and text of every whitespace-separated word.
fn word_spans(text: &str) -> Vec<(usize, &str)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, &text[s..]));
    }
    spans
}

/// The longest prefix of `text` whose estimate fits in `max` tokens, cutting inside a word if
/// that is what the budget allows, or `None` if the whole text fits.
pub fn truncate_to_tokens(text: &str, max: u64) -> Option<&str> {
    if estimate_text(text) <= max {
        return None;
    }
    let mut used = 0;
    let mut end = 0;
    for (start, word) in word_spans(text) {
        let tokens = estimate_text(word);
        if used + tokens <= max {
            used += tokens;
            end = start + word.len();
            continue;
        }
        let remaining = max - used;
        // The estimate grows with the prefix length, so the first overflow ends the search.
        for (i, c) in word.char_indices() {
            let cut = i + c.len_utf8();
            if estimate_text(&word[..cut]) > remaining {
                break;
            }
            end = start + cut;
        }
        break;
    }
    Some(&text[..end])
}

/// Splits `text` into stream deltas of about `words` words each; concatenated, they are
/// exactly `text`, whitespace included.
pub fn chunks(text: &str, words: usize) -> Vec<&str> {
    let starts: Vec<usize> = word_spans(text)
        .into_iter()
        .map(|(start, _)| start)
        .enumerate()
        .filter(|(i, _)| *i > 0 && i % words.max(1) == 0)
        .map(|(_, start)| start)
        .collect();
    let mut pieces = Vec::with_capacity(starts.len() + 1);
    let mut from = 0;
    for start in starts {
        pieces.push(&text[from..start]);
        from = start;
    }
    if from < text.len() || pieces.is_empty() {
        pieces.push(&text[from..]);
    }
    pieces
}

/// Splits a string into pieces of at most `size` characters.
pub fn char_chunks(text: &str, size: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(size.max(1)).map(|c| c.iter().collect()).collect()
}

fn natural_text(rng: &mut Rng, last_user: Option<&str>, length: AnswerLength) -> String {
    let span = length.max_tokens.saturating_sub(length.min_tokens);
    let target = length.min_tokens + rng.below(span.saturating_add(1));
    let mut text = echo(last_user);
    let mut in_paragraph = 1;
    let mut paragraph_length = 3 + rng.below(3);
    while estimate_text(&text) < target {
        if in_paragraph >= paragraph_length {
            text.push_str("\n\n");
            in_paragraph = 0;
            paragraph_length = 3 + rng.below(3);
        } else {
            text.push(' ');
        }
        text.push_str(&sentence(rng));
        in_paragraph += 1;
    }
    text
}

fn echo(last_user: Option<&str>) -> String {
    let Some(text) = last_user else {
        return "Thanks, I have the results.".to_owned();
    };
    let words: Vec<String> =
        text.split_whitespace().take(ECHO_WORDS).map(|w| w.chars().take(ECHO_WORD_CHARS).collect()).collect();
    let cut = text.split_whitespace().count() > ECHO_WORDS;
    let quoted = format!("{}{}", words.join(" "), if cut { " ..." } else { "" });
    if text.trim_end().ends_with('?') {
        format!("You asked: \"{quoted}\".")
    } else {
        format!("You wrote: \"{quoted}\".")
    }
}

const ADJECTIVES: &[&str] = &[
    "simple",
    "careful",
    "reliable",
    "efficient",
    "detailed",
    "practical",
    "consistent",
    "flexible",
    "robust",
    "clear",
    "small",
    "important",
    "common",
    "useful",
    "modern",
    "typical",
    "specific",
    "general",
    "stable",
    "quick",
];
const NOUNS: &[&str] = &[
    "approach",
    "system",
    "model",
    "request",
    "result",
    "process",
    "design",
    "answer",
    "cache",
    "team",
    "service",
    "pattern",
    "question",
    "example",
    "method",
    "budget",
    "workflow",
    "configuration",
    "response",
    "estimate",
    "strategy",
    "test",
    "change",
    "library",
    "record",
];
const VERBS: &[(&str, &str)] = &[
    ("improves", "improve"),
    ("supports", "support"),
    ("explains", "explain"),
    ("reduces", "reduce"),
    ("handles", "handle"),
    ("describes", "describe"),
    ("follows", "follow"),
    ("requires", "require"),
    ("balances", "balance"),
    ("simplifies", "simplify"),
    ("highlights", "highlight"),
    ("shapes", "shape"),
    ("protects", "protect"),
    ("measures", "measure"),
    ("connects", "connect"),
];
const ADVERBS: &[&str] = &[
    "quickly",
    "carefully",
    "reliably",
    "clearly",
    "effectively",
    "consistently",
    "gradually",
    "directly",
    "naturally",
    "predictably",
];
const MODALS: &[&str] = &["can", "should", "will", "may", "could", "might"];
const CONNECTORS: &[&str] = &[
    "In practice",
    "As a result",
    "For example",
    "In general",
    "On the other hand",
    "In most cases",
    "Over time",
    "By contrast",
    "At the same time",
    "Finally",
];
const CONTEXTS: &[&str] = &[
    "most situations",
    "a typical deployment",
    "this case",
    "the long run",
    "production",
    "a small project",
    "larger teams",
    "the first step",
];
const PHRASES: &[&str] = &[
    "over time",
    "in most cases",
    "without extra cost",
    "for every request",
    "across the whole system",
    "at a reasonable cost",
    "under heavy load",
    "with little effort",
    "from the start",
    "in a predictable way",
];

fn sentence(rng: &mut Rng) -> String {
    let adj = rng.pick(ADJECTIVES);
    let noun = rng.pick(NOUNS);
    let object = rng.pick(NOUNS);
    let (verb, verb_base) = rng.pick(VERBS);
    let adverb = rng.pick(ADVERBS);
    let phrase = rng.pick(PHRASES);
    match rng.below(6) {
        0 => format!("The {adj} {noun} {verb} the {object} {adverb}."),
        1 => format!("In {}, the {noun} {verb} the {adj} {object}.", rng.pick(CONTEXTS)),
        2 => {
            let (verb2, _) = rng.pick(VERBS);
            format!("This {verb} the {noun} and {verb2} the {adj} {object} {phrase}.")
        }
        3 => {
            format!("{}, a {adj} {noun} {} {verb_base} the {object} {phrase}.", rng.pick(CONNECTORS), rng.pick(MODALS))
        }
        4 => format!("The {noun} {verb} the {object} {adverb}, which keeps the {} {adj} {phrase}.", rng.pick(NOUNS)),
        _ => format!(
            "{}, it is worth noting that the {noun} {} {verb_base} the {object} {adverb}.",
            rng.pick(CONNECTORS),
            rng.pick(MODALS)
        ),
    }
}

/// SplitMix64 seeded from the request hash: stable across platforms and releases, which a
/// library PRNG does not promise.
#[derive(Debug, Clone)]
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: &[u8; 32]) -> Rng {
        let mut first = [0u8; 8];
        first.copy_from_slice(&seed[..8]);
        Rng(SplitMix64::new(u64::from_le_bytes(first)))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.below(n)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn base62(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        (0..len).map(|_| char::from(ALPHABET[self.below(62) as usize])).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "anthropic.claude-haiku-4-5-20251001-v1:0";
    const NATURAL: AnswerLength = AnswerLength { min_tokens: 30, max_tokens: 300 };

    fn request(body: Value) -> ConverseRequest {
        ConverseRequest::from_json(body.to_string().as_bytes()).unwrap()
    }

    fn ask(text: &str) -> ConverseRequest {
        request(json!({"messages": [{"role": "user", "content": [{"text": text}]}]}))
    }

    fn text_of(a: &Answer) -> &str {
        match &a.content {
            AnswerContent::Text(t) => t,
            AnswerContent::ToolUse(_) => panic!("expected text"),
        }
    }

    #[test]
    fn same_request_same_answer_and_different_requests_differ() {
        let a = answer(MODEL, &ask("What is a cache?"), 64_000, NATURAL);
        assert_eq!(a, answer(MODEL, &ask("What is a cache?"), 64_000, NATURAL));
        assert_ne!(text_of(&a), text_of(&answer(MODEL, &ask("What is a queue?"), 64_000, NATURAL)));
        assert_ne!(
            text_of(&a),
            text_of(&answer("anthropic.claude-3-haiku-20240307-v1:0", &ask("What is a cache?"), 64_000, NATURAL))
        );
        let hot = request(json!({
            "messages": [{"role": "user", "content": [{"text": "What is a cache?"}]}],
            "inferenceConfig": {"temperature": 0.2}
        }));
        assert_ne!(text_of(&a), text_of(&answer(MODEL, &hot, 64_000, NATURAL)));
    }

    #[test]
    fn answers_echo_the_question_and_have_a_realistic_length() {
        for i in 0..50 {
            let a = answer(MODEL, &ask(&format!("Question number {i}?")), 64_000, NATURAL);
            let text = text_of(&a);
            assert!(text.starts_with(&format!("You asked: \"Question number {i}?\".")), "{text}");
            assert!((NATURAL.min_tokens..NATURAL.max_tokens + 40).contains(&a.output_tokens), "{}", a.output_tokens);
            assert_eq!(a.output_tokens, estimate_text(text));
            assert_eq!(a.stop_reason, StopReason::EndTurn);
        }
    }

    #[test]
    fn a_wider_natural_length_lets_max_tokens_set_the_length() {
        let long = AnswerLength { min_tokens: 2_000, max_tokens: 4_000 };
        let a = answer(MODEL, &ask("Write an essay on queues"), 64_000, long);
        assert!((2_000..4_040).contains(&a.output_tokens), "{}", a.output_tokens);
        let cut = answer(MODEL, &ask("Write an essay on queues"), 700, long);
        assert_eq!((cut.output_tokens, cut.stop_reason), (700, StopReason::MaxTokens));
        assert!(text_of(&a).starts_with(text_of(&cut)));
    }

    #[test]
    fn cache_points_do_not_change_the_answer() {
        let plain = request(json!({
            "system": [{"text": "Be brief."}],
            "messages": [{"role": "user", "content": [{"text": "Hello there"}]}]
        }));
        let cached = request(json!({
            "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
            "messages": [{"role": "user", "content": [{"text": "Hello there"}, {"cachePoint": {"type": "default"}}]}]
        }));
        assert_eq!(answer(MODEL, &plain, 1_000, NATURAL), answer(MODEL, &cached, 1_000, NATURAL));
    }

    #[test]
    fn max_tokens_cuts_a_prefix_to_the_exact_budget() {
        let full = answer(MODEL, &ask("Explain quotas"), 64_000, NATURAL);
        for max in [1, 2, 5, 13, 29] {
            let cut = answer(MODEL, &ask("Explain quotas"), max, NATURAL);
            assert_eq!(cut.stop_reason, StopReason::MaxTokens);
            assert_eq!(cut.output_tokens, max, "budget {max}: {:?}", text_of(&cut));
            assert!(text_of(&full).starts_with(text_of(&cut)));
        }
        let exact = answer(MODEL, &ask("Explain quotas"), full.output_tokens, NATURAL);
        assert_eq!(exact.stop_reason, StopReason::EndTurn);
    }

    #[test]
    fn stop_sequences_cut_before_the_sequence() {
        let body = json!({
            "messages": [{"role": "user", "content": [{"text": "Explain quotas"}]}],
            "inferenceConfig": {"stopSequences": ["NEVER", "."]}
        });
        let a = answer(MODEL, &request(body.clone()), 64_000, NATURAL);
        assert_eq!(a.stop_reason, StopReason::StopSequence);
        assert_eq!(a.stop_sequence.as_deref(), Some("."));
        assert_eq!(text_of(&a), "You wrote: \"Explain quotas\"");
        // When the budget runs out first, max_tokens wins.
        let a = answer(MODEL, &request(body), 2, NATURAL);
        assert_eq!((a.stop_reason, a.stop_sequence), (StopReason::MaxTokens, None));
    }

    #[test]
    fn tool_choice_any_calls_a_tool_with_the_required_properties() {
        let body = json!({
            "messages": [{"role": "user", "content": [{"text": "Weather in Paris"}]}],
            "toolConfig": {
                "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        "days": {"type": "integer", "minimum": 1},
                        "verbose": {"type": "boolean"}
                    },
                    "required": ["city", "unit", "days"]
                }}}}],
                "toolChoice": {"any": {}}
            }
        });
        let a = answer(MODEL, &request(body.clone()), 64_000, NATURAL);
        assert_eq!(a.stop_reason, StopReason::ToolUse);
        let AnswerContent::ToolUse(call) = &a.content else { panic!() };
        assert_eq!(call.name, "get_weather");
        assert_eq!(call.input["city"], "Weather in Paris");
        assert_eq!(call.input["unit"], "celsius");
        assert!(call.input["days"].as_i64().unwrap() >= 1);
        assert!(call.input.get("verbose").is_none());
        assert!(call.id.starts_with("tooluse_"));
        assert_eq!(a, answer(MODEL, &request(body), 64_000, NATURAL));
    }

    #[test]
    fn tool_choice_auto_uses_a_tool_only_when_mentioned_and_not_after_a_result() {
        let tools =
            json!({"tools": [{"toolSpec": {"name": "lookup_order", "inputSchema": {"json": {"type": "object"}}}}]});
        let plain = request(json!({"messages": [{"role": "user", "content": [{"text": "Hi"}]}], "toolConfig": tools}));
        assert_eq!(answer(MODEL, &plain, 64_000, NATURAL).stop_reason, StopReason::EndTurn);
        let mention = request(json!({
            "messages": [{"role": "user", "content": [{"text": "Please lookup order 42"}]}], "toolConfig": tools
        }));
        assert_eq!(answer(MODEL, &mention, 100, NATURAL).stop_reason, StopReason::ToolUse);
        let after = request(json!({
            "messages": [
                {"role": "user", "content": [{"text": "Please lookup order 42"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "lookup_order", "input": {}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "shipped"}]}}]}
            ],
            "toolConfig": tools
        }));
        assert_eq!(answer(MODEL, &after, 64_000, NATURAL).stop_reason, StopReason::EndTurn);
    }

    #[test]
    fn a_reply_cut_at_max_tokens_and_continued_from_its_text_adds_up_to_the_uncut_reply() {
        let question = "Explain in detail how a sliding window quota works";
        let whole = answer(MODEL, &ask(question), u64::MAX, NATURAL);
        let full = text_of(&whole).to_owned();
        let mut text = String::new();
        let mut calls = 0;
        loop {
            calls += 1;
            let mut messages = vec![json!({"role": "user", "content": [{"text": question}]})];
            if !text.is_empty() {
                messages.push(json!({"role": "assistant", "content": [{"text": text}]}));
            }
            let part = answer(MODEL, &request(json!({ "messages": messages })), 20, NATURAL);
            text.push_str(text_of(&part));
            if part.stop_reason != StopReason::MaxTokens {
                assert_eq!(part.stop_reason, whole.stop_reason);
                break;
            }
            assert!(calls < 100, "no end after {calls} calls");
        }
        assert!(calls > 1);
        assert_eq!(text, full);
    }

    #[test]
    fn a_prefill_the_model_would_not_have_written_gets_an_answer_of_its_own() {
        let body = json!({"messages": [
            {"role": "user", "content": [{"text": "Say something"}]},
            {"role": "assistant", "content": [{"text": "Certainly not"}]}
        ]});
        let answer = answer(MODEL, &request(body), u64::MAX, NATURAL);
        assert!(!text_of(&answer).is_empty());
    }

    #[test]
    fn chunks_concatenate_to_the_text() {
        let text = "One two  three\n\nfour five six seven";
        let pieces = chunks(text, 3);
        assert_eq!(pieces.concat(), text);
        assert_eq!(pieces.len(), 3);
        assert_eq!(chunks("", 3), vec![""]);
        assert_eq!(char_chunks("abcdefg", 3), vec!["abc", "def", "g"]);
    }

    #[test]
    fn truncation_handles_non_ascii_words() {
        let text = "naïve こんにちは世界 words";
        for max in 1..estimate_text(text) {
            let cut = truncate_to_tokens(text, max).unwrap();
            assert!(estimate_text(cut) <= max);
            assert!(text.starts_with(cut));
        }
        assert_eq!(truncate_to_tokens(text, 100), None);
    }

    #[test]
    fn seed_ignores_key_order_in_free_form_fields() {
        let parse = |json: &str| ConverseRequest::from_json(json.as_bytes()).unwrap();
        let a = parse(
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"additionalModelRequestFields":{"top_k":5,"x":{"b":1,"a":2}}}"#,
        );
        let b = parse(
            r#"{"additionalModelRequestFields":{"x":{"a":2,"b":1},"top_k":5},"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#,
        );
        assert_eq!(seed("m", &a), seed("m", &b));
        let c = parse(
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"additionalModelRequestFields":{"top_k":6}}"#,
        );
        assert_ne!(seed("m", &a), seed("m", &c));
    }
}
