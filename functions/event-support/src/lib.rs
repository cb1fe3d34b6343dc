//! The EventBridge plumbing the batch functions share: the envelope every event comes in,
//! its RFC 3339 times, and failures as the Lambda diagnostics EventBridge's retries and the
//! dead-letter queue see. Policy stays in `gateway-core`; this crate only knows the events.

use std::time::{Duration, SystemTime};

use gateway_core::label::ErrorLabel;
use lambda_runtime::Diagnostic;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// `detail-type` of the schedule rules' events.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";
pub const SCHEDULER_SOURCE: &str = "aws.events";

/// An EventBridge event: who sent it, what it is, and its `detail` left for the function to read.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Envelope {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub source: String,
    /// RFC 3339 for S3 and the scheduler; Bedrock's own text is not, so it is kept as given.
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub detail: Option<Value>,
}

/// Why an event cannot be handled. Each is the sender's or the rule's mistake: retrying will
/// not help, so the event ends in the dead-letter queue for someone to look at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("not an EventBridge event: {0}")]
    NotAnEvent(String),
    #[error("no handler for `{detail_type}` events from `{sender}`")]
    Unexpected { detail_type: String, sender: String },
    #[error("`{detail_type}` event has no `detail`")]
    MissingDetail { detail_type: String },
    #[error("`{detail_type}` event's detail is malformed: {reason}")]
    MalformedDetail { detail_type: String, reason: String },
    #[error("`{field}` is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl EventError {
    pub fn label(&self) -> ErrorLabel {
        match self {
            EventError::NotAnEvent(_) | EventError::MalformedDetail { .. } | EventError::MissingDetail { .. } => {
                ErrorLabel::MalformedJson
            }
            EventError::Unexpected { .. } | EventError::Invalid { .. } => ErrorLabel::InvalidRequest,
        }
    }
}

impl Envelope {
    pub fn parse(event: Value) -> Result<Envelope, EventError> {
        serde_json::from_value(event).map_err(|e| EventError::NotAnEvent(e.to_string()))
    }

    pub fn is(&self, source: &str, detail_type: &str) -> bool {
        self.source == source && self.detail_type == detail_type
    }

    pub fn unexpected(&self) -> EventError {
        EventError::Unexpected { detail_type: self.detail_type.clone(), sender: self.source.clone() }
    }

    /// `detail` read as `T`.
    pub fn detail<T: DeserializeOwned>(&self) -> Result<T, EventError> {
        let detail = self.detail.as_ref().filter(|d| !d.is_null());
        let detail = detail.ok_or_else(|| EventError::MissingDetail { detail_type: self.detail_type.clone() })?;
        serde_json::from_value(detail.clone())
            .map_err(|e| EventError::MalformedDetail { detail_type: self.detail_type.clone(), reason: e.to_string() })
    }

    /// `time` as an instant; required of the events that carry an RFC 3339 one.
    pub fn instant(&self) -> Result<SystemTime, EventError> {
        let time = self.time.as_deref().ok_or(EventError::Invalid { field: "time", reason: "is missing".into() })?;
        parse_rfc3339(time).ok_or_else(|| EventError::Invalid {
            field: "time",
            reason: format!("`{time}` is not an RFC 3339 UTC time such as 2026-12-02T14:15:00Z"),
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, as EventBridge writes `time`.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let bytes = text.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = text.get(from..from + len)?;
        part.bytes().all(|b| b.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if bytes.len() < 20 || separators.iter().any(|&(at, c)| bytes[at] != c) || !matches!(bytes[10], b'T' | b't' | b' ')
    {
        return None;
    }
    let (year, month, day) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (hour, minute, second) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0u32;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 {
            return None;
        }
        let kept = &fraction[..len.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - u32::try_from(kept.len()).ok()?);
        rest = &fraction[len..];
    }
    let offset_seconds = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (h, m) = (rest[1..3].parse::<i64>().ok()?, rest[4..6].parse::<i64>().ok()?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3_600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A failure as Lambda reports it: the label as `errorType`, the error and its causes as the
/// message, so the DLQ's entry and the log line name it in the one vocabulary.
pub fn diagnostic(label: ErrorLabel, error: &dyn std::error::Error) -> Diagnostic {
    Diagnostic { error_type: label.as_str().to_owned(), error_message: with_sources(error) }
}

/// What an event handler's error tells its log line: its label, and whether Lambda's retry
/// can succeed (a throttle, a store down) or the event is bound for the dead-letter queue.
pub trait HandlerError: std::error::Error {
    fn label(&self) -> ErrorLabel;
    fn is_transient(&self) -> bool;
}

/// The one log line per event every event-driven function writes: its summary, or its failure
/// at the level its fate calls for.
pub fn log_outcome<E: HandlerError>(outcome: &Result<Value, E>) {
    match outcome {
        Ok(summary) => tracing::info!(summary = %summary, "event handled"),
        Err(error) if error.is_transient() => {
            tracing::warn!(error = %with_sources(error), kind = error.label().as_str(), "event failed; Lambda retries it")
        }
        Err(error) => tracing::error!(
            error = %with_sources(error),
            kind = error.label().as_str(),
            "event cannot be handled; it goes to the dead-letter queue after its retries"
        ),
    }
}

/// An error and its causes on one line.
pub fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn at(seconds: u64, nanos: u32) -> Option<SystemTime> {
        SystemTime::UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
    }

    #[test]
    fn rfc3339_times_are_read_with_fractions_and_offsets() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), at(0, 0));
        assert_eq!(parse_rfc3339("2021-11-12T00:00:00Z"), at(1_636_675_200, 0));
        assert_eq!(parse_rfc3339("2024-02-29T12:30:15.25Z"), at(1_709_209_815, 250_000_000));
        assert_eq!(parse_rfc3339("2024-02-29T14:30:15+02:00"), at(1_709_209_815, 0));
        assert_eq!(parse_rfc3339("2024-02-29T10:30:15-02:00"), at(1_709_209_815, 0));
        for bad in [
            "",
            "2023-02-29T00:00:00Z",
            "2021-13-01T00:00:00Z",
            "2021-11-12 00:00:00",
            "Wed Aug 28 22:58:30 UTC 2024",
            "2021-11-12T00:00:00.Z",
            "2021-11-12T00:00:00+0200",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn envelopes_name_what_is_wrong() {
        let event = serde_json::json!({"detail-type": "Scheduled Event", "source": "aws.events", "time": "2026-12-02T14:15:00Z", "detail": {}});
        let envelope = Envelope::parse(event).unwrap();
        assert!(envelope.is(SCHEDULER_SOURCE, SCHEDULED_EVENT));
        assert_eq!(envelope.instant().unwrap(), parse_rfc3339("2026-12-02T14:15:00Z").unwrap());
        assert!(matches!(Envelope::parse(serde_json::json!({"source": "x"})), Err(EventError::NotAnEvent(_))));
        let bare = Envelope::parse(serde_json::json!({"detail-type": "T", "source": "s"})).unwrap();
        assert_eq!(bare.detail::<Value>(), Err(EventError::MissingDetail { detail_type: "T".into() }));
        assert!(matches!(bare.instant(), Err(EventError::Invalid { field: "time", .. })));
        let d = diagnostic(ErrorLabel::InvalidRequest, &bare.unexpected());
        assert_eq!(d.error_type, "invalid_request");
        assert_eq!(d.error_message, "no handler for `T` events from `s`");
    }
}
