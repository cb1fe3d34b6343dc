//! The one vocabulary of failure labels: the `type` of an HTTP error body, the `error` and
//! `kind` fields of log lines, the `ErrorType` metric dimension and a failed hop's `outcome`
//! all come from here, so a failure has the same name wherever it is counted.
//!
//! Labels are snake_case and few (low cardinality): they name what went wrong, never a value
//! of the request.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorLabel {
    // The caller's request.
    MalformedJson,
    InvalidRequest,
    InvalidRouting,
    UnknownModel,
    /// A model past its Bedrock end of life, named by the caller or a deployer's setting.
    ModelRetired,
    Unauthenticated,
    NotFound,
    MethodNotAllowed,
    // The request's time.
    DeadlineExceeded,
    // Admission: the quota has no room within the request's wait.
    QuotaExhausted,
    // Bedrock, or the cache store, answering.
    Throttled,
    AccessDenied,
    ModelNotFound,
    ModelNotReady,
    ModelFailed,
    ModelTimeout,
    Unavailable,
    Internal,
    Timeout,
    Transport,
    BadResponse,
    // The cache store only.
    Store,
    Corrupt,
}

impl ErrorLabel {
    pub const ALL: [ErrorLabel; 23] = [
        ErrorLabel::MalformedJson,
        ErrorLabel::InvalidRequest,
        ErrorLabel::InvalidRouting,
        ErrorLabel::UnknownModel,
        ErrorLabel::ModelRetired,
        ErrorLabel::Unauthenticated,
        ErrorLabel::NotFound,
        ErrorLabel::MethodNotAllowed,
        ErrorLabel::DeadlineExceeded,
        ErrorLabel::QuotaExhausted,
        ErrorLabel::Throttled,
        ErrorLabel::AccessDenied,
        ErrorLabel::ModelNotFound,
        ErrorLabel::ModelNotReady,
        ErrorLabel::ModelFailed,
        ErrorLabel::ModelTimeout,
        ErrorLabel::Unavailable,
        ErrorLabel::Internal,
        ErrorLabel::Timeout,
        ErrorLabel::Transport,
        ErrorLabel::BadResponse,
        ErrorLabel::Store,
        ErrorLabel::Corrupt,
    ];

    /// The label spelled `text` by [`ErrorLabel::as_str`]; `None` for any other text.
    pub fn parse(text: &str) -> Option<ErrorLabel> {
        ErrorLabel::ALL.into_iter().find(|label| label.as_str() == text)
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorLabel::MalformedJson => "malformed_json",
            ErrorLabel::InvalidRequest => "invalid_request",
            ErrorLabel::InvalidRouting => "invalid_routing",
            ErrorLabel::UnknownModel => "unknown_model",
            ErrorLabel::ModelRetired => "model_retired",
            ErrorLabel::Unauthenticated => "unauthenticated",
            ErrorLabel::NotFound => "not_found",
            ErrorLabel::MethodNotAllowed => "method_not_allowed",
            ErrorLabel::DeadlineExceeded => "deadline_exceeded",
            ErrorLabel::QuotaExhausted => "quota_exhausted",
            ErrorLabel::Throttled => "throttled",
            ErrorLabel::AccessDenied => "access_denied",
            ErrorLabel::ModelNotFound => "model_not_found",
            ErrorLabel::ModelNotReady => "model_not_ready",
            ErrorLabel::ModelFailed => "model_failed",
            ErrorLabel::ModelTimeout => "model_timeout",
            ErrorLabel::Unavailable => "unavailable",
            ErrorLabel::Internal => "internal",
            ErrorLabel::Timeout => "timeout",
            ErrorLabel::Transport => "transport",
            ErrorLabel::BadResponse => "bad_response",
            ErrorLabel::Store => "store",
            ErrorLabel::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for ErrorLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_snake_case_words() {
        let mut seen = std::collections::BTreeSet::new();
        for label in ErrorLabel::ALL {
            let text = label.as_str();
            assert!(seen.insert(text), "{text} is used twice");
            assert!(
                !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    && !text.starts_with('_')
                    && !text.ends_with('_'),
                "{text} is not snake_case"
            );
        }
        assert_eq!(seen.len(), ErrorLabel::ALL.len());
    }

    #[test]
    fn every_label_parses_back_from_its_spelling_and_nothing_else_does() {
        for label in ErrorLabel::ALL {
            assert_eq!(ErrorLabel::parse(label.as_str()), Some(label));
            assert_eq!(ErrorLabel::parse(&label.as_str().to_uppercase()), None);
        }
        assert_eq!(ErrorLabel::parse(""), None);
    }
}
