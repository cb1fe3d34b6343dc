//! Shared set-up for the integration tests: real AWS SDK clients pointed at the local stack.
//!
//! DynamoDB is moto, started by `cargo xtask test`, which exports
//! `AWS_ENDPOINT_URL_DYNAMODB`. The Bedrock emulator runs in-process, one per test, so that
//! each test owns its quotas and faults.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // Test code: a failed set-up should stop the test loudly.

use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};
use bedrock_emulator::{EmulatorConfig, RunningEmulator};

/// Test credentials and region; tests add the endpoint.
pub fn sdk_defaults() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).region(aws_config::Region::new("us-east-1")).credentials_provider(
        aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "integration-tests"),
    )
}

/// moto's endpoint. These tests are meaningless without it, so its absence is a failure
/// with instructions, not a skip.
pub fn dynamodb_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL_DYNAMODB is not set: run these tests through `cargo xtask test`, which starts moto")
    })
}

pub async fn dynamodb() -> aws_sdk_dynamodb::Client {
    let config = sdk_defaults().endpoint_url(dynamodb_endpoint()).load().await;
    aws_sdk_dynamodb::Client::new(&config)
}

/// A fresh table with the cache table's key schema (the template's definition is checked
/// separately by `cargo xtask test`, which creates the stack's table from template.yaml).
pub async fn cache_table(client: &aws_sdk_dynamodb::Client) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("it-cache-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder().attribute_name("pk").attribute_type(ScalarAttributeType::S).build().unwrap(),
        )
        .key_schema(KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().unwrap())
        .send()
        .await
        .unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
    client.wait_until_table_exists().table_name(&name).wait(std::time::Duration::from_secs(10)).await.unwrap();
    name
}

/// A fresh table with the UsageTable's keys (`pk`, `sk`), for the usage store and the publisher.
pub async fn usage_table(client: &aws_sdk_dynamodb::Client) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!("it-usage-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
    let mut create = client.create_table().table_name(&name).billing_mode(BillingMode::PayPerRequest);
    for (attribute, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        create = create
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attribute)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(KeySchemaElement::builder().attribute_name(attribute).key_type(kind).build().unwrap());
    }
    create.send().await.unwrap_or_else(|e| panic!("create table {name}: {e:?}"));
    client.wait_until_table_exists().table_name(&name).wait(std::time::Duration::from_secs(10)).await.unwrap();
    name
}

/// An in-process emulator that answers instantly.
pub async fn emulator(configure: impl FnOnce(&mut EmulatorConfig)) -> RunningEmulator {
    let mut config = EmulatorConfig { latency_scale: 0.0, ..EmulatorConfig::default() };
    configure(&mut config);
    bedrock_emulator::spawn(config).await.unwrap()
}

/// A Bedrock Runtime client for `url` that makes `attempts` attempts per call.
pub async fn bedrock(url: &str, attempts: u32) -> aws_sdk_bedrockruntime::Client {
    let config = sdk_defaults().load().await;
    aws_sdk_bedrockruntime::Client::from_conf(
        aws_sdk_bedrockruntime::config::Builder::from(&config)
            .endpoint_url(url)
            .retry_config(RetryConfig::standard().with_max_attempts(attempts))
            .build(),
    )
}

/// A deterministic Converse call (temperature 0, 400 output tokens) from `tenant` to `model`.
pub fn converse_call(
    tenant: &str,
    model: &str,
    text: &str,
    routing: gateway_core::routing::RouteOverrides,
) -> gateway_core::service::ConverseCall {
    let body = serde_json::json!({
        "modelId": model,
        "messages": [{"role": "user", "content": [{"text": text}]}],
        "inferenceConfig": {"temperature": 0, "maxTokens": 400}
    });
    gateway_core::service::ConverseCall {
        request: gateway_core::request::ConverseRequest::from_json(body.to_string().as_bytes())
            .expect("the test request is valid"),
        tenant: gateway_core::cache::Tenant::new(tenant),
        cache: gateway_core::cache::CacheOptions::default(),
        routing,
        deadline: due(),
    }
}

/// A deadline at the production default budget from now.
pub fn due() -> gateway_core::deadline::Deadline {
    gateway_core::deadline::Budgets::default().deadline(None)
}

/// moto answers in milliseconds when idle but far slower on a loaded CI machine; tests that
/// are not about time give the cache room so that a slow read is not a miss.
pub fn moto_budgets() -> gateway_core::deadline::Budgets {
    gateway_core::deadline::Budgets { cache: std::time::Duration::from_secs(2), ..Default::default() }
}

/// `GET /_emulator/stats` of a running emulator: the counters of every call it received.
/// A plain HTTP/1.0 exchange, so the tests need no HTTP client of their own.
pub async fn emulator_stats(emulator: &RunningEmulator) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(emulator.addr()).await.unwrap();
    stream.write_all(b"GET /_emulator/stats HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP body in {reply:?}"));
    assert!(head.starts_with("HTTP/1.") && head.contains(" 200 "), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("stats are not JSON ({e}): {body}"))
}
