//! JSON-aware mutations. A tree whose objects are lists of pairs can say what
//! `serde_json::Value` cannot: the same key twice.

use std::fmt::Write as _;

use gateway_core::splitmix::SplitMix64;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Kept as text so that numbers no Rust type holds (`1e999`, 400 digits) can be written.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.to_string()),
            Value::String(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), Json::from(v))).collect()),
        }
    }
}

impl Json {
    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(n),
            Json::String(s) => write_string(s, out),
            Json::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push('{');
                for (i, (key, value)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(key, out);
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// Every node, depth first, so a mutation can pick one uniformly.
    fn count(&self) -> usize {
        1 + match self {
            Json::Array(items) => items.iter().map(Json::count).sum(),
            Json::Object(pairs) => pairs.iter().map(|(_, v)| v.count()).sum(),
            _ => 0,
        }
    }

    fn nth_mut(&mut self, n: usize) -> Option<&mut Json> {
        fn walk<'a>(node: &'a mut Json, n: &mut usize) -> Option<&'a mut Json> {
            if *n == 0 {
                return Some(node);
            }
            *n -= 1;
            let children: Vec<&mut Json> = match node {
                Json::Array(items) => items.iter_mut().collect(),
                Json::Object(pairs) => pairs.iter_mut().map(|(_, v)| v).collect(),
                _ => return None,
            };
            for child in children {
                let size = child.count();
                if *n < size {
                    return walk(child, n);
                }
                *n -= size;
            }
            None
        }
        let mut n = n;
        walk(self, &mut n)
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Field names the request types know, so that type swaps and duplicates hit real fields.
const KNOWN_KEYS: &[&str] = &[
    "modelId",
    "messages",
    "role",
    "content",
    "text",
    "system",
    "inferenceConfig",
    "maxTokens",
    "temperature",
    "topP",
    "stopSequences",
    "toolConfig",
    "tools",
    "toolSpec",
    "toolChoice",
    "toolUse",
    "toolResult",
    "toolUseId",
    "image",
    "document",
    "format",
    "source",
    "bytes",
    "cachePoint",
    "type",
    "ttl",
    "requestMetadata",
    "additionalModelRequestFields",
    "performanceConfig",
    "serviceTier",
    "promptVariables",
    "reasoningContent",
];

const STRANGE_NUMBERS: &[&str] = &[
    "0",
    "-1",
    "-0",
    "1e999",
    "-1e999",
    "18446744073709551616",
    "4294967296",
    "2147483648",
    "1.7976931348623157e308",
    "5e-324",
    "0.30000000000000004",
    "1e-400",
    "123456789012345678901234567890123456789012345678901234567890",
];

const STRANGE_STRINGS: &[&str] = &[
    "",
    " ",
    "\u{0}",
    "\u{feff}",
    "ténant",
    "\u{202e}rtl",
    "😀",
    "user",
    "assistant",
    "auto",
    "haiku",
    "opus",
    "png",
    "default",
    "5m",
    "1h",
    "arn:aws:bedrock:us-east-1::foundation-model/x",
    "global.anthropic.claude-haiku-4-5-20251001-v1:0",
];

const MAX_STRING_BYTES: u64 = 1 << 20;

fn strange_value(rng: &mut SplitMix64) -> Json {
    match rng.below(9) {
        0 => Json::Null,
        1 => Json::Bool(rng.below(2) == 0),
        2 => Json::Number(pick(rng, STRANGE_NUMBERS).to_owned()),
        3 => Json::String(pick(rng, STRANGE_STRINGS).to_owned()),
        4 => Json::String("x".repeat(1 << rng.below(18))),
        5 => Json::Array(Vec::new()),
        6 => Json::Object(Vec::new()),
        7 => Json::Number(rng.next_u64().to_string()),
        _ => Json::Object(vec![(pick(rng, KNOWN_KEYS).to_owned(), Json::String("x".into()))]),
    }
}

pub fn pick<'a>(rng: &mut SplitMix64, items: &[&'a str]) -> &'a str {
    items.get(rng.below(items.len() as u64) as usize).copied().unwrap_or_default()
}

