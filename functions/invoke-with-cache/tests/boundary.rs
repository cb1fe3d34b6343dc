//! The HTTP boundary of `/v1/converse`: who the caller is, what input is accepted, and what
//! reaches the logs. Each test names the finding of issue 8 it reproduces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::Arc;

use gateway_core::catalog::Catalog;
use gateway_core::identity::TenantRules;
use gateway_core::service::{Gateway, GatewaySettings};
use gateway_core::testing::{FakeInvoker, TestPorts};
use http_support::testing::{Captured, Reply, add_header as with_header, event_from_json, with_body};
use invoke_with_cache::Handler;
use lambda_http::{Body, Request};

type TestHandler = Handler<TestPorts>;

fn handler(trust_tenant_header: bool) -> (TestHandler, Arc<FakeInvoker>) {
    let catalog = Arc::new(Catalog::embedded().unwrap());
    let settings = GatewaySettings {
        tenants: TenantRules { trust_header: trust_tenant_header },
        ..GatewaySettings::from_catalog(&catalog)
    };
    let ports = TestPorts::fakes();
    let invoker = ports.models.clone();
    (Handler::new(Gateway::new(catalog, settings, ports)), invoker)
}

fn event(name: &str) -> Request {
    http_support::testing::event("invoke-with-cache", name)
}

/// `valid-request.json` without its JWT authorizer: an anonymous caller.
fn anonymous() -> Request {
    let path = format!("{}/../../events/invoke-with-cache/valid-request.json", env!("CARGO_MANIFEST_DIR"));
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["requestContext"].as_object_mut().unwrap().remove("authorizer");
    event_from_json(&json.to_string())
}

async fn send(h: &TestHandler, request: Request) -> (u16, Option<String>, serde_json::Value) {
    let reply = Reply::from(h.handle(request).await.unwrap());
    (reply.status, reply.header("x-cache"), reply.body)
}

#[tokio::test]
async fn a_non_ascii_tenant_header_is_a_400_not_the_anonymous_tenants_cache() {
    // Finding 3: `x-tenant-id: ténant` was dropped and HIT the anonymous entry.
    for trust in [true, false] {
        let (h, invoker) = handler(trust);
        assert_eq!(send(&h, anonymous()).await.1.as_deref(), Some("MISS"));
        let (status, cache, body) = send(&h, event("non-ascii-tenant.json")).await;
        assert_eq!((status, cache), (400, None), "{body}");
        assert_eq!(body["error"]["field"], "x-tenant-id");
        for bad in [&b""[..], &[b'a'; 129][..]] {
            let (status, _, body) = send(&h, with_header(anonymous(), "x-tenant-id", bad)).await;
            assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-tenant-id")));
        }
        assert_eq!(invoker.calls(), 1);
    }
}

#[tokio::test]
async fn a_trusted_tenant_header_has_its_own_cache() {
    let (h, invoker) = handler(true);
    send(&h, anonymous()).await;
    let (status, cache, _) = send(&h, with_header(anonymous(), "x-tenant-id", b"team-a")).await;
    assert_eq!((status, cache.as_deref()), (200, Some("MISS")));
    assert_eq!(invoker.calls(), 2);
}

#[tokio::test]
async fn a_jwt_without_sub_is_a_401_whatever_the_header_says() {
    // Finding 5: the caller-chosen header stood in for the missing subject.
    let (h, invoker) = handler(true);
    for request in [event("jwt-without-sub.json"), with_header(event("jwt-without-sub.json"), "x-tenant-id", b"victim")]
    {
        let (status, _, body) = send(&h, request).await;
        assert_eq!((status, body["error"]["type"].as_str()), (401, Some("unauthenticated")), "{body}");
    }
    assert_eq!(invoker.calls(), 0);
}

