//! What the router sees of a prompt: the whole conversation, turned into a few dozen dense
//! measurements and a stream of hashed word, word-pair and character-trigram features.
//!
//! Extraction never allocates per feature: it calls a [`FeatureSink`] for every hashed
//! feature, so scoring accumulates dot products on the fly while training collects the same
//! stream into sparse rows. Both therefore see exactly the same features.
//!
//! The cost is bounded whatever the prompt's size: dense measurements read the first
//! [`SCAN_BYTES`] bytes (lengths are exact, counts extrapolated), word features stop after
//! [`MAX_WORDS`] words and character trigrams after [`CHARGRAM_BYTES`] bytes. The last user turn is read first, so the budgets always cover
//! the question actually being asked.

use std::borrow::Cow;
use std::sync::OnceLock;

use serde_json::Value;

use crate::request::{ContentBlock, ConverseRequest, Role, SystemContentBlock, ToolResultContent};

/// log2 of the number of hash buckets shared by all hashed features.
pub const HASH_BITS: u32 = 16;
pub const BUCKETS: usize = 1 << HASH_BITS;
/// Word unigrams and bigrams are taken from at most this many words.
pub const MAX_WORDS: usize = 512;
/// Character trigrams are taken from at most this many bytes of words.
pub const CHARGRAM_BYTES: usize = 512;
/// Dense measurements read at most this many bytes; counts beyond are extrapolated from
/// them, lengths are exact. A decision on a 200 KB prompt costs what one on 2 KB does.
pub const SCAN_BYTES: usize = 2_048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Turn<'a> {
    pub speaker: Speaker,
    pub text: Cow<'a, str>,
}

/// The text of a conversation, borrowed from the request where possible.
#[derive(Debug, Clone, Default)]
pub struct Conversation<'a> {
    turns: Vec<Turn<'a>>,
    attachments: u32,
    tools: u32,
}

impl<'a> Conversation<'a> {
    pub fn from_turns(turns: Vec<Turn<'a>>) -> Self {
        Conversation { turns, attachments: 0, tools: 0 }
    }

    /// A single user turn.
    pub fn from_text(text: &'a str) -> Self {
        Self::from_turns(vec![Turn { speaker: Speaker::User, text: Cow::Borrowed(text) }])
    }

    /// Every text the model will read: system prompt, all turns, tool results. Images and
    /// documents count as attachments; tool definitions as tools.
    pub fn from_request(request: &'a ConverseRequest) -> Self {
        let mut conversation = Conversation::default();
        for block in &request.system {
            if let SystemContentBlock::Text(text) = block {
                conversation.turns.push(Turn { speaker: Speaker::System, text: Cow::Borrowed(text) });
            }
        }
        for message in &request.messages {
            let speaker = match message.role {
                Role::User => Speaker::User,
                Role::Assistant => Speaker::Assistant,
            };
            for block in &message.content {
                match block {
                    ContentBlock::Text(text) => conversation.turns.push(Turn { speaker, text: Cow::Borrowed(text) }),
                    ContentBlock::ToolResult(result) => {
                        for content in &result.content {
                            match content {
                                ToolResultContent::Text(text) => {
                                    conversation.turns.push(Turn { speaker, text: Cow::Borrowed(text) });
                                }
                                ToolResultContent::Json(value) => {
                                    conversation.turns.push(Turn { speaker, text: Cow::Owned(value.to_string()) });
                                }
                                ToolResultContent::Image(_) | ToolResultContent::Document(_) => {
                                    conversation.attachments += 1;
                                }
                            }
                        }
                    }
                    ContentBlock::Image(_) | ContentBlock::Document(_) => conversation.attachments += 1,
                    ContentBlock::ToolUse(_) | ContentBlock::CachePoint(_) | ContentBlock::ReasoningContent(_) => {}
                }
            }
        }
        conversation.tools = request.tool_config.as_ref().map_or(0, |c| c.tools.len() as u32);
        conversation
    }

    /// A prompt as a dataset or a log stores it: plain text is one user turn; a JSON list of
    /// strings is alternating user and assistant turns; a JSON list of `{role, content}`
    /// objects (content a string or a list of `{text}` blocks) is taken as it says.
    pub fn from_prompt_cell(cell: &'a str) -> Self {
        let trimmed = cell.trim_start();
        if trimmed.starts_with('[')
            && let Ok(Value::Array(items)) = serde_json::from_str::<Value>(trimmed)
            && let Some(turns) = turns_from_json(&items)
        {
            return Self::from_turns(turns);
        }
        Self::from_text(cell)
    }

