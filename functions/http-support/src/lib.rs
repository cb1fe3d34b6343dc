//! The HTTP plumbing the gateway's functions share, so that every endpoint logs, answers
//! and fails in the same shape. Policy stays in `gateway-core`; this crate only knows HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use lambda_http::http::{HeaderMap, HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::{Map, Value};

/// JSON logs for CloudWatch, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .without_time()
        .with_target(false)
        .init();
}

/// A header's value, if present and visible ASCII.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// API Gateway's request ID, or empty outside API Gateway.
pub fn request_id(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A JSON response with extra headers; a header value that is not valid HTTP is dropped
/// rather than failing the response.
pub fn json_response(status: StatusCode, body: &Value, extra: &[(&'static str, &str)]) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(*name, value);
        }
    }
    response
}

/// The error object every endpoint returns under `"error"`: `type`, `message`, and `field`
/// and `requestId` when known. Callers may add members before wrapping it.
pub fn error_object(error_type: &str, message: String, field: Option<&str>, request_id: &str) -> Map<String, Value> {
    let mut error = Map::new();
    error.insert("type".into(), error_type.into());
    error.insert("message".into(), message.into());
    if let Some(field) = field {
        error.insert("field".into(), field.into());
    }
    if !request_id.is_empty() {
        error.insert("requestId".into(), request_id.into());
    }
    error
}

/// `{"error": {...}}` with its status and headers.
pub fn error_response(status: StatusCode, error: Map<String, Value>, extra: &[(&'static str, &str)]) -> Response<Body> {
    let mut body = Map::new();
    body.insert("error".into(), Value::Object(error));
    json_response(status, &Value::Object(body), extra)
}

/// Milliseconds since the epoch, for EMF documents.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_carry_what_is_known() {
        let response = error_response(
            StatusCode::BAD_REQUEST,
            error_object("invalid_request", "bad".into(), Some("messages"), "req-1"),
            &[("allow", "POST"), ("bad", "line\nbreak")],
        );
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()["allow"], "POST");
        assert!(response.headers().get("bad").is_none(), "invalid header values are dropped");
        let Body::Text(text) = response.body() else { panic!("text body") };
        let body: Value = serde_json::from_str(text).unwrap();
        assert_eq!(body["error"]["field"], "messages");
        assert_eq!(body["error"]["requestId"], "req-1");
        let bare = error_object("not_found", "no".into(), None, "");
        assert!(!bare.contains_key("field") && !bare.contains_key("requestId"));
    }
}
