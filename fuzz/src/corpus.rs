//! Seed inputs: the request bodies of `events/`, plus hand-written requests and answers for
//! every block kind the events do not show.

use std::path::Path;

use base64::Engine as _;
use serde_json::Value;

/// Requests with tool use, images, documents, cache points, system prompts and reasoning.
const REQUESTS: &[&str] = &[
    r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"maxTokens":64,"temperature":0,"topP":0.9,"stopSequences":["END"]}}"#,
    r#"{"modelId":"auto","system":[{"text":"You are terse."},{"cachePoint":{"type":"default"}}],"messages":[{"role":"user","content":[{"text":"Summarise the attached notes."},{"cachePoint":{"type":"default","ttl":"1h"}}]}]}"#,
    r#"{"modelId":"sonnet","messages":[{"role":"user","content":[{"text":"What is the weather?"}]},{"role":"assistant","content":[{"toolUse":{"toolUseId":"t1","name":"weather","input":{"city":"Paris","days":[1,2]}}}]},{"role":"user","content":[{"toolResult":{"toolUseId":"t1","content":[{"json":{"temp":21.5}},{"text":"sunny"}],"status":"success"}}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"weather","description":"Forecast","inputSchema":{"json":{"type":"object","properties":{"city":{"type":"string"}}}}}},{"cachePoint":{"type":"default"}}],"toolChoice":{"auto":{}}}}"#,
    r#"{"modelId":"opus","messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"iVBORw0KGgo="}}},{"text":"Describe this picture."}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"t","inputSchema":{"json":{}}}}],"toolChoice":{"tool":{"name":"t"}}}}"#,
    r#"{"modelId":"haiku","messages":[{"role":"user","content":[{"document":{"format":"pdf","name":"report","source":{"s3Location":{"uri":"s3://bucket/report.pdf","bucketOwner":"123456789012"}}}},{"text":"Key findings?"}]}],"requestMetadata":{"team":"a"},"performanceConfig":{"latency":"standard"},"serviceTier":{"type":"default"}}"#,
    r#"{"modelId":"us.anthropic.claude-sonnet-4-5-20250929-v1:0","messages":[{"role":"user","content":[{"text":"Think first."}]},{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"Let me see","signature":"sig"}}},{"reasoningContent":{"redactedContent":"cmVkYWN0ZWQ="}},{"text":"Done."}]},{"role":"user","content":[{"text":"Again, shorter."}]}],"additionalModelRequestFields":{"thinking":{"type":"enabled","budget_tokens":1024}},"additionalModelResponseFieldPaths":["/stop_sequence"],"promptVariables":{"x":{"text":"y"}}}"#,
    r#"{"messages":[{"role":"user","content":[{"text":"Write a proof that there are infinitely many primes, then a haiku about it, then translate both into French."}]}],"toolConfig":{"tools":[{"toolSpec":{"name":"calc","inputSchema":{"json":{"type":"object"}}}}],"toolChoice":{"any":{}}}}"#,
];

/// Answers as Bedrock returns them, for the cache codec.
const RESPONSES: &[&str] = &[
    r#"{"output":{"message":{"role":"assistant","content":[{"text":"Paris."}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":3,"totalTokens":15},"metrics":{"latencyMs":120}}"#,
    r#"{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"hmm","signature":"s"}}},{"toolUse":{"toolUseId":"t9","name":"calc","input":{"expr":"1+1"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":100,"outputTokens":20,"totalTokens":120,"cacheReadInputTokens":80,"cacheWriteInputTokens":0,"cacheDetails":[{"ttl":"5m","inputTokens":80}]},"metrics":{"latencyMs":900},"additionalModelResponseFields":{"stop_sequence":null},"trace":{"promptRouter":{"invokedModelId":"arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"}},"performanceConfig":{"latency":"optimized"},"serviceTier":{"type":"priority"}}"#,
];

#[derive(Debug, Clone, Default)]
pub struct Corpus {
    pub requests: Vec<Vec<u8>>,
    pub responses: Vec<Vec<u8>>,
}

impl Corpus {
    /// The built-in seeds and, when `events_dir` is given, every event body under it
    /// (decoded when the event says it is base64).
    pub fn load(events_dir: Option<&Path>) -> Result<Corpus, String> {
        let mut corpus = Corpus {
            requests: REQUESTS.iter().map(|r| r.as_bytes().to_vec()).collect(),
            responses: RESPONSES.iter().map(|r| r.as_bytes().to_vec()).collect(),
        };
        if let Some(dir) = events_dir {
            for body in event_bodies(dir)? {
                corpus.requests.push(body);
            }
        }
        Ok(corpus)
    }
}

fn event_bodies(dir: &Path) -> Result<Vec<Vec<u8>>, String> {
    let mut files = Vec::new();
    collect_json_files(dir, &mut files).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    files.sort();
    let mut bodies = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let Ok(event) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let Some(body) = event.get("body").and_then(Value::as_str) else {
            continue;
        };
        if event.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(body) {
                bodies.push(bytes);
            }
        } else {
            bodies.push(body.as_bytes().to_vec());
        }
    }
    Ok(bodies)
}

fn collect_json_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_json_files(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "json")
            && path.file_name().is_some_and(|n| n != "manifest.json")
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gateway_core::request::{ConverseRequest, ConverseResponse};

    #[test]
    fn built_in_seeds_are_valid_so_mutations_start_from_accepted_inputs() {
        for request in REQUESTS {
            ConverseRequest::from_json(request.as_bytes()).unwrap_or_else(|e| panic!("{e}: {request}"));
        }
        for response in RESPONSES {
            serde_json::from_str::<ConverseResponse>(response).unwrap();
        }
    }

    #[test]
    fn event_bodies_are_read_from_the_repository() {
        let events = Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
        let corpus = Corpus::load(Some(&events)).unwrap();
        assert!(corpus.requests.len() > REQUESTS.len() + 10);
    }
}