    pub fn turns(&self) -> &[Turn<'a>] {
        &self.turns
    }

    pub fn chars(&self) -> usize {
        self.turns.iter().map(|t| t.text.len()).sum()
    }

    /// All turns as one text, for baselines that only look at a string.
    pub fn joined_text(&self) -> String {
        let mut out = String::with_capacity(self.chars() + self.turns.len());
        for (i, turn) in self.turns.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&turn.text);
        }
        out
    }

    /// Index of the last user turn: the question being asked.
    fn last_user(&self) -> Option<usize> {
        self.turns.iter().rposition(|t| t.speaker == Speaker::User)
    }
}

fn turns_from_json(items: &[Value]) -> Option<Vec<Turn<'static>>> {
    if items.is_empty() {
        return None;
    }
    let mut turns = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let alternating = if i % 2 == 0 { Speaker::User } else { Speaker::Assistant };
        match item {
            Value::String(text) => turns.push(Turn { speaker: alternating, text: Cow::Owned(text.clone()) }),
            Value::Object(map) => {
                let speaker = match map.get("role").and_then(Value::as_str) {
                    Some("system") => Speaker::System,
                    Some("assistant") => Speaker::Assistant,
                    Some("user") | Some("human") => Speaker::User,
                    _ => alternating,
                };
                let text = match map.get("content").or_else(|| map.get("text"))? {
                    Value::String(s) => s.clone(),
                    Value::Array(blocks) => blocks
                        .iter()
                        .filter_map(|b| b.get("text").and_then(Value::as_str).or_else(|| b.as_str()))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => return None,
                };
                turns.push(Turn { speaker, text: Cow::Owned(text) });
            }
            _ => return None,
        }
    }
    Some(turns)
}

/// Receives the hashed features of a conversation, in extraction order.
pub trait FeatureSink {
    /// One occurrence of the feature hashed to `bucket`, with the hash's sign (±1), which
    /// makes collisions cancel out on average instead of adding up.
    fn hashed(&mut self, bucket: usize, sign: f32);
}

/// Names of the dense features, in order. Part of the artifact's format: a model trained on
/// another list is rejected at load.
pub const DENSE_NAMES: [&str; 32] = [
    "log_chars",
    "log_words",
    "log_last_user_chars",
    "log_question_stem_chars",
    "log_turns",
    "has_system",
    "multi_turn",
    "digit_share",
    "upper_share",
    "symbol_share",
    "log_math_ops",
    "log_latex",
    "log_code_marks",
    "log_newlines",
    "log_questions",
    "log_list_lines",
    "mean_word_len",
    "long_word_share",
    "log_numbers",
    "log_max_line",
    "kw_reasoning",
    "kw_math",
    "kw_code",
    "kw_creative",
    "kw_factual",
    "kw_transform",
    "kw_analysis",
    "kw_constraints",
    "log_attachments",
    "log_tools",
    "log_sentences",
    "non_ascii_share",
];
pub const DENSE: usize = DENSE_NAMES.len();