/// One structural change somewhere in the tree.
pub fn mutate(root: &mut Json, rng: &mut SplitMix64, donor: Option<&Json>) {
    let total = root.count();
    let Some(node) = root.nth_mut(rng.below(total as u64) as usize) else {
        return;
    };
    match rng.below(12) {
        // Type swap: the node becomes a value of another kind.
        0 | 1 => *node = strange_value(rng),
        // Duplicate a key with a different value: the last one must not silently win.
        2 | 3 => {
            if let Json::Object(pairs) = node
                && let Some((key, _)) = pairs.get(rng.below(pairs.len() as u64) as usize).cloned()
            {
                pairs.push((key, strange_value(rng)));
            }
        }
        // Deep nesting around the node.
        4 => {
            let depth = 1 + rng.below(300) as usize;
            let mut wrapped = std::mem::replace(node, Json::Null);
            for _ in 0..depth {
                wrapped = if rng.below(2) == 0 {
                    Json::Array(vec![wrapped])
                } else {
                    Json::Object(vec![("content".into(), wrapped)])
                };
            }
            *node = wrapped;
        }
        // An unknown or known field added.
        5 => {
            if let Json::Object(pairs) = node {
                let key = if rng.below(2) == 0 {
                    format!("unknown{}", rng.below(100))
                } else {
                    pick(rng, KNOWN_KEYS).to_owned()
                };
                pairs.push((key, strange_value(rng)));
            }
        }
        // A field or element removed.
        6 => match node {
            Json::Object(pairs) if !pairs.is_empty() => {
                pairs.remove(rng.below(pairs.len() as u64) as usize);
            }
            Json::Array(items) if !items.is_empty() => {
                items.remove(rng.below(items.len() as u64) as usize);
            }
            _ => *node = Json::Null,
        },
        // Repetition: many copies of an element (many messages, many cache points).
        7 => {
            if let Json::Array(items) = node
                && let Some(item) = items.first().cloned()
            {
                let copies = 1 + rng.below(64) as usize;
                items.extend(std::iter::repeat_n(item, copies));
            }
        }
        // Strings: long, empty, odd characters.
        8 => {
            if let Json::String(s) = node {
                match rng.below(4) {
                    // Capped near 1 MB: long enough to cross every budget, small enough
                    // to keep thousands of inputs a second.
                    0 => *s = s.repeat(1 + rng.below(2000).min(MAX_STRING_BYTES / (s.len() as u64 + 1)) as usize),
                    1 => s.clear(),
                    2 => s.push_str(pick(rng, STRANGE_STRINGS)),
                    _ => *s = pick(rng, STRANGE_STRINGS).to_owned(),
                }
            } else {
                *node = Json::String(pick(rng, STRANGE_STRINGS).to_owned());
            }
        }
        // Numbers at and beyond the edges of every integer and float type.
        9 => *node = Json::Number(pick(rng, STRANGE_NUMBERS).to_owned()),
        // Keys renamed: wrong case, known key elsewhere.
        10 => {
            if let Json::Object(pairs) = node
                && let index = rng.below(pairs.len() as u64) as usize
                && let Some(pair) = pairs.get_mut(index)
            {
                pair.0 = match rng.below(3) {
                    0 => pair.0.to_uppercase(),
                    1 => pick(rng, KNOWN_KEYS).to_owned(),
                    _ => format!("{} ", pair.0),
                };
            }
        }
        // Splice a subtree from another input.
        _ => {
            if let Some(donor) = donor {
                let mut donor = donor.clone();
                let size = donor.count();
                if let Some(part) = donor.nth_mut(rng.below(size as u64) as usize) {
                    *node = part.clone();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_write_back_what_they_read_and_can_hold_duplicate_keys() {
        let value: Value = serde_json::from_str(r#"{"a":[1,2.5,"x\"\n"],"b":{"c":null,"d":true}}"#).unwrap();
        let tree = Json::from(&value);
        assert_eq!(serde_json::from_str::<Value>(&tree.to_text()).unwrap(), value);
        let duplicated = Json::Object(vec![("k".into(), Json::Null), ("k".into(), Json::Bool(true))]);
        assert_eq!(duplicated.to_text(), r#"{"k":null,"k":true}"#);
        assert_eq!(tree.count(), 8);
    }

    #[test]
    fn mutations_are_fixed_by_the_seed_and_change_the_input() {
        let value: Value = serde_json::from_str(r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#).unwrap();
        let run = |seed| {
            let mut rng = SplitMix64::new(seed);
            let mut tree = Json::from(&value);
            for _ in 0..8 {
                mutate(&mut tree, &mut rng, None);
            }
            tree.to_text()
        };
        assert_eq!(run(3), run(3));
        assert!((0..20).any(|seed| run(seed) != Json::from(&value).to_text()));
    }
}