#[tokio::test]
async fn repeated_gateway_headers_are_400s_naming_the_header() {
    // Finding 6: the first of two `x-tenant-id` headers silently won.
    let (h, _) = handler(true);
    for (name, value) in
        [("x-tenant-id", &b"a"[..]), ("x-cache-mode", b"off"), ("x-cache-ttl", b"60"), ("x-route-max-tier", b"haiku")]
    {
        let twice = with_header(with_header(anonymous(), name, value), name, value);
        let (status, _, body) = send(&h, twice).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(name)), "{body}");
    }
    let (status, _, body) = send(&h, with_header(anonymous(), "x-cache-mode", "ön".as_bytes())).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-cache-mode")));
}

#[tokio::test]
async fn only_documented_cache_header_values_work() {
    // Finding 6: `x-cache-mode: bypass` worked, undocumented.
    let (h, invoker) = handler(false);
    for (name, value) in [
        ("x-cache-mode", "bypass"),
        ("x-cache-mode", "refresh"),
        ("x-cache-mode", "read-only"),
        ("x-cache-allow-sampling", "1"),
        ("x-cache-allow-sampling", "0"),
        ("x-cache-ttl", "+60"),
    ] {
        let (status, _, body) = send(&h, with_header(event("valid-request.json"), name, value.as_bytes())).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(name)), "{name}: {value}");
    }
    assert_eq!(invoker.calls(), 0);
}

#[tokio::test]
async fn only_the_exact_route_is_served_with_or_without_a_stage() {
    // Finding 6: `/anything/v1/converse` was served.
    let (h, _) = handler(false);
    let (status, _, body) = send(&h, event("wrong-route.json")).await;
    assert_eq!((status, body["error"]["type"].as_str()), (404, Some("not_found")));
    for path in ["/v1/converse/", "/v1/converse/x", "/prod/v1/converse", "/V1/converse"] {
        let request = event("valid-request.json").with_raw_http_path(path);
        assert_eq!(send(&h, request).await.0, 404, "{path}");
    }
    // A named stage comes first in `rawPath`.
    let path = format!("{}/../../events/invoke-with-cache/valid-request.json", env!("CARGO_MANIFEST_DIR"));
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["requestContext"]["stage"] = "prod".into();
    for raw in ["/prod/v1/converse", "/v1/converse"] {
        json["rawPath"] = raw.into();
        let request = lambda_http::request::from_str(&json.to_string()).unwrap();
        assert_eq!(send(&h, request).await.0, 200, "{raw} under stage prod");
    }
    json["rawPath"] = "/dev/v1/converse".into();
    assert_eq!(send(&h, lambda_http::request::from_str(&json.to_string()).unwrap()).await.0, 404);
}

use lambda_http::RequestExt;

#[tokio::test]
async fn duplicate_keys_and_string_content_are_400s_naming_the_path() {
    // Finding 6 (duplicate keys took the last) and finding 4 (the prompt came back in the text).
    let (h, invoker) = handler(false);
    let (status, _, body) = send(&h, event("duplicate-key.json")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("modelId")), "{body}");
    let (status, _, body) = send(&h, event("string-content.json")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("messages[0].content")), "{body}");
    assert!(!body["error"]["message"].as_str().unwrap().contains("A prompt sent as a string"), "{body}");
    assert_eq!(invoker.calls(), 0);
}

#[tokio::test]
async fn unknown_models_name_the_field_and_invalid_utf8_is_a_400() {
    // Finding 6: `unknown_model` carried a field on /v1/route only.
    let (h, _) = handler(false);
    let (status, _, body) = send(&h, event("unknown-model.json")).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("modelId")));
    // API Gateway hands a binary body over base64-encoded; lambda_http decodes it to bytes.
    let mut request = event("valid-request.json");
    *request.body_mut() = Body::Binary(b"{\"modelId\":\"haiku\",\"messages\":[\xff]}".to_vec());
    let (status, _, body) = send(&h, request).await;
    assert_eq!((status, body["error"]["type"].as_str()), (400, Some("malformed_json")), "{body}");
}

const MARK: &str = "ZQXMARK";

