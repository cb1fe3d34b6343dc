//! Exact-match response cache: keys, per-request policy and the stored entry format.
//!
//! The key is a SHA-256 over a canonical JSON rendering of everything that can change the
//! answer: tenant, the resolved Bedrock model ID, system prompt, messages, inference
//! parameters, tools, guardrail and model-specific fields. Object keys are sorted by us, not
//! by serde_json's map type, so the key does not depend on field order in the caller's JSON
//! nor on crate features elsewhere in the build.

use std::fmt;
use std::io::{Read, Write};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::identity::Identity;
use crate::request::{ConverseRequest, ConverseResponse, RequestError};

/// Bumped whenever the key material changes meaning, so old entries are never misread.
/// 2: tenants are length-prefixed [`Identity`] encodings instead of `kind:value` strings.
const KEY_SCHEMA_VERSION: u32 = 2;

/// Who a cached answer belongs to: the unambiguous encoding of an [`Identity`]. One tenant
/// never reads another's entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tenant(String);

impl Tenant {
    /// A trusted-header tenant named `id`, unvalidated: for tests and tools that need
    /// distinct tenants. Requests get theirs from [`Identity::resolve`].
    pub fn new(id: impl Into<String>) -> Self {
        Tenant::from(Identity::TrustedHeader { tenant: id.into() })
    }

    /// Callers with no identity (an API without authentication) share this tenant.
    pub fn anonymous() -> Self {
        Tenant::from(Identity::Anonymous)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A tenant read back from a store that wrote [`Tenant::as_str`]: the encoding is
    /// already an identity's, so it is taken as it is.
    pub fn from_stored(encoded: String) -> Self {
        Tenant(encoded)
    }
}

impl From<Identity> for Tenant {
    fn from(identity: Identity) -> Self {
        Tenant(identity.encode())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `request` sent to `model_id` (the resolved Bedrock ID) for `tenant`.
    pub fn compute(tenant: &Tenant, model_id: &str, request: &ConverseRequest) -> CacheKey {
        let material = serde_json::json!({
            "v": KEY_SCHEMA_VERSION,
            "tenant": tenant.as_str(),
            "model": model_id,
            "system": request.system,
            "messages": request.messages,
            "inferenceConfig": request.inference_config,
            "toolConfig": request.tool_config,
            "additionalModelRequestFields": request.additional_model_request_fields,
            "additionalModelResponseFieldPaths": request.additional_model_response_field_paths,
            "guardrailConfig": request.guardrail_config,
            "promptVariables": request.prompt_variables,
            "performanceConfig": request.performance_config,
        });
        CacheKey(Sha256::digest(canonical_json(&material)).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// `value` as JSON bytes with object keys sorted, empty values dropped (`{}`, `[]` and `null`
/// mean the same as an absent field) and integral numbers written as integers. The output does
/// not depend on serde_json's map type, which a `preserve_order` feature anywhere in the build
/// would switch to insertion order.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().filter(|(_, v)| !is_empty(v)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(&Value::String(k.clone()), out);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(v, out);
            }
            out.push(b']');
        }
        Value::Number(n) => match n.as_f64() {
            // 1 and 1.0 are the same parameter value.
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                out.extend_from_slice(format!("{}", f as i64).as_bytes())
            }
            _ => out.extend_from_slice(n.to_string().as_bytes()),
        },
        scalar => out.extend_from_slice(scalar.to_string().as_bytes()),
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// What a request may do with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheMode {
    /// Read, and write on a miss.
    On,
    /// Neither read nor write.
    Off,
    /// Read, never write (e.g. evaluation traffic that must not pollute the cache).
    ReadOnly,
    /// Skip the read and overwrite the entry: a forced refresh.
    WriteOnly,
}

impl CacheMode {
    /// Exactly the documented spellings: an undocumented alias that happens to work today
    /// becomes a contract nobody wrote down.
    pub fn parse(value: &str) -> Result<CacheMode, RequestError> {
        match value {
            "on" => Ok(CacheMode::On),
            "off" => Ok(CacheMode::Off),
            "read_only" => Ok(CacheMode::ReadOnly),
            "write_only" => Ok(CacheMode::WriteOnly),
            _ => Err(RequestError::invalid("x-cache-mode", "must be one of on, off, read_only, write_only")),
        }
    }