/// Keyword groups behind the `kw_*` features: cues of the kind of work asked for. Words
/// only, so the hashed unigrams see them too; the groups let a small training set
/// generalise to words with the same role.
const KEYWORD_GROUPS: [&[&str]; 8] = [
    &[
        "why",
        "explain",
        "prove",
        "proof",
        "derive",
        "reason",
        "reasoning",
        "justify",
        "step",
        "steps",
        "logic",
        "logical",
        "infer",
        "deduce",
        "because",
        "therefore",
        "implies",
        "hypothesis",
    ],
    &[
        "calculate",
        "compute",
        "solve",
        "equation",
        "integral",
        "derivative",
        "probability",
        "sum",
        "percent",
        "percentage",
        "average",
        "mean",
        "variance",
        "matrix",
        "function",
        "graph",
        "theorem",
        "velocity",
        "mass",
        "energy",
        "force",
        "rate",
        "ratio",
        "number",
        "numbers",
        "formula",
        "limit",
        "series",
    ],
    &[
        "code",
        "python",
        "javascript",
        "java",
        "rust",
        "sql",
        "bug",
        "debug",
        "implement",
        "algorithm",
        "regex",
        "compile",
        "program",
        "script",
        "api",
        "class",
        "method",
        "loop",
        "array",
        "string",
        "html",
        "css",
        "json",
        "typescript",
        "bash",
        "query",
    ],
    &[
        "write",
        "story",
        "poem",
        "essay",
        "creative",
        "imagine",
        "lyrics",
        "song",
        "fiction",
        "character",
        "novel",
        "joke",
        "letter",
        "email",
        "blog",
        "slogan",
        "script",
    ],
    &["what", "who", "when", "where", "define", "definition", "name", "list", "which", "meaning", "capital"],
    &[
        "translate",
        "summarize",
        "summarise",
        "summary",
        "rewrite",
        "paraphrase",
        "correct",
        "grammar",
        "format",
        "convert",
        "classify",
        "extract",
        "edit",
        "shorten",
    ],
    &[
        "compare",
        "analyze",
        "analyse",
        "analysis",
        "evaluate",
        "critique",
        "contrast",
        "pros",
        "cons",
        "assess",
        "tradeoff",
        "tradeoffs",
        "implications",
        "strategy",
        "design",
        "plan",
    ],
    &[
        "must",
        "should",
        "exactly",
        "least",
        "most",
        "words",
        "table",
        "bullet",
        "bullets",
        "sentences",
        "only",
        "without",
        "include",
        "ensure",
        "constraints",
    ],
];

/// The dense part, before standardisation, and how many hashed features were emitted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Extracted {
    pub dense: [f32; DENSE],
    pub hashed: u32,
}

const NS_WORD: u64 = 0x9e37_79b9_7f4a_7c15;
const NS_BIGRAM: u64 = 0xc2b2_ae3d_27d4_eb4f;
const NS_CHARGRAM: u64 = 0x1656_67b1_9e37_79f9;
const NS_FIRST_WORDS: u64 = 0x27d4_eb2f_1656_67c5;
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[inline]
fn emit(sink: &mut impl FeatureSink, hash: u64) {
    let h = mix(hash);
    let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
    sink.hashed((h as usize) & (BUCKETS - 1), sign);
}

