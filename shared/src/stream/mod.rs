//! Streamed answers: ConverseStream's events ([`event`]), their assembly into the
//! [`ConverseResponse`] that is priced, settled and cached ([`Assembler`]), and the replay of a
//! stored answer as the same sequence of events ([`replay`]).
//!
//! A streamed answer and a buffered one are the same value at the end: the gateway assembles
//! what it forwards, so the cache entry a stream writes is the one a buffered call would have
//! written, and a buffered request can be answered from a streamed one's entry and back.

pub mod event;

use serde_json::Value;

use crate::request::{
    ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, Message, ReasoningContentBlock, ReasoningText,
    Role, TokenUsage, ToolUseBlock,
};

pub use event::{
    BlockStart, ContentBlockDelta, ContentBlockStart, ContentBlockStop, Delta, MessageStart, MessageStop,
    ReasoningDelta, StreamEvent, StreamMetadata, ToolUseDelta, ToolUseStart,
};

/// A stream that does not follow ConverseStream's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("event {event} out of order: {reason}")]
    OutOfOrder { event: &'static str, reason: String },
    #[error("tool call {name}'s input is not JSON: {reason}")]
    ToolInput { name: String, reason: String },
    #[error("the stream ended before {0}")]
    Incomplete(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Text(String),
    ToolUse { tool_use_id: String, name: String, input: String },
    Reasoning { text: String, signature: Option<String> },
    Redacted(String),
}

/// Folds a stream's events, in order, into the answer they spell.
#[derive(Debug, Default, Clone)]
pub struct Assembler {
    started: bool,
    blocks: Vec<(u32, Block)>,
    stop: Option<MessageStop>,
    metadata: Option<StreamMetadata>,
}

impl Assembler {
    pub fn new() -> Self {
        Assembler::default()
    }

    pub fn push(&mut self, event: &StreamEvent) -> Result<(), StreamError> {
        let out_of_order = |event: &'static str, reason: &str| StreamError::OutOfOrder { event, reason: reason.into() };
        if !self.started && !matches!(event, StreamEvent::MessageStart(_)) {
            return Err(out_of_order(event.event_type(), "before messageStart"));
        }
        if self.metadata.is_some() {
            return Err(out_of_order(event.event_type(), "after metadata"));
        }
        match event {
            StreamEvent::MessageStart(_) if self.started => return Err(out_of_order("messageStart", "repeated")),
            StreamEvent::MessageStart(_) => self.started = true,
            StreamEvent::ContentBlockStart(start) => {
                if self.block(start.content_block_index).is_some() {
                    return Err(out_of_order("contentBlockStart", "the block has begun already"));
                }
                let BlockStart::ToolUse(tool) = &start.start;
                let block = Block::ToolUse {
                    tool_use_id: tool.tool_use_id.clone(),
                    name: tool.name.clone(),
                    input: String::new(),
                };
                self.blocks.push((start.content_block_index, block));
            }
            StreamEvent::ContentBlockDelta(delta) => self.push_delta(delta)?,
            StreamEvent::ContentBlockStop(_) => {}
            StreamEvent::MessageStop(stop) => {
                if self.stop.is_some() {
                    return Err(out_of_order("messageStop", "repeated"));
                }
                self.stop = Some(stop.clone());
            }
            StreamEvent::Metadata(metadata) => {
                if self.stop.is_none() {
                    return Err(out_of_order("metadata", "before messageStop"));
                }
                self.metadata = Some(metadata.clone());
            }
        }
        Ok(())
    }

    fn block(&mut self, index: u32) -> Option<&mut Block> {
        self.blocks.iter_mut().find(|(i, _)| *i == index).map(|(_, b)| b)
    }

    fn push_delta(&mut self, delta: &ContentBlockDelta) -> Result<(), StreamError> {
        let index = delta.content_block_index;
        let mismatch = || StreamError::OutOfOrder {
            event: "contentBlockDelta",
            reason: format!("delta kind does not match block {index}"),
        };
        match (&delta.delta, self.block(index)) {
            (Delta::Text(text), Some(Block::Text(so_far)))
            | (Delta::ReasoningContent(ReasoningDelta::Text(text)), Some(Block::Reasoning { text: so_far, .. }))
            | (Delta::ReasoningContent(ReasoningDelta::RedactedContent(text)), Some(Block::Redacted(so_far))) => {
                so_far.push_str(text)
            }
            (Delta::ToolUse(piece), Some(Block::ToolUse { input, .. })) => input.push_str(&piece.input),
            (Delta::ReasoningContent(ReasoningDelta::Signature(s)), Some(Block::Reasoning { signature, .. })) => {
                signature.get_or_insert_with(String::new).push_str(s)
            }
            (_, Some(_)) => return Err(mismatch()),
            (Delta::ToolUse(_), None) => {
                return Err(StreamError::OutOfOrder {
                    event: "contentBlockDelta",
                    reason: format!("tool input for block {index} before its contentBlockStart"),
                });
            }
            (delta, None) => {
                let block = match delta {
                    Delta::Text(text) => Block::Text(text.clone()),
                    Delta::ReasoningContent(ReasoningDelta::Text(text)) => {
                        Block::Reasoning { text: text.clone(), signature: None }
                    }
                    Delta::ReasoningContent(ReasoningDelta::Signature(s)) => {
                        Block::Reasoning { text: String::new(), signature: Some(s.clone()) }
                    }
                    Delta::ReasoningContent(ReasoningDelta::RedactedContent(data)) => Block::Redacted(data.clone()),
                    Delta::ToolUse(_) => return Err(mismatch()),
                };
                self.blocks.push((index, block));
            }
        }
        Ok(())
    }

    /// Whether the stream reached its end (`metadata`).
    pub fn is_complete(&self) -> bool {
        self.metadata.is_some()
    }

    /// The usage Bedrock reported, once the stream reached its end.
    pub fn usage(&self) -> Option<&TokenUsage> {
        self.metadata.as_ref().map(|m| &m.usage)
    }

    /// The content generated so far, in block order, as a message (what a cut stream leaves).
    pub fn message(&self) -> Result<Message, StreamError> {
        let mut blocks: Vec<&(u32, Block)> = self.blocks.iter().collect();
        blocks.sort_by_key(|(i, _)| *i);
        let content = blocks
            .into_iter()
            .map(|(_, block)| {
                Ok(match block {
                    Block::Text(text) => ContentBlock::Text(text.clone()),
                    Block::ToolUse { tool_use_id, name, input } => {
                        let input = if input.trim().is_empty() {
                            Value::Object(serde_json::Map::new())
                        } else {
                            serde_json::from_str(input)
                                .map_err(|e| StreamError::ToolInput { name: name.clone(), reason: e.to_string() })?
                        };
                        ContentBlock::ToolUse(ToolUseBlock {
                            tool_use_id: tool_use_id.clone(),
                            name: name.clone(),
                            input,
                        })
                    }
                    Block::Reasoning { text, signature } => {
                        ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningText {
                            text: text.clone(),
                            signature: signature.clone(),
                        }))
                    }
                    Block::Redacted(data) => {
                        ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(data.clone()))
                    }
                })
            })
            .collect::<Result<Vec<_>, StreamError>>()?;
        Ok(Message { role: Role::Assistant, content })
    }

    /// The whole answer; only a stream that reached `metadata` has one. It borrows, so that a
    /// stream whose end turns out unusable can still give what it generated ([`Self::message`]).
    pub fn finish(&self) -> Result<ConverseResponse, StreamError> {
        let stop = self.stop.as_ref().ok_or(StreamError::Incomplete("messageStop"))?;
        let metadata = self.metadata.as_ref().ok_or(StreamError::Incomplete("metadata"))?;
        Ok(ConverseResponse {
            output: ConverseOutput { message: self.message()? },
            stop_reason: stop.stop_reason.clone(),
            usage: metadata.usage.clone(),
            metrics: metadata.metrics,
            additional_model_response_fields: stop.additional_model_response_fields.clone(),
            trace: metadata.trace.clone(),
            performance_config: metadata.performance_config.clone(),
            service_tier: metadata.service_tier.clone(),
        })
    }
}

