//! The OpenAI Chat Completions and Anthropic Messages APIs as translations into and out of
//! the gateway's Converse types: a request in either dialect becomes a [`ConverseRequest`]
//! that goes through the same stages as `/v1/converse` (cache, routing, admission, cost,
//! tenants), and its [`Answer`](crate::service::Answer) or stream events are written back in
//! the dialect's shapes. Nothing here calls anything.
//!
//! The translation builds the Converse request as JSON and reads it with
//! [`ConverseRequest::from_json`], so a dialect's request meets exactly the validation a
//! Converse one does; an error found there is reported under the dialect's own parameter
//! name where the two correspond.

pub mod anthropic;
pub mod openai;

use serde_json::{Map, Value};

use crate::label::ErrorLabel;
use crate::request::{ConverseRequest, RequestError};

/// A request the caller got wrong, in terms of the API it spoke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompatError {
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("`{param}`: {reason}")]
    Invalid { param: String, reason: String },
    /// A parameter the API defines that Bedrock cannot honour: refused rather than ignored,
    /// since the caller would otherwise get an answer that silently differs from the one asked for.
    #[error("`{param}` is not supported by this gateway: {reason}")]
    Unsupported { param: String, reason: String },
    /// A parameter the API does not define.
    #[error("Unrecognized request argument supplied: {0}")]
    Unrecognized(String),
}

impl CompatError {
    pub fn param(&self) -> Option<&str> {
        match self {
            CompatError::MalformedJson(_) => None,
            CompatError::Invalid { param, .. } | CompatError::Unsupported { param, .. } => Some(param),
            CompatError::Unrecognized(param) => Some(param),
        }
    }

    pub fn label(&self) -> ErrorLabel {
        match self {
            CompatError::MalformedJson(_) => ErrorLabel::MalformedJson,
            CompatError::Invalid { .. } | CompatError::Unsupported { .. } | CompatError::Unrecognized(_) => {
                ErrorLabel::InvalidRequest
            }
        }
    }
}

pub(crate) fn invalid(param: impl Into<String>, reason: impl Into<String>) -> CompatError {
    CompatError::Invalid { param: param.into(), reason: reason.into() }
}

pub(crate) fn unsupported(param: impl Into<String>, reason: impl Into<String>) -> CompatError {
    CompatError::Unsupported { param: param.into(), reason: reason.into() }
}

/// The body as a JSON object, with the strict reader's checks (UTF-8, no duplicate keys).
pub(crate) fn object(body: &[u8]) -> Result<Map<String, Value>, CompatError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| CompatError::MalformedJson(format!("the body is not valid UTF-8 (byte {})", e.valid_up_to())))?;
    crate::request::strict::check(text).map_err(from_request_error(&[]))?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(invalid("$", "the request body must be a JSON object")),
        Err(e) => Err(CompatError::MalformedJson(crate::request::strict::describe(&e))),
    }
}

/// Reads the Converse request a dialect built, naming a problem by the dialect's parameter
/// where `renames` maps the Converse path's prefix to it.
pub(crate) fn converse(value: &Value, renames: &[(&str, &str)]) -> Result<ConverseRequest, CompatError> {
    ConverseRequest::from_json(value.to_string().as_bytes()).map_err(from_request_error(renames))
}

fn from_request_error<'a>(renames: &'a [(&'a str, &'a str)]) -> impl Fn(RequestError) -> CompatError + 'a {
    move |error| match error {
        RequestError::MalformedJson(reason) => CompatError::MalformedJson(reason),
        RequestError::Invalid { field, reason } => {
            let param = renames
                .iter()
                .find_map(|(converse, dialect)| field.strip_prefix(converse).map(|rest| format!("{dialect}{rest}")))
                .unwrap_or(field);
            CompatError::Invalid { param, reason }
        }
    }
}

/// A string, or `param`'s error.
pub(crate) fn string<'a>(value: &'a Value, param: &str) -> Result<&'a str, CompatError> {
    value.as_str().ok_or_else(|| invalid(param, "must be a string"))
}

/// A whole number of at least 1, as `maxTokens` needs.
pub(crate) fn positive(value: &Value, param: &str) -> Result<u64, CompatError> {
    value.as_u64().filter(|n| *n >= 1).ok_or_else(|| invalid(param, "must be an integer of at least 1"))
}

pub(crate) fn number(value: &Value, param: &str) -> Result<f64, CompatError> {
    value.as_f64().ok_or_else(|| invalid(param, "must be a number"))
}

/// The image format Converse names for a media type.
pub(crate) fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

/// Base64 that decodes: a broken image is the caller's 400, not Bedrock's.
pub(crate) fn check_base64(data: &str, param: &str) -> Result<(), CompatError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .map(|_| ())
        .map_err(|_| invalid(param, "the image data is not valid base64"))
}

/// Stop reasons the dialects share with Bedrock's.
pub(crate) fn is_content_filter(stop_reason: &str) -> bool {
    matches!(stop_reason, "content_filtered" | "guardrail_intervened")
}

/// The usage figures both dialects report, from Bedrock's (whose `inputTokens` leaves out
/// cached tokens).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

impl From<&crate::request::TokenUsage> for Tokens {
    fn from(usage: &crate::request::TokenUsage) -> Self {
        let n = |v: i64| u64::try_from(v).unwrap_or(0);
        Tokens {
            input: n(usage.input_tokens),
            output: n(usage.output_tokens),
            cache_read: n(usage.cache_read_input_tokens.unwrap_or(0)),
            cache_write: n(usage.cache_write_input_tokens.unwrap_or(0)),
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support;
