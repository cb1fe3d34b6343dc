//! AWS event-stream frames, as Bedrock's streaming operations send them.

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use serde_json::Value;

/// The response content type of every event-stream operation.
pub const CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// An `event` frame: `:event-type` names the member of the operation's output union.
pub fn event(event_type: &str, payload: &Value) -> Bytes {
    frame("event", ":event-type", event_type, payload)
}

/// An `exception` frame: how an error reaches the client once the HTTP 200 is out.
pub fn exception(exception_type: &str, payload: &Value) -> Bytes {
    frame("exception", ":exception-type", exception_type, payload)
}

fn frame(message_type: &'static str, type_header: &'static str, type_name: &str, payload: &Value) -> Bytes {
    let body = payload.to_string();
    let capacity = body.len() + 128;
    let message = Message::new_from_parts(
        vec![
            Header::new(":message-type", HeaderValue::String(message_type.into())),
            Header::new(type_header, HeaderValue::String(type_name.to_owned().into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
        ],
        Bytes::from(body),
    );
    let mut buffer = Vec::with_capacity(capacity);
    // Writing fails only for frames too large for the format's length fields; ours are a
    // few hundred bytes, so an error here is a bug, and an empty frame makes clients fail
    // loudly rather than read a half-written one.
    if let Err(e) = write_message_to(&message, &mut buffer) {
        tracing::error!(error = %e, "cannot encode an event-stream frame");
        buffer.clear();
    }
    Bytes::from(buffer)
}

#[cfg(test)]
mod tests {
    use aws_smithy_eventstream::frame::read_message_from;

    use super::*;

    fn header<'a>(message: &'a Message, name: &str) -> &'a str {
        message
            .headers()
            .iter()
            .find(|h| h.name().as_str() == name)
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str())
            .unwrap_or_else(|| panic!("no header {name}"))
    }

    #[test]
    fn event_frames_decode_to_the_same_headers_and_payload() {
        let payload = serde_json::json!({"contentBlockIndex": 0, "delta": {"text": "Hello"}});
        let bytes = event("contentBlockDelta", &payload);
        let mut buf = &bytes[..];
        let message = read_message_from(&mut buf).unwrap();
        assert!(buf.is_empty(), "one frame, nothing left over");
        assert_eq!(header(&message, ":message-type"), "event");
        assert_eq!(header(&message, ":event-type"), "contentBlockDelta");
        assert_eq!(header(&message, ":content-type"), "application/json");
        let decoded: Value = serde_json::from_slice(message.payload()).unwrap();
        assert_eq!(decoded, payload);
    }

    #[test]
    fn exception_frames_carry_the_exception_type() {
        let bytes = exception("modelStreamErrorException", &serde_json::json!({"message": "boom"}));
        let message = read_message_from(&mut &bytes[..]).unwrap();
        assert_eq!(header(&message, ":message-type"), "exception");
        assert_eq!(header(&message, ":exception-type"), "modelStreamErrorException");
    }

    #[test]
    fn consecutive_frames_split_cleanly() {
        let mut all = Vec::new();
        for i in 0..3 {
            all.extend_from_slice(&event("contentBlockStop", &serde_json::json!({"contentBlockIndex": i})));
        }
        let mut buf = &all[..];
        for i in 0..3 {
            let m = read_message_from(&mut buf).unwrap();
            let v: Value = serde_json::from_slice(m.payload()).unwrap();
            assert_eq!(v["contentBlockIndex"], i);
        }
        assert!(buf.is_empty());
    }
}
