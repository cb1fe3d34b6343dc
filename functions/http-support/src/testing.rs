//! What the functions' handler tests share (feature `testing`): the API Gateway events of
//! `events/`, request edits, the reply as a test reads it, and a log capture.
//!
//! A helper that cannot set a test up panics: the test should stop loudly, not pass.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use lambda_http::http::{HeaderMap, HeaderValue};
use lambda_http::{Body, Request, Response};

/// `events/<function>/<name>`, the file `sam local invoke -e` and `cargo lambda invoke
/// --data-file` use, as the request API Gateway would hand the function.
pub fn event(function: &str, name: &str) -> Request {
    let path = format!("{}/../../events/{function}/{name}", env!("CARGO_MANIFEST_DIR"));
    let json = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    event_from_json(&json)
}

/// An API Gateway event given as JSON text.
pub fn event_from_json(json: &str) -> Request {
    lambda_http::request::from_str(json).unwrap_or_else(|e| panic!("not an API Gateway event: {e}\n{json}"))
}

pub fn with_body(mut request: Request, body: &str) -> Request {
    *request.body_mut() = Body::Text(body.to_owned());
    request
}

/// Sets `name`, replacing any value the event has.
pub fn with_header(mut request: Request, name: &'static str, value: impl AsRef<[u8]>) -> Request {
    request.headers_mut().insert(name, HeaderValue::from_bytes(value.as_ref()).unwrap());
    request
}

/// Adds one more value of `name`, so that a header the event has becomes repeated.
pub fn add_header(mut request: Request, name: &'static str, value: impl AsRef<[u8]>) -> Request {
    request.headers_mut().append(name, HeaderValue::from_bytes(value.as_ref()).unwrap());
    request
}

/// A response as tests read it; every endpoint answers JSON, errors included.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: serde_json::Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }
}

impl From<Response<Body>> for Reply {
    fn from(response: Response<Body>) -> Reply {
        let body = match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("expected a JSON text body, got {other:?}"),
        };
        let reply = Reply { status: response.status().as_u16(), headers: response.headers().clone(), body };
        assert_eq!(reply.header("content-type").as_deref(), Some("application/json"));
        reply
    }
}

/// A `MakeWriter` over one shared buffer: everything the subscriber writes, in order.
#[derive(Debug, Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}