    fn reads(self) -> bool {
        matches!(self, CacheMode::On | CacheMode::ReadOnly)
    }

    fn writes(self) -> bool {
        matches!(self, CacheMode::On | CacheMode::WriteOnly)
    }
}

/// The caller's cache wishes for one request; every field optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheOptions {
    pub mode: Option<CacheMode>,
    pub ttl: Option<Duration>,
    /// Cache even though sampling (temperature > 0) makes answers vary between calls.
    pub allow_sampling: bool,
}

impl CacheOptions {
    /// Parses the raw header values (`x-cache-mode`, `x-cache-ttl` in seconds,
    /// `x-cache-allow-sampling`).
    pub fn parse(
        mode: Option<&str>,
        ttl: Option<&str>,
        allow_sampling: Option<&str>,
    ) -> Result<CacheOptions, RequestError> {
        let mode = mode.map(CacheMode::parse).transpose()?;
        let ttl = ttl.map(parse_ttl).transpose()?;
        let allow_sampling = match allow_sampling {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(RequestError::invalid("x-cache-allow-sampling", "must be true or false")),
        };
        Ok(CacheOptions { mode, ttl, allow_sampling })
    }
}

/// Seconds as plain decimal digits (no sign, no spaces), at least 1.
fn parse_ttl(raw: &str) -> Result<Duration, RequestError> {
    let digits_only = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    digits_only
        .then(|| raw.parse::<u64>().ok())
        .flatten()
        .filter(|seconds| *seconds > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| RequestError::invalid("x-cache-ttl", "must be a positive whole number of seconds"))
}

/// The deployer's cache settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub enabled: bool,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            enabled: true,
            default_ttl: Duration::from_secs(24 * 3600),
            max_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Why a request did not use the cache at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BypassReason {
    DisabledByDeployer,
    RequestedOff,
    /// `write_only`: the entry is refreshed without being read.
    Refresh,
    /// Temperature > 0 without the caller's opt-in: repeating a sampled answer would
    /// silently change what the caller asked for.
    Sampling,
}

/// What the gateway will do with the cache for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheDecision {
    pub read: bool,
    pub write: bool,
    pub ttl: Duration,
    pub bypass: Option<BypassReason>,
}

impl CacheSettings {
    pub fn decide(&self, options: &CacheOptions, request: &ConverseRequest) -> Result<CacheDecision, RequestError> {
        let ttl = options.ttl.unwrap_or(self.default_ttl);
        if ttl > self.max_ttl {
            return Err(RequestError::invalid(
                "x-cache-ttl",
                format!("{} s exceeds the maximum of {} s", ttl.as_secs(), self.max_ttl.as_secs()),
            ));
        }
        let mode = options.mode.unwrap_or(CacheMode::On);
        let bypass = if !self.enabled {
            Some(BypassReason::DisabledByDeployer)
        } else if mode == CacheMode::Off {
            Some(BypassReason::RequestedOff)
        } else if request.effective_temperature() > 0.0 && !options.allow_sampling {
            Some(BypassReason::Sampling)
        } else if mode == CacheMode::WriteOnly {
            Some(BypassReason::Refresh)
        } else {
            None
        };
        let usable = !matches!(
            bypass,
            Some(BypassReason::DisabledByDeployer | BypassReason::RequestedOff | BypassReason::Sampling)
        );
        Ok(CacheDecision { read: usable && mode.reads(), write: usable && mode.writes(), ttl, bypass })
    }
}

/// Only complete, well-formed answers are worth repeating.
pub fn is_cacheable(response: &ConverseResponse) -> bool {
    !matches!(
        response.stop_reason.as_str(),
        "malformed_model_output"
            | "malformed_tool_use"
            | "model_context_window_exceeded"
            | "guardrail_intervened"
            | "content_filtered"
    )
}

/// A stored answer, as the gateway needs it back.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: CacheKey,
    pub response: ConverseResponse,
    /// The Bedrock ID that produced the answer, and what it cost then: a hit saves that much.
    pub model_id: String,
    pub cost_usd: f64,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
}

