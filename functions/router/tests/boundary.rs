//! The HTTP boundary of `/v1/route`: the same strict input and log policy as `/v1/converse`.
//! Each test names the finding of issue 8 it reproduces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use gateway_core::config::RoutingConfig;
use http_support::testing::{Captured, Reply, add_header as with_header, with_body};
use lambda_http::Request;
use router::Handler;

fn handler() -> Handler {
    Handler::from_config(&RoutingConfig::from_lookup(|_| None).unwrap()).unwrap()
}

fn event(name: &str) -> Request {
    http_support::testing::event("router", name)
}

async fn send(h: &Handler, request: Request) -> (u16, serde_json::Value) {
    let reply = Reply::from(h.handle(request).await.unwrap());
    (reply.status, reply.body)
}

#[tokio::test]
async fn a_missing_model_id_is_the_same_400_as_on_converse() {
    // Finding 6: no `modelId` was 200 here and 400 on /v1/converse.
    let (status, body) = send(&handler(), event("missing-model.json")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        (body["error"]["type"].as_str(), body["error"]["field"].as_str()),
        (Some("invalid_request"), Some("modelId"))
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert_eq!(
        message,
        "`modelId`: is required: auto, a tier (haiku, sonnet, opus), a model ID, an inference profile or an ARN"
    );
}

#[tokio::test]
async fn only_the_exact_route_is_served() {
    // Finding 6: any path ending in the route was served.
    let h = handler();
    use lambda_http::RequestExt;
    for path in ["/anything/v1/route", "/v1/route/", "/v1/routes"] {
        assert_eq!(send(&h, event("easy-prompt.json").with_raw_http_path(path)).await.0, 404, "{path}");
    }
    let (status, body) = send(&h, event("named-stage.json")).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn duplicates_are_400s_naming_the_key_or_header() {
    // Finding 6: duplicates silently took the last key or the first header.
    let h = handler();
    let twice =
        with_header(with_header(event("easy-prompt.json"), "x-route-max-tier", "haiku"), "x-route-max-tier", "opus");
    let (status, body) = send(&h, twice).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("x-route-max-tier")));
    let dup = r#"{"modelId":"auto","messages":[{"role":"user","content":[{"text":"a"}]}],"additionalModelRequestFields":{"k":1,"k":2}}"#;
    let (status, body) = send(&h, with_body(event("easy-prompt.json"), dup)).await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("additionalModelRequestFields.k")), "{body}");
}

#[tokio::test]
async fn no_request_content_reaches_the_logs_even_at_trace() {
    // Finding 4: the prompt was logged at INFO in the rejection message.
    const MARK: &str = "ZQXMARK";
    let captured = Captured::default();
    let subscriber =
        tracing_subscriber::fmt().json().with_max_level(tracing::Level::TRACE).with_writer(captured.clone()).finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = handler();
    let user = |text: &str| format!(r#"{{"role":"user","content":[{{"text":"{text}"}}]}}"#);
    let bodies = [
        format!(
            r#"{{"modelId":"auto","system":[{{"text":"{MARK}1"}}],"messages":[{}],"requestMetadata":{{"{MARK}2":"{MARK}3"}}}}"#,
            user(&format!("{MARK}4"))
        ),
        format!(r#"{{"modelId":"auto","messages":[{{"role":"user","content":"{MARK}5"}}]}}"#),
        format!(r#"{{"modelId":"auto","messages":[{}],"inferenceConfig":{{"stopSequences":"{MARK}6"}}}}"#, user("x")),
        format!(r#"{{"modelId":9876543210,"messages":[{}]}}"#, user(&format!("{MARK}7"))),
        format!(r#"{{"modelId":"{MARK}8","messages":[{}]}}"#, user("x")),
        format!(r#"{{"modelId":"auto","messages":[{}],"{MARK}9":"{MARK}10"}}"#, user("x")),
        format!(r#"{{"modelId":"auto","messages":[{{"role":"{MARK}11","content":[{{"text":"x"}}]}}]}}"#),
        format!(
            r#"{{"modelId":"auto","messages":[{}],"toolConfig":{{"tools":[{{"toolSpec":{{"name":"{MARK} 12","inputSchema":{{"json":{{}}}}}}}}]}}}}"#,
            user("x")
        ),
    ];
    let mut statuses = Vec::new();
    for body in &bodies {
        let request = with_header(with_body(event("easy-prompt.json"), body), "x-route-min-tier", format!("{MARK}13"));
        statuses.push(send(&h, request).await.0);
        statuses.push(send(&h, with_body(event("easy-prompt.json"), body)).await.0);
    }
    let logs = captured.text();
    assert!(logs.contains("request rejected"), "the capture works: {logs}");
    assert!(statuses.contains(&200) && statuses.contains(&400), "{statuses:?}");
    assert!(!logs.contains(MARK) && !logs.contains("9876543210"), "request content in the logs:\n{logs}");
}