/// Bodies with a distinct marker in every field a caller controls, valid and invalid.
fn marked_bodies() -> Vec<String> {
    let m = |n: u32| format!("{MARK}{n}");
    let user = |text: &str| format!(r#"{{"role":"user","content":[{{"text":"{text}"}}]}}"#);
    vec![
        format!(
            r#"{{"modelId":"haiku","system":[{{"text":"{}"}}],"messages":[{}],"inferenceConfig":{{"temperature":0,"stopSequences":["{}"]}},"requestMetadata":{{"{}":"{}"}},"additionalModelRequestFields":{{"{}":"{}"}}}}"#,
            m(1),
            user(&m(2)),
            m(3),
            m(4),
            m(5),
            m(6),
            m(7)
        ),
        format!(r#"{{"modelId":"haiku","messages":[{{"role":"user","content":"{}"}}]}}"#, m(10)),
        format!(
            r#"{{"modelId":"haiku","messages":[{}],"inferenceConfig":{{"stopSequences":"{}"}}}}"#,
            user("x"),
            m(11)
        ),
        format!(r#"{{"modelId":1234567890,"messages":[{}]}}"#, user(&m(12))),
        format!(r#"{{"modelId":"{}","messages":[{}]}}"#, m(13), user(&m(14))),
        format!(r#"{{"modelId":"haiku","messages":[{}],"{}":"{}"}}"#, user(&m(15)), m(16), m(17)),
        format!(
            r#"{{"modelId":"haiku","messages":[{}],"toolConfig":{{"tools":[{{"toolSpec":{{"name":"{} bad","inputSchema":{{"json":{{}}}}}}}}]}}}}"#,
            user(&m(18)),
            m(19)
        ),
        format!(r#"{{"modelId":"haiku","messages":[{{"role":"{}","content":[{{"text":"{}"}}]}}]}}"#, m(20), m(21)),
        format!(r#"{{"modelId":"haiku","messages":[{}],"messages":[{}]}}"#, user(&m(22)), user(&m(23))),
        format!(r#"{{"modelId":"haiku","messages":[{}]"#, user(&m(24))),
        format!(
            r#"{{"modelId":"haiku","messages":[{}],"inferenceConfig":{{"temperature":"{}"}}}}"#,
            user(&m(25)),
            m(26)
        ),
    ]
}

#[tokio::test]
async fn no_request_content_reaches_the_logs_even_at_trace() {
    // Finding 4: the prompt was logged at INFO in the rejection message.
    let captured = Captured::default();
    let subscriber =
        tracing_subscriber::fmt().json().with_max_level(tracing::Level::TRACE).with_writer(captured.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (h, _) = handler(true);
    let mut statuses = Vec::new();
    for body in marked_bodies() {
        let request = with_header(with_body(anonymous(), &body), "x-tenant-id", format!("{MARK}t").as_bytes());
        let request = with_header(request, "x-cache-mode", format!("{MARK}m").as_bytes());
        statuses.push(send(&h, request).await.0);
        statuses.push(send(&h, with_body(event("valid-request.json"), &body)).await.0);
    }
    tracing::info!("end of run");
    let logs = captured.text();
    assert!(logs.contains("request rejected") && logs.contains("end of run"), "the capture works: {logs}");
    assert!(statuses.contains(&200) && statuses.contains(&400), "{statuses:?}");
    assert!(!logs.contains(MARK), "request content in the logs:\n{logs}");
}

#[tokio::test]
async fn body_logging_is_explicit_and_at_debug() {
    let captured = Captured::default();
    let subscriber =
        tracing_subscriber::fmt().json().with_max_level(tracing::Level::DEBUG).with_writer(captured.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let (h, _) = handler(false);
    let h = h.with_body_logging(true);
    send(&h, with_body(event("valid-request.json"), &marked_bodies()[0])).await;
    let logs = captured.text();
    assert!(logs.contains("LOG_REQUEST_BODIES=true"), "{logs}");
    assert!(logs.lines().any(|l| l.contains(MARK) && l.contains("DEBUG")), "{logs}");
}
