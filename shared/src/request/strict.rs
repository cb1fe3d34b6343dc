//! The parser's two safety nets: a pass that rejects duplicate object keys anywhere in the
//! body (serde keeps the last one, and the typed `Value` fields would never notice), and the
//! rewording of serde's shape errors so that no value from the body reaches a message.

use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::RequestError;

/// One step of a JSON path.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

fn render(steps: &[Step]) -> String {
    if steps.is_empty() {
        return "$".to_owned();
    }
    let mut out = String::new();
    for step in steps {
        // Writing to a String cannot fail.
        let _ = match step {
            Step::Key(key) if out.is_empty() => write!(out, "{key}"),
            Step::Key(key) => write!(out, ".{key}"),
            Step::Index(i) => write!(out, "[{i}]"),
        };
    }
    out
}

/// Walks any JSON value, failing at the first object that repeats a key; the repeated key's
/// path is left in `duplicate` because serde's error type carries only text.
struct Walk<'a> {
    path: &'a mut Vec<Step>,
    duplicate: &'a RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0;
        loop {
            self.path.push(Step::Index(index));
            let more = seq.next_element_seed(Walk { path: &mut *self.path, duplicate: self.duplicate })?;
            self.path.pop();
            if more.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            self.path.push(Step::Key(key.clone()));
            if !seen.insert(key) {
                *self.duplicate.borrow_mut() = Some(render(self.path));
                return Err(de::Error::custom("duplicate key"));
            }
            map.next_value_seed(Walk { path: &mut *self.path, duplicate: self.duplicate })?;
            self.path.pop();
        }
        Ok(())
    }
}

/// Syntax and duplicate keys, before any typed parsing. serde_json's syntax messages are fixed
/// texts with a position (`expected `,` or `}` at line 1 column 9`), never the input itself.
pub(crate) fn check(text: &str) -> Result<(), RequestError> {
    let duplicate = RefCell::new(None);
    let mut path = Vec::new();
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let walked = Walk { path: &mut path, duplicate: &duplicate }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    match walked {
        Ok(()) => Ok(()),
        Err(e) => Err(match duplicate.into_inner() {
            Some(field) => RequestError::invalid(
                field,
                format!("key given twice in one object (line {}, column {})", e.line(), e.column()),
            ),
            None => RequestError::MalformedJson(e.to_string()),
        }),
    }
}

/// serde's message for a shape error, rebuilt from its category and expected type. serde
/// writes the offending value into some messages (`invalid type: string "…", expected a
/// sequence`), so the message is never passed through: only fixed words and the schema's
/// own `expected …` text survive.
pub(crate) fn describe(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json appends the position, which the caller reports separately.
    let text = text.rfind(" at line ").map_or(text.as_str(), |at| &text[..at]);
    // The expected text comes from the schema; it is always last, after any value.
    let expected = text.rsplit_once(", expected ").map(|(_, expected)| expected);
    let with_expected = |what: &str| match expected {
        Some(expected) => format!("{what}, expected {expected}"),
        None => what.to_owned(),
    };
    if let Some(rest) = text.strip_prefix("invalid type: ") {
        with_expected(&format!("invalid type: {}", kind_of(rest)))
    } else if let Some(rest) = text.strip_prefix("invalid value: ") {
        with_expected(&format!("invalid value: {}", kind_of(rest)))
    } else if text.starts_with("unknown field ") {
        // The path already names the field.
        with_expected("unknown field")
    } else if text.starts_with("unknown variant ") {
        // A variant may be a value (`"role": "robot"`), so it is never repeated.
        with_expected("unknown variant")
    } else if text.starts_with("invalid length ") {
        with_expected("invalid length")
    } else if let Some(field) = text.strip_prefix("missing field ") {
        // Missing and duplicate fields are named by the schema, not by the body.
        format!("missing field {field}")
    } else if let Some(field) = text.strip_prefix("duplicate field ") {
        format!("duplicate field {field}")
    } else {
        with_expected("does not match the expected shape")
    }
}

/// The JSON kind at the start of serde's description of an unexpected value.
fn kind_of(unexpected: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("null", "null"),
        ("boolean", "boolean"),
        ("integer", "integer"),
        ("floating point", "number"),
        ("string", "string"),
        ("character", "string"),
        ("sequence", "array"),
        ("map", "object"),
    ];
    KINDS.iter().find(|(prefix, _)| unexpected.starts_with(prefix)).map_or("value", |(_, kind)| kind)
}
