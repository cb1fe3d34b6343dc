//! What the calibration pipeline reads and writes: the sampled prompt objects the request path
//! drops, and the dataset lines a finished run appends (read by the router's trainer).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::catalog::Tier;
use crate::request::{ContentBlock, Message, Role, SystemContentBlock};

/// The version of both formats; a reader that sees another refuses the object.
pub const SCHEMA: u32 = 1;

/// A sampled request, as `calibration/samples/<tenant>/<id>.json` holds it: only what the
/// answer stage replays (messages and system, text only), never the caller's parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampledPrompt {
    pub schema: u32,
    /// The encoded tenant ([`crate::cache::Tenant::as_str`]).
    pub tenant: String,
    /// RFC 3339, UTC.
    pub sampled_at: String,
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub system: Vec<SystemContentBlock>,
}

impl SampledPrompt {
    /// The prompt cell of the dataset: a JSON list of `{role, content}` with the text of each
    /// turn, what `routing::features::Conversation::from_prompt_cell` reads.
    pub fn prompt_cell(&self) -> String {
        #[derive(Serialize)]
        struct Turn<'a> {
            role: &'a str,
            content: String,
        }
        let turns: Vec<Turn<'_>> = self
            .messages
            .iter()
            .map(|message| Turn {
                role: match message.role {
                    Role::User => "user",
                    Role::Assistant => "assistant",
                },
                content: text_of(&message.content),
            })
            .collect();
        // A list of plain structs of strings always serialises.
        serde_json::to_string(&turns).unwrap_or_default()
    }

    /// Whether every block is text: only such requests are sampled, since the cell keeps text
    /// alone and a replayed tool exchange without its tool configuration would be refused.
    pub fn is_text_only(messages: &[Message], system: &[SystemContentBlock]) -> bool {
        !messages.is_empty()
            && messages.iter().all(|m| m.content.iter().all(|b| matches!(b, ContentBlock::Text(_))))
            && system.iter().all(|b| matches!(b, SystemContentBlock::Text(_)))
    }

    pub fn system_text(&self) -> String {
        let parts: Vec<&str> = self
            .system
            .iter()
            .filter_map(|b| match b {
                SystemContentBlock::Text(text) => Some(text.as_str()),
                SystemContentBlock::CachePoint(_) => None,
            })
            .collect();
        parts.join("\n")
    }
}

fn text_of(blocks: &[ContentBlock]) -> String {
    blocks
        .iter()
        .filter_map(|b| match b {
            ContentBlock::Text(text) => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

/// The dataset's `promptId`: the hex SHA-256 of the prompt cell, so the same conversation has
/// the same ID in every run and every tenant.
pub fn prompt_id(cell: &str) -> String {
    hex::encode(Sha256::digest(cell.as_bytes()))
}

/// One line of `calibration/dataset/<run-id>.jsonl`: one prompt's answers on every tier, each
/// graded by the strongest tier against its own answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CalibrationOutcome {
    pub schema: u32,
    pub run_id: String,
    pub prompt_id: String,
    pub tenant: String,
    pub sampled_at: String,
    pub prompt: String,
    /// The model that graded (the Opus tier's).
    pub grader: String,
    pub outcomes: BTreeMap<Tier, TierOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TierOutcome {
    pub model_id: String,
    /// 1–10; the grader's own tier is 10 by definition. `None` (`null`) when the answer or its
    /// grade is missing or malformed: never guessed.
    pub score: Option<u8>,
    /// From the batch output's usage; `None` when the tier gave no answer.
    pub output_tokens: Option<u64>,
}

/// `yyyy-mm-ddTHH:MM:SSZ`.
pub fn rfc3339(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = crate::date::civil_from_days(days as i64);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// `yyyymmddHHMMSS`, for run IDs that sort by time.
pub(crate) fn compact_stamp(at: SystemTime) -> String {
    rfc3339(at).chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SampledPrompt {
        serde_json::from_value(serde_json::json!({
            "schema": 1, "tenant": "header/4:acme", "sampledAt": "2026-12-03T10:00:00Z",
            "messages": [
                {"role": "user", "content": [{"text": "What is "}, {"text": "2+2?"}]},
                {"role": "assistant", "content": [{"text": "4"}]},
                {"role": "user", "content": [{"text": "And \"3+3\"?"}]}
            ],
            "system": [{"text": "be brief"}]
        }))
        .unwrap()
    }

    #[test]
    fn the_prompt_cell_is_what_the_router_reads() {
        let cell = sample().prompt_cell();
        assert_eq!(
            cell,
            r#"[{"role":"user","content":"What is 2+2?"},{"role":"assistant","content":"4"},{"role":"user","content":"And \"3+3\"?"}]"#
        );
        let conversation = crate::routing::features::Conversation::from_prompt_cell(&cell);
        assert_eq!(conversation.turns().len(), 3);
        assert_eq!(prompt_id(&cell).len(), 64);
        assert_eq!(prompt_id(&cell), prompt_id(&sample().prompt_cell()));
    }

    #[test]
    fn dataset_lines_are_camel_case_with_null_for_a_missing_grade() {
        let line = CalibrationOutcome {
            schema: SCHEMA,
            run_id: "cal-1".into(),
            prompt_id: "ab".into(),
            tenant: "t".into(),
            sampled_at: "2026-12-03T10:00:00Z".into(),
            prompt: "[]".into(),
            grader: "opus-id".into(),
            outcomes: [
                (Tier::Haiku, TierOutcome { model_id: "h".into(), score: None, output_tokens: Some(3) }),
                (Tier::Opus, TierOutcome { model_id: "o".into(), score: Some(10), output_tokens: Some(5) }),
            ]
            .into(),
        };
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["runId"], "cal-1");
        assert_eq!(json["sampledAt"], "2026-12-03T10:00:00Z");
        assert_eq!(json["outcomes"]["haiku"]["score"], serde_json::Value::Null);
        assert_eq!(json["outcomes"]["opus"]["outputTokens"], 5);
        assert_eq!(serde_json::from_value::<CalibrationOutcome>(json).unwrap(), line);
    }

    #[test]
    fn times_are_utc_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_000_000);
        assert_eq!(rfc3339(at), "2026-02-25T06:13:20Z");
        assert_eq!(compact_stamp(at), "20260225061320");
    }

    #[test]
    fn only_text_requests_are_samples() {
        let s = sample();
        assert!(SampledPrompt::is_text_only(&s.messages, &s.system));
        assert!(!SampledPrompt::is_text_only(&[], &[]));
        let mut tool = s.messages.clone();
        tool[0].content.push(ContentBlock::ToolUse(crate::request::ToolUseBlock {
            tool_use_id: "t".into(),
            name: "n".into(),
            input: serde_json::json!({}),
        }));
        assert!(!SampledPrompt::is_text_only(&tool, &s.system));
    }
}