/// Hash of a lower-cased word; numbers collapse to their digit count, since which number a
/// question uses says little and how big it is says a bit.
#[inline]
fn word_hash(word: &[u8]) -> u64 {
    if word.iter().all(u8::is_ascii_digit) {
        return FNV_OFFSET ^ (0x6e75_6d00 + word.len().min(6) as u64);
    }
    let mut h = FNV_OFFSET;
    for &b in word {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Open-addressing table from word hash to keyword group, built once.
struct KeywordTable {
    slots: Vec<(u64, u8)>,
}

const KEYWORD_SLOTS: usize = 1 << 10;
const MAX_KEYWORD_LEN: usize = 16;

impl KeywordTable {
    fn build() -> Self {
        let mut slots = vec![(0u64, u8::MAX); KEYWORD_SLOTS];
        for (group, words) in KEYWORD_GROUPS.iter().enumerate() {
            for word in words.iter().filter(|w| w.len() <= MAX_KEYWORD_LEN) {
                let h = word_hash(word.as_bytes());
                let mut i = (mix(h) as usize) & (KEYWORD_SLOTS - 1);
                while slots[i].1 != u8::MAX && slots[i].0 != h {
                    i = (i + 1) & (KEYWORD_SLOTS - 1);
                }
                // A word listed in two groups keeps its first.
                if slots[i].1 == u8::MAX {
                    slots[i] = (h, group as u8);
                }
            }
        }
        KeywordTable { slots }
    }

    #[inline]
    fn group(&self, h: u64) -> Option<usize> {
        let mut i = (mix(h) as usize) & (KEYWORD_SLOTS - 1);
        loop {
            let (slot_hash, group) = self.slots[i];
            if group == u8::MAX {
                return None;
            }
            if slot_hash == h {
                return Some(usize::from(group));
            }
            i = (i + 1) & (KEYWORD_SLOTS - 1);
        }
    }
}

fn keywords() -> &'static KeywordTable {
    static TABLE: OnceLock<KeywordTable> = OnceLock::new();
    TABLE.get_or_init(KeywordTable::build)
}

#[inline]
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

#[derive(Default)]
struct Counts {
    chars: u64,
    words: u64,
    digits: u64,
    letters: u64,
    upper: u64,
    symbols: u64,
    math_ops: u64,
    latex: u64,
    code_marks: u64,
    newlines: u64,
    questions: u64,
    list_lines: u64,
    word_bytes: u64,
    long_words: u64,
    numbers: u64,
    max_line: u64,
    keywords: [u64; 8],
    sentences: u64,
    non_ascii: u64,
    /// Bytes actually read; `chars` counts them all.
    scanned: u64,
}

/// Budgets shared across the turns of one extraction.
struct Budget {
    words: usize,
    chargram_bytes: usize,
    scan_bytes: usize,
}

/// Extracts the features of `conversation`, sending hashed ones to `sink`.
pub fn extract(conversation: &Conversation<'_>, sink: &mut impl FeatureSink) -> Extracted {
    let table = keywords();
    let mut counts = Counts::default();
    let mut budget = Budget { words: MAX_WORDS, chargram_bytes: CHARGRAM_BYTES, scan_bytes: SCAN_BYTES };
    let mut hashed = 0u32;
    let turns = conversation.turns();
    let last_user = conversation.last_user();
    let mut last_user_chars = 0u64;
    let mut stem_chars = 0u64;
    if let Some(i) = last_user {
        last_user_chars = turns[i].text.len() as u64;
        stem_chars = question_stem(&turns[i].text).len() as u64;
        hashed += first_words(&turns[i].text, sink);
        hashed += scan(&turns[i].text, &mut counts, &mut budget, table, sink);
    }
    for (i, turn) in turns.iter().enumerate() {
        if Some(i) != last_user {
            hashed += scan(&turn.text, &mut counts, &mut budget, table, sink);
        }
    }

    let ln = |x: u64| (x as f32).ln_1p();
    // Counts over the scanned prefix stand for the whole conversation.
    let factor = if counts.scanned == 0 { 1.0 } else { counts.chars as f32 / counts.scanned as f32 };
    let ln_scaled = |x: u64| (x as f32 * factor).ln_1p();
    let share = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f32 / whole as f32 };
    let mut dense = [0f32; DENSE];
    dense[0] = ln(counts.chars);
    dense[1] = ln_scaled(counts.words);
    dense[2] = ln(last_user_chars);
    dense[3] = ln(stem_chars);
    dense[4] = ln(turns.len() as u64);
    dense[5] = f32::from(u8::from(turns.iter().any(|t| t.speaker == Speaker::System)));
    dense[6] = f32::from(u8::from(turns.iter().any(|t| t.speaker == Speaker::Assistant)));
    dense[7] = share(counts.digits, counts.chars);
    dense[8] = share(counts.upper, counts.letters);
    dense[9] = share(counts.symbols, counts.chars);
    dense[10] = ln_scaled(counts.math_ops);
    dense[11] = ln_scaled(counts.latex);
    dense[12] = ln_scaled(counts.code_marks);
    dense[13] = ln_scaled(counts.newlines);
    dense[14] = ln_scaled(counts.questions);
    dense[15] = ln_scaled(counts.list_lines);
    dense[16] = share(counts.word_bytes, counts.words);
    dense[17] = share(counts.long_words, counts.words);
    dense[18] = ln_scaled(counts.numbers);
    dense[19] = ln(counts.max_line);
    for (g, c) in counts.keywords.iter().enumerate() {
        dense[20 + g] = ln_scaled(*c);
    }
    dense[28] = ln(u64::from(conversation.attachments));
    dense[29] = ln(u64::from(conversation.tools));
    dense[30] = ln_scaled(counts.sentences);
    dense[31] = share(counts.non_ascii, counts.chars);
    Extracted { dense, hashed }
}