impl CacheEntry {
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.expires_at <= now
    }
}

/// The compressed payload stored with an entry.
/// Written from a borrow so that encoding never copies the answer; read back owned.
#[derive(Debug, Serialize)]
struct StoredAnswerRef<'a> {
    response: &'a ConverseResponse,
}

#[derive(Debug, Deserialize)]
struct StoredAnswer {
    response: ConverseResponse,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot serialize the answer")]
    Serialize(#[source] serde_json::Error),
    #[error("cannot compress or decompress the answer")]
    Compression(#[source] std::io::Error),
    #[error("stored answer is not valid")]
    Corrupt(#[source] serde_json::Error),
}

/// Compresses a response for storage. Answers are text-heavy JSON and shrink 3-5x, which
/// keeps most of them far under DynamoDB's 400 KB item limit and cuts write units.
pub fn encode_response(response: &ConverseResponse) -> Result<Vec<u8>, CodecError> {
    let json = serde_json::to_vec(&StoredAnswerRef { response }).map_err(CodecError::Serialize)?;
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::with_capacity(json.len() / 3), flate2::Compression::default());
    encoder.write_all(&json).map_err(CodecError::Compression)?;
    encoder.finish().map_err(CodecError::Compression)
}

pub fn decode_response(bytes: &[u8]) -> Result<ConverseResponse, CodecError> {
    let mut json = Vec::with_capacity(bytes.len() * 4);
    flate2::read::DeflateDecoder::new(bytes).read_to_end(&mut json).map_err(CodecError::Compression)?;
    let stored: StoredAnswer = serde_json::from_slice(&json).map_err(CodecError::Corrupt)?;
    Ok(stored.response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> ConverseRequest {
        ConverseRequest::from_json(json.as_bytes()).unwrap()
    }

    const BASE: &str = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100}}"#;

    fn key(tenant: &str, model: &str, json: &str) -> CacheKey {
        CacheKey::compute(&Tenant::new(tenant), model, &request(json))
    }

    #[test]
    fn field_order_whitespace_and_empty_fields_do_not_matter() {
        let reordered = r#"{ "inferenceConfig": {"maxTokens": 100, "temperature": 0.0},
                             "messages": [{"content": [{"text": "hi"}], "role": "user"}], "system": [] }"#;
        assert_eq!(key("t", "m", BASE), key("t", "m", reordered));
        let with_metadata = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100},"requestMetadata":{"team":"a"}}"#;
        assert_eq!(key("t", "m", BASE), key("t", "m", with_metadata), "log metadata cannot change the answer");
        let nested_a = r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"additionalModelRequestFields":{"a":1,"b":{"c":2,"d":3}}}"#;
        let nested_b = r#"{"additionalModelRequestFields":{"b":{"d":3,"c":2},"a":1},"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        assert_eq!(key("t", "m", nested_a), key("t", "m", nested_b));
    }

    #[test]
    fn anything_that_changes_the_answer_changes_the_key() {
        let base = key("t", "m", BASE);
        assert_ne!(base, key("other-tenant", "m", BASE));
        assert_ne!(base, key("t", "other-model", BASE));
        let variants = [
            r#"{"messages":[{"role":"user","content":[{"text":"hi!"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100}}"#,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":101}}"#,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0.5,"maxTokens":100}}"#,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100,"stopSequences":["x"]}}"#,
            r#"{"system":[{"text":"be terse"}],"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100}}"#,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100},"additionalModelRequestFields":{"top_k":3}}"#,
            r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"inferenceConfig":{"temperature":0,"maxTokens":100},"toolConfig":{"tools":[{"toolSpec":{"name":"a","inputSchema":{"json":{}}}}]}}"#,
        ];
        let mut keys: Vec<_> = variants.iter().map(|v| key("t", "m", v)).collect();
        keys.push(base);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), variants.len() + 1);
    }

    #[test]
    fn policy_follows_mode_sampling_and_ttl_limits() {
        let settings = CacheSettings::default();
        let deterministic = request(BASE);
        let sampled = request(r#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#);
        let on = settings.decide(&CacheOptions::default(), &deterministic).unwrap();
        assert_eq!((on.read, on.write, on.bypass), (true, true, None));
        assert_eq!(on.ttl, settings.default_ttl);

        let s = settings.decide(&CacheOptions::default(), &sampled).unwrap();
        assert_eq!((s.read, s.write, s.bypass), (false, false, Some(BypassReason::Sampling)));
        let opted_in = CacheOptions { allow_sampling: true, ..CacheOptions::default() };
        assert!(settings.decide(&opted_in, &sampled).unwrap().read);

        let mode = |m| CacheOptions { mode: Some(m), ..CacheOptions::default() };
        let d = settings.decide(&mode(CacheMode::ReadOnly), &deterministic).unwrap();
        assert_eq!((d.read, d.write), (true, false));
        let d = settings.decide(&mode(CacheMode::WriteOnly), &deterministic).unwrap();
        assert_eq!((d.read, d.write, d.bypass), (false, true, Some(BypassReason::Refresh)));
        let d = settings.decide(&mode(CacheMode::Off), &deterministic).unwrap();
        assert_eq!((d.read, d.write), (false, false));

        let too_long = CacheOptions { ttl: Some(settings.max_ttl + Duration::from_secs(1)), ..CacheOptions::default() };
        assert_eq!(settings.decide(&too_long, &deterministic).unwrap_err().field(), Some("x-cache-ttl"));
        let disabled = CacheSettings { enabled: false, ..settings };
        assert_eq!(
            disabled.decide(&CacheOptions::default(), &deterministic).unwrap().bypass,
            Some(BypassReason::DisabledByDeployer)
        );
    }

    #[test]
    fn header_values_parse_or_name_the_header() {
        let o = CacheOptions::parse(Some("read_only"), Some("60"), Some("true")).unwrap();
        assert_eq!(o.mode, Some(CacheMode::ReadOnly));
        assert_eq!(o.ttl, Some(Duration::from_secs(60)));
        assert!(o.allow_sampling);
        assert_eq!(CacheOptions::parse(Some("sometimes"), None, None).unwrap_err().field(), Some("x-cache-mode"));
        assert_eq!(CacheOptions::parse(None, Some("-5"), None).unwrap_err().field(), Some("x-cache-ttl"));
        // Finding 6: aliases, other spellings and numeric booleans used to be accepted.
        for mode in ["bypass", "refresh", "read-only", "READ_ONLY", " on", "On"] {
            assert_eq!(
                CacheOptions::parse(Some(mode), None, None).unwrap_err().field(),
                Some("x-cache-mode"),
                "{mode}"
            );
        }
        for ttl in ["+60", " 60", "60 ", "0", "1e3", "", "99999999999999999999999"] {
            assert_eq!(CacheOptions::parse(None, Some(ttl), None).unwrap_err().field(), Some("x-cache-ttl"), "{ttl}");
        }
        for flag in ["1", "0", "TRUE", "yes", ""] {
            let err = CacheOptions::parse(None, None, Some(flag)).unwrap_err();
            assert_eq!(err.field(), Some("x-cache-allow-sampling"), "{flag}");
        }
        assert!(!CacheOptions::parse(None, None, Some("false")).unwrap().allow_sampling);
        assert_eq!(
            CacheOptions::parse(None, None, Some("yes please")).unwrap_err().field(),
            Some("x-cache-allow-sampling")
        );
    }

    #[test]
    fn codec_round_trips_and_compresses() {
        let response: ConverseResponse = serde_json::from_value(serde_json::json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "All work and no play. ".repeat(200)}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 3, "outputTokens": 900, "totalTokens": 903},
            "metrics": {"latencyMs": 10}
        }))
        .unwrap();
        let bytes = encode_response(&response).unwrap();
        assert!(bytes.len() * 4 < serde_json::to_vec(&response).unwrap().len());
        assert_eq!(decode_response(&bytes).unwrap(), response);
        assert!(matches!(decode_response(b"not deflate"), Err(CodecError::Compression(_) | CodecError::Corrupt(_))));
    }
}