/// Words per replayed text delta: Claude on Bedrock sends a few tokens per delta.
const WORDS_PER_DELTA: usize = 3;
/// Characters per replayed tool-input delta.
const CHARS_PER_TOOL_DELTA: usize = 24;

/// The events ConverseStream would have sent for `response`: the stored answer of a cache HIT
/// replayed as a stream, chunked the way live answers arrive. Assembling the events gives the
/// response back (content blocks Bedrock never streams, such as images, are left out).
pub fn replay(response: &ConverseResponse) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::MessageStart(MessageStart { role: Role::Assistant })];
    let mut index = 0u32;
    for block in &response.output.message.content {
        let deltas: Vec<Delta> = match block {
            ContentBlock::Text(text) => word_chunks(text, WORDS_PER_DELTA).map(|t| Delta::Text(t.to_owned())).collect(),
            ContentBlock::ToolUse(tool) => {
                events.push(StreamEvent::ContentBlockStart(ContentBlockStart {
                    content_block_index: index,
                    start: BlockStart::ToolUse(ToolUseStart {
                        tool_use_id: tool.tool_use_id.clone(),
                        name: tool.name.clone(),
                    }),
                }));
                let input = tool.input.to_string();
                char_chunks(&input, CHARS_PER_TOOL_DELTA)
                    .map(|piece| Delta::ToolUse(ToolUseDelta { input: piece.to_owned() }))
                    .collect()
            }
            ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(reasoning)) => {
                let mut deltas: Vec<Delta> = word_chunks(&reasoning.text, WORDS_PER_DELTA)
                    .map(|t| Delta::ReasoningContent(ReasoningDelta::Text(t.to_owned())))
                    .collect();
                if let Some(signature) = &reasoning.signature {
                    deltas.push(Delta::ReasoningContent(ReasoningDelta::Signature(signature.clone())));
                }
                deltas
            }
            ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(data)) => {
                vec![Delta::ReasoningContent(ReasoningDelta::RedactedContent(data.clone()))]
            }
            ContentBlock::Image(_)
            | ContentBlock::Document(_)
            | ContentBlock::ToolResult(_)
            | ContentBlock::CachePoint(_) => continue,
        };
        for delta in deltas {
            events.push(StreamEvent::ContentBlockDelta(ContentBlockDelta { content_block_index: index, delta }));
        }
        events.push(StreamEvent::ContentBlockStop(ContentBlockStop { content_block_index: index }));
        index += 1;
    }
    events.push(StreamEvent::MessageStop(MessageStop {
        stop_reason: response.stop_reason.clone(),
        additional_model_response_fields: response.additional_model_response_fields.clone(),
    }));
    events.push(StreamEvent::Metadata(StreamMetadata {
        usage: response.usage.clone(),
        metrics: ConverseMetrics { latency_ms: response.metrics.latency_ms },
        trace: response.trace.clone(),
        performance_config: response.performance_config.clone(),
        service_tier: response.service_tier.clone(),
    }));
    events
}

/// Pieces of `text` of `words` words each, the whitespace after a word kept with it, so
/// that the pieces concatenate to `text` exactly. An empty text is one empty piece.
fn word_chunks(text: &str, words: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    let mut first = true;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return std::mem::take(&mut first).then_some("");
        }
        first = false;
        let mut seen = 0;
        let mut in_word = false;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            if c.is_whitespace() {
                in_word = false;
            } else if !in_word {
                if seen == words {
                    end = i;
                    break;
                }
                seen += 1;
                in_word = true;
            }
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Pieces of at most `chars` characters, split on character boundaries.
fn char_chunks(text: &str, chars: usize) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.char_indices().nth(chars).map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests;