/// The question before any list of options or items: in an exam question, the part that
/// carries the work; in a chat prompt, usually all of it.
fn question_stem(text: &str) -> &str {
    let mut offset = 0;
    for line in text[..text.floor_char_boundary(SCAN_BYTES)].split_inclusive('\n') {
        let trimmed = line.trim_start().as_bytes();
        let is_item = matches!(trimmed, [l, b'.' | b')', b' ', ..] if l.is_ascii_alphanumeric())
            || matches!(trimmed, [b'(', l, b')', ..] if l.is_ascii_alphanumeric());
        if is_item && offset > 0 {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

/// The opening words of the question name the task ("write a", "what is", "solve the").
fn first_words(text: &str, sink: &mut impl FeatureSink) -> u32 {
    let mut emitted = 0;
    let mut prev = 0u64;
    for (position, word) in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).take(3).enumerate() {
        let h = word_hash(word.as_bytes());
        prev = prev.rotate_left(23) ^ h;
        emit(sink, NS_FIRST_WORDS ^ prev ^ position as u64);
        emitted += 1;
    }
    emitted
}

fn scan(
    text: &str,
    counts: &mut Counts,
    budget: &mut Budget,
    table: &KeywordTable,
    sink: &mut impl FeatureSink,
) -> u32 {
    let bytes = text.as_bytes();
    let mut emitted = 0u32;
    let mut prev_word = 0u64;
    let mut line_start = 0usize;
    let mut i = 0usize;
    counts.chars += bytes.len() as u64;
    let bytes = &bytes[..bytes.len().min(budget.scan_bytes)];
    budget.scan_bytes -= bytes.len();
    counts.scanned += bytes.len() as u64;
    inspect_line_start(&bytes[0..], counts);
    while i < bytes.len() {
        let b = bytes[i];
        if is_word_byte(b) {
            let start = i;
            while i < bytes.len() && is_word_byte(bytes[i]) {
                i += 1;
            }
            let word = &bytes[start..i];
            counts.words += 1;
            counts.word_bytes += word.len() as u64;
            if word.len() >= 12 {
                counts.long_words += 1;
            }
            let (mut digits, mut upper, mut non_ascii) = (0u64, 0u64, 0u64);
            for &c in word {
                digits += u64::from(c.is_ascii_digit());
                upper += u64::from(c.is_ascii_uppercase());
                non_ascii += u64::from(c >= 0x80);
            }
            counts.digits += digits;
            counts.upper += upper;
            counts.non_ascii += non_ascii;
            counts.letters += word.len() as u64 - digits;
            if digits as usize == word.len() {
                counts.numbers += 1;
            }
            if budget.words > 0 {
                budget.words -= 1;
                let h = word_hash(word);
                // Every keyword is short; longer words skip the lookup.
                if word.len() <= MAX_KEYWORD_LEN
                    && let Some(group) = table.group(h)
                {
                    counts.keywords[group] += 1;
                }
                emit(sink, NS_WORD ^ h);
                emit(sink, NS_BIGRAM ^ prev_word.rotate_left(17) ^ h);
                emitted += 2;
                prev_word = h;
            }
            if budget.chargram_bytes > 0 {
                let take = word.len().min(budget.chargram_bytes);
                budget.chargram_bytes -= take;
                emitted += chargrams(&word[..take], sink);
            }
            continue;
        }
        match b {
            b'\n' => {
                counts.newlines += 1;
                counts.max_line = counts.max_line.max((i - line_start) as u64);
                line_start = i + 1;
                inspect_line_start(&bytes[i + 1..], counts);
                prev_word = 0;
            }
            b'?' => {
                counts.questions += 1;
                counts.symbols += 1;
            }
            b'.' | b'!' => {
                counts.sentences += 1;
                counts.symbols += 1;
            }
            b'=' | b'+' | b'*' | b'/' | b'^' | b'<' | b'>' | b'%' => {
                counts.math_ops += 1;
                counts.symbols += 1;
            }
            b'\\' | b'$' => {
                counts.latex += 1;
                counts.symbols += 1;
            }
            b'{' | b'}' | b';' | b'`' => {
                counts.code_marks += 1;
                counts.symbols += 1;
            }
            b' ' | b'\t' | b'\r' => {}
            _ => counts.symbols += 1,
        }
        i += 1;
    }
    counts.max_line = counts.max_line.max((bytes.len() - line_start) as u64);
    emitted
}

/// Looks at how a line starts: list items (`-`, `*`, `1.`). Answer options (`A.`) are
/// deliberately not a feature: their count is an artefact of how exam sets were built
/// (MMLU-Pro pads to ten) and it did not generalise from one source to another.
fn inspect_line_start(rest: &[u8], counts: &mut Counts) {
    let line = match rest.iter().position(|b| !matches!(b, b' ' | b'\t')) {
        Some(p) => &rest[p..],
        None => return,
    };
    match line {
        [b'-' | b'*' | b'\xe2', b' ', ..] => counts.list_lines += 1,
        [d, b'.' | b')', ..] if d.is_ascii_digit() => counts.list_lines += 1,
        [d, e, b'.' | b')', ..] if d.is_ascii_digit() && e.is_ascii_digit() => counts.list_lines += 1,
        _ => {}
    }
}

/// Lower-cased character trigrams of a word with `<` and `>` as its boundaries.
#[inline]
fn chargrams(word: &[u8], sink: &mut impl FeatureSink) -> u32 {
    let mut window = u64::from(b'<');
    let mut filled = 1;
    let mut emitted = 0;
    for &b in word.iter().chain(std::iter::once(&b'>')) {
        window = ((window << 8) | u64::from(b.to_ascii_lowercase())) & 0xff_ffff;
        filled += 1;
        if filled >= 3 {
            emit(sink, NS_CHARGRAM ^ window);
            emitted += 1;
        }
    }
    emitted
}

/// A sink that keeps the features, for training and tests.
#[derive(Debug, Default, Clone)]
pub struct CollectSink {
    pub features: Vec<(u32, f32)>,
}

impl FeatureSink for CollectSink {
    fn hashed(&mut self, bucket: usize, sign: f32) {
        self.features.push((bucket as u32, sign));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(text: &str) -> (Extracted, Vec<(u32, f32)>) {
        let mut sink = CollectSink::default();
        let extracted = extract(&Conversation::from_text(text), &mut sink);
        (extracted, sink.features)
    }

    #[test]
    fn extraction_is_deterministic_and_counts_what_it_emits() {
        let (a, fa) = features("Solve for x: 3x + 5 = 20. Explain each step.");
        let (b, fb) = features("Solve for x: 3x + 5 = 20. Explain each step.");
        assert_eq!(a, b);
        assert_eq!(fa, fb);
        assert_eq!(a.hashed as usize, fa.len());
        assert!(a.dense[10] > 0.0, "math operators seen");
        assert!(a.dense[20] > 0.0 && a.dense[21] > 0.0, "reasoning and math keywords seen");
    }

    #[test]
    fn budgets_bound_the_work_on_long_prompts() {
        let long = "lorem ipsum dolor sit amet ".repeat(2_000);
        let (extracted, emitted) = features(&long);
        assert!(emitted.len() <= 3 + 2 * MAX_WORDS + CHARGRAM_BYTES + MAX_WORDS, "{}", emitted.len());
        assert_eq!(extracted.dense[0], (long.len() as f32).ln_1p(), "length measured over the whole prompt");
        // 10,000 words, of which only the scanned prefix was read: the count is extrapolated.
        let words = extracted.dense[1].exp_m1();
        assert!((9_900.0..10_100.0).contains(&words), "{words}");
    }

    #[test]
    fn code_and_lists_are_recognised() {
        let (e, _) = features("Which is right?\nA. one\nB. two\n- item\n1. first\n```fn main() {}```");
        assert_eq!(e.dense[15], 2f32.ln_1p());
        assert!(e.dense[12] > 0.0);
        assert_eq!(e.dense[3], ("Which is right?\n".len() as f32).ln_1p());
    }

    #[test]
    fn prompt_cells_may_hold_several_turns() {
        let c = Conversation::from_prompt_cell(r#"["Hi", "Hello!", "Now prove it"]"#);
        assert_eq!(c.turns().len(), 3);
        assert_eq!(c.turns()[1].speaker, Speaker::Assistant);
        let c = Conversation::from_prompt_cell(
            r#"[{"role":"system","content":"be brief"},{"role":"user","content":[{"text":"q"}]}]"#,
        );
        assert_eq!(c.turns()[0].speaker, Speaker::System);
        assert_eq!(c.turns()[1].text, "q");
        let c = Conversation::from_prompt_cell("[not json");
        assert_eq!(c.turns().len(), 1);
    }

    #[test]
    fn keyword_table_finds_every_keyword() {
        let table = keywords();
        for (group, words) in KEYWORD_GROUPS.iter().enumerate() {
            for word in words.iter() {
                let found = table.group(word_hash(word.as_bytes()));
                assert!(found.is_some(), "{word}");
                assert!(found == Some(group) || KEYWORD_GROUPS[..group].iter().any(|g| g.contains(word)), "{word}");
            }
        }
        assert_eq!(table.group(word_hash(b"banana")), None);
    }
}
